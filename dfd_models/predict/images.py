"""A frame file's pixels (linear RGB) and the lens values its EXIF gives (``dfdgen predict``)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from generator.core.errors import BadInput, printable
from generator.dataset.pixels import decode_rgb
from dfd_models.predict.inputs import IMAGE_KINDS

__all__ = ["exif_lens", "read_image"]

# EXIF tags (CIPA DC-008): the Exif sub-IFD pointer and the tags read from it.
_EXIF_IFD = 0x8769
_FOCAL_LENGTH, _F_NUMBER, _FOCAL_35MM = 0x920A, 0x829D, 0xA405
_FOCAL_PLANE_X_RES, _FOCAL_PLANE_UNIT, _PIXEL_X = 0xA20E, 0xA210, 0xA002
#: Millimetres per FocalPlaneResolutionUnit: 2 inch (the default), 3 cm, 4 mm, 5 um.
_FOCAL_PLANE_UNIT_MM = {2: 25.4, 3: 10.0, 4: 1.0, 5: 1e-3}
#: Diagonal of the 35 mm film frame (36 x 24 mm), mm.
_FILM_DIAGONAL_MM = math.hypot(36.0, 24.0)


def read_image(path: Path) -> np.ndarray:
    """Linear RGB [H, W, 3] float32 of a PNG (8/16-bit sRGB), JPEG (8-bit sRGB) or EXR (linear) file.

    Raises:
        BadInput: a missing or undecodable file, another format, or more pixels than
            :data:`generator.core.limits.MAX_IMAGE_PIXELS` (from the header, before decoding).
    """
    kind = IMAGE_KINDS.get(path.suffix.lower())
    if kind is None:
        raise BadInput(f"{path}: not a PNG, JPEG or EXR image (by its name)")
    try:
        return decode_rgb(path.read_bytes(), kind)
    except Exception as exc:  # any decoder error means a bad file
        raise BadInput(f"{path}: cannot read the image ({printable(str(exc), 200)})") from exc


def exif_lens(path: Path) -> dict[str, float]:
    """The lens values a JPEG or PNG file's EXIF gives (module docstring), by ``LENS_VALUES`` key
    (millimetres, or plain for the f-number); ``{}`` without EXIF. Values that are not positive
    finite numbers count as absent."""
    if IMAGE_KINDS.get(path.suffix.lower()) not in ("jpeg", "png"):
        return {}
    try:
        with Image.open(path) as img:
            width, height = img.size
            if img.format == "PNG" and "exif" not in img.info:  # getexif would decode the whole PNG to look
                return {}
            exif = img.getexif()
            sub = exif.get_ifd(_EXIF_IFD)
    except Exception:  # no readable EXIF: read_image reports a damaged file
        return {}

    def tag(number: int) -> float | None:
        value = sub.get(number, exif.get(number))
        try:
            value = float(value)
        except (TypeError, ValueError, ZeroDivisionError):
            return None
        return value if math.isfinite(value) and value > 0 else None

    found: dict[str, float] = {}
    focal, f_number = tag(_FOCAL_LENGTH), tag(_F_NUMBER)
    if focal is not None:
        found["focal_length_mm"] = focal
    if f_number is not None:
        found["f_number"] = f_number
    x_res, unit = tag(_FOCAL_PLANE_X_RES), tag(_FOCAL_PLANE_UNIT)
    unit_mm = _FOCAL_PLANE_UNIT_MM.get(int(unit) if unit is not None else 2)
    if x_res is not None and unit_mm is not None:
        found["sensor_width_mm"] = (tag(_PIXEL_X) or width) / x_res * unit_mm
    elif focal is not None and tag(_FOCAL_35MM) is not None:
        found["sensor_width_mm"] = _FILM_DIAGONAL_MM * focal / tag(_FOCAL_35MM) * width / math.hypot(width, height)
    return found
