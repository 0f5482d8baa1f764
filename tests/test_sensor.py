"""The camera's sensor and image pipeline (:mod:`generator.scene.sensor`, recipe section ``sensor``):
noise statistics against the declared model, the pipeline's inverse, determinism, metadata,
JPEG frames and clean frames; with Blender, the noise measured on a render of a flat grey
surface and byte-identical samples with 1 and 2 workers."""

from __future__ import annotations

import dataclasses
import io
import math
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from fakes import FakeRendered, dir_bytes, make_spec, tiny_recipe, write_tiny_recipe
from PIL import Image

from generator.core.precision import float32
from generator.dataset.encoder import Encoder
from generator.dataset.pixels import decode_rgb, encode_rgb
from generator.dataset.sample import decode_sample, encode_sample
from generator.draw.scene import draw_scene
from generator.scene.sensor import (
    SensorSpec,
    add_noise,
    crosstalk_matrix,
    develop,
    from_raw,
    inverse_tone_curve,
    photograph,
    to_raw,
    tone_curve,
    undevelop,
)
from generator.scene.spec import SceneSpec
from generator.scene.calibration import fit_noise, grey_plane, raw_noise_points

#: Declared noise of the tests: shot-noise gain and read-noise variance (raw units, white level 1).
SHOT, READ = 4e-3, 8e-4
#: The recipe overrides that declare exactly that noise: read = exp(1 * log(SHOT) + log(READ / SHOT)).
NOISE = ("sensor.noise.shot_gain=0.004", "sensor.noise.read_slope=1",
         f"sensor.noise.read_intercept={math.log(READ / SHOT)!r}", "sensor.noise.read_sigma=0")
#: A camera whose every step does something.
CAMERA = SensorSpec(exposure=(0.8, 1.1, 0.9, 1.3), vignetting=0.3, shot_gain=SHOT, read_variance=READ, noise_seed=7,
                    white_balance=(2.1, 1.0, 1.7), colour_matrix=crosstalk_matrix(0.8), tone=0.6)


def test_noise_variance_against_mean_gives_back_the_declared_model():
    """Constant raw images at several levels: the measured variance against the mean is the declared line."""
    rng = np.random.default_rng(0)
    levels = np.array([0.15, 0.3, 0.45, 0.6, 0.75])  # 4 standard deviations from clipping at 0 and 1
    noisy = [add_noise(np.full((256, 256), level), SHOT, READ, rng) for level in levels]
    (gain, read), _ = fit_noise(np.array([n.mean() for n in noisy]), np.array([n.var() for n in noisy]))
    print(f"\ndeclared gain {SHOT:.3g} read {READ:.3g}; measured gain {gain:.4g} read {read:.4g}")
    assert gain == pytest.approx(SHOT, rel=0.1) and read == pytest.approx(READ, rel=0.1)


def test_noise_through_the_whole_pipeline_gives_back_the_declared_model():
    """A flat grey surface at four exposures through :func:`photograph` (white balance, colour matrix
    and tone curve too): undone to raw, each channel's noise is the declared model's."""
    # raw red (grey / 2.1) at least 3 standard deviations above 0, processed values as far below 1
    sensor = dataclasses.replace(CAMERA, exposure=(0.8, 1.2, 1.6, 2.0), vignetting=0.0)
    grey = np.full((128, 128, 3), 0.3, np.float32)
    frames = [photograph(grey, sensor, i, i) for i in range(4)]
    (gain, read), _ = fit_noise(*raw_noise_points(frames, [grey] * 4, sensor))
    print(f"\ndeclared gain {SHOT:.3g} read {READ:.3g}; measured gain {gain:.4g} read {read:.4g}")
    assert gain == pytest.approx(SHOT, rel=0.1) and read == pytest.approx(READ, rel=0.1)


def test_every_deterministic_step_is_undone_by_its_inverse():
    radiance = np.random.default_rng(1).uniform(0.05, 0.6, (24, 32, 3))
    for i in range(len(CAMERA.exposure)):
        raw = to_raw(radiance, CAMERA, i)
        np.testing.assert_allclose(from_raw(raw, CAMERA, i), radiance, rtol=1e-12)
        np.testing.assert_allclose(undevelop(develop(raw, CAMERA), CAMERA), raw, atol=1e-9)
    x = np.linspace(0, 1, 101)
    np.testing.assert_allclose(inverse_tone_curve(tone_curve(x, 0.6), 0.6), x, atol=1e-10)
    # noiseless, white balance and colour matrix cancel: the photo is the exposed, vignetted radiance, toned
    photo = photograph(radiance, CAMERA, 1, None)
    np.testing.assert_allclose(from_raw(undevelop(photo, CAMERA), CAMERA, 1), radiance, rtol=1e-5)
    assert not np.allclose(photo, radiance, atol=0.01)  # the pipeline did change the pixels


def fake_rendered(spec: SceneSpec) -> FakeRendered:
    """One render per view, as Cycles gives a static scene's repeated ramps: frames 0 and 2 share an array."""
    rng = np.random.default_rng(spec.seed)
    h, w = spec.render.height, spec.render.width
    views = [rng.uniform(0.05, 0.7, (h, w, 3)).astype(np.float32) for _ in range(2)]
    depth = [np.full((h, w), 1.5, np.float32) for _ in range(len(spec.frames) if spec.depth_per_frame else 1)]
    aif = rng.uniform(0.05, 0.7, (h, w, 3)).astype(np.float32) if spec.render.aif else None
    return FakeRendered([views[0], views[1], views[0], views[1]], depth, aif)


def sensor_spec(rgb: str = "png16", clean: bool = True, **camera) -> SceneSpec:
    spec = make_spec(model="blender", rgb=rgb, aif=True)
    return dataclasses.replace(spec, render=dataclasses.replace(spec.render, jpeg_quality=90 if rgb == "jpeg" else None),
                               sensor=dataclasses.replace(CAMERA, clean=clean, **camera))


@pytest.mark.parametrize("rgb", ["png16", "jpeg"])
def test_samples_round_trip_and_do_not_depend_on_the_encoding_thread(rgb):
    """The same bytes whether the encoder runs on a thread (fed as the renderer feeds it) or not;
    frames that share a render get their own noise; metadata, clean and JPEG frames read back."""
    spec, recipe = sensor_spec(rgb), tiny_recipe()
    rendered = fake_rendered(spec)
    here = encode_sample(spec, rendered, recipe)
    with Encoder(spec, background=True) as encoder:
        encoder.depth_pass(rendered.depth, None)
        encoder.image(rendered.aif, ())
        encoder.image(rendered.frames[0], [0, 2])
        encoder.image(rendered.frames[1], [1, 3])
        threaded = encode_sample(spec, rendered, recipe, encoder)
    assert here == threaded
    ext = {"png16": "png", "jpeg": "jpg"}[rgb]
    assert {f"f00{i}.{ext}" for i in range(4)} | {f"f00{i}.clean.exr" for i in range(4)} | {f"aif.{ext}"} <= set(here)
    decoded = decode_sample(here)
    assert SceneSpec.from_dict(decoded.meta["scene"]) == float32(spec)  # the metadata's precision (core/precision.py)
    assert SensorSpec(**{k: _tuples(v) for k, v in decoded.meta["sensor"].items()}) == float32(spec.sensor)
    assert decoded.meta["image"].get("jpeg_quality") == spec.render.jpeg_quality
    for clean, radiance in zip(decoded.clean, rendered.frames):
        np.testing.assert_array_equal(clean, radiance)
    # frames 0 and 2 are one render, each with its own noise and exposure
    assert here["f000.clean.exr"] == here["f002.clean.exr"] and here[f"f000.{ext}"] != here[f"f002.{ext}"]


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def test_a_noiseless_pipeline_is_redone_from_the_clean_frames_byte_for_byte():
    """Without noise the stored frame is a pure function of its clean frame and the metadata."""
    spec = sensor_spec(shot_gain=0.0, read_variance=0.0)
    sample = encode_sample(spec, fake_rendered(spec), tiny_recipe())
    decoded = decode_sample(sample)
    sensor = SensorSpec(**{k: _tuples(v) for k, v in decoded.meta["sensor"].items()})
    for i, clean in enumerate(decoded.clean):
        assert encode_rgb(photograph(clean, sensor, i, i), "png16")[1] == sample[f"f00{i}.png"]


def test_the_training_loader_reads_noisy_jpeg_frames(tmp_path, torch):
    """dfd_models' loader reads ``fNNN.jpg`` frames (and leaves the clean members aside)."""
    import dfd_models.data as data
    from generator.dataset.shards import DatasetDir

    recipe = tiny_recipe("count=2", "shards.max_samples=2")
    dataset = DatasetDir(tmp_path / "ds", recipe, max_samples=2)
    for index in range(2):
        spec = dataclasses.replace(sensor_spec("jpeg"), index=index)
        dataset.add(index, spec.split, encode_sample(spec, fake_rendered(spec), recipe))
    dataset.finish()
    section = data.DataSection(shards=tmp_path / "ds", split=None, batch_size=2, crop=[16, 16], workers=0, shuffle=0)
    (batch,) = list(data.make_loader(section))
    assert batch["frames"].shape == (2, 2, 3, 16, 16) and batch["aif"].shape == (2, 3, 16, 16)
    assert torch.isfinite(batch["frames"]).all() and batch["frames"].std() > 0


def test_jpeg_bytes_are_fixed_and_carry_no_exif():
    v, u = np.mgrid[0:16, 0:24]
    rgb = np.repeat(((u + v) / 40)[..., None], 3, axis=-1).astype(np.float32)  # smooth grey: JPEG keeps it
    ext, data = encode_rgb(rgb, "jpeg", 85)
    assert ext == "jpg" and encode_rgb(rgb.copy(), "jpeg", 85)[1] == data and b"Exif" not in data
    assert encode_rgb(rgb, "jpeg", 60)[1] != data
    with Image.open(io.BytesIO(data)) as image:
        assert not image.getexif() and image.size == (24, 16)
    assert np.abs(decode_rgb(data, "jpg") - rgb).mean() < 0.02


def test_the_sensor_is_drawn_from_its_own_stream_and_changes_nothing_else():
    plain = tiny_recipe()
    camera = tiny_recipe(*NOISE, "sensor.exposure.drift_ev=0.2", "sensor.tone=[0, 1]", "outputs.rgb=jpeg",
                         "outputs.jpeg_quality=[70, 95]", "outputs.clean=true")
    assert "sensor" not in plain.to_dict() and "jpeg_quality" not in plain.to_dict()["outputs"]
    for index in range(3):
        before, after = draw_scene(plain, index), draw_scene(camera, index)
        assert "sensor" not in before.to_dict() and "jpeg_quality" not in before.to_dict()["render"]
        assert dataclasses.replace(after, sensor=None, render=before.render) == before
        assert after == draw_scene(camera, index)
        sensor = after.sensor
        assert sensor.shot_gain == pytest.approx(SHOT) and sensor.read_variance == pytest.approx(READ)
        assert len(sensor.exposure) == len(after.frames) and sensor.exposure[0] == 1.0 and sensor.clean
        assert len(set(sensor.exposure)) == len(after.frames)  # the drift moved every frame
        assert 70 <= after.render.jpeg_quality <= 95
    assert len({draw_scene(camera, i).sensor.noise_seed for i in range(3)}) == 3


def test_the_log_linear_read_noise_follows_brooks_et_al():
    recipe = tiny_recipe("sensor.noise.read_sigma=0")
    for index in range(4):
        sensor = draw_scene(recipe, index).sensor
        assert 1e-4 <= sensor.shot_gain <= 0.012
        assert math.log(sensor.read_variance) == pytest.approx(2.18 * math.log(sensor.shot_gain) + 1.2)


BAD = {
    "shot gain above 1": ("sensor.noise.shot_gain=2", "sensor.noise.shot_gain"),
    "negative shot gain": ("sensor.noise.shot_gain=[-1, 0.01]", "sensor.noise.shot_gain[0]"),
    "read sigma": ("sensor.noise.read_sigma=-0.1", "sensor.noise.read_sigma"),
    "exposure": ("sensor.exposure.ev=40", "sensor.exposure.ev"),
    "drift": ("sensor.exposure.drift_ev=-1", "sensor.exposure.drift_ev"),
    "white balance": ("sensor.white_balance.red=0", "sensor.white_balance.red"),
    "tone": ("sensor.tone=1.5", "sensor.tone"),
    "vignetting": ("sensor.vignetting=1", "sensor.vignetting"),
    "crosstalk": ("sensor.crosstalk=[2, 1]", "sensor.crosstalk"),
    "jpeg quality": ("outputs.jpeg_quality=100", "outputs.jpeg_quality"),
    "jpeg quality without jpeg": ("outputs.jpeg_quality=90", "outputs.jpeg_quality"),
    "clean without a sensor": ("outputs.clean=true", "outputs.clean"),
    "unknown sensor key": ("sensor.iso=100", "sensor.iso"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_sensor_values_exit_2_naming_the_field_before_anything_is_rendered(tmp_path, case):
    override, field = BAD[case]
    recipe, out = write_tiny_recipe(tmp_path / "tiny.yaml"), tmp_path / "out"
    from generator.cli import main

    result = CliRunner().invoke(main, ["render", "--recipe", str(recipe), "--out", str(out), "--set", override])
    assert result.exit_code == 2, result.output
    assert f"'{field}'" in result.output and not out.exists()


# With Blender


def test_rendered_flat_grey_surface_gives_back_the_declared_noise(bpy):
    """A diffuse grey plane filling the view, lit by a sun along the view axis, at four exposures
    (one render, four frames), through the render task and the sample codec: each frame undone
    to raw with its metadata, against its clean frame, gives back the declared gain and read noise."""
    from generator.render.tasks import render_sample

    spec = dataclasses.replace(grey_plane(64, 4), sensor=dataclasses.replace(
        CAMERA, exposure=(0.5, 0.75, 1.0, 1.25), vignetting=0.0, clean=True))
    sample, _ = render_sample(spec, SimpleNamespace(name="grey", sha256="0" * 64, seed=0), threads=1)
    decoded = decode_sample(sample)
    sensor = SensorSpec(**{k: _tuples(v) for k, v in decoded.meta["sensor"].items()})
    clean = decoded.clean[0]
    print(f"\nclean radiance {clean.mean():.4f} (spread {clean.std() / clean.mean():.2%})")
    means, variances = raw_noise_points(decoded.frames, decoded.clean, sensor)
    (gain, read), _ = fit_noise(means, variances)
    print(f"raw means {np.round(means, 3)}\ndeclared gain {SHOT:.3g} read {READ:.3g}; "
          f"measured gain {gain:.4g} ({gain / SHOT - 1:+.1%}) read {read:.4g} ({read / READ - 1:+.1%})")
    assert gain == pytest.approx(SHOT, rel=0.1) and read == pytest.approx(READ, rel=0.1)


def test_noisy_jpeg_samples_are_byte_identical_with_one_and_two_workers(bpy, tmp_path):
    from generator.cli import main

    recipe = write_tiny_recipe(tmp_path / "camera.yaml", {
        "count": 2, "sensor": {"noise": {"shot_gain": [1e-3, 1e-2]}, "exposure": {"drift_ev": 0.1},
                               "tone": [0.2, 0.8], "vignetting": 0.3},
        "outputs.rgb": "jpeg", "outputs.jpeg_quality": [80, 95], "outputs.aif": True})
    runs = {}
    for workers in ("1", "2"):
        out = tmp_path / workers
        result = CliRunner().invoke(main, ["render", "--recipe", str(recipe), "--out", str(out),
                                           "--workers", workers, "--threads", "1"])
        assert result.exit_code == 0, result.output
        runs[workers] = dir_bytes(out)
    assert runs["1"] == runs["2"]
    import webdataset as wds

    urls = sorted(str(p) for p in (tmp_path / "1").glob("*.tar"))
    for sample in wds.WebDataset(urls, shardshuffle=False):
        assert "f000.jpg" in sample and "aif.jpg" in sample
        decoded = decode_sample(sample)
        assert decoded.meta["sensor"]["shot_gain"] > 0 and decoded.frames[0].shape == (32, 32, 3)
