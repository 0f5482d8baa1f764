"""Motion: time runs one frame per focus step; moving objects and cameras are sampled, rendered
and recorded per frame, and a moving object's depth and image position follow its velocity."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from PIL import Image

from fakes import fake_render, make_spec, tiny_recipe
from generator.core import lens as lensmod
from generator.dataset.inspection import SEQUENCE_TILES, contact_sheet
from generator.recipe.recipe import load_recipe
from generator.dataset.metadata import wall_depth_m
from generator.dataset.sample import decode_sample, encode_sample
from generator.draw.scene import IMAGE_MARGIN, draw_scene
from generator.dataset.shards import DatasetDir
from generator.scene.spec import (
    CameraSpec,
    FrameSpec,
    MaterialSpec,
    ObjectSpec,
    RenderSpec,
    SceneSpec,
    WorldSpec,
    world_to_camera,
)


@pytest.fixture(scope="module")
def dynamic():
    return load_recipe("dynamic")


def test_time_advances_one_frame_per_focus_step_through_all_ramps(dynamic):
    scene = draw_scene(dynamic, 0)
    assert len(scene.frames) == 25 and {f.ramp for f in scene.frames} == set(range(5))
    assert [f.time_s for f in scene.frames] == [k / 25 for k in range(25)]
    for ramp in range(5):  # every ramp still sweeps near to far
        focus = [f.focus_distance_m for f in scene.frames if f.ramp == ramp]
        assert focus[0] == 0.5 and focus[-1] == 1.2 and np.all(np.diff(focus) > 0)
    assert scene.depth_per_frame


def test_adding_motion_changes_no_object_light_or_world():
    static = load_recipe("small_obj")
    moving = load_recipe("small_obj", ["motion.fps=30", "motion.objects.speed_m_s=[0.1, 0.2]"])
    for i in range(5):
        a, b = draw_scene(static, i), draw_scene(moving, i)
        assert (a.lights, a.world, a.lens) == (b.lights, b.world, b.lens)
        still = [dataclasses.replace(o, velocity=(0.0,) * 3, angular_velocity=(0.0,) * 3) for o in b.objects]
        assert tuple(still) == a.objects
        assert any(any(o.velocity) for o in b.objects) and not any(any(o.velocity) for o in a.objects)
        assert [f.focus_distance_m for f in a.frames] == [f.focus_distance_m for f in b.frames]


def test_moving_objects_stay_in_view_and_depth_range(dynamic):
    motion, objects = dynamic.motion.objects, dynamic.scene.objects
    moving = total = 0
    for i in range(40):
        scene = draw_scene(dynamic, i)
        end = scene.frames[-1].time_s
        k = max((lensmod.intrinsics(scene.lens, f.focus_distance_m, 256, 256) for f in scene.frames),
                key=lambda m: m[0, 0])  # the narrowest view
        w2c = world_to_camera(scene.camera)
        assert scene.objects[0].velocity == (0.0, 0.0, 0.0)  # the wall stays
        for obj in scene.objects[1:]:
            total += 1
            speed = np.linalg.norm(obj.velocity)
            moving += speed > 0
            assert speed <= motion.speed_m_s.max * (1 + 1e-6)  # float32 (core/precision.py)
            assert np.linalg.norm(obj.angular_velocity) <= motion.angular_speed_rad_s.max * (1 + 1e-6)
            for t in (0.0, end / 2, end):
                x, y, z = w2c[:3, :3] @ obj.pose_at(t)[0] + w2c[:3, 3]
                assert objects.depth_m.min * (1 - 1e-6) <= z <= objects.depth_m.max * (1 + 1e-6)
                u, v = k[0, 0] * x / z + k[0, 2], k[1, 1] * y / z + k[1, 2]
                assert IMAGE_MARGIN * 256 - 1e-3 <= u <= (1 - IMAGE_MARGIN) * 256 + 1e-3
                assert IMAGE_MARGIN * 256 - 1e-3 <= v <= (1 - IMAGE_MARGIN) * 256 + 1e-3
    assert 0.6 < moving / total <= 0.95  # moving_fraction 0.8


def test_camera_drifts_and_jitters_per_frame(dynamic):
    camera = dynamic.motion.camera
    scene = draw_scene(dynamic, 1)
    poses = [scene.camera_at(f) for f in scene.frames]
    assert len(set(poses)) == len(poses)  # jitter: every frame has its own pose
    end = scene.frames[-1].time_s
    for frame, pose in zip(scene.frames, poses):
        moved = np.linalg.norm(np.subtract(pose.location, scene.camera.location))
        assert moved <= camera.drift_m_s.max * frame.time_s + 6 * camera.jitter_m
        turned = np.abs(np.subtract(pose.rotation, scene.camera.rotation)).max()
        assert turned <= camera.drift_rad_s.max * end + 6 * camera.jitter_rad
    assert SceneSpec.from_dict(scene.to_dict()) == scene


def _dynamic(spec: SceneSpec, fps: float = 10.0) -> SceneSpec:
    """``spec`` with time advancing 1/fps per frame and the camera drifting 5 cm/s sideways."""
    frames = tuple(
        dataclasses.replace(f, time_s=f.index / fps,
                            camera=CameraSpec(location=(0.05 * f.index / fps, 0.0, 0.0), rotation=spec.camera.rotation))
        for f in spec.frames
    )
    return dataclasses.replace(spec, frames=frames)


def test_static_scene_stores_one_depth_map_and_a_dynamic_one_per_frame():
    recipe = tiny_recipe()
    static = make_spec(model="blender")
    sample = encode_sample(static, fake_render(static), recipe)
    assert "depth.exr" in sample and not any(k.endswith(".depth.exr") and k != "depth.exr" for k in sample)
    meta = json.loads(sample["json"])
    assert meta["depth"]["per_frame"] is False and len({json.dumps(f["world_to_camera"]) for f in meta["frames"]}) == 1

    moving = _dynamic(static)
    decoded = decode_sample(encode_sample(moving, fake_render(moving), recipe))
    assert decoded.meta["depth"]["per_frame"] is True and len(decoded.depth) == len(moving.frames)
    for frame, spec_frame in zip(decoded.meta["frames"], moving.frames):
        assert frame["time_s"] == spec_frame.time_s
        np.testing.assert_allclose(frame["world_to_camera"], world_to_camera(spec_frame.camera))
    # The wall's planar depth does not change with a sideways drift; it would with a tilt.
    assert decoded.meta["depth"]["wall_m"] is None  # make_spec has no wall
    tilted = dataclasses.replace(moving.frames[1], camera=CameraSpec(rotation=(math.pi / 2, 0.0, 0.1)))
    wall = ObjectSpec("wall", "plane", (0.0, 3.0, 0.0), (math.pi / 2, 0.0, 0.0), (5.0, 5.0, 1.0), MaterialSpec("noise"))
    with_wall = dataclasses.replace(moving, objects=(wall,))
    assert wall_depth_m(with_wall) == pytest.approx(3.0)
    assert wall_depth_m(dataclasses.replace(with_wall, frames=(moving.frames[0], tilted))) is None


def test_contact_sheet_shows_a_sequence_over_time(tmp_path):
    recipe = tiny_recipe()
    out = DatasetDir(tmp_path / "data", recipe, max_samples=10, max_bytes=10**9)
    frames = tuple(FrameSpec(index=k, ramp=k // 4, time_s=k / 8, focus_distance_m=0.5 + 0.25 * (k % 4)) for k in range(12))
    spec = dataclasses.replace(make_spec(0), frames=frames)
    out.add(0, spec.split, encode_sample(spec, fake_render(spec), recipe))
    out.finish()
    sheet = np.asarray(Image.open(contact_sheet(tmp_path / "data", tmp_path / "sheet.png", tile=32)).convert("RGB"))
    assert sheet.shape[1] == (SEQUENCE_TILES + 2) * 36 + 4 + 70  # frames over time, then first and last depth
    tiles = [sheet[4 + 14:4 + 14 + 32, 74 + c * 36:74 + c * 36 + 32] for c in range(SEQUENCE_TILES + 2)]
    assert all(t.std() > 5 for t in tiles)
    assert not np.array_equal(tiles[0], tiles[SEQUENCE_TILES - 1])  # first and last frame differ


# Rendered motion

W, H = 96, 64
PLATE_HALF_M = 0.1
PLATE_START = (-0.15, 1.0, 0.05)  # world: camera x = world x, camera y = -world z, depth = world y
PLATE_VELOCITY = (0.4, 0.5, -0.2)  # m/s: right, away, down


def _plate_scene() -> SceneSpec:
    """A fronto-parallel 20 cm square moving in front of a wall at 3 m; 4 frames at 10 fps, drifting camera."""
    plate = ObjectSpec(
        name="plate", shape="plane", location=PLATE_START, rotation=(math.pi / 2, 0.0, 0.0),
        scale=(PLATE_HALF_M, PLATE_HALF_M, 1.0), material=MaterialSpec(kind="diffuse", color_a=(0.8, 0.8, 0.8)),
        velocity=PLATE_VELOCITY,
    )
    wall = ObjectSpec(
        name="wall", shape="plane", location=(0.0, 3.0, 0.0), rotation=(math.pi / 2, 0.0, 0.0),
        scale=(10.0, 10.0, 1.0), material=MaterialSpec(kind="checker", scale=4.0),
    )
    spec = SceneSpec(
        index=0, seed=0, split="test",
        render=RenderSpec(width=W, height=H, samples=1, seed=0, max_bounces=0),
        lens=lensmod.Lens("blender", 0.035, 4.0, 0.036),
        camera=CameraSpec(),
        frames=tuple(FrameSpec(index=k, ramp=0, time_s=0.0, focus_distance_m=f) for k, f in enumerate((0.8, 1.0, 1.3, 1.6))),
        objects=(wall, plate),
        world=WorldSpec(color=(0.5, 0.5, 0.5), strength=1.0),
    )
    return _dynamic(spec)


def test_moving_object_depth_and_position_follow_its_velocity(bpy):
    """Measured on the rendered depth maps: the plate's planar depth and the centroid of its
    pixels in each frame, against its pose at the frame's time seen through that frame's
    recorded world_to_camera and K (the camera drifts too)."""
    from generator.render.blender.render import render_scene

    spec = _plate_scene()
    decoded = decode_sample(encode_sample(spec, render_scene(spec), tiny_recipe()))
    plate = next(o for o in decoded.meta["scene"]["objects"] if o["name"] == "plate")
    measured, predicted = [], []
    for frame, depth in zip(decoded.meta["frames"], decoded.depth):
        mask = (depth > 0) & (depth < 2.0)  # the plate, not the wall at 3 m
        assert 200 < mask.sum() < W * H / 4
        vs, us = np.nonzero(mask)
        measured.append((us.mean() + 0.5, vs.mean() + 0.5, float(np.median(depth[mask]))))
        centre = np.add(plate["location"], np.multiply(plate["velocity"], frame["time_s"]))
        x, y, z = (np.array(frame["world_to_camera"]) @ np.append(centre, 1.0))[:3]
        k = np.array(frame["K"])
        predicted.append((k[0, 0] * x / z + k[0, 2], k[1, 1] * y / z + k[1, 2], z))
        assert np.ptp(depth[mask]) < 1e-4 * z  # fronto-parallel all along: one planar depth
    measured, predicted = np.array(measured), np.array(predicted)
    moved = np.diff(measured, axis=0)
    expected = np.diff(predicted, axis=0)
    print("\nper frame step: measured (du, dv, dz)", moved.round(3).tolist(), "predicted", expected.round(3).tolist())
    assert np.abs(expected[:, :2]).max() > 3  # the plate visibly moves between frames
    # A mask of pixel centres puts the centroid of a square within 0.5 px of the true one
    # on each axis, so positions agree within 0.5 px and their changes within 1 px.
    np.testing.assert_allclose(measured[:, :2], predicted[:, :2], atol=0.5 + 1e-6)
    np.testing.assert_allclose(moved[:, :2], expected[:, :2], atol=1.0 + 1e-6)
    np.testing.assert_allclose(measured[:, 2], predicted[:, 2], rtol=0.01)  # within 1 %
    np.testing.assert_allclose(moved[:, 2], expected[:, 2], rtol=0.01)


# Motion vectors


def test_motion_vectors_are_stored_for_every_frame_but_the_last_and_only_when_asked():
    recipe = tiny_recipe()
    still = make_spec(model="blender")
    assert not any(k.endswith(".motion.exr") for k in encode_sample(still, fake_render(still), recipe))
    assert decode_sample(encode_sample(still, fake_render(still), recipe)).motion is None
    moving = _dynamic(dataclasses.replace(still, render=dataclasses.replace(still.render, motion=True)))
    sample = encode_sample(moving, fake_render(moving), recipe)
    assert sorted(k for k in sample if k.endswith(".motion.exr")) == [f"f{i:03d}.motion.exr" for i in range(3)]
    decoded = decode_sample(sample)
    assert len(decoded.motion) == 3 and all(m.shape == (24, 32, 3) for m in decoded.motion)
    sky = decoded.depth[0] == 0
    assert sky.any() and not decoded.motion[0][sky].any()  # no surface, no motion
    # The camera drifts 5 mm right per frame: the cube (one object, at rest) moves left in the image.
    assert (decoded.motion[0][~sky][:, 0] < 0).all()
    with pytest.raises(ValueError, match="object-index"):
        encode_sample(moving, dataclasses.replace(fake_render(moving), object_index=None), recipe)


def test_dynamic_recipe_asks_for_motion_vectors(dynamic):
    assert draw_scene(dynamic, 0).render.motion and not draw_scene(load_recipe("small_obj"), 0).render.motion


def _warp(mask: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (rows, cols) of ``mask`` moved by ``flow`` to the nearest pixel, and which land in the image."""
    vs, us = np.nonzero(mask)
    cols = np.floor(us + 0.5 + flow[vs, us, 0]).astype(int)
    rows = np.floor(vs + 0.5 + flow[vs, us, 1]).astype(int)
    inside = (rows >= 0) & (rows < mask.shape[0]) & (cols >= 0) & (cols < mask.shape[1])
    return (rows[inside], cols[inside]), inside


def test_motion_vectors_carry_each_pixel_to_where_its_surface_is_rendered_next(bpy):
    """Measured on the renders: the spinning, moving plate's pixels moved by their vectors land on
    the plate's pixels of the next frame's depth map, at the depth the vectors predict; so do the
    wall's (the camera drifts, and the thin lens breathes as the focus changes)."""
    from generator.render.blender.render import render_scene

    base = _plate_scene()
    wall, plate = base.objects
    spec = dataclasses.replace(
        base,
        lens=lensmod.Lens("thin_lens", 0.035, 4.0, 0.036),
        render=dataclasses.replace(base.render, motion=True),
        objects=(wall, dataclasses.replace(plate, angular_velocity=(0.0, 2.0, 0.0))),  # 0.2 rad/frame about the view axis
    )
    decoded = decode_sample(encode_sample(spec, render_scene(spec), tiny_recipe()))
    assert len(decoded.motion) == len(spec.frames) - 1
    for t, flow in enumerate(decoded.motion):
        now, later = decoded.depth[t], decoded.depth[t + 1]
        plate_now, plate_later = (now > 0) & (now < 2.0), (later > 0) & (later < 2.0)
        landed, inside = _warp(plate_now, flow)
        assert inside.all()
        warped = np.zeros_like(plate_now)
        warped[landed] = True
        iou = (warped & plate_later).sum() / (warped | plate_later).sum()
        still = (plate_now & plate_later).sum() / (plate_now | plate_later).sum()
        print(f"\nframe {t}: IoU of the plate moved by its vectors {iou:.3f}, left where it was {still:.3f}")
        assert iou > 0.9 and iou > still + 0.2
        # The depth each vector predicts is the depth rendered where it lands (away from the edges).
        vs, us = np.nonzero(plate_now)
        core = plate_later[landed]
        predicted = now[vs, us][inside][core] + flow[vs, us, 2][inside][core]
        np.testing.assert_allclose(later[landed][core], predicted, rtol=0.01)
        # The wall (drift and breathing only) stays wall, at its depth.
        landed, inside = _warp(now > 2.0, flow)
        on_wall = later[landed] > 2.0
        assert on_wall.mean() > 0.97
        vs, us = np.nonzero(now > 2.0)
        predicted = now[vs, us][inside][on_wall] + flow[vs, us, 2][inside][on_wall]
        np.testing.assert_allclose(later[landed][on_wall], predicted, rtol=1e-3)
