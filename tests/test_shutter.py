"""The shutter (recipe ``shutter``): motion blur over each frame's exposure and a rolling readout,
measured on renders; ground truth at the exposure's centre; drawn, recorded and refused like
every other section."""

from __future__ import annotations

import dataclasses
import json
import math
import tarfile

import numpy as np
import pytest
from click.testing import CliRunner

from fakes import fake_render, make_spec, tiny_recipe, write_tiny_recipe
from generator.core.precision import float32
from generator.cli import main
from generator.core import lens as lensmod
from generator.dataset.sample import decode_sample, encode_sample
from generator.draw.scene import draw_scene
from generator.recipe.recipe import builtin_recipes, load_recipe
from generator.scene.spec import (CameraSpec, FrameSpec, MaterialSpec, ObjectSpec, RenderSpec, SceneSpec, ShutterSpec,
                                  WorldSpec)

SHUTTER = ("shutter.exposure_s=[0.005, 0.02]", "shutter.rolling_readout_s=[0.0, 0.03]")


def test_no_bundled_recipe_has_a_shutter():
    assert all(load_recipe(name).shutter is None for name in builtin_recipes())


def test_a_shutter_changes_no_other_draw_and_is_drawn_within_its_ranges():
    plain, exposed = load_recipe("dynamic"), load_recipe("dynamic", SHUTTER)
    drawn = []
    for i in range(20):
        a, b = draw_scene(plain, i), draw_scene(exposed, i)
        assert a.shutter is None and dataclasses.replace(b, shutter=None) == a
        assert 0.005 <= b.shutter.exposure_s <= 0.02 and 0.0 <= b.shutter.rolling_readout_s <= 0.03
        assert b.shutter.window_s == b.shutter.exposure_s + b.shutter.rolling_readout_s
        drawn.append(b.shutter)
    assert len(set(drawn)) == 20  # per scene
    assert draw_scene(exposed, 3) == draw_scene(exposed, 3)


def test_metadata_records_the_shutter_per_frame_only_when_there_is_one():
    recipe = tiny_recipe()
    still = make_spec()
    meta = json.loads(encode_sample(still, fake_render(still), recipe)["json"])
    assert "shutter" not in meta["scene"] and not any("shutter" in f for f in meta["frames"])

    spec = dataclasses.replace(still, shutter=ShutterSpec(exposure_s=0.01, rolling_readout_s=0.025))
    decoded = decode_sample(encode_sample(spec, fake_render(spec), recipe))
    assert [f["shutter"] for f in decoded.meta["frames"]] == [{"exposure_s": 0.01, "rolling_readout_s": 0.025}] * 4
    assert SceneSpec.from_dict(decoded.meta["scene"]) == float32(spec)  # the metadata's precision (core/precision.py)
    assert SceneSpec.from_dict(meta["scene"]) == float32(still)
    # Everything else is what it was without the shutter.
    for key in ("depth", "lens", "image"):
        assert decoded.meta[key] == meta[key]
    assert [{k: v for k, v in f.items() if k != "shutter"} for f in decoded.meta["frames"]] == meta["frames"]


MOTION = {"motion": {"fps": 25}}
# (recipe changes, the field the message must name)
BAD_SHUTTERS = {
    "shutter without motion": ({"shutter": {"exposure_s": 0.01}}, "shutter"),
    "negative exposure": ({**MOTION, "shutter": {"exposure_s": -0.01}}, "shutter.exposure_s"),
    "zero exposure": ({**MOTION, "shutter": {"exposure_s": 0}}, "shutter.exposure_s"),
    "exposure longer than 1/fps": ({**MOTION, "shutter": {"exposure_s": [0.01, 0.05]}}, "shutter.exposure_s"),
    "negative readout": ({**MOTION, "shutter": {"exposure_s": 0.01, "rolling_readout_s": -0.001}},
                         "shutter.rolling_readout_s"),
    "readout longer than 1/fps": ({**MOTION, "shutter": {"exposure_s": 0.01, "rolling_readout_s": 0.041}},
                                  "shutter.rolling_readout_s"),
    "missing exposure": ({**MOTION, "shutter": {"rolling_readout_s": 0.01}}, "shutter.exposure_s"),
    "unknown field": ({**MOTION, "shutter": {"exposure_s": 0.01, "iso": 100}}, "shutter.iso"),
}


@pytest.mark.parametrize("case", BAD_SHUTTERS)
def test_bad_shutter_exits_2_naming_the_field_before_anything_is_rendered(tmp_path, case):
    changes, field = BAD_SHUTTERS[case]
    recipe = write_tiny_recipe(tmp_path / "bad.yaml", changes)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["render", "--recipe", str(recipe), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert field in result.output, result.output
    assert not out.exists()


def test_a_shutter_within_one_frame_interval_is_accepted():
    recipe = load_recipe("dynamic", ["shutter.exposure_s=0.04", "shutter.rolling_readout_s=0.04"])  # 1/25 s each
    assert recipe.shutter.exposure_s.max == recipe.shutter.rolling_readout_s.max == 0.04
    assert recipe.sha256 != load_recipe("dynamic").sha256


# Rendered: a bright plate moving right in front of black

W, H = 64, 32
SPEED_M_S = 2.0
PLATE_Z_M = 1.0
FX_PX = W * 35.0 / 36.0  # 35 mm over a 36 mm sensor
TIMES_S = (0.45, 0.5)


def _plate_scene(shutter: ShutterSpec | None, samples: int = 64) -> SceneSpec:
    """A 20 cm emitting square at 1 m, moving right at 2 m/s, centred in the image at t = 0.5 s;
    two frames (0.45 s, 0.5 s); f/22 focused on it, so defocus adds almost nothing."""
    plate = ObjectSpec(
        name="plate", shape="plane", location=(-SPEED_M_S * TIMES_S[1], PLATE_Z_M, 0.0),
        rotation=(math.pi / 2, 0.0, 0.0), scale=(0.1, 0.1, 1.0),
        material=MaterialSpec(kind="emission", color_a=(1.0, 1.0, 1.0), emission_strength=1.0),
        velocity=(SPEED_M_S, 0.0, 0.0),
    )
    return SceneSpec(
        index=0, seed=0, split="test",
        render=RenderSpec(width=W, height=H, samples=samples, seed=0, max_bounces=0),
        lens=lensmod.Lens("blender", 0.035, 22.0, 0.036), camera=CameraSpec(),
        frames=tuple(FrameSpec(index=k, ramp=0, time_s=t, focus_distance_m=PLATE_Z_M) for k, t in enumerate(TIMES_S)),
        objects=(plate,), world=WorldSpec(color=(0.0, 0.0, 0.0), strength=0.0), shutter=shutter,
    )


def _row_moments(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per image row that the plate covers (more than half the brightest row's light): the row index,
    the intensity-weighted mean column (pixel centres, px) and the variance about it (px^2)."""
    light = image[..., 0].astype(np.float64)
    total = light.sum(axis=1)
    rows = np.nonzero(total > 0.5 * total.max())[0]
    cols = np.arange(light.shape[1]) + 0.5
    mean = (light[rows] * cols).sum(axis=1) / total[rows]
    variance = (light[rows] * cols**2).sum(axis=1) / total[rows] - mean**2
    return rows, mean, variance


@pytest.fixture(scope="module")
def sharp(bpy):
    from generator.render.blender.render import render_scene

    return render_scene(_plate_scene(None), threads=1)


def test_motion_blur_streak_is_velocity_times_exposure_and_centred_on_the_ground_truth(sharp):
    """A box blur of length L adds L^2 / 12 to a profile's variance and keeps its mean, so each row
    gives L = sqrt(12 (var_blurred - var_sharp)) and the blurred mean equals the sharp one: the image
    is centred on the instant the depth shows. Depth itself is rendered without blur: the same bytes."""
    from generator.render.blender.render import render_scene

    exposure_s = 0.1
    blurred = render_scene(_plate_scene(ShutterSpec(exposure_s)), threads=1)
    expected = SPEED_M_S * exposure_s * FX_PX / PLATE_Z_M  # 12.4 px
    for frame, (image, still) in enumerate(zip(blurred.frames, sharp.frames)):
        rows, mean, variance = _row_moments(image)
        still_rows, still_mean, still_variance = _row_moments(still)
        assert np.array_equal(rows, still_rows)
        length = math.sqrt(12 * (variance.mean() - still_variance.mean()))
        print(f"\nframe {frame}: streak {length:.2f} px, expected {expected:.2f} px; "
              f"centre {mean.mean():.3f} px, sharp {still_mean.mean():.3f} px")
        # Each pixel's share of the exposure is a 64-sample estimate: the rows' variances scatter by
        # about 0.4 px^2 (of L^2 / 12 = 12.9), their mean over 12 rows by about 0.15 px^2, ~1 %;
        # 3 % of L leaves room for that (measured: 1-1.3 % short) and still fails any mistake in
        # the window (keys at -/+ half the window: 0.5x; shutter of 2 frames: 2x; one step of 24 fps: 0.42x).
        assert length == pytest.approx(expected, rel=0.03)
        assert mean.mean() == pytest.approx(still_mean.mean(), abs=0.1)  # an off-centre window moves it by L / 2
    assert np.array_equal(np.stack(blurred.depth), np.stack(sharp.depth))
    # The frames' times differ, so the plate moved: persistent data kept no stale motion between renders.
    assert _row_moments(blurred.frames[1])[1].mean() - _row_moments(blurred.frames[0])[1].mean() == pytest.approx(
        SPEED_M_S * (TIMES_S[1] - TIMES_S[0]) * FX_PX / PLATE_Z_M, abs=0.2)


def test_a_drifting_camera_blurs_a_still_plate_by_its_drift_times_the_exposure(sharp):
    """The camera moves through the exposure too: the plate held still where it is at t = 0.5 s and
    the camera drifting left at the plate's speed give the plate's streak, centred on the instant."""
    from generator.render.blender.render import render_scene

    exposure_s = 0.1
    moving = _plate_scene(ShutterSpec(exposure_s, camera_velocity_m_s=(-SPEED_M_S, 0.0, 0.0)))
    plate = moving.objects[0]
    still_plate = dataclasses.replace(plate, location=plate.pose_at(TIMES_S[1])[0], velocity=(0.0, 0.0, 0.0))
    scene = dataclasses.replace(moving, objects=(still_plate,), frames=moving.frames[1:])
    image = render_scene(scene, threads=1).frames[0]
    rows, mean, variance = _row_moments(image)
    _, still_mean, still_variance = _row_moments(sharp.frames[1])
    length = math.sqrt(12 * (variance.mean() - still_variance.mean()))
    assert length == pytest.approx(SPEED_M_S * exposure_s * FX_PX / PLATE_Z_M, rel=0.03)  # as in the object's test
    assert mean.mean() == pytest.approx(still_mean.mean(), abs=0.1)


def test_a_viewers_keys_neither_blur_the_exposure_nor_are_lost(sharp, tmp_path):
    """The add-on keys the sequence on the timeline for scrubbing (constant keys) and renders in the
    same scene: the exposure sets those keys aside (its streak is the object's speed times the
    exposure) and puts them back after."""
    from generator.render.blender.build import _keys, build_scene, keyframe_sequence
    from generator.render.blender.render import render_views, run_to_end

    exposure_s = 0.1
    spec = _plate_scene(ShutterSpec(exposure_s))
    built = build_scene(spec, threads=1)
    keyframe_sequence(built, spec, 1)
    plate = built.objects["plate"]
    before = [(tuple(key.co), key.interpolation) for key in _keys(plate)]
    rendered = run_to_end(render_views(built, spec, tmp_path))
    assert [(tuple(key.co), key.interpolation) for key in _keys(plate)] == before
    rows, _, variance = _row_moments(rendered.frames[1])
    length = math.sqrt(12 * (variance.mean() - _row_moments(sharp.frames[1])[2].mean()))
    assert length == pytest.approx(SPEED_M_S * exposure_s * FX_PX / PLATE_Z_M, rel=0.03)


def test_rolling_readout_leans_a_moving_vertical_edge(sharp):
    """The rows start their exposure one after another from the top: a plate moving right is
    further right in lower rows, by speed x readout per image height, and the middle row sees
    it where the sharp frame does (the window is centred on the frame's time)."""
    from generator.render.blender.render import render_scene

    readout_s = 0.2
    rolled = render_scene(_plate_scene(ShutterSpec(0.01, readout_s)), threads=1)
    expected = SPEED_M_S * readout_s * FX_PX / PLATE_Z_M / H  # px per row, 0.78
    rows, mean, _ = _row_moments(rolled.frames[1])
    slope, centre = np.polyfit(rows + 0.5 - H / 2, mean, 1)
    print(f"\nlean {slope:.4f} px per row, expected {expected:.4f}; middle row at {centre:.3f} px")
    # The row means are good to ~0.05 px (64 samples of a 0.6 px blur); over 12 rows the slope is
    # good to ~0.01 px per row: 3 % of the expected lean.
    assert slope == pytest.approx(expected, rel=0.03)
    assert centre == pytest.approx(_row_moments(sharp.frames[1])[1].mean(), abs=0.1)
    global_rows, global_mean, _ = _row_moments(
        render_scene(_plate_scene(ShutterSpec(0.01)), threads=1).frames[1])
    assert abs(np.polyfit(global_rows, global_mean, 1)[0]) < 0.02  # a global shutter does not lean


def _render(recipe: str, out, workers: int, *overrides: str) -> dict[str, bytes]:
    args = ["render", "--recipe", recipe, "--out", str(out), "--workers", str(workers)]
    result = CliRunner().invoke(main, args + [a for o in overrides for a in ("--set", o)])
    assert result.exit_code == 0, result.output
    members = {}
    for shard in sorted(out.glob("*.tar")):
        with tarfile.open(shard) as tar:
            members.update({f"{shard.name}/{m.name}": tar.extractfile(m).read() for m in tar.getmembers()})
    return members


SMALL_DYNAMIC = ("count=2", "image.width=32", "image.height=32", "image.samples=4", "focus.ramps=1",
                 "focus.frames_per_ramp=3", "shards.max_samples=1", "shutter.exposure_s=[0.02, 0.04]",
                 "shutter.rolling_readout_s=[0.01, 0.03]")


def test_motion_blurred_samples_are_byte_identical_with_1_and_2_workers_and_keep_their_ground_truth(bpy, tmp_path):
    one = _render("dynamic", tmp_path / "one", 1, *SMALL_DYNAMIC)
    two = _render("dynamic", tmp_path / "two", 2, *SMALL_DYNAMIC)
    assert one.keys() == two.keys() and all(one[k] == two[k] for k in one)
    # Without the shutter: the same depth, motion vectors and AIF bytes (instants at the
    # exposure's centre), other frames (blurred), the same metadata but the shutter.
    plain = _render("dynamic", tmp_path / "plain", 1, *SMALL_DYNAMIC[:-2])
    assert one.keys() == plain.keys()
    truth = [k for k in one if k.endswith((".depth.exr", ".motion.exr", ".aif.png"))]
    frames = [k for k in one if k.endswith(".png") and ".f0" in k]
    assert len(truth) == 2 * (3 + 2 + 1) and len(frames) == 2 * 3
    assert all(one[k] == plain[k] for k in truth)
    assert sum(one[k] != plain[k] for k in frames) >= 4  # a still object, sharp in both, is rare
    for key in (k for k in one if k.endswith(".json")):
        meta, meta_plain = json.loads(one[key]), json.loads(plain[key])
        shutter = meta["scene"].pop("shutter")
        timing = {k: shutter[k] for k in ("exposure_s", "rolling_readout_s")}
        assert all(f.pop("shutter") == timing for f in meta["frames"])
        assert len(shutter["camera_velocity_m_s"]) == len(shutter["camera_turn_rad_s"]) == 3  # drift blurred too
        meta.pop("recipe"), meta_plain.pop("recipe")
        assert meta == meta_plain
