"""The Blender add-on, installed from its zip with Blender's own installer and driven headlessly (issue 4).

One session (``addon_session.py``, in its own process with its own Blender
user folders) installs the zip into a temporary extension repository, enables
it and runs every operator on a tiny recipe (32 x 32 px, 2 frames, 4 samples);
the tests compare what it saw with what the CLI makes of the same inputs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from click.testing import CliRunner

from fakes import write_tiny_recipe
from generator.core import lens as lensmod
from generator.cli import main
from generator.recipe.recipe import load_recipe
from generator.dataset.sample import decode_sample
from generator.draw.scene import draw_scene
from generator.scene.spec import SceneSpec

#: The scene the panel shows, and the panel's f-number range (an override of the recipe).
INDEX = 1
F_NUMBER = [2.0, 2.0]
PREVIEW_SIZE = 24
OPERATORS = ["generate", "load_recipe", "render_preview", "render_sample", "save_recipe", "step_seed"]
#: What the recipe becomes once the panel moved to the next seed and changed the f-number.
PANEL = ("seed=1", "lens.f_number=[2.0, 2.0]")
#: The built-in dynamic recipe, one ramp of 3 frames.
DYNAMIC = ("count=2", "focus.ramps=1", "focus.frames_per_ramp=3")


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):
    """(work folder, recipe path, what the add-on session saw)."""
    work = tmp_path_factory.mktemp("addon_session")
    # A sensor width that float32 (the panel's precision) cannot hold: left alone in the
    # panel, it must reach the saved recipe unrounded.
    recipe = write_tiny_recipe(work / "tiny.yaml", {"seed": 0, "count": 2, "outputs.aif": True,
                                                    "shards.max_samples": 1, "lens.sensor_width_mm": 36.123456789})
    (work / "samples").mkdir()
    config = {
        "zip": str(addon_zip), "repo_dir": str(work / "repo"), "recipe": str(recipe), "index": INDEX,
        "f_number": F_NUMBER, "preview_size": PREVIEW_SIZE, "sample_dir": str(work / "samples"),
        "saved_recipe": str(work / "saved.yaml"), "missing_recipe": str(work / "missing.yaml"),
        "result": str(work / "result.json"), "dynamic_recipe": str(work / "dynamic.yaml"),
    }
    (work / "dynamic.yaml").write_text(load_recipe("dynamic", DYNAMIC).to_yaml())
    (work / "config.json").write_text(json.dumps(config))
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(work / "user")}
    script = Path(__file__).with_name("addon_session.py")
    done = subprocess.run([sys.executable, str(script), str(work / "config.json")], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return work, recipe, json.loads((work / "result.json").read_text())


@pytest.fixture(scope="module")
def cli_render(session):
    """The saved recipe rendered by ``dfdgen render``: its output folder."""
    work, _, _ = session
    out = work / "cli"
    result = CliRunner().invoke(main, ["render", "--recipe", str(work / "saved.yaml"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def _panel_spec(result) -> SceneSpec:
    return SceneSpec.from_dict(json.loads(result["spec_json"]))


def _cli_shard(out: Path) -> Path:
    """The CLI's shard holding scene INDEX (the recipe puts one sample in each)."""
    manifest = json.loads((out / "manifest.json").read_text())
    (name,) = [s["name"] for s in manifest["shards"] if s["scenes"] == [INDEX]]
    return out / name


def _cli_error(*args) -> str:
    """The message ``dfdgen render`` gives for bad input (exit status 2)."""
    result = CliRunner().invoke(main, ["render", *map(str, args)])
    assert result.exit_code == 2, result.output
    return result.output.strip().removeprefix("Error: ")


def test_installed_with_blenders_installer_imports_only_the_bundle(session):
    work, _, result = session
    assert result["enabled"] and result["registered"]["operators"] == OPERATORS
    # The environment's site-packages were off the path: everything came from the extension's wheels.
    for name, file in result["imported_from"].items():
        assert Path(file).is_relative_to(work / "user" / "extensions"), (name, file)


def test_generate_and_seed_steps(session):
    _, _, result = session
    assert result["loaded_seed"] == 0 and result["generate"] == {"result": ["FINISHED"]}
    assert "camera" in result["generated_objects"] and "wall" in result["generated_objects"]
    assert result["next_seed"] == {"result": ["FINISHED"]} and result["seed_after_next"] == 1
    assert result["previous_seed"] == {"result": ["FINISHED"]} and result["seed_after_previous"] == 0
    with pytest.raises(Exception) as cli:
        load_recipe(session[1], ["seed=-1"])
    assert result["previous_at_zero"] == {"error": str(cli.value)} and result["seed_after_refused"] == 0
    assert result["leaked"] == {}  # three regenerations left no datablock of an earlier scene


def test_user_objects_survive_generate(session):
    _, _, result = session
    assert result["user_survives"] == {"object": True, "mesh": True, "material": True}


def test_panel_scene_equals_cli_scene(session):
    work, recipe, result = session
    expected = draw_scene(load_recipe(recipe, PANEL), INDEX)
    assert _panel_spec(result) == expected
    saved = load_recipe(work / "saved.yaml")
    assert saved.sha256 == load_recipe(recipe, PANEL).sha256 and draw_scene(saved, INDEX) == expected


def test_focus_step_and_timeline_set_the_camera(session):
    _, _, result = session
    spec = _panel_spec(result)
    frames = len(spec.frames)
    assert result["frame_range"] == [1, frames] and len(result["steps"]) == frames
    for step, frame in zip(result["steps"], spec.frames):
        cam = lensmod.blender_camera(spec.lens, frame.focus_distance_m)
        assert step["step"] == frame.index and step["frame"] == 1 + frame.index and step["use_dof"]
        # Blender stores these as float32.
        assert step["lens_mm"] == pytest.approx(cam.lens_mm, rel=1e-6)
        assert step["fstop"] == pytest.approx(cam.fstop, rel=1e-6)
        assert step["focus_distance_m"] == pytest.approx(cam.focus_distance_m, rel=1e-6)
    assert result["steps"][0]["lens_mm"] != result["steps"][1]["lens_mm"]  # thin lens: breathing
    assert result["step_clamped"] == frames - 1
    assert result["scrubbed"] == {k: v for k, v in result["steps"][0].items() if k != "step"}


def test_timeline_plays_the_motion_of_a_dynamic_recipe(session):
    _, _, result = session
    assert result["generate_dynamic"] == {"result": ["FINISHED"]}
    spec = SceneSpec.from_dict(json.loads(result["dynamic_spec"]))
    assert spec == draw_scene(load_recipe("dynamic", DYNAMIC), 0)
    moving = [o for o in spec.objects if any(o.velocity) or any(o.angular_velocity)]
    assert moving and len({spec.camera_at(f) for f in spec.frames}) > 1  # the test needs motion to see
    for frame, seen in zip(spec.frames, result["dynamic_steps"], strict=True):
        camera = spec.camera_at(frame)
        # Blender stores these as float32.
        np.testing.assert_allclose(seen["camera"], [camera.location, camera.rotation], rtol=1e-6, atol=1e-7)
        assert seen["focus_distance_m"] == pytest.approx(frame.focus_distance_m, rel=1e-6)
        for obj in moving:
            np.testing.assert_allclose(seen["objects"][obj.name], obj.pose_at(frame.time_s), rtol=1e-6, atol=1e-7)


def test_render_preview_image(session):
    _, _, result = session
    assert result["render_preview"] == result["render_preview_invoked"] == {"result": ["FINISHED"]}
    assert result["preview"]["size"] == [PREVIEW_SIZE, PREVIEW_SIZE]  # 32 x 32 scaled to 24 on the longer side
    assert result["preview"]["rgb_max"] > 0 and result["preview"]["rgb_std"] > 0


def test_render_sample_has_the_cli_bytes(session, cli_render):
    work, _, result = session
    assert result["render_sample"] == {"result": ["FINISHED"]} and result["render_leaked"] == {}
    panel_tar = work / "samples" / f"tiny-{INDEX:08d}.tar"
    assert result["samples_written"] == [panel_tar.name]
    # shards.max_samples = 1: the CLI's shard holds this one sample, so the files compare whole.
    assert panel_tar.read_bytes() == _cli_shard(cli_render).read_bytes()
    (sample,) = [decode_sample(s) for s in wds.WebDataset(str(panel_tar), shardshuffle=False)]
    spec = _panel_spec(result)
    assert sample.key == f"{INDEX:08d}" and SceneSpec.from_dict(sample.meta["scene"]) == spec
    assert sample.meta["recipe"]["sha256"] == load_recipe(work / "saved.yaml").sha256
    assert len(sample.frames) == len(spec.frames) and all(f.shape == (32, 32, 3) for f in sample.frames)
    assert sample.aif.shape == (32, 32, 3) and np.all(sample.depth[0] > 0)


def test_saved_recipe_renders_with_the_cli_to_the_panel_scene(session, cli_render):
    _, _, result = session
    assert result["save_recipe"] == {"result": ["FINISHED"]}
    (sample,) = [decode_sample(s) for s in wds.WebDataset(str(_cli_shard(cli_render)), shardshuffle=False)]
    assert SceneSpec.from_dict(sample.meta["scene"]) == _panel_spec(result)


def test_bad_input_is_reported_with_the_cli_messages(session):
    work, recipe, result = session
    errors = result["errors"]
    assert errors["scene_index"] == {"error": _cli_error("--recipe", work / "saved.yaml", "--save-blend",
                                                         work / "x.blend", "--scene", 99)}
    assert errors["f_number"] == {"error": _cli_error("--recipe", work / "saved.yaml", "--set",
                                                      "lens.f_number=[3.0, 1.0]", "--save-blend", work / "x.blend")}
    assert errors["recipe_file"] == {"error": _cli_error("--recipe", work / "missing.yaml", "--save-blend",
                                                         work / "x.blend")}
    missing = work / "samples" / "no" / "r.yaml"
    assert errors["save_into_missing_folder"] == {"error": _cli_error("--recipe", recipe, "--save-blend", missing)}
    assert errors["sample_dir"] == {"error": f"samples folder {work / 'samples' / 'missing'} does not exist"}
    # Nothing generated, rendered or written by the refused operations.
    assert result["unchanged_by_errors"] and result["samples_after_errors"] == result["samples_written"]
    assert not (work / "x.blend").exists()


def test_cancelled_render_leaves_nothing(session):
    _, _, result = session
    job = result["cancelled_job"]
    assert job["done"] == 1 < job["total"] and not job["result"] and job["leaked"] == {}


def test_panel_draw_shows_existing_properties_and_offers_registered_operators(session):
    _, _, result = session
    for when in ("draw_before_generate", "draw_after_generate"):
        drawn = result[when]
        assert drawn["missing_props"] == [] and drawn["missing_operators"] == [], when
        assert drawn["operators"] == [f"dfdgen.{name}" for name in OPERATORS], when
    after = result["draw_after_generate"]["props"]
    assert {"recipe_file", "seed", "scene_index", "focus_step", "f_number", "sample_dir"} <= set(after)


def test_unregister_leaves_nothing_and_registers_again(session):
    _, _, result = session
    assert result["after_unregister"] == {"classes": [], "scene_property": False, "operators": [],
                                          "handlers_unchanged": True}
    assert result["after_register_again"] == result["registered"]
    assert result["generate_after_reregister"] == {"result": ["FINISHED"]}
