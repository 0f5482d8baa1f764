"""The precision of the numbers dfdgen draws and writes: float32, Blender's.

Blender holds every number of a scene as a float32. A drawn scene spec (:func:`generator.draw.scene.draw_scene`)
and a sample's metadata (:func:`generator.dataset.format.metadata_json`) keep each float as the
shortest decimal that reads back as the same float32, so they say no more than the render saw, and
their bytes do not follow the CPU: numpy 1.26's float64 ``exp``, ``sin`` and ``cos`` (the lights'
Planck sums, rotations) differ in the last bit between its AVX-512 code and libm (docs/NOTES.md,
2026-12-08), while a float64 lies within an ulp of a float32 rounding midpoint about once in 10^8.
Pure Python and numpy.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TypeVar

import numpy as np

T = TypeVar("T")
#: float32's largest finite value.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def float32(value: T) -> T:
    """``value`` with every float, however deep in dataclasses, dicts, lists and tuples, replaced by the
    shortest decimal that reads back as the same float32.

    Raises:
        ValueError: a finite float beyond float32's largest (3.4e38).
    """
    if isinstance(value, float):
        if math.isfinite(value) and abs(value) > FLOAT32_MAX:
            raise ValueError(f"{value!r} is beyond float32's range")
        return float(str(np.float32(value)))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: float32(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
        return dataclasses.replace(value, **changes)
    if isinstance(value, dict):
        return {k: float32(v) for k, v in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a NamedTuple
        return type(value)(*(float32(v) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(float32(v) for v in value)
    return value
