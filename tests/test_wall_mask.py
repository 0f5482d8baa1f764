"""Wall marking (issue 6): ``depth.wall_m`` in the metadata and the loader's ``wall`` mask.

The wall is a fronto-parallel plane, so its pixels are the valid ones whose planar
depth equals ``wall_m`` (within ``WALL_RTOL``); a Cycles render with the wall
removed shows sky (depth 0) exactly there.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from fakes import fake_render, make_spec
from generator.recipe import load_recipe
from generator.codec import decode_sample, encode_sample, wall_depth_m
from generator.spec import MaterialSpec, ObjectSpec
from test_data_pipeline import write_dataset

RECIPE = load_recipe("small_obj")
WALL_M = 3.0  # metres in front of make_spec's camera (at the origin, looking along world +Y)


@pytest.fixture
def data(torch):
    """dfd_models.data (imports torch)."""
    import dfd_models.data.stages  # noqa: F401  (attribute access below)

    return dfd_models.data


def _with_wall(spec, rotation=(math.pi / 2, 0.0, 0.0), **deform):
    wall = ObjectSpec("wall", "plane", (0.0, WALL_M, 0.0), rotation, (5.0, 5.0, 1.0), MaterialSpec("noise"), **deform)
    return dataclasses.replace(spec, objects=(wall, *spec.objects))


def test_wall_depth_in_metadata():
    spec = _with_wall(make_spec(0))
    meta = decode_sample(encode_sample(spec, fake_render(spec), RECIPE)).meta
    assert meta["depth"]["wall_m"] == pytest.approx(WALL_M, rel=1e-12)
    no_wall = make_spec(0)
    assert decode_sample(encode_sample(no_wall, fake_render(no_wall), RECIPE)).meta["depth"]["wall_m"] is None


@pytest.mark.parametrize("change", [{"rotation": (math.pi / 2 + 0.1, 0.0, 0.0)}, {"displace": 0.1}, {"twist": 0.2}])
def test_tilted_or_deformed_wall_has_no_single_depth(change):
    assert wall_depth_m(_with_wall(make_spec(0), **change)) is None


def _render_with_wall(spec):
    """fake_render, with the left 12 columns on the wall (one just inside the tolerance)
    and one pixel just outside it."""
    rendered = fake_render(spec)
    for d in rendered.depth:
        d[:, :12] = WALL_M
        d[5, 3] = WALL_M * (1 + 5e-5)
        d[6, 20] = WALL_M * (1 + 2e-4)
        d[:3, :3] = 0.0  # no surface: never wall
    return rendered


def test_loader_wall_mask_follows_crop_and_flip(tmp_path, data):
    spec = _with_wall(make_spec(0))
    write_dataset(tmp_path / "ds", [spec], [_render_with_wall(spec)])
    flips = set()
    for seed in range(8):
        (s,) = list(data.FocalStackDataset(data.DataSection(shards=tmp_path / "ds", split=None, crop=[16, 20], ramp=0,
                                                            shuffle=0), batched=False, seed=seed))
        depth, wall = s["depth"][0].numpy(), s["wall"][0].numpy()
        assert s["wall"].dtype == s["valid"].dtype and s["wall"].shape == s["valid"].shape
        np.testing.assert_array_equal(wall, (depth == np.float32(WALL_M)) | (depth == np.float32(WALL_M * (1 + 5e-5))))
        assert not (wall & ~s["valid"][0].numpy()).any()
        flips.add(bool(wall[:, -1].any() and not wall[:, 0].any()))  # the wall strip moved to the right
    assert flips == {True, False}


def test_samples_without_wall_m_have_an_all_false_mask(tmp_path, data, torch):
    specs = [_with_wall(make_spec(i)) for i in range(2)]

    def drop_wall_m(sample):
        meta = json.loads(sample["json"])
        if meta["scene_index"] == 1:
            del meta["depth"]["wall_m"]
            sample["json"] = json.dumps(meta).encode()
        return sample

    write_dataset(tmp_path / "ds", specs, [_render_with_wall(s) for s in specs], edit=drop_wall_m)
    (batch,) = list(data.make_loader(data.DataSection(shards=tmp_path / "ds", batch_size=2, crop=None, workers=0,
                                                     flip=False, shuffle=0)))
    by_key = dict(zip(batch["key"], batch["wall"]))
    assert by_key["00000000"].any() and not by_key["00000001"].any()


def test_cycles_wall_mask_is_where_objects_are_not(bpy, data):
    """Render a small_obj scene, then the same scene without its wall: the mask is
    exactly where the second render sees nothing, in every frame's depth map."""
    from generator.blender.render import render_scene
    from generator.draw import sample_scene

    recipe = load_recipe("small_obj", ["image.width=32", "image.height=32", "image.samples=1",
                                       "focus.ramps=1", "focus.frames_per_ramp=2", "scene.objects.count=[3, 3]"])
    spec = sample_scene(recipe, 0)
    wall_m = wall_depth_m(spec)
    assert wall_m is not None
    with_wall = render_scene(spec, threads=2).depth
    without = render_scene(dataclasses.replace(spec, objects=spec.objects[1:]), threads=2).depth
    assert len(with_wall) == len(spec.frames) == 2  # thin lens: one depth map per frame
    for full, bare in zip(with_wall, without):
        assert (full > 0).all()  # the wall fills the view
        mask = data.stages.wall_mask(full[..., None], wall_m)[..., 0]
        np.testing.assert_array_equal(mask, bare == 0)
        assert 0.2 < mask.mean() < 1.0  # objects and wall both seen
        assert np.abs(full[mask] - wall_m).max() <= 1e-6 * wall_m  # float32 render error, far inside WALL_RTOL
