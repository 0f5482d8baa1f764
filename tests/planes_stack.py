"""A Cycles focal stack of textured fronto-parallel planes with known depths, as a loader batch.

Reusable by any test that needs a real rendered stack whose true depth is known
per region (depth from focus, self-supervised depth)::

    from planes_stack import plane_interior, render_planes_stack

    def test_something(bpy):                      # the conftest fixture: bpy required (CI: a failure)
        batch = render_planes_stack(model="thin_lens")
        inside = plane_interior(batch, margin=6)  # [1, 1, H, W] bool, planes only, edges left out

The scene (camera at the origin looking along world +Y, OpenCV z = world y):
three checker-textured planes side by side at planar depths :data:`PLANE_DEPTHS_M`
(0.35, 0.55, 0.9 m), each filling a third of the width of the reference frame (less
a 2/64 gap) and rows 1/8 to 7/8 of its height, in front of a checker-textured
wall at :data:`WALL_M` (1.2 m) filling the view. The checks are about 3 px wide
on every plane (anisotropic on the planes: 3 x 7 px at 64 px). Lit by a sun
shining along the view axis (direct light only, no bounces, a black world), so
the pixels carry no lighting noise, only the aperture sampling's. Lens: 50 mm,
f/1.4 by default (about 3.2 px of blur per dioptre at 64 px over a 36 mm
sensor), :data:`FRAMES` frames focused from 0.3 to 1.2 m in uniform dioptre
steps (``generator.recipe.ramps.focus_ramp("diopter", ...)``).

Results are cached per process by their arguments (a session's tests share one
render of each); every call returns fresh tensors, so callers may change them.
"""

from __future__ import annotations

import functools
import math

import numpy as np

#: Planar depths of the three planes, left to right, metres.
PLANE_DEPTHS_M = (0.35, 0.55, 0.9)
#: Planar depth of the wall behind them, metres.
WALL_M = 1.6
#: Focus ramp: nearest and farthest focus distance (metres) and the number of frames.
NEAR_M, FAR_M, FRAMES = 0.3, 1.6, 7
FOCAL_M, SENSOR_M = 0.05, 0.036
#: Relative tolerance of the region labels on the rendered depth (float32 planar depth).
LABEL_RTOL = 1e-4


def render_planes_stack(*, size: int = 64, samples: int = 64, model: str = "thin_lens", f_number: float = 1.4,
                        frames: int = FRAMES, quantize: bool = True) -> dict:
    """Render (once per argument set) the planes scene and return it as a loader batch with B = 1.

    Args:
        size: image width and height, pixels.
        samples: Cycles samples per pixel.
        model: lens model, ``thin_lens`` (focus breathing: K and depth per frame) or ``blender``.
        f_number: the lens' f-number.
        frames: frames of the focus ramp (T).
        quantize: round the frames through 8-bit sRGB, as ``png8`` shards store them,
            so the values are those the loader would yield (else Cycles' float32).

    Returns:
        a :class:`dfd_models.data.batch.Batch` with B = 1:
        ``key`` ["planes"]; ``frames`` [1, T, 3, H, W] float32 linear, sorted by focus;
        ``focus_m`` [1, T]; ``K`` [1, T, 3, 3]; ``depth`` [1, 1, H, W] planar metres of
        the reference frame (``reference_index(T)``); ``valid``, ``wall`` [1, 1, H, W] bool;
        ``lens_model`` int64 [1]; ``focal_length_m``, ``f_number``, ``pixel_pitch_m``
        float32 [1]; ``aif`` [1, 3, H, W] (camera of frame 0, no depth of field); ``coc``
        [1, T, 1, H, W] pixels (each frame's, from its own depth); and, beyond the loader's
        keys, ``planes`` [1, 1, H, W] int64 (0 wall, i + 1 plane i of
        :data:`PLANE_DEPTHS_M`, on the reference frame) and ``plane_depths_m`` [1, 3].
    """
    import torch

    arrays = _render(size, samples, model, float(f_number), frames, quantize)
    batch = {name: torch.from_numpy(value.copy())[None] for name, value in arrays.items()}
    batch["key"] = ["planes"]
    return batch


def plane_interior(batch: dict, margin: int = 6):
    """Pixels of the planes at least ``margin`` px (Chebyshev) from any other region.  # [B, 1, H, W] bool"""
    import torch
    import torch.nn.functional as F

    planes = batch["planes"]
    inside = torch.zeros_like(planes, dtype=torch.bool)
    for label in range(1, len(PLANE_DEPTHS_M) + 1):
        other = (planes != label).float()
        near_other = F.max_pool2d(other, 2 * margin + 1, stride=1, padding=margin) > 0
        inside |= (planes == label) & ~near_other
    return inside


def on_frame(image, K, src: int, dst: int):
    """A map on frame ``src``'s grid resampled onto frame ``dst``'s, nearest neighbour, so depth and
    masks keep their values (frames differ by focus breathing, K only).

    Args:
        image: the map.  # [B, C, H, W]
        K: the stack's intrinsics.  # [B, T, 3, 3]
    Returns:
        float32.  # [B, C, H, W]
    """
    import torch
    import torch.nn.functional as F

    h, w = image.shape[-2:]
    v, u = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    pixels = torch.stack([u, v, torch.ones_like(u)], -1).reshape(1, -1, 3).to(K)
    at = pixels @ (K[:, src] @ torch.linalg.inv(K[:, dst])).mT
    grid = torch.stack([2 * at[..., 0] / at[..., 2] / w - 1, 2 * at[..., 1] / at[..., 2] / h - 1], -1)
    return F.grid_sample(image.float(), grid.reshape(-1, h, w, 2), mode="nearest", padding_mode="border",
                         align_corners=False)


def planes_scene(size: int = 64, samples: int = 64, model: str = "thin_lens", f_number: float = 1.4,
                 frames: int = FRAMES):
    """The :class:`generator.scene.spec.SceneSpec` that :func:`render_planes_stack` renders."""
    from generator.recipe.ramps import focus_ramp
    from generator.core.lens import Lens, intrinsics
    from dfd_models.data.batch import reference_index
    from generator.scene.spec import (CameraSpec, FrameSpec, LightSpec, MaterialSpec, ObjectSpec, RenderSpec, SceneSpec,
                                WorldSpec)

    lens = Lens(model, FOCAL_M, f_number, SENSOR_M)
    focus = focus_ramp("diopter", frames, near_m=NEAR_M, far_m=FAR_M)
    k = intrinsics(lens, float(focus[reference_index(frames)]), size, size)  # lay the planes out on the reference frame
    fpx, centre = k[0, 0], size / 2
    facing = (math.pi / 2, 0.0, 0.0)  # a unit plane's normal +Z turned to -Y: facing the camera
    gap, top, bottom = size / 32, size / 8, 7 * size / 8
    objects = []
    for i, z in enumerate(PLANE_DEPTHS_M):
        u0, u1 = size * i / 3 + gap / 2, size * (i + 1) / 3 - gap / 2
        half_w, half_h = (u1 - u0) / 2, (bottom - top) / 2  # pixels
        objects.append(ObjectSpec(
            name=f"plane{i}", shape="plane",
            # world x = camera x, world z = -camera y (up)
            location=(((u0 + u1) / 2 - centre) / fpx * z, z, -((top + bottom) / 2 - centre) / fpx * z),
            rotation=facing, scale=(half_w / fpx * z, half_h / fpx * z, 1.0),
            # object coordinates span [-1, 1] over the half-size: squares of half_w / scale px
            material=MaterialSpec(kind="checker", color_a=(0.85, 0.85, 0.85), color_b=(0.04, 0.04, 0.04),
                                  scale=half_w / 3.0),
        ))
    wall_half = 1.0  # metres: beyond the view of every frame
    objects.append(ObjectSpec(
        name="wall", shape="plane", location=(0.0, WALL_M, 0.0), rotation=facing, scale=(wall_half, wall_half, 1.0),
        material=MaterialSpec(kind="checker", color_a=(0.6, 0.5, 0.4), color_b=(0.05, 0.08, 0.1),
                              scale=wall_half / (3.0 * WALL_M / fpx)),
    ))
    sun = LightSpec(kind="sun", location=(0.0, -1.0, 0.0), rotation=facing, energy=3.0, size=0.01)  # along +Y
    return SceneSpec(
        index=0, seed=0, split="test",
        render=RenderSpec(width=size, height=size, samples=samples, seed=0, max_bounces=0, aif=True),
        lens=lens, camera=CameraSpec(),
        frames=tuple(FrameSpec(index=t, ramp=0, time_s=0.0, focus_distance_m=float(f)) for t, f in enumerate(focus)),
        objects=tuple(objects), lights=(sun,), world=WorldSpec(color=(0.0, 0.0, 0.0), strength=0.0),
    )


@functools.cache
def _render(size: int, samples: int, model: str, f_number: float, frames: int, quantize: bool) -> dict:
    """numpy arrays of :func:`render_planes_stack`'s batch (B left out), rendered once per arguments."""
    from generator.render.blender.render import render_scene
    from generator.core.lens import LENS_MODELS, coc_map_px, intrinsics
    from generator.core.display import srgb_to_linear
    from generator.dataset.pixels import srgb8
    from dfd_models.data.batch import reference_index

    spec = planes_scene(size, samples, model, f_number, frames)
    result = render_scene(spec)
    ref = reference_index(frames)

    def linear(rgb: np.ndarray) -> np.ndarray:  # [H, W, 3] -> [3, H, W]
        if quantize:
            rgb = srgb_to_linear(srgb8(rgb) / 255.0)
        return np.ascontiguousarray(np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1))

    depths = result.depth if len(result.depth) == frames else result.depth * frames  # one map per frame
    depth = depths[ref].astype(np.float32)
    planes = np.zeros(depth.shape, dtype=np.int64)
    for i, z in enumerate(PLANE_DEPTHS_M):
        planes[np.abs(depth - z) <= LABEL_RTOL * z] = i + 1
    focus = np.array([f.focus_distance_m for f in spec.frames], dtype=np.float32)
    lens = spec.lens
    return {
        "frames": np.stack([linear(image) for image in result.frames]),  # [T, 3, H, W]
        "focus_m": focus,
        "K": np.stack([intrinsics(lens, float(f), size, size) for f in focus]).astype(np.float32),
        "depth": depth[None],
        "valid": (depth > 0)[None],
        "wall": (np.abs(depth - WALL_M) <= LABEL_RTOL * WALL_M)[None],
        "lens_model": np.array(LENS_MODELS.index(model), dtype=np.int64),
        "focal_length_m": np.array(lens.focal_length_m, dtype=np.float32),
        "f_number": np.array(lens.f_number, dtype=np.float32),
        "pixel_pitch_m": np.array(lens.pixel_pitch_m(size), dtype=np.float32),
        "aif": linear(result.aif),
        "coc": np.stack([coc_map_px(lens, d, float(f), size) for d, f in zip(depths, focus)])[:, None],
        "planes": planes[None],
        "plane_depths_m": np.array(PLANE_DEPTHS_M, dtype=np.float32),
    }
