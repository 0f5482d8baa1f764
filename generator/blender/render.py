"""Render a scene's depth, all-in-focus image and focus frames with Cycles (DESIGN.md section 6).

Per scene: build once; render planar depth with depth of field off; then the
optional all-in-focus image; then every focus frame, changing only the camera
so that persistent data keeps the BVH and shaders. Each render is written to a
scratch multilayer EXR (float32, uncompressed) and read back with OpenEXR.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np
import OpenEXR

from generator.blender.build import build_scene, set_beauty_sampling
from generator.blender.camera import CLIP_END_M, apply_camera
from generator.spec import SceneSpec

#: Width (pixels) of the Gaussian pixel filter used for depth: Cycles' minimum.
#: With one sample per pixel, the camera ray then passes within 0.005 px of the
#: pixel centre (integer + 0.5, DESIGN.md section 2), so depth is a point sample
#: there, not an average across an edge. (Cycles fixes the box filter at 1 px.)
DEPTH_FILTER_WIDTH_PX = 0.01

_COMBINED = "ViewLayer.Combined"  # RGBA, linear
_DEPTH = "ViewLayer.Depth.Z"  # planar depth, metres


@dataclass
class RenderedScene:
    """What :func:`render_scene` returns.

    Attributes:
        frames: one linear-RGB image per ``spec.frames`` entry, in order; float32 [H, W, 3].
        depth: planar depth in metres, 0 where there is no surface; float32 [H, W].
            One map, or one per frame when ``spec.depth_per_frame``.
        aif: the all-in-focus image (camera of frame 0, no depth of field), float32
            [H, W, 3], when ``spec.render.aif``; else ``None``.
        cycles_seconds: wall time spent inside ``bpy.ops.render.render`` (which
            includes Cycles writing its scratch EXR).
        total_seconds: wall time of the whole call (build, renders, read-back).
    """

    frames: list[np.ndarray]
    depth: list[np.ndarray]
    aif: np.ndarray | None
    cycles_seconds: float
    total_seconds: float


def render_scene(spec: SceneSpec, *, threads: int = 0, scratch_dir: Path | None = None) -> RenderedScene:
    """Build ``spec`` and render its depth, optional all-in-focus image and focus frames.

    Args:
        spec: the scene.
        threads: Cycles CPU threads, 0 = all cores (the pixels do not depend on it).
        scratch_dir: where the scratch EXR goes (a private temporary folder is
            made inside it and removed afterwards); default: the system temp dir.
    """
    start = time.perf_counter()
    built = build_scene(spec, threads=threads)
    scene, camera, lens = built.scene, built.camera, spec.lens
    with tempfile.TemporaryDirectory(prefix="dfdgen-", dir=scratch_dir) as folder:
        renderer = _Renderer(scene, Path(folder) / "render.exr")

        # Depth: pinhole at the lens centre (DoF off). Breathing or motion makes it per frame.
        set_depth_sampling(scene)
        depth = []
        for frame in spec.frames if spec.depth_per_frame else spec.frames[:1]:
            apply_camera(camera, lens, frame.focus_distance_m, use_dof=False)
            z = renderer.render()[_DEPTH]
            depth.append(np.where(z < CLIP_END_M, z, 0.0).astype(np.float32))  # sky: ~1e10 -> 0

        set_beauty_sampling(scene, spec.render)
        aif = None
        if spec.render.aif:
            apply_camera(camera, lens, spec.frames[0].focus_distance_m, use_dof=False)
            aif = _rgb(renderer.render())
        frames = []
        for frame in spec.frames:
            apply_camera(camera, lens, frame.focus_distance_m, use_dof=True)
            frames.append(_rgb(renderer.render()))

    return RenderedScene(
        frames=frames,
        depth=depth,
        aif=aif,
        cycles_seconds=renderer.seconds,
        total_seconds=time.perf_counter() - start,
    )


def save_blend(spec: SceneSpec, path: Path) -> None:
    """Build ``spec`` (camera at frame 0, DoF on) and save it as an uncompressed .blend at ``path``."""
    build_scene(spec)
    bpy.ops.wm.save_as_mainfile(filepath=str(Path(path).resolve()), compress=False, check_existing=False)


def set_depth_sampling(scene: bpy.types.Scene) -> None:
    """One sample at the pixel centre, no bounces: only the camera ray's hit matters.

    Cycles writes the Z pass from a pixel's first sample, so one sample per
    pixel through a :data:`DEPTH_FILTER_WIDTH_PX` Gaussian filter gives the
    planar depth of the surface seen through the pixel centre.
    """
    cycles = scene.cycles
    cycles.samples = 1
    cycles.pixel_filter_type = "GAUSSIAN"
    cycles.filter_width = DEPTH_FILTER_WIDTH_PX
    cycles.max_bounces = 0


class _Renderer:
    """Renders ``scene`` to one scratch EXR and reads it back; totals the time inside Cycles."""

    def __init__(self, scene: bpy.types.Scene, path: Path):
        self.scene, self.path, self.seconds = scene, path, 0.0
        scene.render.filepath = str(path)
        scene.render.use_file_extension = False  # write exactly `path`
        settings = scene.render.image_settings
        settings.media_type = "MULTI_LAYER_IMAGE"  # Blender 5.0: set before the EXR format
        settings.file_format = "OPEN_EXR_MULTILAYER"
        settings.color_depth = "32"  # float32: depth in metres and linear radiance, unrounded
        settings.exr_codec = "NONE"  # a scratch file read once: skip compression
        view_layer = scene.view_layers[0]
        view_layer.use_pass_combined = True
        view_layer.use_pass_z = True

    def render(self) -> dict[str, np.ndarray]:
        """Render once; return every EXR channel by name (``'ViewLayer.Combined'`` is [H, W, 4])."""
        start = time.perf_counter()
        bpy.ops.render.render(write_still=True, scene=self.scene.name)
        self.seconds += time.perf_counter() - start
        with OpenEXR.File(str(self.path)) as exr:
            return {name: channel.pixels for part in exr.parts for name, channel in part.channels.items()}


def _rgb(channels: dict[str, np.ndarray]) -> np.ndarray:
    """Linear RGB float32 [H, W, 3] from the Combined pass (alpha dropped: the film is opaque)."""
    return np.ascontiguousarray(channels[_COMBINED][..., :3], dtype=np.float32)
