"""The lens of a stack, value by value: a command-line option, else the camera file, else the
frames' EXIF, else the checkpoint's training data where that had one value (``dfdgen predict``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from generator.core.errors import brief, printable
from generator.core.lens import Lens
from dfd_models.predict.images import exif_lens
from dfd_models.predict.inputs import Stack, positive

__all__ = ["LENS_VALUES", "missing_message", "resolve_lens", "stack_exif"]

#: (key, what, command-line option, EXIF source) of each lens value, millimetres or plain.
LENS_VALUES = (
    ("focal_length_mm", "focal length", "--lens-focal-length-mm", "EXIF FocalLength"),
    ("f_number", "f-number", "--f-number", "EXIF FNumber"),
    ("sensor_width_mm", "sensor width", "--sensor-width-mm",
     "EXIF FocalPlaneXResolution, or FocalLength with FocalLengthIn35mmFilm"),
)


def _recorded(value: Any) -> tuple[float | None, str]:
    """A training-data lens value: (the value if it is one positive number, else None; why not)."""
    if value is None:
        return None, "not recorded in the checkpoint"
    if isinstance(value, list):
        return None, f"the training data's varies over {brief(value)}"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        return None, f"the checkpoint records {brief(value)}"
    return float(value), ""


def resolve_lens(
    recorded: dict[str, Any],
    *,
    given: dict[str, Any] | None = None,
    camera: dict[str, Any] | None = None,
    exif: dict[str, float] | None = None,
) -> tuple[Lens | None, dict[str, str], dict[str, str]]:
    """The lens of a stack, value by value: ``given`` (command-line options), else ``camera``
    (a camera file), else ``exif``, else ``recorded`` (the training data's lens section,
    ``checkpoint["data"]["lens"]``) where that is one value.

    Args:
        recorded: ``model``, ``focal_length_mm``, ``f_number``, ``sensor_width_mm``: each
            a number or a [min, max] range (possibly absent).
        given, camera: the same keys (millimetres); None or absent: not given.
        exif: :func:`exif_lens`'s values.

    Returns:
        (the lens, or None when a value is missing; the source of each value, by key and
        ``model``; for each missing value's key, why the checkpoint's cannot serve).
    Raises:
        BadInput: a given value that is not a positive finite number.
        LensError: a lens model dfdgen does not have.
    """
    layers = (("option", given or {}), ("camera file", camera or {}), ("EXIF", exif or {}))
    sources: dict[str, str] = {}
    values: dict[str, float] = {}
    missing: dict[str, str] = {}
    for key, _, option, _ in LENS_VALUES:
        for source, layer in layers:
            if layer.get(key) is not None:
                values[key] = positive(layer[key], option if source == "option" else f"{source} {key}")
                sources[key] = source
                break
        else:
            value, why = _recorded(recorded.get(key))
            if value is None:
                missing[key] = why
            else:
                values[key], sources[key] = value, "checkpoint"
    model, sources["model"] = (given or {}).get("model"), "option"
    if model is None:
        model, sources["model"] = (camera or {}).get("model"), "camera file"
    if model is None:
        model, sources["model"] = recorded.get("model"), "checkpoint"
    if model is None:
        model, sources["model"] = "thin_lens", "default"
    if missing:
        return None, sources, missing
    return Lens(model, values["focal_length_mm"] * 1e-3, values["f_number"], values["sensor_width_mm"] * 1e-3), \
        sources, missing


def missing_message(missing: dict[str, dict[str, str]], n_stacks: int) -> str:
    """One line naming every missing lens value and the ways to give each (``missing``: stack name ->
    the missing keys with why the checkpoint's value cannot serve)."""
    parts = []
    for key, what, option, exif in LENS_VALUES:
        lacking = {name: why[key] for name, why in missing.items() if key in why}
        if not lacking:
            continue
        whys = sorted(set(lacking.values()))
        stacks = "" if len(lacking) == n_stacks else f" for stack(s) {printable(', '.join(sorted(lacking)))}"
        parts.append(f"{what}{stacks}: give {option}, or {key} in a --camera file, or frames with {exif} "
                     f"({'; '.join(whys)})")
    return "the lens is not known: " + "; ".join(parts)


def stack_exif(stack: Stack) -> tuple[dict[str, float], dict[str, str]]:
    """The EXIF lens values of a stack's frames (those any frame gives; see :func:`exif_lens`),
    and, by key, a message for each value two frames give differently (left out of the values)."""
    values: dict[str, tuple[float, Path]] = {}
    conflicts: dict[str, str] = {}
    for path in stack.frames:
        for key, value in exif_lens(path).items():
            if key in values and not math.isclose(values[key][0], value, rel_tol=1e-6):
                first, where = values[key]
                conflicts.setdefault(key, f"stack {stack.name}: the frames' EXIF disagree on the {key} ({first:g} "
                                          f"in {printable(where.name)}, {value:g} in {printable(path.name)}); "
                                          "give it with an option or a --camera file")
            values.setdefault(key, (value, path))
    return {key: value for key, (value, _) in values.items() if key not in conflicts}, conflicts
