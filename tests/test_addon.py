"""The Blender add-on, installed from its zip with Blender's own installer and driven headlessly (issue 4).

One session (``addon_session.py``, in its own process with its own Blender
user folders) installs the zip into a temporary extension repository, enables
it and runs every operator on a tiny recipe (32 x 32 px, 2 frames, 4 samples);
the tests compare what it saw with what the CLI makes of the same inputs.
"""

from __future__ import annotations

import json
import math
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
from generator.core.precision import float32
from generator.cli import main
from generator.recipe.recipe import load_recipe
from generator.dataset.sample import decode_sample
from generator.draw.scene import draw_scene
from generator.scene.sensor import crosstalk_matrix
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
#: The dynamic recipe with every section of the camera (issue 29): aperture, shutter, sensor, JPEG, clean frames.
CAMERA = (*DYNAMIC, "lens.aperture.blades=[5, 7]", "lens.aperture.rotation_deg=[0, 30]",
          "lens.aperture.ratio=[1, 1.5]", "shutter.exposure_s=[0.005, 0.01]", "shutter.rolling_readout_s=0.02",
          "sensor.noise.shot_gain=[0.001, 0.002]", "sensor.exposure.ev=[-1, 1]", "sensor.exposure.drift_ev=0.1",
          "sensor.white_balance.red=2.0", "sensor.white_balance.blue=1.6", "sensor.crosstalk=0.7",
          "sensor.tone=[0.2, 0.4]", "sensor.vignetting=0.3", "outputs.rgb=jpeg", "outputs.jpeg_quality=[70, 80]",
          "outputs.clean=true")
#: The panel's settings of CAMERA's sections, as loaded from it.
CAMERA_LOADED = {
    "use_aperture": True, "aperture_blades": [5, 7], "aperture_rotation_deg": [0, 30], "aperture_ratio": [1, 1.5],
    "use_shutter": True, "shutter_exposure_s": [0.005, 0.01], "shutter_readout_s": [0.02, 0.02],
    "use_sensor": True, "use_noise": True, "noise_shot_gain": [0.001, 0.002], "exposure_ev": [-1, 1],
    "exposure_drift_ev": 0.1, "white_balance_red": [2.0, 2.0], "white_balance_blue": [1.6, 1.6],
    "crosstalk": [0.7, 0.7], "tone": [0.2, 0.4], "vignetting": [0.3, 0.3],
    "rgb": "jpeg", "jpeg_quality": [70, 80], "clean": True,
}
#: The panel's edits of CAMERA: setting -> (the recipe's key, the value).
CAMERA_EDITS = {
    "aperture_blades": ("lens.aperture.blades", [6, 6]),
    "aperture_rotation_deg": ("lens.aperture.rotation_deg", [10, 10]),
    "aperture_ratio": ("lens.aperture.ratio", [1.25, 1.25]),
    "shutter_exposure_s": ("shutter.exposure_s", [0.008, 0.008]),
    "shutter_readout_s": ("shutter.rolling_readout_s", [0.01, 0.01]),
    "noise_shot_gain": ("sensor.noise.shot_gain", [0.004, 0.004]),
    "exposure_ev": ("sensor.exposure.ev", [0.5, 0.5]),
    "exposure_drift_ev": ("sensor.exposure.drift_ev", 0.0),
    "white_balance_red": ("sensor.white_balance.red", [2.2, 2.2]),
    "white_balance_blue": ("sensor.white_balance.blue", [1.7, 1.7]),
    "crosstalk": ("sensor.crosstalk", [0.6, 0.6]),
    "tone": ("sensor.tone", [0.5, 0.5]),
    "vignetting": ("sensor.vignetting", [0.2, 0.2]),
    "jpeg_quality": ("outputs.jpeg_quality", [85, 85]),
}
EDITED = [f"{key}={json.dumps(value)}" for key, value in CAMERA_EDITS.values()]


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
        "dynamic_saved": str(work / "dynamic_saved.yaml"),
        "camera": {"recipe": str(work / "camera.yaml"), "loaded": list(CAMERA_LOADED),
                   "edits": {name: value for name, (_, value) in CAMERA_EDITS.items()},
                   **{name: str(work / f"camera_{name}.yaml")
                      for name in ("untouched", "saved", "no_noise", "off", "on")}},
    }
    (work / "dynamic.yaml").write_text(load_recipe("dynamic", DYNAMIC).to_yaml())
    (work / "camera.yaml").write_text(load_recipe("dynamic", CAMERA).to_yaml())
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


def test_untouched_panel_saves_the_recipe_with_its_bytes(session):
    work, _, result = session
    assert result["save_dynamic"] == result["camera_save_untouched"] == {"result": ["FINISHED"]}
    for saved, recipe in (("dynamic_saved.yaml", "dynamic.yaml"), ("camera_untouched.yaml", "camera.yaml")):
        assert load_recipe(work / saved).sha256 == load_recipe(work / recipe).sha256, saved
    camera_keys = {"sensor", "shutter", "aperture", "jpeg_quality", "clean"}
    assert not camera_keys & _keys(load_recipe(work / "dynamic_saved.yaml"))


def _keys(recipe) -> set[str]:
    """Every key of the recipe's canonical form, at any depth."""
    def walk(node):
        return {k for key, value in node.items() for k in (key, *(walk(value) if isinstance(value, dict) else ()))}
    return walk(recipe.to_dict())


def test_camera_sections_load_into_the_panel(session):
    _, _, result = session
    assert result["camera_load"] == {"result": ["FINISHED"]}
    loaded = result["camera_loaded"]
    assert loaded.keys() == CAMERA_LOADED.keys()
    for name, value in CAMERA_LOADED.items():
        assert loaded[name] == (pytest.approx(value, rel=1e-6) if isinstance(value, (list, float)) else value), name


def test_camera_edits_reach_the_scene_and_the_saved_recipe(session):
    work, _, result = session
    assert result["camera_generate"] == result["camera_save"] == {"result": ["FINISHED"]}
    expected = load_recipe(work / "camera.yaml", EDITED)
    spec = SceneSpec.from_dict(json.loads(result["camera_spec"]))
    assert spec == draw_scene(expected, 0)
    assert spec.lens.aperture.blades == 6 and spec.lens.aperture.rotation_rad == pytest.approx(math.radians(10))
    assert spec.lens.aperture.ratio == 1.25 and (spec.shutter.exposure_s, spec.shutter.rolling_readout_s) == (0.008, 0.01)
    sensor = spec.sensor
    assert sensor.shot_gain == pytest.approx(0.004) and sensor.exposure == pytest.approx([2**0.5] * len(spec.frames))
    assert sensor.white_balance == (2.2, 1.0, 1.7) and sensor.colour_matrix == float32(crosstalk_matrix(0.6))  # core/precision.py
    assert (sensor.tone, sensor.vignetting, sensor.clean) == (0.5, 0.2, True)
    assert spec.render.rgb == "jpeg" and spec.render.jpeg_quality == 85
    assert load_recipe(work / "camera_saved.yaml").sha256 == expected.sha256


def test_switched_off_sections_leave_the_recipe_and_switched_on_ones_start_from_its_defaults(session):
    work, recipe, result = session
    assert result["camera_save_no_noise"] == result["camera_save_off"] == {"result": ["FINISHED"]}
    camera = work / "camera.yaml"
    no_noise = load_recipe(work / "camera_no_noise.yaml")
    assert no_noise.sha256 == load_recipe(camera, [*EDITED, "sensor.noise=null"]).sha256
    assert no_noise.sensor is not None and no_noise.sensor.noise is None
    off = load_recipe(work / "camera_off.yaml")
    assert off.sha256 == load_recipe(camera, [*EDITED, "lens.aperture=null", "shutter=null", "sensor=null",
                                              "outputs.rgb=png8", "outputs.jpeg_quality=null",
                                              "outputs.clean=false"]).sha256
    assert not {"sensor", "shutter", "aperture", "jpeg_quality"} & _keys(off)
    assert result["tiny_switches"] == {"use_aperture": False, "use_shutter": False, "use_sensor": False,
                                       "use_noise": False, "rgb": "png8", "clean": False}
    # Switched on with one value edited: the aperture needs its blades; the sensor and the JPEG
    # quality take the recipe's defaults (no quality written: 90 is what the recipe means without one).
    on = load_recipe(work / "camera_on.yaml")
    assert on.sha256 == load_recipe(recipe, ["lens.aperture.blades=6", "sensor={}", "outputs.rgb=jpeg"]).sha256
    assert on.outputs.jpeg_quality is None


def test_bad_camera_value_is_reported_with_the_cli_message(session):
    work, _, result = session
    assert result["camera_blades_2"] == {"error": _cli_error("--recipe", work / "camera.yaml", "--set",
                                                             "lens.aperture.blades=2", "--save-blend",
                                                             work / "x.blend")}
    assert result["camera_unchanged_by_error"] and not (work / "x.blend").exists()


def test_panel_shows_the_camera_settings(session):
    _, _, result = session
    drawn = result["camera_draw"]
    assert drawn["missing_props"] == [] and drawn["missing_operators"] == []
    assert set(CAMERA_LOADED) <= set(drawn["props"])
