"""Lens physics: the single source of every CoC, intrinsic matrix and Blender camera value.

Symbols follow DESIGN.md section 3: f focal length, N f-number, A = f / N the
aperture diameter, F the focus distance (plane of focus, along the optical axis),
z planar depth, p = sensor width / W the pixel pitch. All lengths are metres.

Two models, both exact on Cycles:

``thin_lens``
    The physical camera. The sensor sits at v = f F / (F - f), so the image
    scale (and the field of view) changes with F ("breathing"), and a point at
    depth z blurs to a disc of diameter c = A v |1/z - 1/F|. Cycles is made to
    render exactly this by setting, per frame, ``lens = v``, ``fstop = v / A``.
``blender``
    Blender's camera as it is: a pinhole of focal length f whatever the focus,
    c = A f |1/z - 1/F|, no breathing (datasets such as FoD500).

In both, c = A * L * |1/z - 1/F| with L the *effective* focal length the image
is projected with (v or f); :func:`effective_focal_length_m` returns L.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from generator.core.errors import LensError

LensModel = Literal["thin_lens", "blender"]
LENS_MODELS: tuple[str, ...] = ("thin_lens", "blender")


@dataclass(frozen=True)
class Lens:
    """A lens and sensor.

    Attributes:
        model: ``"thin_lens"`` or ``"blender"`` (see module docstring).
        focal_length_m: f, metres.
        f_number: N, dimensionless (> 0).
        sensor_width_m: sensor width, metres; the sensor is fit horizontally.
    """

    model: LensModel
    focal_length_m: float
    f_number: float
    sensor_width_m: float

    def __post_init__(self) -> None:
        if self.model not in LENS_MODELS:
            raise LensError(f"lens model {self.model!r} is not one of {LENS_MODELS}")
        for name in ("focal_length_m", "f_number", "sensor_width_m"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise LensError(f"lens {name} must be a positive number, got {value!r}")

    @property
    def aperture_m(self) -> float:
        """Aperture diameter A = f / N, metres."""
        return self.focal_length_m / self.f_number

    def pixel_pitch_m(self, width_px: int) -> float:
        """Pixel pitch p = sensor width / W, metres per pixel."""
        return self.sensor_width_m / width_px


@dataclass(frozen=True)
class BlenderCamera:
    """The values set on a Blender camera to render one frame.

    Attributes:
        lens_mm: ``camera.lens`` (millimetres).
        fstop: ``camera.dof.aperture_fstop``.
        focus_distance_m: ``camera.dof.focus_distance`` (metres, planar).
        sensor_width_mm: ``camera.sensor_width`` (millimetres, sensor fit horizontal).
    """

    lens_mm: float
    fstop: float
    focus_distance_m: float
    sensor_width_mm: float


def _check_focus(lens: Lens, focus_m: np.ndarray | float) -> None:
    focus = np.asarray(focus_m, dtype=np.float64)
    if not np.all(np.isfinite(focus)) or np.any(focus <= lens.focal_length_m):
        raise LensError(
            f"focus distance must exceed the focal length {lens.focal_length_m} m "
            f"(a real image needs F > f), got {focus_m!r}"
        )


def sensor_distance_m(lens: Lens, focus_m):
    """Lens-to-sensor distance v = f F / (F - f) of the thin lens focused at F, metres."""
    _check_focus(lens, focus_m)
    f = lens.focal_length_m
    focus = np.asarray(focus_m, dtype=np.float64)
    return f * focus / (focus - f)


def effective_focal_length_m(lens: Lens, focus_m):
    """Focal length L the image is projected with: v for ``thin_lens``, f for ``blender``, metres."""
    if lens.model == "thin_lens":
        return sensor_distance_m(lens, focus_m)
    _check_focus(lens, focus_m)
    return np.broadcast_to(np.float64(lens.focal_length_m), np.shape(focus_m)) * 1.0


def coc_signed_m(lens: Lens, depth_m, focus_m):
    """Signed blur-disc diameter on the sensor, metres: A L (1/F - 1/z).

    Negative in front of the plane of focus (z < F). For ``thin_lens`` this is
    A f (z - F) / (z (F - f)). ``depth_m`` must be > 0.
    """
    depth = np.asarray(depth_m, dtype=np.float64)
    focus = np.asarray(focus_m, dtype=np.float64)
    big_l = effective_focal_length_m(lens, focus)
    return lens.aperture_m * big_l * (1.0 / focus - 1.0 / depth)


def coc_px(lens: Lens, depth_m, focus_m, width_px: int):
    """Unsigned blur-disc diameter in pixels: |c| / p (DESIGN.md section 2)."""
    return np.abs(coc_signed_m(lens, depth_m, focus_m)) / lens.pixel_pitch_m(width_px)


def coc_map_px(lens: Lens, depth: np.ndarray, focus_m: float, width_px: int) -> np.ndarray:
    """CoC diameter (pixels, float32) of a planar depth map [H, W]; 0 where depth is invalid (0)."""
    valid = depth > 0
    out = np.zeros(depth.shape, dtype=np.float32)
    out[valid] = coc_px(lens, depth[valid], focus_m, width_px)
    return out


def intrinsics(lens: Lens, focus_m: float, width_px: int, height_px: int) -> np.ndarray:
    """3x3 intrinsic matrix K in pixels (OpenCV, pixel centres at integer + 0.5).

    Focal length in pixels is L / p (L = v with breathing for ``thin_lens``);
    square pixels; the principal point is the image centre.
    """
    fpx = float(effective_focal_length_m(lens, focus_m)) / lens.pixel_pitch_m(width_px)
    return np.array(
        [[fpx, 0.0, width_px / 2.0], [0.0, fpx, height_px / 2.0], [0.0, 0.0, 1.0]],
        dtype=np.float64,
    )


def blender_camera(lens: Lens, focus_m: float) -> BlenderCamera:
    """Blender camera values that make Cycles render this lens focused at ``focus_m``.

    Cycles renders c = (lens / fstop) * lens * |1/z - 1/F|; choosing lens = L and
    fstop = L / A makes that A L |1/z - 1/F|, the model's CoC exactly.
    """
    big_l = float(effective_focal_length_m(lens, focus_m))
    return BlenderCamera(
        lens_mm=big_l * 1e3,
        fstop=big_l / lens.aperture_m,
        focus_distance_m=float(focus_m),
        sensor_width_mm=lens.sensor_width_m * 1e3,
    )
