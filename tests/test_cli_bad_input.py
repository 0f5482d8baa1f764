"""The command line without Blender: help, version, bad input (exit 2, nothing written), Ctrl-C."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import generator
import generator.render.pipeline
from conftest import require
from fakes import tiny_recipe, write_tiny_recipe
from generator.cli import main
from generator.render.pipeline import RunSummary
from generator.recipe.recipe import load_recipe
from generator.dataset.shards import DatasetDir


def _run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


# (recipe changes, extra CLI options, text the message must contain)
BAD_RECIPES = {
    "unknown key": ({"lens.focal_lenght_mm": 50}, "lens.focal_lenght_mm"),
    "wrong type": ({"image.width": "big"}, "image.width"),
    "negative f-number": ({"lens.f_number": -2.0}, "lens.f_number"),
    "zero f-number": ({"lens.f_number": 0}, "lens.f_number"),
    "focus inside focal length": ({"focus.near_m": 0.02}, "focus.near_m"),
    "min > max": ({"lens.f_number": [2.8, 1.4]}, "lens.f_number"),
    "empty list": ({"scene.objects.shapes": []}, "scene.objects.shapes"),
    "zero count": ({"count": 0}, "count"),
    "unknown schedule": ({"focus.schedule": "spiral"}, "focus.schedule"),
    "splits do not sum to 1": ({"splits.train": 0.5}, "splits"),
    "bool as int": ({"image.samples": True}, "image.samples"),
    "negative adaptive threshold": ({"image.adaptive_threshold": -0.1}, "image.adaptive_threshold"),
    "adaptive threshold above 1": ({"image.adaptive_threshold": 2}, "image.adaptive_threshold"),
    "negative adaptive min samples": ({"image.adaptive_min_samples": -1}, "image.adaptive_min_samples"),
    "denoise not a bool": ({"image.denoise": "maybe"}, "image.denoise"),
    "two aperture blades": ({"lens.aperture.blades": 2}, "lens.aperture.blades"),
    "17 aperture blades": ({"lens.aperture.blades": 17}, "lens.aperture.blades"),
    "aperture blades from a disc to a polygon": ({"lens.aperture.blades": [0, 6]}, "lens.aperture.blades"),
    "zero aperture ratio": ({"lens.aperture.blades": 6, "lens.aperture.ratio": 0}, "lens.aperture.ratio"),
    "negative aperture ratio": ({"lens.aperture.blades": 6, "lens.aperture.ratio": [-1, 2]}, "lens.aperture.ratio"),
    "aperture rotation past 180": ({"lens.aperture.blades": 6, "lens.aperture.rotation_deg": 270},
                                   "lens.aperture.rotation_deg"),
}

BAD_OPTIONS = {
    "-n 0": (["-n", "0"], "'-n'"),
    "--workers 0": (["--workers", "0"], "--workers"),
    "--threads -1": (["--threads", "-1"], "--threads"),
    "--recycle-every 0": (["--recycle-every", "0"], "--recycle-every"),
    "bad --set path": (["--set", "lens.nope=3"], "lens.nope"),
    "bad --set value": (["--set", "image.samples=many"], "image.samples"),
    "--set without =": (["--set", "image.width"], "key.path=value"),
    "--set into a value": (["--set", "count.x=1"], "count"),
    "--scene without --save-blend": (["--scene", "1"], "--save-blend"),
    "--save-blend scene out of range": (["--save-blend", "x.blend", "--scene", "99"], "scene 99"),
    "-n not a number": (["-n", "ten"], "'-n'"),
    "--executor bogus": (["--executor", "bogus"], "--executor"),
    "--device bogus": (["--device", "bogus"], "--device"),
    "--ray-address without ray": (["--ray-address", "auto"], "--executor ray"),
}


#: ``dfdgen train`` options whose model config the model refuses: (options, the whole message). The
#: model's config is checked before the shards are opened or anything is written.
BAD_MODEL_CONFIGS = {
    "out of range": (["--model", "sdgs", "--set", "model.config.coc_scale_px=-1"],
                     "config key 'model.config.coc_scale_px': got -1; a number > 0"),
    "not a choice": (["--model", "sdgs", "--set", "model.config.input_frame=last"],
                     "config key 'model.config.input_frame': got 'last'; one of: nearest, middle, farthest"),
    "too many levels": (["--model", "ddff", "--set", "model.config.channels=[4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4]"],
                        "config key 'model.config.channels': got [4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4]; "
                        "a list of 1 to 10 items, each an integer >= 1 and <= 1024"),
    "unknown key": (["--model", "ddff", "--set", "model.config.chanels=[4]"],
                    "config key 'model.config.chanels': got [4]; unknown key; did you mean 'channels'? known keys: "
                    "min_depth_m, max_depth_m, depth_space, coc_head, coc_scale_px, coc_loss, w_coc, regions, "
                    "wall_weight, depth_init_m, blur_scales_px, channels"),
    "rule between keys": (["--model", "dff", "--set", "model.config.min_depth_m=2",
                           "--set", "model.config.max_depth_m=1"],
                          "config key 'model.config.max_depth_m': got 1.0; a depth above min_depth_m = 2.0 m"),
    "option a model lacks": (["--model", "sdgs", "--coc-head"],
                             "config key 'model.config.coc_head': got True; unknown key; known keys: min_depth_m, "),
}


def _check_refused(result, text: str, out: Path) -> None:
    assert result.exit_code == 2, result.output
    assert text in result.output, result.output
    assert not out.exists()


@pytest.mark.parametrize("case", BAD_RECIPES)
def test_bad_recipe_exits_2_and_writes_nothing(tmp_path, case):
    changes, text = BAD_RECIPES[case]
    recipe = write_tiny_recipe(tmp_path / "bad.yaml", changes)
    out = tmp_path / "out"
    _check_refused(_run("render", "--recipe", recipe, "--out", out), text, out)


@pytest.mark.parametrize("case", BAD_OPTIONS)
def test_bad_option_exits_2_and_writes_nothing(tmp_path, case, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a stray relative --save-blend path would land here
    options, text = BAD_OPTIONS[case]
    recipe = write_tiny_recipe(tmp_path / "tiny.yaml")
    out = tmp_path / "out"
    _check_refused(_run("render", "--recipe", recipe, "--out", out, *options), text, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"]


@pytest.mark.parametrize("case", BAD_MODEL_CONFIGS)
def test_bad_model_config_exits_2_with_the_recipes_error_text_and_writes_nothing(tmp_path, torch, case):
    """``--set model.config.KEY=VALUE`` is checked by the model's config (its dataclass), with the
    error text of recipes: ``config key 'PATH': got VALUE; ALLOWED``."""
    options, message = BAD_MODEL_CONFIGS[case]
    out = tmp_path / "run"
    result = _run("train", "--shards", tmp_path / "data", "--max-steps", "1", "--out", out, *options)
    _check_refused(result, f"Error: {message}", out)
    assert "Traceback" not in result.output and sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("address", ["127.0.0.1:1", "ray://127.0.0.1:1", "nohost"])
def test_unusable_ray_address_exits_2_and_writes_nothing(tmp_path, address):
    require("ray")
    recipe = write_tiny_recipe(tmp_path / "tiny.yaml")
    out = tmp_path / "out"
    result = _run("render", "--recipe", recipe, "--out", out, "--executor", "ray", "--ray-address", address)
    _check_refused(result, f"--ray-address {address}", out)


def test_executor_ray_without_ray_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as if it were not installed
    monkeypatch.delitem(sys.modules, "generator.render.ray_executor", raising=False)
    recipe = write_tiny_recipe(tmp_path / "tiny.yaml")
    result = _run("render", "--recipe", recipe, "--out", tmp_path / "out", "--executor", "ray")
    assert result.exit_code == 1 and "pip install 'dfdgen[ray]'" in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_bad_files_and_paths(tmp_path):
    out = tmp_path / "out"
    not_yaml = tmp_path / "not.yaml"
    not_yaml.write_text("name: [unclosed\n  : :")
    _check_refused(_run("render", "--recipe", not_yaml, "--out", out), "not.yaml", out)
    a_list = tmp_path / "list.yaml"
    a_list.write_text("- 1\n- 2\n")
    _check_refused(_run("render", "--recipe", a_list, "--out", out), "mapping", out)
    _check_refused(_run("render", "--recipe", tmp_path / "missing.yaml", "--out", out), "missing.yaml", out)

    recipe = write_tiny_recipe(tmp_path / "tiny.yaml")
    afile = tmp_path / "afile"
    afile.write_text("x")
    for bad_out in (afile, afile / "sub"):  # unwritable: a file, or below one
        result = _run("render", "--recipe", recipe, "--out", bad_out)
        assert result.exit_code == 2 and "afile" in result.output, result.output
    assert afile.read_text() == "x"
    missing_dir = tmp_path / "nodir" / "scene.blend"
    _check_refused(_run("render", "--recipe", recipe, "--save-blend", missing_dir), "nodir", missing_dir.parent)


def test_other_recipe_in_out_dir_is_refused_unchanged(tmp_path):
    out = tmp_path / "out"
    DatasetDir(out, tiny_recipe(), max_samples=2)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    recipe = write_tiny_recipe(tmp_path / "tiny.yaml")
    result = _run("render", "--recipe", recipe, "--out", out)
    assert result.exit_code == 2
    assert "small_obj" in result.output and "'tiny'" in result.output and "--overwrite" in result.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # what differs is named, field by field, from the recipe stored in the manifest
    result = _run("render", "--recipe", "small_obj", "--out", out, "--set", "count=6", "--set", "shards.max_samples=2",
                  "--set", "image.samples=5")
    assert result.exit_code == 2 and "): image.samples 256 -> 5;" in result.output, result.output
    assert "count" not in result.output.split("not of this one")[1]


def _commands(group: click.Group, prefix=()):
    for name, command in group.commands.items():
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


def test_every_command_has_help_and_version_works():
    result = _run("--help")
    assert result.exit_code == 0 and "render" in result.output
    commands = list(_commands(main))
    assert ("render",) in commands
    for command in commands:
        result = _run(*command, "--help")
        assert result.exit_code == 0 and "Usage:" in result.output, command
    result = _run("--version")
    assert result.exit_code == 0 and generator.__version__ in result.output
    help_text = " ".join(_run("render", "--help").output.split())
    recipes = sorted(p.stem for p in (Path(__file__).parents[1] / "recipes").glob("*.yaml"))
    assert len(recipes) >= 4 and all(name in help_text for name in recipes), help_text


def test_default_out_summary_and_ctrl_c(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = write_tiny_recipe(tmp_path / "tiny.yaml")
    calls = []

    def fake_render_dataset(recipe, out_dir, **kw):
        calls.append((recipe, out_dir, kw))
        return RunSummary(Path(out_dir), 6, 0, ((4, "RuntimeError: boom"),), 3, 1000, 2.0)

    monkeypatch.setattr(generator.render.pipeline, "render_dataset", fake_render_dataset)
    result = _run("render", "--recipe", recipe, "-n", "7", "--set", "image.samples=2", "--workers", "2")
    assert result.exit_code == 3, result.output  # finished, but a scene failed: not a success
    (got, out_dir, kw), = calls
    assert out_dir == Path("data") / "tiny" and kw["workers"] == 2
    assert got == load_recipe(recipe, ["image.samples=2", "count=7"])
    assert "data in data/tiny" in result.output and "6 scenes rendered" in result.output
    assert "scene 4 failed: RuntimeError: boom" in result.output
    assert "Error: 1 scenes failed (4); the manifest in data/tiny records why (exit status 3)" in result.output

    def interrupted(*args, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(generator.render.pipeline, "render_dataset", interrupted)
    result = _run("render", "--recipe", recipe)
    assert result.exit_code == 130 and "resume" in result.output


def test_cli_and_worker_modules_import_light():
    """No bpy outside workers; and nothing heavy (webdataset pulls in torch) in what a spawned
    worker imports: the main script (the CLI) and the task's module."""
    code = ("import sys, generator.cli, generator.render.tasks, generator.render.scheduler; "
            "print(sorted(m for m in ('bpy', 'webdataset', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
