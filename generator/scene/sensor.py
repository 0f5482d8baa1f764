"""The camera's sensor and image pipeline: per-scene parameters and small pure numpy steps.

A frame leaves Cycles as scene-linear RGB (linear sRGB primaries). A camera turns it into a
photo (Brooks et al., "Unprocessing Images for Learned Raw Denoising", CVPR 2019):

1. optics: :func:`radial_gain` (vignetting) and the exposure (one per sequence, times a
   per-frame auto-exposure drift): the light on the sensor;
2. :func:`to_raw`: into the sensor's own colour, before white balance (the inverse of the
   colour matrix, then the inverse white-balance gains), white level 1;
3. :func:`add_noise`: heteroscedastic Poisson-Gaussian noise, variance
   ``shot_gain * signal + read_variance`` (raw units), then the ADC's range [0, 1];
4. :func:`develop`: white-balance gains, the colour matrix, clipping to [0, 1], the tone curve
   (:func:`tone_curve`): display-linear RGB, which the sample's encoding (sRGB OETF, 8/16-bit
   PNG or JPEG) stores as it stores any frame.

On a noiseless frame the white balance and the colour matrix cancel (the render is taken as
the camera's own, correctly balanced, colour), so they shape only the noise: red and blue are
amplified by their gains and the channels' noise mixes through the matrix, as in a camera.

Every step but the noise and the clipping has an exact inverse here (:func:`from_raw`,
:func:`undevelop`, :func:`inverse_tone_curve`), and every parameter is a field of
:class:`SensorSpec`, which the sample's metadata holds: anyone can undo or redo the pipeline.
The scene spec holds the parameters (pure data); the sample encoder applies them
(:mod:`generator.dataset.encoder`). This module sits in the scene stage so that both the spec
and the encoder stage reach it (tests/test_layering.py). numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Vec3 = tuple[float, float, float]


@dataclass(frozen=True, kw_only=True)
class SensorSpec:
    """One scene's camera: what its sensor and image pipeline do to every frame.

    Attributes:
        exposure: per frame of ``SceneSpec.frames`` (in order), the linear gain from scene
            radiance to the sensor's signal (white level 1): 2**EV of the sequence's exposure
            times the frame's auto-exposure drift.
        vignetting: light lost in the image corners (0 = none): the radial gain
            1 - vignetting * rho**2 (:func:`radial_gain`).
        shot_gain: shot-noise variance per unit of signal (raw units, white level 1); 0 = none.
        read_variance: read-noise variance (raw units squared); 0 = none.
        noise_seed: entropy of the noise: frame ``index`` draws from
            ``SeedSequence(noise_seed, spawn_key=(index,))`` (:func:`noise_rng`).
        white_balance: the camera's white-balance gains (R, G, B), G = 1.
        colour_matrix: 3x3 rows, the camera's colour matrix from white-balanced sensor RGB to
            linear sRGB; rows sum to 1, so grey stays grey.
        tone: strength in [0, 1] of the S-shaped tone curve (:func:`tone_curve`; 0 = none).
        clean: also store each frame's clean radiance (before every step here) as
            ``fNNN.clean.exr``.
    """

    exposure: tuple[float, ...]
    vignetting: float = 0.0
    shot_gain: float = 0.0
    read_variance: float = 0.0
    noise_seed: int = 0
    white_balance: Vec3 = (1.0, 1.0, 1.0)
    colour_matrix: tuple[Vec3, Vec3, Vec3] = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    tone: float = 0.0
    clean: bool = False


def crosstalk_matrix(crosstalk: float) -> tuple[Vec3, Vec3, Vec3]:
    """The colour matrix (1 + c) I - c/3 J (J: all ones) that undoes a sensor's colour crosstalk c.

    Its rows sum to 1 (grey stays grey); c = 1 gives a diagonal of 1.67 and off-diagonal -0.33,
    about what cameras' sensor-to-sRGB matrices hold.
    """
    m = (1.0 + crosstalk) * np.eye(3) - crosstalk / 3.0 * np.ones((3, 3))
    return tuple(tuple(float(v) for v in row) for row in m)


def radial_gain(height: int, width: int, vignetting: float) -> np.ndarray:
    """[H, W] vignetting gain 1 - vignetting * rho**2, rho = a pixel centre's distance from the
    image centre over the half diagonal (1 in the corners)."""
    v = (np.arange(height) + 0.5 - height / 2)[:, None]
    u = (np.arange(width) + 0.5 - width / 2)[None, :]
    rho2 = (u * u + v * v) / ((width / 2) ** 2 + (height / 2) ** 2)
    return 1.0 - vignetting * rho2


def to_raw(radiance: np.ndarray, sensor: SensorSpec, i: int) -> np.ndarray:
    """Frame ``i``'s noiseless raw signal [H, W, 3] float64 from its radiance [H, W, 3]
    (linear sRGB): vignetting, exposure, then the sensor's colour (inverse colour matrix,
    inverse white-balance gains)."""
    h, w, _ = radiance.shape
    light = np.asarray(radiance, np.float64) * (radial_gain(h, w, sensor.vignetting) * sensor.exposure[i])[..., None]
    return light @ np.linalg.inv(np.asarray(sensor.colour_matrix)).T / np.asarray(sensor.white_balance)


def from_raw(raw: np.ndarray, sensor: SensorSpec, i: int) -> np.ndarray:
    """Inverse of :func:`to_raw`: frame ``i``'s radiance [H, W, 3] float64 from its raw signal."""
    h, w, _ = raw.shape
    light = np.asarray(raw, np.float64) * np.asarray(sensor.white_balance) @ np.asarray(sensor.colour_matrix).T
    return light / (radial_gain(h, w, sensor.vignetting) * sensor.exposure[i])[..., None]


def noise_rng(sensor: SensorSpec, index: int) -> np.random.Generator:
    """The noise stream of frame ``index`` (``FrameSpec.index``): its own, so no two frames share noise."""
    return np.random.default_rng(np.random.SeedSequence(sensor.noise_seed, spawn_key=(index,)))


def add_noise(raw: np.ndarray, shot_gain: float, read_variance: float, rng: np.random.Generator) -> np.ndarray:
    """``raw`` (white level 1) with Poisson-Gaussian noise, clipped to the ADC's range [0, 1].

    Shot noise: shot_gain * Poisson(signal / shot_gain) (shot_gain is the signal of one photo-
    electron, so the variance is shot_gain * signal); read noise: Normal(0, read_variance). Their
    sum has variance shot_gain * signal + read_variance (Brooks et al. 2019, eq. 2) before
    clipping. The signal is ``raw`` clipped to [0, 1]: a photosite holds no more charge than its
    full well, here the white level (which also keeps the Poisson rate below 1 / shot_gain).
    """
    signal = np.clip(raw, 0.0, 1.0)
    noisy = rng.poisson(signal / shot_gain) * shot_gain if shot_gain > 0 else signal
    if read_variance > 0:
        noisy = noisy + rng.normal(0.0, math.sqrt(read_variance), raw.shape)
    return np.clip(noisy, 0.0, 1.0)


def tone_curve(x: np.ndarray, tone: float) -> np.ndarray:
    """S-shaped tone curve on [0, 1]: (1 - tone) x + tone (3x^2 - 2x^3), Brooks et al.'s smoothstep
    at tone = 1; monotone for tone in [0, 1], fixing 0, 1/2 and 1."""
    return (1.0 - tone) * x + tone * x * x * (3.0 - 2.0 * x)


def inverse_tone_curve(y: np.ndarray, tone: float) -> np.ndarray:
    """Inverse of :func:`tone_curve` on [0, 1], by bisection (float64 to about 1e-12)."""
    y = np.asarray(y, np.float64)
    low, high = np.zeros_like(y), np.ones_like(y)
    for _ in range(40):
        mid = (low + high) / 2
        below = tone_curve(mid, tone) < y
        low, high = np.where(below, mid, low), np.where(below, high, mid)
    return (low + high) / 2


def develop(raw: np.ndarray, sensor: SensorSpec) -> np.ndarray:
    """The image processor: white balance, colour matrix, clipping to [0, 1], tone curve.
    Returns display-linear RGB [H, W, 3] float64 (what the sRGB encoding then stores)."""
    balanced = np.asarray(raw, np.float64) * np.asarray(sensor.white_balance)
    return tone_curve(np.clip(balanced @ np.asarray(sensor.colour_matrix).T, 0.0, 1.0), sensor.tone)


def undevelop(display: np.ndarray, sensor: SensorSpec) -> np.ndarray:
    """Inverse of :func:`develop` where it did not clip: the raw signal [H, W, 3] float64."""
    balanced = inverse_tone_curve(display, sensor.tone) @ np.linalg.inv(np.asarray(sensor.colour_matrix)).T
    return balanced / np.asarray(sensor.white_balance)


def photograph(radiance: np.ndarray, sensor: SensorSpec, i: int, index: int | None) -> np.ndarray:
    """Frame ``i`` (position in ``SceneSpec.frames``, of ``FrameSpec.index`` ``index``) as the camera
    records it: display-linear RGB [H, W, 3] float32 from its radiance [H, W, 3]. ``index`` None:
    no noise (the all-in-focus image, a reference no camera takes)."""
    raw = to_raw(radiance, sensor, i)
    if index is not None and (sensor.shot_gain > 0 or sensor.read_variance > 0):
        raw = add_noise(raw, sensor.shot_gain, sensor.read_variance, noise_rng(sensor, index))
    return develop(raw, sensor).astype(np.float32)
