"""Focus ramps: the increasing focus distances of one ramp (DESIGN.md section 4).

A ramp is M frames focused from near to far, never the other way within one
ramp. Distances are planar focus distances F in metres.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Focus schedules a recipe may name (``focus.schedule``).
SCHEDULES = ("diopter", "linear", "list", "random")


def focus_ramp(
    schedule: str,
    frames: int,
    near_m: float | None = None,
    far_m: float | None = None,
    distances_m: Sequence[float] | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Focus distances of one ramp, metres, increasing, shape [frames].

    Schedules:
        ``diopter``: uniform in 1/F from ``near_m`` to ``far_m``, both included. The
            default, because the blur-disc diameter is linear in 1/F, so equal
            diopter steps give equal CoC steps.
        ``linear``: uniform in F from ``near_m`` to ``far_m``, both included.
        ``list``: exactly ``distances_m`` (must hold ``frames`` increasing values).
        ``random``: ``frames`` uniform draws from [``near_m``, ``far_m``] with ``rng``, sorted.

    Raises:
        ValueError: unknown schedule, or arguments the schedule needs are missing
            or inconsistent (recipes are validated before they get here).
    """
    if frames < 1:
        raise ValueError(f"a ramp needs at least one frame, got {frames}")
    if schedule == "list":
        if distances_m is None or len(distances_m) != frames:
            raise ValueError(f"schedule 'list' needs {frames} distances, got {distances_m!r}")
        out = np.asarray(distances_m, dtype=np.float64)
        if np.any(np.diff(out) <= 0):
            raise ValueError(f"focus distances must increase, got {distances_m!r}")
        return out
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown focus schedule {schedule!r}; expected one of {SCHEDULES}")
    if near_m is None or far_m is None or not 0 < near_m <= far_m:
        raise ValueError(f"schedule {schedule!r} needs 0 < near_m <= far_m, got {near_m!r}, {far_m!r}")
    if schedule == "diopter":
        out = 1.0 / np.linspace(1.0 / near_m, 1.0 / far_m, frames)
    elif schedule == "linear":
        out = np.linspace(near_m, far_m, frames)
    else:
        if rng is None:
            raise ValueError("schedule 'random' needs an explicit np.random.Generator")
        return np.sort(rng.uniform(near_m, far_m, frames))
    # Pin the ends: 1 / (1 / x) is not always x in floating point.
    out[0] = near_m
    if frames > 1:
        out[-1] = far_m
    return out
