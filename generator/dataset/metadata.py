"""A sample's metadata (its ``json`` member, DESIGN.md section 5), built from the scene spec.

Reading a stranger's metadata back is :func:`generator.dataset.sample.read_metadata`. No bpy."""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import numpy as np

import generator
from generator.core import lens as lensmod
from generator.dataset.format import (FORMAT_VERSION)
from generator.scene.spec import SceneSpec, euler_xyz_matrix, world_to_camera

#: Name of the background wall object in a spec (:func:`generator.draw.scene.draw_scene`).
WALL_NAME = "wall"
#: Largest in-plane component of the wall's unit normal in the camera frame for it
#: to count as fronto-parallel (one planar depth over the whole image).
_WALL_TILT = 1e-9


class Rendered(Protocol):
    """What :func:`encode_sample` needs from ``generator.render.blender.render.RenderedScene``."""

    frames: Sequence[np.ndarray]  # each [H, W, 3] float32, linear RGB, in spec.frames order
    depth: Sequence[np.ndarray]  # each [H, W] float32, planar metres, 0 = invalid
    object_index: Sequence[np.ndarray] | None  # per depth map, [H, W]; needed when spec.render.motion
    aif: np.ndarray | None  # [H, W, 3] float32 linear RGB


class RecipeInfo(Protocol):
    """What :func:`encode_sample` needs from a ``Recipe``."""

    name: str
    sha256: str
    seed: int


def _frame_meta(spec: SceneSpec, frame) -> dict[str, Any]:
    width, height = spec.render.width, spec.render.height
    cam = lensmod.blender_camera(spec.lens, frame.focus_distance_m)
    meta = {
        "index": frame.index,
        "ramp": frame.ramp,
        "time_s": frame.time_s,
        "focus_distance_m": frame.focus_distance_m,
        "K": lensmod.intrinsics(spec.lens, frame.focus_distance_m, width, height).tolist(),
        "world_to_camera": world_to_camera(spec.camera_at(frame)).tolist(),
        "blender_camera": {
            "lens_mm": cam.lens_mm,
            "fstop": cam.fstop,
            "focus_distance_m": cam.focus_distance_m,
            "sensor_width_mm": cam.sensor_width_mm,
        },
    }
    if spec.shutter is not None:  # only then, so frames without a shutter keep their bytes
        meta["shutter"] = {"exposure_s": spec.shutter.exposure_s, "rolling_readout_s": spec.shutter.rolling_readout_s}
    return meta


#: What a sample's CoC (its ``fNNN.coc.exr`` maps, :func:`generator.core.lens.coc_px`) is the
#: diameter of when the aperture has a shape: the blur of the circle of diameter A that the
#: polygon's corners lie on, before the squeeze (``lens.aperture.coc`` in the metadata).
APERTURE_COC = "aperture_circle"


def _lens_meta(spec: SceneSpec) -> dict[str, Any]:
    """The metadata's ``lens``; ``aperture`` only when the lens has a shape, so samples of recipes
    without ``lens.aperture`` keep their bytes."""
    lens = spec.lens
    meta = {
        "model": lens.model,
        "focal_length_m": lens.focal_length_m,
        "f_number": lens.f_number,
        "sensor_width_m": lens.sensor_width_m,
        "pixel_pitch_m": lens.pixel_pitch_m(spec.render.width),
    }
    if lens.aperture is not None:
        meta["aperture"] = {
            "blades": lens.aperture.blades,
            "rotation_rad": lens.aperture.rotation_rad,
            "ratio": lens.aperture.ratio,
            "coc": APERTURE_COC,
            "equal_area_factor": lensmod.equal_area_factor(lens.aperture),
            "circumscribed_factor": lensmod.circumscribed_factor(lens.aperture),
        }
    return meta


def wall_depth_m(spec: SceneSpec) -> float | None:
    """Planar depth of the scene's background wall, metres, or None when it has none.

    The wall (:func:`generator.draw.scene._draw_wall`) is a ``plane`` object named
    :data:`WALL_NAME`, undeformed, whose normal lies along the optical axis: every
    point of it then has the same planar depth z in the OpenCV camera frame, so a
    pixel sees the wall exactly where its depth equals this value. The lens model
    changes only K (breathing), never the camera frame, and the wall does not
    move, so the value holds for every frame as long as the camera pose does.

    Returns None when there is no such object, or it is deformed, or tilted (normal
    off the optical axis by more than 1e-9) in some frame, or its depth differs
    between frames (a moving camera): no single value then identifies its pixels.
    """
    wall = next((o for o in spec.objects if o.name == WALL_NAME and o.shape == "plane"), None)
    if wall is None or wall.twist or wall.taper or wall.displace:
        return None
    depths = set()
    for camera in dict.fromkeys(spec.camera_at(frame) for frame in spec.frames):
        w2c = world_to_camera(camera)
        normal = w2c[:3, :3] @ euler_xyz_matrix(wall.rotation)[:, 2]  # plane primitive: local +Z
        if np.hypot(normal[0], normal[1]) > _WALL_TILT:
            return None
        depths.add(float((w2c @ np.append(wall.location, 1.0))[2]))
    return depths.pop() if len(depths) == 1 else None


def sample_metadata(spec: SceneSpec, rendered: Rendered, recipe: RecipeInfo) -> dict[str, Any]:
    """The ``json`` member (DESIGN.md section 5) plus ``scene``, the full spec.

    ``depth.min_m`` / ``max_m`` are the range of valid (non-zero) depth over the
    stored depth maps, metres; ``None`` when no pixel has a surface.
    ``depth.wall_m`` is the background wall's planar depth in every frame, metres
    (:func:`wall_depth_m`; ``None`` without a fronto-parallel wall): the loader
    marks pixels at that depth as wall. ``lens.aperture`` (only with a shaped aperture): its
    blades, rotation (radians) and ratio, what the CoC is (:data:`APERTURE_COC`) and the factors
    that turn it into the blur's equal-area and circumscribed diameters.
    ``sensor`` (only with a sensor): its parameters (:class:`generator.scene.sensor.SensorSpec`),
    which undo or redo the camera's pipeline; ``image.jpeg_quality`` (only for ``rgb: jpeg``).
    """
    valid = np.concatenate([d[d > 0].ravel() for d in rendered.depth])
    scene = spec.to_dict()
    image = {"width": spec.render.width, "height": spec.render.height, "samples": spec.render.samples}
    if spec.render.jpeg_quality is not None:
        image["jpeg_quality"] = spec.render.jpeg_quality
    meta = {
        "format_version": FORMAT_VERSION,
        "generator": {"name": "dfdgen", "version": generator.__version__},
        "recipe": {"name": recipe.name, "sha256": recipe.sha256, "seed": recipe.seed},
        "scene_index": spec.index,
        "seed": spec.seed,
        "split": spec.split,
        "image": image,
        "lens": _lens_meta(spec),
        "depth": {
            "per_frame": spec.depth_per_frame,
            "kind": "planar",
            "units": "m",
            "invalid": 0,
            "min_m": float(valid.min()) if valid.size else None,
            "max_m": float(valid.max()) if valid.size else None,
            "wall_m": wall_depth_m(spec),
        },
        "frames": [_frame_meta(spec, frame) for frame in spec.frames],
        "scene": scene,
    }
    if spec.sensor is not None:
        meta["sensor"] = scene["sensor"]
    return meta
