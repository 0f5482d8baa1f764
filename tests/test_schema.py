"""One config mechanism (generator.core.schema): recipes, training configs, model configs, render
options and scene specs give the same error text, have frozen sections and take ``--set`` the same way."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from conftest import require
from dfd_models.config import ConfigError, TrainConfig
from dfd_models.config import apply_overrides as config_overrides
from generator.draw.scene import draw_scene
from generator.core.errors import RecipeError, SpecError
from generator.recipe.recipe import apply_overrides as recipe_overrides
from generator.recipe.recipe import load_recipe, recipe_from_dict
from generator.render.options import RenderOptionError, RenderOptions
from generator.scene.spec import SceneSpec


def _sdgs():
    """The ``sdgs`` model class (imports torch: skipped locally without it, a failure in CI)."""
    return require("dfd_models.networks").MODELS["sdgs"]


def _recipe_data() -> dict:
    return load_recipe("small_obj").to_dict()


def _spec_data() -> dict:
    return json.loads(draw_scene(load_recipe("small_obj"), 0).to_json())


def _with(data: dict, section: str, key: str, value) -> dict:
    return {**data, section: {**data[section], key: value}}


UNKNOWN = [
    (lambda: recipe_from_dict(_with(_recipe_data(), "lens", "f_numbr", 2)), RecipeError,
     "recipe field", "lens.f_numbr", "f_number"),
    (lambda: TrainConfig.from_dict({"optim": {"lrr": 2}}), ConfigError, "config key", "optim.lrr", "lr"),
    (lambda: _sdgs().resolve_config({"max_depht_m": 2}), ConfigError,
     "config key", "model.config.max_depht_m", "max_depth_m"),
    (lambda: SceneSpec.from_dict(_with(_spec_data(), "lens", "f_numbr", 2)), SpecError,
     "scene spec field", "lens.f_numbr", "f_number"),
    (lambda: RenderOptions.from_dict({"wrokers": 2}), RenderOptionError, "render option", "wrokers", "workers"),
]


@pytest.mark.parametrize("make, error, what, path, close", UNKNOWN, ids=["recipe", "config", "model", "spec", "render"])
def test_an_unknown_key_reads_the_same_everywhere(make, error, what, path, close):
    with pytest.raises(error) as info:
        make()
    assert re.fullmatch(rf"{what} '{re.escape(path)}': got 2; unknown key; did you mean '{close}'\? known keys: .+",
                        str(info.value)), str(info.value)
    assert info.value.exit_code == 2


BAD_VALUES = [
    (lambda: recipe_from_dict(_with(_recipe_data(), "image", "width", "big")), RecipeError,
     "recipe field 'image.width': got 'big'; an integer >= 8 and <= 8192"),
    (lambda: TrainConfig.from_dict({"data": {"batch_size": "big"}}), ConfigError,
     "config key 'data.batch_size': got 'big'; an integer >= 1 or one of: auto"),
    (lambda: _sdgs().resolve_config({"channels": [16, "big"]}), ConfigError,
     "config key 'model.config.channels[1]': got 'big'; an integer >= 1 and <= 1024"),
    (lambda: _sdgs().resolve_config({"channels": []}), ConfigError,
     "config key 'model.config.channels': got []; a list of 1 to 10 items, each an integer >= 1 and <= 1024"),
    (lambda: _sdgs().resolve_config({"w_sweep": -1}), ConfigError,
     "config key 'model.config.w_sweep': got -1; a number >= 0"),
    (lambda: _sdgs().resolve_config({"input_frame": "last"}), ConfigError,
     "config key 'model.config.input_frame': got 'last'; one of: nearest, middle, farthest"),
    (lambda: RenderOptions.from_dict({"workers": 0}), RenderOptionError,
     "render option 'workers': got 0; an integer >= 1"),
    (lambda: RenderOptions.from_dict({"device": "tpu"}), RenderOptionError,
     "render option 'device': got 'tpu'; one of: cpu, gpu"),
    (lambda: SceneSpec.from_dict(_with(_spec_data(), "lens", "f_number", "big")), SpecError,
     "scene spec field 'lens.f_number': got 'big'; a number"),
    (lambda: recipe_from_dict(_with(_recipe_data(), "lens", "model", "pinhole")), RecipeError,
     "recipe field 'lens.model': got 'pinhole'; one of: thin_lens, blender"),
    (lambda: TrainConfig.from_dict({"optim": {"amp": "fp8"}}), ConfigError,
     "config key 'optim.amp': got 'fp8'; one of: auto, off, bf16, fp16"),
]


@pytest.mark.parametrize("make, error, message", BAD_VALUES)
def test_a_bad_value_names_path_value_and_what_is_allowed(make, error, message):
    with pytest.raises(error) as info:
        make()
    assert str(info.value) == message


def test_sections_are_frozen():
    recipe, config = load_recipe("small_obj"), TrainConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.image.width = 64
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.data.batch_size = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        RenderOptions.from_dict({}).workers = 2


@pytest.mark.parametrize("apply, error, data, good, typo, through", [
    (recipe_overrides, RecipeError, {}, ("lens.f_number=2.8", ["lens", "f_number"], 2.8),
     ("lens.f_numbr=2", "did you mean 'f_number'"), "seed.x=1"),
    (config_overrides, ConfigError, {}, ("optim.lr=3e-4", ["optim", "lr"], 3e-4),
     ("optim.lrr=2", "did you mean 'lr'"), "optim.lr.x=1"),
], ids=["recipe", "config"])
def test_set_works_the_same_way(apply, error, data, good, typo, through):
    item, keys, value = good
    out = apply(data, [item])
    for key in keys:
        out = out[key]
    assert out == value  # YAML 1.2 numbers: 3e-4 is a float
    with pytest.raises(error, match=typo[1]):
        apply(data, [typo[0]])
    with pytest.raises(error, match="a value, not a section"):
        apply(data, [through])


def test_model_config_is_a_frozen_dataclass_typed_by_its_fields_and_free_below_a_dict():
    sdgs = _sdgs()
    config = sdgs.resolve_config({"max_depth_m": 2, "channels": [8, 16, 32]})
    assert config == sdgs.Config(max_depth_m=2.0, channels=[8, 16, 32])  # every other key at its default
    assert isinstance(config.max_depth_m, float)  # an int for a float field
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.max_depth_m = 1.0
    with pytest.raises(ConfigError, match="'model.config.depth_from_defocus': got 1; true or false"):
        sdgs.resolve_config({"depth_from_defocus": 1})
    # --set below model.config (a dict): any key may be set; the model's Config checks it later
    assert config_overrides({}, ["model.config.anything=3"])["model"]["config"] == {"anything": 3}


def test_a_rule_between_fields_names_the_field_with_the_schemas_text():
    with pytest.raises(ConfigError) as info:
        _sdgs().resolve_config({"min_depth_m": 2, "max_depth_m": 1})
    assert str(info.value) == "config key 'model.config.max_depth_m': got 1.0; a depth above min_depth_m = 2.0 m"
    with pytest.raises(RenderOptionError, match="'ray_address': got 'auto'; null unless executor is 'ray'"):
        RenderOptions.from_dict({"ray_address": "auto"})
    assert RenderOptions.from_dict({"ray_address": "auto", "executor": "ray"}).ray_address == "auto"


def test_scene_spec_round_trip_is_exact():
    for index in range(5):
        spec = draw_scene(load_recipe("dynamic"), index)
        assert SceneSpec.from_dict(json.loads(spec.to_json())) == spec
