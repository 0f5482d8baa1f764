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

The aperture is a disc of diameter A unless the lens has an :class:`Aperture`: a
regular polygon of blades inscribed in that disc, squeezed anamorphically, as Cycles
renders it. c is then the diameter of the disc the polygon is inscribed in (every CoC
function here returns it); :func:`equal_area_factor` and :func:`circumscribed_factor`
turn it into the polygon's other diameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from generator.core.errors import LensError

LensModel = Literal["thin_lens", "blender"]
LENS_MODELS: tuple[str, ...] = ("thin_lens", "blender")


#: Blade counts of a polygonal aperture (Cycles draws a disc below 3; Blender allows at most 16).
MIN_BLADES, MAX_BLADES = 3, 16
#: Smallest aperture ratio Blender accepts (it clamps a smaller one, which would then not be the recorded one).
MIN_RATIO = 0.01


@dataclass(frozen=True)
class Aperture:
    """The shape of the aperture stop, as Cycles samples it (``camera.dof``).

    Cycles draws lens positions from a regular polygon whose corners lie on the circle
    of diameter A (measured: ``tests/test_aperture.py``), turned by ``rotation_rad``,
    then divides their x (the sensor's width axis) by ``ratio``.

    Attributes:
        blades: 0 for a disc, else the number of blades, :data:`MIN_BLADES` to
            :data:`MAX_BLADES` (``aperture_blades``).
        rotation_rad: rotation of the polygon, radians in [-pi, pi] (``aperture_rotation``):
            at 0 a corner points along the camera's +x at the angle pi / blades
            counterclockwise (x right, y up) and an edge faces +x.
        ratio: anamorphic squeeze, >= :data:`MIN_RATIO` (``aperture_ratio``): the shape's width over x
            is divided by it (ratio 2: twice as tall as wide).
    """

    blades: int = 0
    rotation_rad: float = 0.0
    ratio: float = 1.0

    def __post_init__(self) -> None:
        if not (self.blades == 0 or MIN_BLADES <= self.blades <= MAX_BLADES):
            raise LensError(f"aperture blades must be 0 (a disc) or {MIN_BLADES} to {MAX_BLADES}, got {self.blades!r}")
        if not (np.isfinite(self.rotation_rad) and abs(self.rotation_rad) <= math.pi):
            raise LensError(f"aperture rotation must be within [-pi, pi] radians, got {self.rotation_rad!r}")
        if not (np.isfinite(self.ratio) and self.ratio >= MIN_RATIO):
            raise LensError(f"aperture ratio must be a number >= {MIN_RATIO}, got {self.ratio!r}")


def corner_angles_rad(aperture: Aperture) -> np.ndarray:
    """Angles of the polygon's corners on the lens before the squeeze, radians counterclockwise
    from the camera's +x (x right, y up): rotation + pi / n + 2 pi k / n, k = 0 .. n - 1.
    Empty for a disc. On the image (u right, v up) a point beyond the plane of focus blurs to
    this polygon as it is, one in front of it to the polygon turned by pi (measured in Cycles:
    ``tests/test_aperture.py``)."""
    n = aperture.blades
    return aperture.rotation_rad + math.pi / n + 2 * math.pi * np.arange(n) / n if n else np.zeros(0)


def equal_area_factor(aperture: Aperture | None) -> float:
    """Diameter of the disc with the blur's area, over c (dimensionless).

    A regular n-gon inscribed in the circle of diameter D has area (n / 8) D^2 sin(2 pi / n),
    the area of a disc of diameter D sqrt(n sin(2 pi / n) / (2 pi)); the squeeze divides
    the area by ``ratio``. 1 for a round, unsqueezed aperture (or none).
    """
    if aperture is None:
        return 1.0
    n = aperture.blades
    polygon = n * math.sin(2 * math.pi / n) / (2 * math.pi) if n else 1.0
    return math.sqrt(polygon / aperture.ratio)


def circumscribed_factor(aperture: Aperture | None) -> float:
    """Diameter of the smallest circle about the image point that holds the whole blur, over c
    (dimensionless): twice the farthest squeezed corner (of the ellipse, for a disc).
    1 for an unsqueezed aperture (or none): the polygon is inscribed in the disc of c."""
    if aperture is None:
        return 1.0
    if not aperture.blades:
        return max(1.0, 1.0 / aperture.ratio)
    angles = corner_angles_rad(aperture)
    return float(np.hypot(np.cos(angles) / aperture.ratio, np.sin(angles)).max())


@dataclass(frozen=True)
class Lens:
    """A lens and sensor.

    Attributes:
        model: ``"thin_lens"`` or ``"blender"`` (see module docstring).
        focal_length_m: f, metres.
        f_number: N, dimensionless (> 0).
        sensor_width_m: sensor width, metres; the sensor is fit horizontally.
        aperture: the aperture's shape; None: a disc, as every recipe without
            ``lens.aperture`` renders (left out of a spec's dict, so their samples keep their bytes).
    """

    model: LensModel
    focal_length_m: float
    f_number: float
    sensor_width_m: float
    aperture: Aperture | None = None

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
        aperture_blades: ``camera.dof.aperture_blades`` (0: a disc).
        aperture_rotation: ``camera.dof.aperture_rotation`` (radians).
        aperture_ratio: ``camera.dof.aperture_ratio``.
    """

    lens_mm: float
    fstop: float
    focus_distance_m: float
    sensor_width_mm: float
    aperture_blades: int = 0
    aperture_rotation: float = 0.0
    aperture_ratio: float = 1.0


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
    fstop = L / A makes that A L |1/z - 1/F|, the model's CoC exactly. The aperture's
    shape goes to Cycles as it is (a disc without one).
    """
    big_l = float(effective_focal_length_m(lens, focus_m))
    shape = lens.aperture or Aperture()
    return BlenderCamera(
        lens_mm=big_l * 1e3,
        fstop=big_l / lens.aperture_m,
        focus_distance_m=float(focus_m),
        sensor_width_mm=lens.sensor_width_m * 1e3,
        aperture_blades=shape.blades,
        aperture_rotation=shape.rotation_rad,
        aperture_ratio=shape.ratio,
    )
