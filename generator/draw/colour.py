"""Colours a scene draws: near-white tints, contrasty colour ramps and black-body light colours.

All linear sRGB. The black body is Planck's law integrated against the CIE 1931 colour matching
functions, so a light's colour follows from its temperature in kelvin, as Cycles' own node does.
"""

from __future__ import annotations

import colorsys

import numpy as np

from generator.scene.spec import Vec3


def tint(rng: np.random.Generator, value: float) -> Vec3:
    """A near-white linear RGB colour (each channel 80-100 %) times ``value``."""
    return tuple(float(value * c) for c in 1.0 - rng.uniform(0.0, 0.2, 3))


def colour_ramp(rng: np.random.Generator, stops: int) -> tuple[tuple[float, float, float, float], ...]:
    """A random colour ramp: ``stops`` (position, r, g, b) stops from 0 to 1, alternately bright
    and dark (which comes first is random) so the pattern has contrast; linear RGB."""
    first_bright = rng.random() < 0.5
    positions = [0.0, *np.sort(rng.random(stops - 2)).tolist(), 1.0]
    ramp = []
    for i, position in enumerate(positions):
        value = rng.uniform(0.6, 1.0) if (i % 2 == 0) == first_bright else rng.uniform(0.02, 0.3)
        ramp.append((float(position), *map(float, colorsys.hsv_to_rgb(rng.random(), rng.random(), value))))
    return tuple(ramp)


# Multi-lobe Gaussian fit of the CIE 1931 2-degree colour matching functions (Wyman,
# Sloan and Shirley, JCGT 2013): per function, lobes of (weight, mean nm, sigma below, sigma above).
_CMF_LOBES = (
    ((1.056, 599.8, 37.9, 31.0), (0.362, 442.0, 16.0, 26.7), (-0.065, 501.1, 20.4, 26.2)),
    ((0.821, 568.8, 46.9, 40.5), (0.286, 530.9, 16.3, 31.1)),
    ((1.217, 437.0, 11.8, 36.0), (0.681, 459.0, 26.0, 13.8)),
)
# CIE XYZ -> linear sRGB (D65), IEC 61966-2-1.
_XYZ_TO_SRGB = np.array([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]])


def blackbody_rgb(kelvin: float) -> Vec3:
    """Linear sRGB colour of a black body at ``kelvin``, brightest channel 1.

    Planck's law integrated against the CIE colour matching functions over
    380-780 nm, converted from XYZ to linear sRGB; out-of-gamut negatives clipped.
    """
    nm = np.arange(380.0, 781.0, 5.0)
    radiance = 1.0 / (nm**5 * np.expm1(1.4387769e7 / (nm * kelvin)))  # c2 = hc/k in nm K
    xyz = []
    for lobes in _CMF_LOBES:
        cmf = sum(w * np.exp(-0.5 * ((nm - mu) / np.where(nm < mu, lo, hi)) ** 2) for w, mu, lo, hi in lobes)
        xyz.append((cmf * radiance).sum())
    rgb = np.clip(_XYZ_TO_SRGB @ np.array(xyz), 0.0, None)
    return tuple(float(c) for c in rgb / rgb.max())
