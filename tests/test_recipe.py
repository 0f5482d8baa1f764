"""Recipes: validation errors name the field, canonical round trip, overrides, built-ins."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources

import pytest
import yaml

from generator.core.errors import BadInput, RecipeError
from generator.core.safe_yaml import load_yaml
from generator.recipe.recipe import (
    IntRange,
    Range,
    apply_overrides,
    builtin_recipes,
    load_recipe,
    recipe_from_dict,
)


def raw(name: str = "small_obj") -> dict:
    """A built-in recipe as plain parsed YAML."""
    return load_yaml((resources.files("recipes") / f"{name}.yaml").read_text(), name)


def edit(data: dict, dotted: str, value) -> dict:
    """Set (or, with value ``...``, delete) ``dotted`` in ``data``."""
    *parents, last = dotted.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return data


# (recipe, key path to change, new value, field path the error must name)
MALFORMED = [
    ("small_obj", "lense", {"model": "thin_lens"}, "lense"),
    ("small_obj", "lens.f_numbr", 2.0, "lens.f_numbr"),
    ("small_obj", "image.width", "wide", "image.width"),
    ("small_obj", "image.width", True, "image.width"),  # bool is not an int
    ("small_obj", "image.width", 64.5, "image.width"),
    ("small_obj", "image.width", 4, "image.width"),
    ("small_obj", "image.width", ..., "image.width"),  # required
    ("small_obj", "image", 5, "image"),
    ("small_obj", "lens.f_number", -2.0, "lens.f_number"),
    ("small_obj", "lens.f_number", 0, "lens.f_number"),
    ("small_obj", "lens.f_number", [0, 2.8], "lens.f_number[0]"),
    ("small_obj", "lens.f_number", True, "lens.f_number"),
    ("small_obj", "lens.f_number", float("nan"), "lens.f_number"),
    ("small_obj", "lens.f_number", [1.4, 2.0, 2.8], "lens.f_number"),
    ("small_obj", "lens.focal_length_mm", [50, 25], "lens.focal_length_mm"),  # min > max
    ("small_obj", "lens.model", "pinhole", "lens.model"),
    ("small_obj", "focus.near_m", 0.04, "focus.near_m"),  # inside the 50 mm focal length
    ("small_obj", "focus.near_m", ..., "focus.near_m"),
    ("small_obj", "focus.far_m", 0.2, "focus.far_m"),  # before near_m
    ("small_obj", "focus.schedule", "log", "focus.schedule"),
    ("small_obj", "focus.ramps", 0, "focus.ramps"),
    ("small_obj", "focus.distances_m", [0.3, 0.5], "focus.distances_m"),  # not a list schedule
    ("small_obj", "count", 0, "count"),
    ("small_obj", "seed", -1, "seed"),
    ("small_obj", "name", "a/b", "name"),
    ("small_obj", "splits", {"train": 0.8, "val": 0.1, "test": 0.2}, "splits"),
    ("small_obj", "splits.test", -0.1, "splits.test"),
    ("small_obj", "scene.objects.shapes", [], "scene.objects.shapes"),
    ("small_obj", "scene.objects.shapes", ["cube", "teapot"], "scene.objects.shapes[1]"),
    ("small_obj", "scene.objects.shapes", "cube", "scene.objects.shapes"),
    ("small_obj", "scene.objects.count", [2.5, 4], "scene.objects.count[0]"),
    ("small_obj", "scene.objects.depth_m", [0.3, 1.9], "scene.objects.depth_m"),  # behind the wall
    ("small_obj", "scene.objects.deform_probability", 1.5, "scene.objects.deform_probability"),
    ("small_obj", "scene.materials.families", ["noise", "emission"], "scene.materials.families[1]"),
    ("small_obj", "scene.wall.materials", ["diffuse"], "scene.wall.materials[0]"),
    ("small_obj", "scene.lights.kinds", ["laser"], "scene.lights.kinds[0]"),
    ("small_obj", "scene.lights.energy.sun", -1.0, "scene.lights.energy.sun"),
    ("small_obj", "outputs.aif", 1, "outputs.aif"),
    ("small_obj", "outputs.rgb", "gif", "outputs.rgb"),
    ("small_obj", "shards.max_bytes", "lots", "shards.max_bytes"),
    ("small_obj", "shards.max_samples", 0, "shards.max_samples"),
    ("fod500", "focus.distances_m", [0.1, 0.15, 0.3, 0.7], "focus.distances_m"),  # 4 != frames_per_ramp
    ("fod500", "focus.distances_m", [0.002, 0.15, 0.3, 0.7, 1.5], "focus.distances_m[0]"),  # < f = 2.9 mm
    ("fod500", "focus.distances_m", [0.1, 0.3, 0.3, 0.7, 1.5], "focus.distances_m[2]"),  # not increasing
    ("fod500", "focus.distances_m", [], "focus.distances_m"),
    ("fod500", "focus.distances_m", ..., "focus.distances_m"),
    ("fod500", "focus.near_m", 0.1, "focus.near_m"),  # not used by schedule list
]


@pytest.mark.parametrize("name, key, value, path", MALFORMED, ids=[f"{k}={v!r}" for _, k, v, _ in MALFORMED])
def test_malformed_recipe_names_the_field(name, key, value, path):
    with pytest.raises(RecipeError) as err:
        recipe_from_dict(edit(raw(name), key, value), source="test")
    assert err.value.path == path
    assert f"'{path}'" in str(err.value)
    assert err.value.exit_code == 2


def test_unknown_key_suggests_the_nearest_field():
    with pytest.raises(RecipeError, match="did you mean 'f_number'"):
        recipe_from_dict(edit(raw(), "lens.f_numbr", 2.0))


def test_error_says_what_is_allowed():
    with pytest.raises(RecipeError, match=r"got -2.0; a number > 0"):
        recipe_from_dict(edit(raw(), "lens.f_number", -2.0))


@pytest.mark.parametrize("text", ["name: [unclosed\n", "\x00\x01binary", "- a\n- list\n", "just text\n"])
def test_non_yaml_or_non_mapping_file_is_bad_input_naming_the_file(tmp_path, text):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(BadInput, match="broken.yaml"):
        load_recipe(path)


def test_undecodable_file_is_bad_input(tmp_path):
    path = tmp_path / "image.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    with pytest.raises(BadInput, match="image.png"):
        load_recipe(path)


def test_missing_file_and_directory_are_bad_input(tmp_path):
    with pytest.raises(BadInput, match="nope.yaml"):
        load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(BadInput, match="not a file"):
        load_recipe(tmp_path)
    with pytest.raises(BadInput, match="small_obj"):  # lists the built-ins
        load_recipe("no_such_recipe")


@pytest.mark.parametrize(
    "override, path",
    [
        ("lens.focal=3", "lens.focal"),
        ("lense.f_number=3", "lense"),
        ("image.width.px=64", "image.width"),
        ("lens.f_number", "lens.f_number"),
        ("=3", "=3"),
        ("lens.f_number=[1,", "lens.f_number"),
        ("lens.f_number=-1", "lens.f_number"),  # a valid path, an invalid value
    ],
)
def test_bad_override_names_the_path(override, path):
    with pytest.raises(RecipeError) as err:
        load_recipe("small_obj", [override])
    assert err.value.path == path


def test_unknown_override_suggests_the_nearest_field():
    with pytest.raises(RecipeError, match="did you mean 'f_number'"):
        apply_overrides(raw(), ["lens.fnumber=2"])


@pytest.mark.parametrize("name", builtin_recipes())
def test_canonical_yaml_round_trips(name, tmp_path):
    recipe = load_recipe(name)
    again = recipe_from_dict(yaml.safe_load(recipe.to_yaml()))
    assert again == recipe
    assert again.to_yaml() == recipe.to_yaml()
    assert again.sha256 == recipe.sha256
    (tmp_path / "r.yaml").write_text(recipe.to_yaml())
    assert load_recipe(tmp_path / "r.yaml") == recipe


def test_builtins_are_found_by_name_or_file_name():
    assert set(builtin_recipes()) >= {"small_obj", "large_obj", "fod500"}
    path = resources.files("recipes") / "small_obj.yaml"
    assert load_recipe("small_obj") == load_recipe("small_obj.yaml") == load_recipe(str(path))
    assert load_recipe("small_obj").name == "small_obj"


def test_overrides_change_the_value_and_the_hash():
    base = load_recipe("small_obj")
    changed = load_recipe("small_obj", ["lens.f_number=2.8", "image.width=64"])
    assert changed.lens.f_number == Range(2.8, 2.8)
    assert changed.image.width == 64
    assert changed.sha256 != base.sha256
    assert changed.sha256 == load_recipe("small_obj", ["image.width=64", "lens.f_number=2.8"]).sha256
    assert load_recipe("small_obj", ["lens.f_number=[1.4, 2.8]"]).sha256 == base.sha256  # same value


def test_override_of_a_defaulted_field_and_a_missing_section():
    data = {k: v for k, v in raw().items() if k != "scene"}
    recipe = recipe_from_dict(apply_overrides(data, ["scene.objects.count=[1, 2]", "image.max_bounces=8"]))
    assert recipe.scene.objects.count == IntRange(1, 2)
    assert recipe.image.max_bounces == 8
    assert "scene" not in data  # the input is not modified


def test_number_or_range_and_scientific_byte_count():
    recipe = load_recipe("fod500", ["shards.max_bytes=2.5e6"])
    assert recipe.lens.focal_length_mm == Range(2.9, 2.9)
    assert recipe.lens.f_number.min == recipe.lens.f_number.max == 1.0
    assert recipe.shards.max_bytes == 2_500_000 and isinstance(recipe.shards.max_bytes, int)
    assert load_recipe("small_obj").shards.max_bytes == 10**9  # written "1e9": a float in YAML 1.2
    with pytest.raises(RecipeError, match="shards.max_bytes"):
        load_recipe("fod500", ["shards.max_bytes=1.5"])


def test_yaml_1_2_floats_are_numbers(tmp_path):
    """PyYAML (YAML 1.1) reads 5e1 and 1E-3 as strings; dfdgen's loader reads them as numbers."""
    text = (resources.files("recipes") / "small_obj.yaml").read_text()
    text = text.replace("f_number: [1.4, 2.8]", "f_number: [5e-1, 28E-1]").replace("count: 1000", "count: 1e3")
    assert "5e-1" in text and "count: 1e3" in text
    path = tmp_path / "r.yaml"
    path.write_text(text)
    recipe = load_recipe(path)
    assert recipe.lens.f_number == Range(0.5, 2.8) and recipe.count == 1000 and isinstance(recipe.count, int)
    assert load_recipe("small_obj", ["lens.f_number=5e0"]).lens.f_number == Range(5.0, 5.0)
    with pytest.raises(RecipeError, match="'count': got 1.5"):
        load_recipe("small_obj", ["count=15e-1"])


def test_integers_given_as_floats_become_floats():
    a = recipe_from_dict(edit(raw(), "lens.f_number", 2))
    b = recipe_from_dict(edit(raw(), "lens.f_number", 2.0))
    assert a == b and a.sha256 == b.sha256 and isinstance(a.lens.f_number.min, float)


def test_fod500_is_the_focus_on_defocus_setting():
    recipe = load_recipe("fod500")
    assert recipe.lens.model == "blender"
    assert recipe.lens.focal_length_mm == Range(2.9, 2.9) and recipe.lens.f_number == Range(1.0, 1.0)
    assert recipe.focus.schedule == "list" and recipe.focus.distances_m == (0.1, 0.15, 0.3, 0.7, 1.5)
    assert (recipe.focus.ramps, recipe.focus.frames_per_ramp) == (1, 5)
    assert recipe.scene.wall.distance_m.max <= 3.0
    assert (recipe.image.width, recipe.image.height, recipe.count) == (256, 256, 500)


def test_pure_modules_do_not_import_bpy():
    code = "import sys, generator.recipe.recipe, generator.draw.scene, generator.recipe.ramps; assert 'bpy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_preview_preset_is_small_keeps_every_split_and_yields_to_set():
    from generator.draw.scene import scene_split
    from generator.recipe.recipe import PRESETS

    preview = load_recipe("small_obj", preset="preview")
    full = load_recipe("small_obj")
    per_scene = lambda r: r.image.width * r.image.height * r.image.samples  # noqa: E731  (Cycles' work)
    assert per_scene(preview) * 16 <= per_scene(full) and preview.count <= 10
    assert {scene_split(preview, i) for i in range(preview.count)} == {"train", "val", "test"}
    assert load_recipe("small_obj", ["image.samples=8"], preset="preview").image.samples == 8  # --set wins
    assert "preview" in PRESETS
    with pytest.raises(BadInput, match="unknown preset 'draft'; pick from: preview"):
        load_recipe("small_obj", preset="draft")
