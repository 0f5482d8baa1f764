"""The camera of a drawn scene (a recipe's ``sensor`` section and JPEG quality): its noise and
image-pipeline parameters (:class:`generator.scene.sensor.SensorSpec`).

Drawn from a stream of its own (a child of the scene's SeedSequence), so adding a sensor or JPEG
to a recipe changes nothing else of its scenes: the same objects, lights, focus and motion.
"""

from __future__ import annotations

import math

import numpy as np

from generator.draw.ranges import integer, uniform
from generator.recipe.recipe import IntRange, Recipe, SensorRecipe
from generator.scene.sensor import SensorSpec, crosstalk_matrix

#: Pillow's JPEG quality when a recipe with ``outputs.rgb: jpeg`` gives no ``outputs.jpeg_quality``.
DEFAULT_JPEG_QUALITY = IntRange(90, 90)


def draw_sensor(rng: np.random.Generator, sensor: SensorRecipe, frames: int, clean: bool = False) -> SensorSpec:
    """A camera for a sequence of ``frames`` frames from the ``sensor`` section's ranges; ``clean``:
    it keeps the clean frames too (``outputs.clean``).

    Exposure: 2**EV per frame, EV a random walk from the drawn ``exposure.ev`` with steps of
    standard deviation ``exposure.drift_ev``. Noise: the shot gain log-uniform in its range, the
    read variance from it by the log-linear relation (Brooks et al. 2019).
    """
    steps = rng.normal(0.0, sensor.exposure.drift_ev, frames - 1)
    ev = uniform(rng, sensor.exposure.ev) + np.concatenate([[0.0], np.cumsum(steps)])
    shot = read = 0.0
    if sensor.noise is not None:
        noise = sensor.noise
        shot = math.exp(rng.uniform(math.log(noise.shot_gain.min), math.log(noise.shot_gain.max)))
        read = math.exp(noise.read_slope * math.log(shot) + noise.read_intercept + rng.normal(0.0, noise.read_sigma))
    return SensorSpec(
        exposure=tuple(float(2.0**e) for e in ev),
        vignetting=uniform(rng, sensor.vignetting),
        shot_gain=shot,
        read_variance=read,
        noise_seed=int(rng.integers(2**63)),
        white_balance=(uniform(rng, sensor.white_balance.red), 1.0, uniform(rng, sensor.white_balance.blue)),
        colour_matrix=crosstalk_matrix(uniform(rng, sensor.crosstalk)),
        tone=uniform(rng, sensor.tone),
        clean=clean,
    )


def draw_camera(rng: np.random.Generator, recipe: Recipe, frames: int) -> tuple[SensorSpec | None, int | None]:
    """(the scene's :class:`SensorSpec` or None, its JPEG quality or None), in that order from ``rng``."""
    sensor = None if recipe.sensor is None else draw_sensor(rng, recipe.sensor, frames, bool(recipe.outputs.clean))
    quality = None
    if recipe.outputs.rgb == "jpeg":
        quality = integer(rng, recipe.outputs.jpeg_quality or DEFAULT_JPEG_QUALITY)
    return sensor, quality
