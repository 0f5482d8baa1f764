"""Drawing scenes: determinism, splits, and scenes that respect the recipe's ranges."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from generator.core import lens as lensmod
from generator.recipe.recipe import load_recipe
from generator.draw.colour import blackbody_rgb
from generator.draw.scene import bounding_radius, draw_scene, scene_seed, scene_split
from generator.draw.view import aim_rotation
from generator.scene.spec import LIGHTS, SHAPES, SceneSpec, euler_xyz_matrix, world_to_camera

N_VARIETY = 200


@pytest.fixture(scope="module")
def small():
    return load_recipe("small_obj")


@pytest.fixture(scope="module", params=["small_obj", "large_obj"])
def drawn(request):
    """A recipe and its first N_VARIETY scenes."""
    recipe = load_recipe(request.param)
    return recipe, [draw_scene(recipe, i) for i in range(N_VARIETY)]


def camera_points(scene: SceneSpec, points) -> np.ndarray:
    """World points [N, 3] -> OpenCV camera frame [N, 3]."""
    w2c = world_to_camera(scene.camera)
    return (w2c[:3, :3] @ np.asarray(points, dtype=np.float64).T).T + w2c[:3, 3]


def test_same_index_same_scene(small):
    assert draw_scene(small, 7).to_json() == draw_scene(small, 7).to_json()


def test_global_random_state_does_not_matter(small):
    np.random.seed(1)
    first = draw_scene(small, 3).to_json()
    np.random.seed(2)
    np.random.random(10)
    assert draw_scene(small, 3).to_json() == first


def test_same_scene_in_a_fresh_process(small):
    code = (
        "from generator.recipe.recipe import load_recipe; from generator.draw.scene import draw_scene; "
        "r = load_recipe('small_obj'); print('\\n'.join(draw_scene(r, i).to_json() for i in (0, 5)))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.splitlines() == [draw_scene(small, i).to_json() for i in (0, 5)]


def test_different_indices_differ(small):
    scenes = {draw_scene(small, i).to_json() for i in range(20)}
    assert len(scenes) == 20
    assert len({scene_seed(small.seed, i) for i in range(1000)}) == 1000


def test_seed_changes_scenes(small):
    other = dataclasses.replace(small, seed=1)
    assert draw_scene(other, 0).to_json() != draw_scene(small, 0).to_json()


def test_count_changes_neither_scene_nor_split(small):
    more = load_recipe("small_obj", ["count=5"])
    for i in range(5):
        assert draw_scene(more, i).to_json() == draw_scene(small, i).to_json()
        assert scene_split(more, i) == scene_split(small, i)


def test_scene_carries_its_seed_and_split(small):
    scene = draw_scene(small, 11)
    assert scene.seed == scene_seed(small.seed, 11) and 0 <= scene.seed < 2**32
    assert scene.render.seed == scene.seed % 2**31
    assert scene.split == scene_split(small, 11)


def test_splits_follow_the_fractions():
    recipe = load_recipe("fod500", ["splits.order=random"])  # train 0.8, val 0, test 0.2
    splits = [scene_split(recipe, i) for i in range(4000)]
    assert "val" not in splits
    assert splits.count("test") / len(splits) == pytest.approx(0.2, abs=0.02)
    uneven = load_recipe("small_obj", ["splits={train: 0.5, val: 0.3, test: 0.2}"])
    counts = [scene_split(uneven, i) for i in range(4000)]
    for name, fraction in (("train", 0.5), ("val", 0.3), ("test", 0.2)):
        assert counts.count(name) / len(counts) == pytest.approx(fraction, abs=0.03)
    ranges = load_recipe("small_obj", ["count=10", "splits={train: 0.5, val: 0.3, test: 0.2, order: contiguous}"])
    assert [scene_split(ranges, i) for i in range(10)] == ["train"] * 5 + ["val"] * 3 + ["test"] * 2


def test_scene_round_trips_through_json(small):
    scene = draw_scene(small, 2)
    assert SceneSpec.from_dict(scene.to_dict()) == scene


def test_frames_are_ramps_of_increasing_focus(small):
    scene = draw_scene(small, 0)
    focus = small.focus
    assert len(scene.frames) == focus.ramps * focus.frames_per_ramp
    assert [f.index for f in scene.frames] == list(range(len(scene.frames)))
    for ramp in range(focus.ramps):
        distances = [f.focus_distance_m for f in scene.frames if f.ramp == ramp]
        assert len(distances) == focus.frames_per_ramp
        assert distances[0] == focus.near_m and distances[-1] == focus.far_m
        assert np.all(np.diff(distances) > 0)
    assert all(f.time_s == 0.0 for f in scene.frames)


def test_random_schedule_draws_each_ramp():
    recipe = load_recipe("small_obj", ["focus.schedule=random"])
    scene = draw_scene(recipe, 0)
    ramps = [[f.focus_distance_m for f in scene.frames if f.ramp == r] for r in range(recipe.focus.ramps)]
    assert ramps[0] != ramps[1]
    for distances in ramps:
        assert np.all(np.diff(distances) > 0)
        assert recipe.focus.near_m <= min(distances) and max(distances) <= recipe.focus.far_m
    assert draw_scene(recipe, 0) == scene


def test_fod500_scene_uses_the_focus_list():
    recipe = load_recipe("fod500")
    scene = draw_scene(recipe, 0)
    assert [f.focus_distance_m for f in scene.frames] == [0.1, 0.15, 0.3, 0.7, 1.5]
    assert scene.lens == lensmod.Lens("blender", 0.0029, 1.0, 0.0031)


def test_lens_and_render_follow_the_recipe(drawn):
    recipe, scenes = drawn
    for scene in scenes:
        lens = scene.lens
        assert lens.model == recipe.lens.model
        assert recipe.lens.focal_length_mm.min <= lens.focal_length_m * 1e3 <= recipe.lens.focal_length_mm.max
        assert recipe.lens.f_number.min <= lens.f_number <= recipe.lens.f_number.max
        assert lens.sensor_width_m * 1e3 == pytest.approx(recipe.lens.sensor_width_mm.min)
        render = scene.render
        assert (render.width, render.height, render.samples) == (recipe.image.width, recipe.image.height, recipe.image.samples)
        assert (render.aif, render.rgb, render.coc) == (recipe.outputs.aif, recipe.outputs.rgb, recipe.outputs.coc)


def test_every_family_occurs(drawn):
    recipe, scenes = drawn
    objects = [o for s in scenes for o in s.objects if o.name != "wall"]
    walls = [o for s in scenes for o in s.objects if o.name == "wall"]
    assert {o.shape for o in objects} == set(recipe.scene.objects.shapes)
    assert {o.material.kind for o in objects} == set(recipe.scene.materials.families)
    assert {w.material.kind for w in walls} == set(recipe.scene.wall.materials)
    assert {light.kind for s in scenes for light in s.lights} == set(recipe.scene.lights.kinds) == set(LIGHTS)
    assert {s.world.kind for s in scenes} == set(recipe.scene.world.kinds) == {"uniform", "sky"}
    assert any(o.twist for o in objects) and any(o.taper for o in objects) and any(o.displace for o in objects)
    counts = [len(s.objects) - 1 for s in scenes]
    assert min(counts) == recipe.scene.objects.count.min and max(counts) == recipe.scene.objects.count.max


def test_new_families_and_their_parameters(drawn):
    """Every procedural shape family is in the built-in recipes and occurs with parameters in range;
    colour ramps, metallic, bump and light colour temperature vary as the recipe says."""
    recipe, scenes = drawn
    assert set(recipe.scene.objects.shapes) == set(SHAPES)
    objects = [o for s in scenes for o in s.objects if o.name != "wall"]
    params = {shape: [o.shape_params for o in objects if o.shape == shape] for shape in SHAPES}
    assert all(p == () for shape in ("cube", "torus", "monkey") for p in params[shape])
    assert all(len(p) == 2 and all(0.3 <= e <= 2.0 for e in p) for p in params["superquadric"])
    assert 3 in {len(p) for p in params["extrusion"]}  # triangular prisms occur
    assert all(3 <= len(p) <= 12 and 0.35 <= min(p) and max(p) <= 1.0 for p in params["extrusion"])
    assert all(len(p) == 42 and 0.7 <= min(p) and max(p) <= 1.3 for p in params["rock"])
    assert all(len(p) % 5 == 0 and 2 <= len(p) // 5 <= 6 for p in params["blob"])
    assert all(len(p) == 1 and 0.03 <= p[0] <= 0.12 for shape in ("rod", "ring") for p in params[shape])
    materials = [o.material for o in objects]
    plain = sum(m.kind == "diffuse" for m in materials) / len(materials)
    # textureless_fraction 0.1 plus 'diffuse' drawn as one of 8 families from the other 90 %.
    assert plain == pytest.approx(0.1 + 0.9 / 8, abs=0.04)
    patterned = [m for m in materials if m.kind not in ("diffuse",)]
    assert {len(m.ramp) for m in patterned} == {2, 3, 4}
    for m in patterned:
        positions = [stop[0] for stop in m.ramp]
        assert positions[0] == 0.0 and positions[-1] == 1.0 and positions == sorted(positions)
        assert (m.ramp[0][1:], m.ramp[-1][1:]) == (m.color_a, m.color_b)
    spread = recipe.scene.materials
    assert all(spread.metallic.min <= m.metallic <= spread.metallic.max for m in materials)
    assert all(m.bump == 0.0 for m in materials if m.kind == "diffuse")
    assert max(m.bump for m in materials) > 0.4 and max(m.metallic for m in materials) > 0.4
    colours = np.array([light.color for s in scenes for light in s.lights])
    assert colours.max(axis=1) == pytest.approx(1.0)
    assert (colours[:, 2] < 0.6).any() and (colours[:, 0] < 0.9).any()  # warm and cool lights
    skies = [s.world for s in scenes if s.world.kind == "sky"]
    assert all(np.radians(5) - 1e-9 <= w.sun_elevation <= np.radians(60) + 1e-9 and 2 <= w.turbidity <= 6 for w in skies)


def test_blackbody_colours():
    """Warm light is red, hot light blue; 6500 K is near white (close to D65)."""
    warm, white, cool = (np.array(blackbody_rgb(t)) for t in (2700, 6500, 12000))
    assert warm[0] == 1.0 and warm[2] < 0.5
    assert cool[2] == 1.0 and cool[0] < 0.9
    assert white.min() > 0.9


def test_non_overlapping_placement():
    recipe = load_recipe("large_obj", ["scene.objects.non_overlapping=true", "scene.objects.count=[4, 8]"])
    loose = load_recipe("large_obj", ["scene.objects.count=[4, 8]"])
    kept = drawn = overlaps = 0
    for i in range(40):
        objects = draw_scene(recipe, i).objects[1:]
        for a_i, a in enumerate(objects):
            for b in objects[a_i + 1:]:
                assert np.linalg.norm(np.subtract(a.location, b.location)) >= bounding_radius(a) + bounding_radius(b)
        kept += len(objects)
        others = draw_scene(loose, i).objects[1:]
        drawn += len(others)
        overlaps += sum(
            np.linalg.norm(np.subtract(a.location, b.location)) < bounding_radius(a) + bounding_radius(b)
            for a_i, a in enumerate(others) for b in others[a_i + 1:]
        )
    assert overlaps > 0, "the test recipe should overlap without the option"
    assert 0.5 * drawn < kept <= drawn  # crowded scenes lose some objects, not most


def test_objects_respect_ranges_and_are_in_view(drawn):
    recipe, scenes = drawn
    spec = recipe.scene.objects
    width, height = recipe.image.width, recipe.image.height
    for scene in scenes:
        objects = [o for o in scene.objects if o.name != "wall"]
        names = [o.name for o in scene.objects]
        assert len(set(names)) == len(names)
        centres = camera_points(scene, [o.location for o in objects])
        for obj, centre in zip(objects, centres):
            size = 2 * max(obj.scale)
            assert spec.size_m.min - 1e-12 <= size <= spec.size_m.max + 1e-12
            assert spec.depth_m.min - 1e-9 <= centre[2] <= spec.depth_m.max + 1e-9
        for frame in scene.frames:  # frame 0 and every other: focus breathing included
            k = lensmod.intrinsics(scene.lens, frame.focus_distance_m, width, height)
            pixels = (k @ (centres / centres[:, 2:]).T).T if objects else np.zeros((0, 3))
            assert np.all((pixels[:, 0] >= 0) & (pixels[:, 0] <= width) & (pixels[:, 1] >= 0) & (pixels[:, 1] <= height))


def test_wall_is_behind_every_object_and_fills_every_frame(drawn):
    recipe, scenes = drawn
    width, height = recipe.image.width, recipe.image.height
    for scene in scenes:
        (wall,) = [o for o in scene.objects if o.name == "wall"]
        assert wall.shape == "plane"
        wall_centre = camera_points(scene, [wall.location])[0]
        distance = wall_centre[2]
        assert recipe.scene.wall.distance_m.min - 1e-9 <= distance <= recipe.scene.wall.distance_m.max + 1e-9
        # The plane's normal (local +Z) points back at the camera, along camera -z.
        normal = camera_points(scene, [euler_xyz_matrix(wall.rotation)[:, 2]])[0] - camera_points(scene, [(0, 0, 0)])[0]
        np.testing.assert_allclose(normal, [0, 0, -1], atol=1e-12)
        for obj, centre in zip(scene.objects[1:], camera_points(scene, [o.location for o in scene.objects[1:]])):
            assert centre[2] + 2 * max(obj.scale) < distance
        for frame in scene.frames:
            k = lensmod.intrinsics(scene.lens, frame.focus_distance_m, width, height)
            assert wall.scale[0] > width / 2 / k[0, 0] * distance
            assert wall.scale[1] > height / 2 / k[1, 1] * distance


def test_textures_are_fine_in_the_image(drawn):
    """Texture period (pixels, along the longest axis) lies in the recipe's range at frame 0."""
    recipe, scenes = drawn
    period = recipe.scene.materials.texture_period_px
    for scene in scenes[:20]:
        focal_px = max(
            lensmod.intrinsics(scene.lens, f.focus_distance_m, recipe.image.width, recipe.image.height)[0, 0]
            for f in scene.frames
        )
        for obj, centre in zip(scene.objects, camera_points(scene, [o.location for o in scene.objects])):
            longest = max(obj.scale[:2]) if obj.name == "wall" else max(obj.scale)  # the wall's z scale is moot
            period_m = longest / obj.material.scale
            assert period.min - 1e-6 <= period_m * focal_px / centre[2] <= period.max + 1e-6


def test_lights_are_aimed_at_the_objects(drawn):
    recipe, scenes = drawn
    for scene in scenes[:50]:
        for light in scene.lights:
            position = camera_points(scene, [light.location])[0]
            shine = euler_xyz_matrix(light.rotation) @ [0, 0, -1]
            shine_cam = camera_points(scene, [shine])[0] - camera_points(scene, [(0, 0, 0)])[0]
            assert position[2] <= 1e-12  # level with or behind the camera
            assert shine_cam[2] > 0  # shines into the scene
            assert light.energy >= 0


@pytest.mark.parametrize("direction", [(0, 1, 0), (1, 2, -0.5), (0, 0, -1), (0, 0, 1), (-3, 0.1, 0.2)])
def test_aim_rotation_turns_minus_z_to_the_direction(direction):
    shine = euler_xyz_matrix(aim_rotation(np.array(direction, dtype=float))) @ [0, 0, -1]
    np.testing.assert_allclose(shine, np.array(direction) / np.linalg.norm(direction), atol=1e-12)
