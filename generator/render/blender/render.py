"""Render a scene's depth, all-in-focus image and focus frames with Cycles (DESIGN.md section 6).

Per scene: build once; render planar depth with depth of field off; then the
optional all-in-focus image; then every focus frame, changing only the camera
so that persistent data keeps the BVH and shaders. Each render is written to a
scratch multilayer EXR (float32, uncompressed) and read back with OpenEXR.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generator, Protocol, Sequence, TypeVar

import bpy
import numpy as np
import OpenEXR

from generator.render.blender.build import (BuiltScene, build_scene, exposure, pose_objects, set_beauty_sampling,
                                             set_depth_sampling)
from generator.render.blender.camera import CLIP_END_M, apply_camera, set_camera_pose
from generator.render.blender.device import select_device
from generator.core.lens import Lens
from generator.scene.spec import FrameSpec, SceneSpec

#: (scene time s, focus distance m): what a render depends on besides depth of field.
View = tuple[float, float]
T = TypeVar("T")

_COMBINED = "ViewLayer.Combined"  # RGBA, linear
_DEPTH = "ViewLayer.Depth.Z"  # planar depth, metres
_OBJECT_INDEX = "ViewLayer.Object Index.X"  # Object.pass_index of the surface hit


class RenderListener(Protocol):
    """Told of each render's product as soon as it exists (e.g. :class:`generator.dataset.encoder.Encoder`,
    which encodes it while the next view renders). The arrays are those :class:`RenderedScene` will hold."""

    def depth_pass(self, depth: Sequence[np.ndarray], object_index: Sequence[np.ndarray] | None) -> Any:
        """The depth maps (planar metres, [H, W]) and object-index maps, as in :class:`RenderedScene`."""

    def image(self, rgb: np.ndarray, frames: Sequence[int]) -> Any:
        """A rendered image, linear RGB [H, W, 3]: the focus frames at positions ``frames`` of
        ``spec.frames`` (those that share its view), or the all-in-focus image (``frames`` empty)."""


@dataclass
class RenderedScene:
    """What :func:`render_scene` returns.

    Attributes:
        frames: one linear-RGB image per ``spec.frames`` entry, in order; float32 [H, W, 3].
        depth: planar depth in metres, 0 where there is no surface; float32 [H, W].
            One map, or one per frame when ``spec.depth_per_frame``.
        object_index: per depth map, the object seen at each pixel centre, float32
            [H, W] (k = ``spec.objects[k - 1]``, 0 = none), when ``spec.render.motion``; else ``None``.
        aif: the all-in-focus image (camera of frame 0, no depth of field), float32
            [H, W, 3], when ``spec.render.aif``; else ``None``.
        cycles_seconds: wall time spent inside ``bpy.ops.render.render`` (which
            includes Cycles writing its scratch EXR).
        total_seconds: wall time of the whole call (build, renders, read-back).
    """

    frames: list[np.ndarray]
    depth: list[np.ndarray]
    object_index: list[np.ndarray] | None
    aif: np.ndarray | None
    cycles_seconds: float
    total_seconds: float


def render_scene(
    spec: SceneSpec,
    *,
    threads: int = 0,
    device: str = "cpu",
    scratch_dir: Path | None = None,
    listener: RenderListener | None = None,
) -> RenderedScene:
    """Build ``spec`` and render its depth, optional all-in-focus image and focus frames.

    Frames that share a focus distance and time (the repeated ramps of a static
    scene) are rendered once and share one array: Cycles is deterministic here,
    so a second render would give the same bytes. The same holds for depth.

    Args:
        spec: the scene.
        threads: Cycles CPU threads, 0 = all cores (the pixels do not depend on it).
        device: ``cpu`` or ``gpu`` (:func:`generator.render.blender.device.select_device`;
            without a GPU: a warning and the CPU).
        scratch_dir: where the scratch EXR goes (a private temporary folder is
            made inside it and removed afterwards); default: the system temp dir.
        listener: told of the depth pass and of each distinct image as soon as
            it is rendered (:class:`RenderListener`), e.g. to encode it while the next renders.
    """
    start = time.perf_counter()
    built = build_scene(spec, threads=threads)
    select_device(built.scene, device)
    with tempfile.TemporaryDirectory(prefix="dfdgen-", dir=scratch_dir) as folder:
        rendered = run_to_end(render_views(built, spec, Path(folder), listener))
    return dataclasses.replace(rendered, total_seconds=time.perf_counter() - start)


def _views(spec: SceneSpec) -> tuple[list[View], list[View]]:
    """The views of the focus frames, in frame order, and those of the depth maps.

    A view is what a render depends on besides depth of field: scene time (s)
    and focus distance (m).
    """
    views = [(frame.time_s, frame.focus_distance_m) for frame in spec.frames]
    return views, views if spec.depth_per_frame else views[:1]


def render_count(spec: SceneSpec) -> int:
    """Number of Cycles renders :func:`render_views` makes for ``spec`` (distinct views only)."""
    views, depth_views = _views(spec)
    return len(set(depth_views)) + int(spec.render.aif) + len(set(views))


def render_views(
    built: BuiltScene, spec: SceneSpec, scratch: Path, listener: RenderListener | None = None
) -> Generator[int, None, RenderedScene]:
    """Render ``spec``'s depth, all-in-focus image and focus frames in ``built``, one Cycles render per step.

    The work of :func:`render_scene` on a scene built already (by
    :func:`generator.render.blender.build.build_into` too), as a generator, so that a
    caller with a UI can show progress and stop between renders. Yields, after
    each render, how many are done (of :func:`render_count`); returns the
    :class:`RenderedScene` (``total_seconds``: time spent in the generator).
    ``scratch`` is an existing folder for the scratch EXR; ``listener`` as in
    :func:`render_scene`.
    """
    start = time.perf_counter()
    views, depth_views = _views(spec)
    frame_of: dict[View, FrameSpec] = {}
    for view, frame in zip(views, spec.frames):
        frame_of.setdefault(view, frame)
    renderer = _Renderer(built, spec.lens, scratch / "render.exr", object_index=spec.render.motion)
    # Depth first, through a pinhole at the lens centre (DoF off); then the
    # all-in-focus image and the focus frames, changing only the camera (and,
    # in a dynamic scene, the poses at each frame's time). Only the focus frames
    # are exposed over time (spec.shutter); depth and the all-in-focus image are
    # the instant at the exposure's centre, their ground truth.
    set_depth_sampling(built.scene)
    depth, object_index = {}, {}
    for view in dict.fromkeys(depth_views):
        _pose(built, spec, frame_of[view])
        channels = renderer.render(view[1], use_dof=False)
        depth[view] = _depth(channels)
        if spec.render.motion:
            object_index[view] = channels[_OBJECT_INDEX]
        yield renderer.renders
    depth_maps = [depth[v] for v in depth_views]
    object_index_maps = [object_index[v] for v in depth_views] if object_index else None
    if listener:
        listener.depth_pass(depth_maps, object_index_maps)
    set_beauty_sampling(built.scene, spec.render)
    aif = None
    if spec.render.aif:
        _pose(built, spec, spec.frames[0])
        aif = _rgb(renderer.render(views[0][1], use_dof=False))
        if listener:
            listener.image(aif, ())
        yield renderer.renders
    rgb = {}
    for view in dict.fromkeys(views):
        _pose(built, spec, frame_of[view])
        with exposure(built, spec, view[0]):  # motion blur where the spec has a shutter
            rgb[view] = _rgb(renderer.render(view[1], use_dof=True))
        if listener:
            listener.image(rgb[view], [i for i, v in enumerate(views) if v == view])
        yield renderer.renders
    return RenderedScene(
        frames=[rgb[v] for v in views],
        depth=depth_maps,
        object_index=object_index_maps,
        aif=aif,
        cycles_seconds=renderer.seconds,
        total_seconds=time.perf_counter() - start,
    )


def _pose(built: BuiltScene, spec: SceneSpec, frame: FrameSpec) -> None:
    """Put the camera and the moving objects where they are in ``frame`` (its camera pose and time)."""
    set_camera_pose(built.camera, spec.camera_at(frame))
    pose_objects(built, spec, frame.time_s)


def run_to_end(steps: Generator[Any, None, T]) -> T:
    """Run a generator such as :func:`render_views` to its end and return its return value."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


def save_blend(spec: SceneSpec, path: Path) -> None:
    """Build ``spec`` (camera at frame 0, DoF on) and save it as an uncompressed .blend at ``path``."""
    build_scene(spec)
    bpy.ops.wm.save_as_mainfile(filepath=str(Path(path).resolve()), compress=False, check_existing=False)


class _Renderer:
    """Renders a built scene to one scratch EXR and reads it back; counts renders and totals the time inside Cycles."""

    def __init__(self, built: BuiltScene, lens: Lens, path: Path, object_index: bool = False):
        self.built, self.lens, self.path, self.seconds, self.renders = built, lens, path, 0.0, 0
        render = built.scene.render
        render.filepath = str(path)
        render.use_file_extension = False  # write exactly `path`
        settings = render.image_settings
        settings.media_type = "MULTI_LAYER_IMAGE"  # Blender 5.0: set before the EXR format
        settings.file_format = "OPEN_EXR_MULTILAYER"
        settings.color_depth = "32"  # float32: depth in metres and linear radiance, unrounded
        settings.exr_codec = "NONE"  # a scratch file read once: skip compression
        view_layer = built.scene.view_layers[0]
        view_layer.use_pass_combined = True
        view_layer.use_pass_z = True
        view_layer.use_pass_object_index = object_index

    def render(self, focus_m: float, use_dof: bool) -> dict[str, np.ndarray]:
        """Set the camera, render once; every EXR channel by name (``'ViewLayer.Combined'`` is [H, W, 4])."""
        apply_camera(self.built.camera, self.lens, focus_m, use_dof)
        start = time.perf_counter()
        bpy.ops.render.render(write_still=True, scene=self.built.scene.name)
        self.seconds += time.perf_counter() - start
        self.renders += 1
        with OpenEXR.File(str(self.path)) as exr:
            return {name: channel.pixels for part in exr.parts for name, channel in part.channels.items()}


def _depth(channels: dict[str, np.ndarray]) -> np.ndarray:
    """Planar depth float32 [H, W], metres; sky (Cycles writes ~1e10 there) becomes 0."""
    z = channels[_DEPTH]
    return np.where(z < CLIP_END_M, z, 0.0).astype(np.float32)


def _rgb(channels: dict[str, np.ndarray]) -> np.ndarray:
    """Linear RGB float32 [H, W, 3] from the Combined pass (alpha dropped: the film is opaque)."""
    return np.ascontiguousarray(channels[_COMBINED][..., :3], dtype=np.float32)
