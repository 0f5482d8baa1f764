"""benchmarks/camera_realism.py's pieces at a tiny size, without Blender: the exposures it picks keep
the noise unclipped and give back the declared model; each cost variant keeps only its own step."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import numpy as np
import pytest

from generator.draw.scene import draw_scene
from generator.recipe.recipe import load_recipe
from generator.scene.sensor import photograph
from generator.scene.calibration import fit_noise, raw_noise_points


@pytest.fixture(scope="module")
def realism():
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
        return importlib.import_module("camera_realism")


@pytest.fixture(scope="module")
def recipe(realism):
    return load_recipe("small_obj", ["count=2", "image.width=32", "image.height=32", *realism.CAMERA])


@pytest.mark.parametrize("gain", [1e-3, 4e-3])
def test_the_exposures_chosen_keep_the_noise_unclipped_and_give_back_the_model(realism, recipe, gain):
    """A grey frame photographed at the chosen exposures (numpy only, as the encoder does): under 1 %
    of pixels clipped, and the weighted fit gives back the declared gain and read noise."""
    noise = recipe.sensor.noise
    read = float(np.exp(noise.read_slope * np.log(gain) + noise.read_intercept))
    sensor = dataclasses.replace(draw_scene(recipe, 0).sensor, shot_gain=gain, read_variance=read, vignetting=0.0)
    radiance = 0.5
    exposures = realism.unclipped_exposures(radiance, sensor, 6)
    assert len(exposures) == 6 and exposures[0] < exposures[-1]
    sensor = dataclasses.replace(sensor, exposure=exposures)
    grey = np.full((128, 128, 3), radiance, np.float32)
    frames = [photograph(grey, sensor, i, i) for i in range(len(exposures))]
    assert max(((f <= 0) | (f >= 1)).mean() for f in frames) < 0.01
    (measured_gain, measured_read), (gain_se, read_se) = fit_noise(
        *raw_noise_points(frames, [grey] * len(frames), sensor))
    assert measured_gain == pytest.approx(gain, rel=0.05) and gain_se < 0.05 * gain
    assert abs(measured_read - read) < max(4 * read_se, 0.1 * read)


def test_a_gain_whose_noise_spans_the_range_gets_no_exposure(realism, recipe):
    sensor = dataclasses.replace(draw_scene(recipe, 0).sensor, shot_gain=0.5, read_variance=0.05)
    assert realism.unclipped_exposures(0.5, sensor, 6) == ()


def test_each_cost_variant_keeps_only_its_own_steps(realism, recipe):
    spec = draw_scene(recipe, 0)
    assert realism.without(spec, "all") == spec
    clean = realism.without(spec, "clean")
    assert clean.lens.aperture is None and clean.sensor is None and clean.render.rgb == "png8"
    assert clean.render.jpeg_quality is None
    assert realism.without(spec, "blades") == dataclasses.replace(clean, lens=spec.lens)
    assert realism.without(spec, "sensor") == dataclasses.replace(clean, sensor=spec.sensor)
    assert realism.without(spec, "jpeg") == dataclasses.replace(clean, render=spec.render)
