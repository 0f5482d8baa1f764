"""A splat's defocus footprint: the shapes a CoC blurs a splat into, and the rasterisation constants.

:class:`SplatConfig` holds the constants every drawing of splats shares (:func:`dfd_models.splat.render_defocus`,
:mod:`dfd_models.splat.planes`); :func:`footprint_factors` is the footprint of a pixel-aligned splat in
separable form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["BLENDS", "FOOTPRINTS", "SplatConfig", "footprint_factors"]

#: A splat's defocus footprint as a mixture of isotropic Gaussians, rows (mu_x, mu_y, a, w) in
#: units of the CoC radius r = c/2: component mean r (mu_x, mu_y), std r a, weight w (sum 1).
#: ``"gaussian"``: one Gaussian of a uniform disc's per-axis variance r^2/4 = c^2/16.
#: ``"disc"``: a centre and a ring of 8, fitted (L-BFGS on a 241^2 grid over [-1.6, 1.6]^2) to
#: the unit disc blurred by a Gaussian of std 0.1 r, under the constraint of the disc's
#: variance: relative L2 error 0.14 against 0.43 for ``"gaussian"`` (1 + 6 Gaussians 0.19,
#: 1 + 12 0.10, 6 + 12 0.07; on the Cycles planes stack the depth scan of
#: tests/test_forward_model.py gave the same with 7, 9 or 13).
FOOTPRINTS: dict[str, tuple[tuple[float, float, float, float], ...]] = {
    "gaussian": ((0.0, 0.0, 0.5, 1.0),),
    "disc": ((0.0, 0.0, 0.3165, 0.2550),) + tuple(
        (0.7261 * math.cos(math.pi * k / 4), 0.7261 * math.sin(math.pi * k / 4), 0.1966, (1 - 0.2550) / 8)
        for k in range(8)),
}
#: How splats covering a pixel combine (:class:`SplatConfig`).
BLENDS = ("over", "sum")


@dataclass(frozen=True)
class SplatConfig:
    """Rasterisation constants; the defaults are 3DGS's (and gsplat's, which needs them).

    Attributes:
        eps2d: low-pass variance added to every sharp 2D covariance, pixels^2 (3DGS's 0.3:
            keeps sub-pixel splats from falling between pixel centres). The defocus
            opacity renormalisation is relative to this low-passed splat. 0 disables it.
        alpha_min: a splat's alpha below this is dropped; bounds its support to
            r = sqrt(2 ln(o / alpha_min)) sigma (3.33 sigma for o = 1, alpha_min = 1/255).
        alpha_max: alpha clamp, keeps transmittance > 0.
        t_min: compositing stops before a splat that would bring T to t_min or below.
        near_m: Gaussians with camera z below this are culled, metres.
        tile_size: tile edge of the torch reference, pixels (the result does not depend on it;
            smaller tiles waste less work on splats that only graze a tile).
        footprint: a key of :data:`FOOTPRINTS`, the shape a splat is blurred into.
        blend: ``"over"``: front to back (3DGS); ``"sum"``: sum_i alpha_i c_i, no transmittance
            (order-independent; alpha may exceed 1, so normalise the colour by it).
    """

    eps2d: float = 0.3
    alpha_min: float = 1.0 / 255.0
    alpha_max: float = 0.999
    t_min: float = 1e-4
    near_m: float = 0.01
    tile_size: int = 8
    footprint: str = "gaussian"
    blend: str = "over"

    def __post_init__(self) -> None:
        if not (0 < self.alpha_min <= self.alpha_max < 1):
            raise ValueError(f"need 0 < alpha_min <= alpha_max < 1, got {self.alpha_min}, {self.alpha_max}")
        if self.eps2d < 0 or not (0 <= self.t_min < 1) or self.near_m <= 0 or self.tile_size < 1:
            raise ValueError(f"invalid SplatConfig {self}")
        if self.footprint not in FOOTPRINTS:
            raise ValueError(f"footprint must be one of {sorted(FOOTPRINTS)}, got {self.footprint!r}")
        if self.blend not in BLENDS:
            raise ValueError(f"blend must be one of {BLENDS}, got {self.blend!r}")

    def mixture(self, like: Tensor) -> Tensor:
        """The footprint's rows (mu_x, mu_y, a, w) as a tensor like ``like``.  # [M, 4]"""
        return torch.tensor(FOOTPRINTS[self.footprint], dtype=like.dtype, device=like.device)


def footprint_factors(dx: Tensor, dy: Tensor, radius: Tensor, var: Tensor,
                      config: SplatConfig) -> tuple[Tensor, Tensor]:
    """Per-axis factors of a pixel-aligned splat's footprint: its alpha before the thresholds is
    sum_k fx[..., k, i] fy[..., k, j] at the offset (dx_i, dy_j) from the splat's centre.

    Component k of a splat of isotropic variance s^2 (``var``) blurred by the CoC radius r: the
    Gaussian of variance v_k = s^2 + (r a_k)^2 about r mu_k, weight w_k s^2 / v_k (its opacity,
    ``_torch_impl._add_defocus``), which separates into x and y factors.

    Args:
        dx, dy: offsets of pixel centres from the splat's centre, pixels.  # [..., I], [..., J]
        radius: CoC radius r, pixels; var: s^2, pixels^2.  # [...] each
    Returns:
        fx (weight included) and fy.  # [..., M, I], [..., M, J]
    """
    mixture = config.mixture(dx)  # [M, 4]
    v = var[..., None] + (radius[..., None] * mixture[:, 2]).square()  # [..., M]
    mean_x, mean_y = radius[..., None] * mixture[:, 0], radius[..., None] * mixture[:, 1]  # [..., M]
    fx = (mixture[:, 3] * var[..., None] / v)[..., None] * torch.exp(
        -0.5 * (dx[..., None, :] - mean_x[..., None]).square() / v[..., None])
    fy = torch.exp(-0.5 * (dy[..., None, :] - mean_y[..., None]).square() / v[..., None])
    return fx, fy
