"""How linear values become display pixels: the sRGB transfer function and the depth colour map.

Shared by the sample codecs, ``dfdgen inspect``, ``dfdgen predict`` and the trainer's
TensorBoard images, so every picture of a depth map uses one scale. numpy only.
"""

from __future__ import annotations

import numpy as np

#: Viridis at 6 stops (sRGB): perceptually ordered, readable by colour-blind people.
_VIRIDIS = np.array(
    [[68, 1, 84], [65, 68, 135], [42, 120, 142], [34, 168, 132], [122, 209, 81], [253, 231, 37]],
    dtype=np.float64,
)


def linear_to_srgb(rgb: np.ndarray) -> np.ndarray:
    """sRGB OETF (IEC 61966-2-1) of linear values, clipped to [0, 1]."""
    x = np.clip(np.asarray(rgb, dtype=np.float64), 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055)


def srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
    """Inverse sRGB OETF, for values in [0, 1]."""
    x = np.asarray(srgb, dtype=np.float64)
    return np.where(x <= 0.04045, x / 12.92, np.power((x + 0.055) / 1.055, 2.4))


def colorize(values: np.ndarray, vmin: float, vmax: float, invalid: np.ndarray | None = None) -> np.ndarray:
    """[H, W] scalars -> [H, W, 3] uint8 viridis image; ``invalid`` pixels are black."""
    t = np.clip((values - vmin) / max(vmax - vmin, 1e-12), 0.0, 1.0) * (len(_VIRIDIS) - 1)
    lo = np.minimum(np.floor(t).astype(int), len(_VIRIDIS) - 2)
    w = (t - lo)[..., None]
    rgb = _VIRIDIS[lo] * (1 - w) + _VIRIDIS[lo + 1] * w
    if invalid is not None:
        rgb[invalid] = 0
    return rgb.astype(np.uint8)
