"""The aperture's shape (recipe ``lens.aperture``): drawn apart from everything else, recorded in the
metadata only when on, and rendered by Cycles as the polygon asked for (measured from pixels)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import webdataset as wds
from click.testing import CliRunner
from fakes import dir_bytes, fake_render, tiny_recipe, write_tiny_recipe

from generator.cli import main
from generator.core.lens import (
    Aperture,
    circumscribed_factor,
    corner_angles_rad,
    equal_area_factor,
)
from generator.core.precision import float32
from generator.dataset.sample import decode_sample, encode_sample
from generator.draw.scene import draw_scene
from generator.scene.calibration import aperture_probe, measure_aperture
from generator.scene.spec import SceneSpec
from generator.scene.calibration import aperture_errors

APERTURE = ("lens.aperture.blades=[5, 8]", "lens.aperture.rotation_deg=[-90, 90]", "lens.aperture.ratio=[0.8, 1.5]")


def test_turning_the_aperture_on_changes_no_other_draw():
    plain, bladed = tiny_recipe(), tiny_recipe(*APERTURE)
    for index in range(plain.count):
        without, with_ = draw_scene(plain, index), draw_scene(bladed, index)
        assert without.lens.aperture is None
        shape = with_.lens.aperture
        assert 5 <= shape.blades <= 8 and abs(shape.rotation_rad) <= math.pi / 2 and 0.8 <= shape.ratio <= 1.5
        assert dataclasses.replace(with_, lens=dataclasses.replace(with_.lens, aperture=None)) == without
    shapes = {draw_scene(bladed, i).lens.aperture for i in range(bladed.count)}
    assert len(shapes) == bladed.count, "each scene draws its own shape"


def test_an_absent_aperture_stays_out_of_the_recipe_and_the_spec():
    recipe = tiny_recipe()
    assert "aperture" not in recipe.to_dict()["lens"]
    assert "aperture" not in draw_scene(recipe, 0).to_dict()["lens"]
    bladed = tiny_recipe(*APERTURE)
    assert bladed.to_dict()["lens"]["aperture"]["blades"] == [5, 8] and bladed.sha256 != recipe.sha256
    spec = draw_scene(bladed, 0)
    assert SceneSpec.from_dict(json.loads(spec.to_json())) == spec


def _polygon_area(blades: int, rotation_rad: float, ratio: float, diameter: float) -> float:
    """Shoelace area of the corners at ``diameter`` / 2, x divided by ``ratio``."""
    angles = corner_angles_rad(Aperture(blades, rotation_rad, ratio))
    x, y = diameter / 2 * np.cos(angles) / ratio, diameter / 2 * np.sin(angles)
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


@pytest.mark.parametrize("blades,rotation_deg,ratio", [(3, 0, 1), (6, 17, 1), (5, -40, 1.7), (16, 90, 0.6)])
def test_equal_area_and_circumscribed_factors_are_those_of_the_corners(blades, rotation_deg, ratio):
    aperture = Aperture(blades, math.radians(rotation_deg), ratio)
    area = _polygon_area(blades, aperture.rotation_rad, ratio, 1.0)
    assert math.pi / 4 * equal_area_factor(aperture) ** 2 == pytest.approx(area, rel=1e-12)
    angles = corner_angles_rad(aperture)
    assert circumscribed_factor(aperture) == pytest.approx(np.hypot(np.cos(angles) / ratio, np.sin(angles)).max())
    disc = Aperture(0, 0.0, ratio)
    assert equal_area_factor(disc) ** 2 == pytest.approx(1 / ratio) and circumscribed_factor(disc) == max(1, 1 / ratio)
    assert equal_area_factor(None) == circumscribed_factor(None) == 1.0


def test_metadata_records_the_aperture_only_when_on_and_decodes_back():
    for overrides in ((), APERTURE):
        spec = draw_scene(tiny_recipe(*overrides), 1)
        sample = decode_sample(encode_sample(spec, fake_render(spec), tiny_recipe(*overrides)))
        lens = sample.meta["lens"]
        assert SceneSpec.from_dict(sample.meta["scene"]) == spec
        if not overrides:
            assert "aperture" not in lens
            continue
        shape = spec.lens.aperture
        assert lens["aperture"] == float32({  # the metadata's precision (generator.core.precision)
            "blades": shape.blades, "rotation_rad": shape.rotation_rad, "ratio": shape.ratio,
            "coc": "aperture_circle", "equal_area_factor": equal_area_factor(shape),
            "circumscribed_factor": circumscribed_factor(shape),
        })


# Rendered by Cycles

#: (blades, rotation in degrees, ratio): odd and even blade counts, a squeezed polygon, a squeezed disc.
SHAPES = [(6, 20.0, 1.0), (5, -50.0, 1.0), (3, 10.0, 1.5), (0, 0.0, 0.8)]
#: Largest error of a corner's direction, degrees.
CORNER_TOLERANCE_DEG = 2.0


@pytest.mark.parametrize("blades,rotation_deg,ratio", SHAPES)
def test_a_point_out_of_focus_renders_as_the_polygon_asked_for(bpy, blades, rotation_deg, ratio):
    """The blob of a small disc, beyond and in front of focus: its blade count and corner directions
    (beyond focus: :func:`corner_angles_rad`, in front: turned by 180 deg), its squeeze, and its
    area: that of the polygon with corners on the circle of the CoC c (the equal-area diameter
    within the CoC tolerance; a disc of diameter c would be 9 to 55 % larger)."""
    from generator.render.blender.render import render_scene

    aperture = Aperture(blades, math.radians(rotation_deg), ratio)
    spec = aperture_probe(aperture)
    rows = measure_aperture(spec, render_scene(spec).frames)
    assert [r["z"] > r["F"] for r in rows] == [True, False]
    for row in rows:
        print({k: row[k] for k in ("F", "predicted", "blades", "strength", "noise", "corner_deg", "area_px", "width_u")})
        assert row["edge"] == 0 and row["stray"] == 0, "light outside the circumscribed window"
        assert row["width_u"] == pytest.approx(1 / ratio, rel=0.03)
        corner_error, area_error = aperture_errors(aperture, row)
        assert area_error <= 1, row
        assert row["blades"] == blades
        if blades:
            assert abs(corner_error) <= CORNER_TOLERANCE_DEG, row["corner_deg"]


def test_bladed_samples_are_byte_identical_with_one_and_two_workers(bpy, tmp_path):
    changes = {"count": 4, "lens.aperture": {"blades": [3, 9], "rotation_deg": [-180, 180], "ratio": [0.7, 1.4]},
               "outputs.coc": True}
    recipe = write_tiny_recipe(tmp_path / "bladed.yaml", changes)
    for out, workers in (("one", "1"), ("two", "2")):
        result = CliRunner().invoke(main, ["render", "--recipe", str(recipe), "--out", str(tmp_path / out),
                                           "--workers", workers, "--threads", "1"])
        assert result.exit_code == 0, result.output
    assert dir_bytes(tmp_path / "one") == dir_bytes(tmp_path / "two")
    shards = sorted(str(p) for p in (tmp_path / "one").glob("*.tar"))
    for sample in map(decode_sample, wds.WebDataset(shards, shardshuffle=False)):
        spec = SceneSpec.from_dict(sample.meta["scene"])
        assert sample.meta["lens"]["aperture"]["blades"] == spec.lens.aperture.blades
        assert 3 <= spec.lens.aperture.blades <= 9 and sample.coc is not None
