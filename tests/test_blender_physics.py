"""Cycles renders what generator.core.lens says: blur-disc sizes and planar depth, measured from pixels.

CoC: the discs of :mod:`generator.scene.calibration` (flattened spheres at one planar
depth each, on a black world) are rendered through :func:`render_scene` for both
lens models, and the blur diameter is measured from the blob's second moments.

Depth: planes filling the view; the rendered depth must equal the depth of the
plane hit by the ray through each pixel centre (integer + 0.5), with K from
:func:`generator.core.lens.intrinsics` for that frame.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from generator.scene.calibration import COC_CASES, FOCAL_M, SENSOR_M, WIDTH, coc_error, coc_probes, measure_coc
from generator.core.lens import Lens, coc_px, intrinsics
from generator.scene.spec import (
    CameraSpec,
    FrameSpec,
    MaterialSpec,
    ObjectSpec,
    RenderSpec,
    SceneSpec,
    WorldSpec,
    euler_xyz_matrix,
    world_to_camera,
)

# CoC


def coc_rows(model: str, **probe) -> list[dict]:
    """Render every calibration case for ``model`` and measure its discs (``probe``: of :func:`coc_probes`)."""
    from generator.render.blender.render import render_scene

    rows = []
    for spec in coc_probes(model, **probe):
        rows += measure_coc(spec, render_scene(spec).frames)
    return rows


def print_rows(rows: list[dict]) -> None:
    print(f"\n{'N':>4} {'z m':>5} {'F m':>5} {'predicted':>9} {'measured':>9} {'error':>7}")
    for r in rows:
        print(f"{r['N']:4.1f} {r['z']:5.2f} {r['F']:5.2f} {r['predicted']:9.2f} {r['measured']:9.2f} "
              f"{100 * (r['measured'] / r['predicted'] - 1):6.2f}%")


@pytest.mark.parametrize("model", ["thin_lens", "blender"])
def test_rendered_coc_matches_lens_module(bpy, model):
    rows = coc_rows(model)
    print_rows(rows)
    predicted = np.array([r["predicted"] for r in rows])
    assert predicted.min() <= 6 and predicted.max() >= 50, "the cases should span CoCs of about 5 to 60 px"
    for r in rows:
        assert r["edge"] == 0 and r["stray"] == 0, "light outside the measuring windows (overlapping discs?)"
        assert coc_error(r) <= 1, r
        # A round aperture: the same width along both axes.
        assert abs(r["measured_u"] - r["measured_v"]) <= max(0.03 * r["predicted"], 0.5), r
        # The blob sits where K and world_to_camera project the sphere (breathing included).
        assert r["centroid_error"] < 0.2, r


def test_thin_lens_coc_is_the_seed_formula():
    """coc_px of thin_lens is A f |z - F| / (z (F - f)) / p, from nominal f and N."""
    for f_number, depths, focus in COC_CASES:
        lens = Lens("thin_lens", FOCAL_M, f_number, SENSOR_M)
        for z in depths:
            for big_f in focus:
                aperture = FOCAL_M / f_number
                seed = aperture * FOCAL_M * abs(z - big_f) / (z * (big_f - FOCAL_M))
                assert coc_px(lens, z, big_f, WIDTH) == pytest.approx(seed / (SENSOR_M / WIDTH), rel=1e-12)


# Depth

DW, DH = 64, 48
DEPTH_FOCUS = (0.6, 1.5, 4.0)
PLANE_CENTRE = (0.1, 3.0, -0.05)
# Facing the camera (normal -Y), and the same tilted 30 deg about the vertical and 20 deg about the horizontal.
PLANES = {"fronto_parallel": (math.pi / 2, 0.0, 0.0), "tilted": (math.pi / 2 + math.radians(20), 0.0, math.radians(30))}


def _plane_scene(model: str, rotation, focus=DEPTH_FOCUS) -> SceneSpec:
    plane = ObjectSpec(
        name="plane",
        shape="plane",
        location=PLANE_CENTRE,
        rotation=rotation,
        scale=(50.0, 50.0, 1.0),
        material=MaterialSpec(kind="checker"),
    )
    return SceneSpec(
        index=0,
        seed=0,
        split="test",
        render=RenderSpec(width=DW, height=DH, samples=1, seed=0, max_bounces=0),
        lens=Lens(model, 0.035, 2.0, 0.036),
        camera=CameraSpec(location=(0.0, 0.0, 0.0), rotation=(math.pi / 2, 0.0, 0.0)),
        frames=tuple(FrameSpec(index=k, ramp=0, time_s=0.0, focus_distance_m=f) for k, f in enumerate(focus)),
        objects=(plane,),
        world=WorldSpec(color=(0.5, 0.5, 0.5), strength=1.0),
    )


def _analytic_plane_depth(spec: SceneSpec, focus_m: float) -> np.ndarray:
    """Planar depth of the plane along the ray through every pixel centre, [H, W] float64."""
    plane = spec.objects[0]
    w2c = world_to_camera(spec.camera)
    point = w2c[:3, :3] @ plane.location + w2c[:3, 3]
    normal = w2c[:3, :3] @ euler_xyz_matrix(plane.rotation)[:, 2]
    k = intrinsics(spec.lens, focus_m, DW, DH)
    vs, us = np.mgrid[0:DH, 0:DW] + 0.5
    rays = np.linalg.inv(k) @ np.stack([us.ravel(), vs.ravel(), np.ones(us.size)])  # z component 1
    return ((normal @ point) / (normal @ rays)).reshape(DH, DW)


@pytest.mark.parametrize("plane", sorted(PLANES))
def test_depth_is_planar_depth_at_pixel_centres(bpy, plane):
    from generator.render.blender.render import render_scene

    for model in ("thin_lens", "blender"):
        spec = _plane_scene(model, PLANES[plane])
        result = render_scene(spec)
        assert len(result.depth) == (len(spec.frames) if model == "thin_lens" else 1)
        for frame, depth in zip(spec.frames, result.depth):
            assert depth.dtype == np.float32 and depth.shape == (DH, DW)
            expected = _analytic_plane_depth(spec, frame.focus_distance_m)
            rel = np.abs(depth / expected - 1)
            assert rel.max() < 1e-4, (model, frame.focus_distance_m, rel.max())
        if model == "thin_lens":  # breathing: a different K, so a different map, per frame
            assert not np.array_equal(result.depth[0], result.depth[-1])


def test_blender_model_depth_does_not_depend_on_focus(bpy):
    from generator.render.blender.render import render_scene

    a = render_scene(_plane_scene("blender", PLANES["tilted"], focus=(0.6,)))
    b = render_scene(_plane_scene("blender", PLANES["tilted"], focus=(4.0,)))
    assert a.depth[0].tobytes() == b.depth[0].tobytes()


def test_sky_depth_is_zero(bpy):
    from generator.render.blender.render import render_scene

    # A horizontal ground plane just below the camera: sky above the horizon (the middle row).
    spec = _plane_scene("blender", (0.0, 0.0, 0.0), focus=(1.0,))
    depth = render_scene(spec).depth[0]
    assert np.all(depth[: DH // 2] == 0)
    assert np.all(depth[DH // 2 :] > 0)
    expected = _analytic_plane_depth(spec, 1.0)[DH // 2 :]
    assert np.abs(depth[DH // 2 :] / expected - 1).max() < 1e-4
