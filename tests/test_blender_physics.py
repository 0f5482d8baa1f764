"""Cycles renders what generator.lens says: blur-disc sizes and planar depth, measured from pixels.

CoC: small emissive spheres on a black world (no lights, no bounces) are
rendered through :func:`render_scene` for both lens models. Each sphere is
flattened along the viewing axis (scale R x R/1000 x R), so all its emitting
points lie at one planar depth z and its image is an exact disc of diameter
d = 2 fx R / z. The rendered blob is then disc(d) * disc(c) * pixel box, whose
per-axis variance is d^2/16 + c^2/16 + 1/12, so the measured blur diameter is
c = 4 sqrt(var - d^2/16 - 1/12). (A round sphere's visible cap spans depths
z - R..z, which would shift the CoC by a few percent close to focus.)

Depth: planes filling the view; the rendered depth must equal the depth of the
plane hit by the ray through each pixel centre (integer + 0.5), with K from
:func:`generator.lens.intrinsics` for that frame.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from generator.lens import Lens, coc_px, intrinsics
from generator.spec import (
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

# --------------------------------------------------------------------------- CoC

W, H = 160, 96
FOCAL_M = 0.05
SENSOR_M = 0.016  # 100 um pixels at 160 px: f = 500 px, a 18 deg field of view
SPHERE_IMAGE_DIAMETER_PX = 5.0  # at the nominal focal length
U_OFFSET_PX = 36.0  # spheres left and right of the centre, at the nominal focal length
#: (f-number, (left sphere depth, right sphere depth) m, focus distances m):
#: CoCs from 5 to 57 px over both models.
COC_CASES = [
    (1.4, (0.22, 1.5), (0.3, 0.6)),
    (2.8, (0.3, 2.0), (0.42, 0.8)),
    (4.0, (0.3, 2.0), (0.42, 0.8)),
]
CAMERA = CameraSpec()  # at the origin looking along world +Y: camera z = world y


def _sphere_scene(lens: Lens, depths, focus) -> SceneSpec:
    fpx = FOCAL_M / lens.pixel_pitch_m(W)
    objects = []
    for i, (z, side) in enumerate(zip(depths, (-1.0, 1.0))):
        radius = SPHERE_IMAGE_DIAMETER_PX / 2 * z / fpx
        objects.append(
            ObjectSpec(
                name=f"sphere{i}",
                shape="uv_sphere",
                location=(side * U_OFFSET_PX * z / fpx, z, 0.0),
                rotation=(0.0, 0.0, 0.0),
                scale=(radius, radius / 1000, radius),
                material=MaterialSpec(kind="emission", color_a=(1.0, 1.0, 1.0), emission_strength=1.0),
            )
        )
    return SceneSpec(
        index=0,
        seed=0,
        split="test",
        render=RenderSpec(width=W, height=H, samples=256, seed=1, max_bounces=0),
        lens=lens,
        camera=CAMERA,
        frames=tuple(FrameSpec(index=k, ramp=0, time_s=0.0, focus_distance_m=f) for k, f in enumerate(focus)),
        objects=tuple(objects),
        world=WorldSpec(color=(0.0, 0.0, 0.0), strength=0.0),
    )


def _measure_disc(image: np.ndarray, centre, half: int):
    """Centroid (u, v) and per-axis variances (px^2) of the blob in a window around ``centre``."""
    u0, v0 = (int(round(c)) for c in centre)
    window = image[v0 - half : v0 + half + 1, u0 - half : u0 + half + 1]
    vs, us = np.mgrid[v0 - half : v0 + half + 1, u0 - half : u0 + half + 1] + 0.5
    total = window.sum()
    mu, mv = (window * us).sum() / total, (window * vs).sum() / total
    return (mu, mv), (window * (us - mu) ** 2).sum() / total, (window * (vs - mv) ** 2).sum() / total, window


def _coc_rows(model: str):
    """Render every case for ``model``; one row per (frame, sphere) with measured and predicted values."""
    from generator.blender.render import render_scene

    rows = []
    for f_number, depths, focus in COC_CASES:
        lens = Lens(model, FOCAL_M, f_number, SENSOR_M)
        spec = _sphere_scene(lens, depths, focus)
        result = render_scene(spec)
        w2c = world_to_camera(spec.camera)
        for frame, image in zip(spec.frames, result.frames):
            gray = image.mean(axis=2)
            k = intrinsics(lens, frame.focus_distance_m, W, H)
            covered = np.zeros(gray.shape, dtype=bool)
            for obj in spec.objects:
                x, y, z = w2c[:3, :3] @ obj.location + w2c[:3, 3]
                centre = (k[0, 0] * x / z + k[0, 2], k[1, 1] * y / z + k[1, 2])
                disc_px = 2 * k[0, 0] * obj.scale[0] / z
                predicted = float(coc_px(lens, z, frame.focus_distance_m, W))
                half = int(math.ceil((predicted + disc_px) / 2 + 3))
                assert half <= centre[0] <= W - half and half <= centre[1] <= H - half, "disc leaves the frame"
                (mu, mv), var_u, var_v, window = _measure_disc(gray, centre, half)
                assert window[0].max() == window[-1].max() == window[:, 0].max() == window[:, -1].max() == 0
                covered[int(round(centre[1])) - half : int(round(centre[1])) + half + 1,
                        int(round(centre[0])) - half : int(round(centre[0])) + half + 1] = True
                blur_var = lambda var: var - disc_px**2 / 16 - 1 / 12  # noqa: E731
                rows.append(
                    dict(
                        model=model, N=f_number, z=z, F=frame.focus_distance_m, predicted=predicted,
                        measured=4 * math.sqrt((blur_var(var_u) + blur_var(var_v)) / 2),
                        measured_u=4 * math.sqrt(blur_var(var_u)), measured_v=4 * math.sqrt(blur_var(var_v)),
                        centroid_error=math.hypot(mu - centre[0], mv - centre[1]),
                    )
                )
            assert gray[~covered].max() == 0, "light outside the measured windows (overlapping discs?)"
    return rows


@pytest.mark.parametrize("model", ["thin_lens", "blender"])
def test_rendered_coc_matches_lens_module(bpy, model):
    rows = _coc_rows(model)
    print(f"\n{'model':>9} {'N':>4} {'z m':>5} {'F m':>5} {'predicted':>9} {'measured':>9} {'error':>7}")
    for r in rows:
        print(f"{r['model']:>9} {r['N']:4.1f} {r['z']:5.2f} {r['F']:5.2f} {r['predicted']:9.2f} "
              f"{r['measured']:9.2f} {100 * (r['measured'] / r['predicted'] - 1):6.2f}%")
    predicted = np.array([r["predicted"] for r in rows])
    assert predicted.min() <= 6 and predicted.max() >= 50, "the cases should span CoCs of about 5 to 60 px"
    for r in rows:
        tolerance = max(0.03 * r["predicted"], 0.5)
        assert abs(r["measured"] - r["predicted"]) <= tolerance, r
        # A round aperture: the same width along both axes.
        assert abs(r["measured_u"] - r["measured_v"]) <= tolerance, r
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
                assert coc_px(lens, z, big_f, W) == pytest.approx(seed / (SENSOR_M / W), rel=1e-12)


# --------------------------------------------------------------------------- depth

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
    from generator.blender.render import render_scene

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
    from generator.blender.render import render_scene

    a = render_scene(_plane_scene("blender", PLANES["tilted"], focus=(0.6,)))
    b = render_scene(_plane_scene("blender", PLANES["tilted"], focus=(4.0,)))
    assert a.depth[0].tobytes() == b.depth[0].tobytes()


def test_sky_depth_is_zero(bpy):
    from generator.blender.render import render_scene

    # A horizontal ground plane just below the camera: sky above the horizon (the middle row).
    spec = _plane_scene("blender", (0.0, 0.0, 0.0), focus=(1.0,))
    depth = render_scene(spec).depth[0]
    assert np.all(depth[: DH // 2] == 0)
    assert np.all(depth[DH // 2 :] > 0)
    expected = _analytic_plane_depth(spec, 1.0)[DH // 2 :]
    assert np.abs(depth[DH // 2 :] / expected - 1).max() < 1e-4
