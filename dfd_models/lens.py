"""Differentiable, batched torch versions of :mod:`generator.core.lens` (DESIGN.md section 3).

Same symbols and formulas as the numpy module, which stays the single source of
truth; ``tests/test_torch_lens.py`` checks the two agree to 1e-10 in float64.
f focal length, N f-number, A = f / N aperture diameter, F focus distance,
z planar depth, p = sensor width / W pixel pitch; lengths in metres.

    thin_lens:  L = v = f F / (F - f)   (breathing)
    blender:    L = f
    signed CoC on the sensor  c = A L (1/F - 1/z)   (negative in front of focus)

Batching: every lens field and ``focus_m`` is a scalar tensor or has shape [B];
``depth_m`` is [B, ...] (or any shape when nothing is per-batch). Per-batch
values line up with the FIRST dimension of ``depth_m`` (a [B] focus and a
[B, H, W] depth map give a [B, H, W] CoC map), not with its last one as plain
broadcasting would do.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from generator.core.errors import LensError
from generator.core.lens import LENS_MODELS, Lens


@dataclass(frozen=True)
class LensParams:
    """A lens and sensor as tensors (the torch twin of :class:`generator.core.lens.Lens`).

    Attributes:
        model: ``"thin_lens"`` or ``"blender"``, one for the whole batch.
        focal_length_m: f, metres.          # [B] or []
        f_number: N, dimensionless.         # [B] or []
        sensor_width_m: sensor width, metres (horizontal fit).  # [B] or []
    """

    model: str
    focal_length_m: Tensor  # [B] or []
    f_number: Tensor  # [B] or []
    sensor_width_m: Tensor  # [B] or []

    def __post_init__(self) -> None:
        if self.model not in LENS_MODELS:
            raise LensError(f"lens model {self.model!r} is not one of {LENS_MODELS}")
        for name in ("focal_length_m", "f_number", "sensor_width_m"):
            value = getattr(self, name)
            if not isinstance(value, Tensor) or value.dim() > 1:
                raise LensError(f"lens {name} must be a tensor of shape [] or [B], got {value!r}")

    @classmethod
    def from_lens(
        cls, lens: Lens, *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
    ) -> LensParams:
        """Scalar-tensor copy of a (validated) :class:`generator.core.lens.Lens`."""

        def t(x: float) -> Tensor:
            return torch.tensor(x, dtype=dtype, device=device)

        return cls(lens.model, t(lens.focal_length_m), t(lens.f_number), t(lens.sensor_width_m))

    @property
    def aperture_m(self) -> Tensor:
        """Aperture diameter A = f / N, metres.  # [B] or []"""
        return self.focal_length_m / self.f_number

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> LensParams:
        """The same lens with its tensors on ``device`` / in ``dtype``."""
        fields = (self.focal_length_m, self.f_number, self.sensor_width_m)
        return LensParams(self.model, *(x.to(device=device, dtype=dtype) for x in fields))

    def pixel_pitch_m(self, width_px: int) -> Tensor:
        """Pixel pitch p = sensor width / W, metres per pixel.  # [B] or []"""
        return self.sensor_width_m / width_px


def _per_batch(x: Tensor | float, ndim: int, like: Tensor) -> Tensor:
    """A [B] (or scalar) value reshaped to [B, 1, ..., 1] with ``ndim`` dims, to broadcast against [B, ...]."""
    x = torch.as_tensor(x, dtype=like.dtype, device=like.device)
    if x.dim() == 0:
        return x
    return x.reshape(x.shape + (1,) * (ndim - 1))


def _check_focus(lens: LensParams, focus_m: Tensor) -> None:
    # One host sync per call; a real image needs F > f, and every formula below
    # divides by F - f or F.
    f = _per_batch(lens.focal_length_m, focus_m.dim(), focus_m)
    if not bool(torch.all(torch.isfinite(focus_m) & (focus_m > f))):
        raise LensError(
            f"focus distance must exceed the focal length (a real image needs F > f), "
            f"got focus {focus_m.detach().cpu().tolist()} m, f {lens.focal_length_m.detach().cpu().tolist()} m"
        )


def sensor_distance_m(lens: LensParams, focus_m: Tensor | float) -> Tensor:
    """Lens-to-sensor distance v = f F / (F - f) of the thin lens focused at F, metres.  # shape of focus_m"""
    focus = torch.as_tensor(focus_m, dtype=lens.focal_length_m.dtype, device=lens.focal_length_m.device)
    _check_focus(lens, focus)
    f = _per_batch(lens.focal_length_m, focus.dim(), focus)
    return f * focus / (focus - f)


def effective_focal_length_m(lens: LensParams, focus_m: Tensor | float) -> Tensor:
    """Focal length L the image is projected with: v for ``thin_lens``, f for ``blender``, metres.

    Returns the broadcast shape of ``focus_m`` and the lens fields.
    """
    if lens.model == "thin_lens":
        return sensor_distance_m(lens, focus_m)
    focus = torch.as_tensor(focus_m, dtype=lens.focal_length_m.dtype, device=lens.focal_length_m.device)
    _check_focus(lens, focus)
    f = _per_batch(lens.focal_length_m, focus.dim(), focus)
    return f.expand(torch.broadcast_shapes(f.shape, focus.shape))


def coc_signed_m(lens: LensParams, depth_m: Tensor, focus_m: Tensor | float) -> Tensor:
    """Signed blur-disc diameter on the sensor, metres: c = A L (1/F - 1/z).

    Negative in front of the plane of focus (z < F); smooth in z and F, so its
    square is the differentiable quantity a renderer wants. ``depth_m`` > 0.

    Args:
        depth_m: planar depth z.  # [B, ...] or [...]
        focus_m: focus distance F.  # [B] or []
    Returns:
        c, metres.  # shape of depth_m
    """
    focus = torch.as_tensor(focus_m, dtype=depth_m.dtype, device=depth_m.device)
    big_l = _per_batch(effective_focal_length_m(lens, focus), depth_m.dim(), depth_m)
    aperture = _per_batch(lens.aperture_m, depth_m.dim(), depth_m)
    inv_focus = 1.0 / _per_batch(focus, depth_m.dim(), depth_m)
    return aperture * big_l * (inv_focus - 1.0 / depth_m)


def coc_signed_px(lens: LensParams, depth_m: Tensor, focus_m: Tensor | float, width_px: int) -> Tensor:
    """Signed blur-disc diameter in pixels: c / p.  # shape of depth_m"""
    pitch = _per_batch(lens.pixel_pitch_m(width_px), depth_m.dim(), depth_m)
    return coc_signed_m(lens, depth_m, focus_m) / pitch


def coc_px(lens: LensParams, depth_m: Tensor, focus_m: Tensor | float, width_px: int) -> Tensor:
    """Unsigned blur-disc diameter in pixels |c| / p (DESIGN.md section 2).  # shape of depth_m

    Not differentiable at z = F (|.| has a kink there); use the square of
    :func:`coc_signed_px` where a smooth function is needed.
    """
    return coc_signed_px(lens, depth_m, focus_m, width_px).abs()


def intrinsics(lens: LensParams, focus_m: Tensor | float, width_px: int, height_px: int) -> Tensor:
    """3x3 intrinsic matrix K in pixels (OpenCV, pixel centres at integer + 0.5).

    Focal length in pixels L / p (L = v, breathing, for ``thin_lens``); square
    pixels; principal point at the image centre.

    Returns:
        K.  # [B, 3, 3] when focus or the lens is batched, else [3, 3]
    """
    big_l = effective_focal_length_m(lens, focus_m)
    fpx = big_l / lens.pixel_pitch_m(width_px)  # [B] or []
    zero, one = torch.zeros_like(fpx), torch.ones_like(fpx)
    rows = [
        torch.stack([fpx, zero, zero + width_px / 2.0], -1),
        torch.stack([zero, fpx, zero + height_px / 2.0], -1),
        torch.stack([zero, zero, one], -1),
    ]
    return torch.stack(rows, -2)
