"""Loss functions for depth training: pure functions of tensors, no state.

Images are [B, C, H, W] (any C), maps [B, 1, H, W]; masks are bool or {0, 1}
and broadcast against the error they weight. Photometric terms follow
monodepth2 (Godard et al., "Digging into self-supervised monocular depth
estimation", ICCV 2019, eq. 1 and 3); SSIM is Wang et al. 2004 over 3x3 windows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "edge_aware_smoothness",
    "masked_l1",
    "masked_mean",
    "masked_mse",
    "photometric_error",
    "region_mean",
    "ssim",
]

#: SSIM's stabilisers C1 = (0.01 L)^2, C2 = (0.03 L)^2 for a dynamic range L = 1.
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2


def ssim(x: Tensor, y: Tensor) -> Tensor:
    """Per-pixel structural similarity over 3 x 3 windows (reflection-padded borders).

        SSIM = (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2))

    with window means mu, variances sigma^2 and covariance sigma_xy (uniform
    weights, as monodepth2), C1 = 0.01^2, C2 = 0.03^2 for intensities in [0, 1].

    Args:
        x, y: images.  # [B, C, H, W]
    Returns:
        SSIM per pixel and channel, in [-1, 1].  # [B, C, H, W]
    """
    x, y = F.pad(x, (1, 1, 1, 1), mode="reflect"), F.pad(y, (1, 1, 1, 1), mode="reflect")

    def mean(z: Tensor) -> Tensor:
        return F.avg_pool2d(z, 3, stride=1)

    mu_x, mu_y = mean(x), mean(y)
    var_x = mean(x * x) - mu_x * mu_x
    var_y = mean(y * y) - mu_y * mu_y
    cov = mean(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)
    den = (mu_x * mu_x + mu_y * mu_y + SSIM_C1) * (var_x + var_y + SSIM_C2)
    return num / den


def photometric_error(pred: Tensor, target: Tensor, alpha: float = 0.85) -> Tensor:
    """Per-pixel photometric error (monodepth2 eq. 1), averaged over channels.

        pe = alpha (1 - SSIM(pred, target)) / 2 + (1 - alpha) |pred - target|

    Args:
        pred, target: images, intensities about [0, 1].  # [B, C, H, W]
        alpha: weight of the SSIM term (0.85 in monodepth2).
    Returns:
        pe per pixel.  # [B, 1, H, W]
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred and target differ in shape: {tuple(pred.shape)} vs {tuple(target.shape)}")
    dssim = (1 - ssim(pred, target)) / 2
    l1 = (pred - target).abs()
    return (alpha * dssim + (1 - alpha) * l1).mean(1, keepdim=True)


def edge_aware_smoothness(disp: Tensor, image: Tensor) -> Tensor:
    """Edge-aware first-order smoothness of a (mean-normalised) map (monodepth2 eq. 3).

        L_s = mean |d_x d*| exp(-|d_x I|) + mean |d_y d*| exp(-|d_y I|),   d* = d / mean(d)

    d_x, d_y forward differences between neighbouring pixels, |d I| averaged over
    the image's channels, mean(d) per image (so the term does not shrink with
    the scale of d). Meant for inverse depth (disparity).

    Args:
        disp: the map to smooth, > 0.  # [B, 1, H, W]
        image: the image whose edges allow jumps.  # [B, C, H, W]
    Returns:
        L_s, scalar.
    """
    disp = disp / disp.mean((2, 3), keepdim=True).clamp_min(1e-7)
    grad_disp_x = (disp[..., :, 1:] - disp[..., :, :-1]).abs()
    grad_disp_y = (disp[..., 1:, :] - disp[..., :-1, :]).abs()
    grad_img_x = (image[..., :, 1:] - image[..., :, :-1]).abs().mean(1, keepdim=True)
    grad_img_y = (image[..., 1:, :] - image[..., :-1, :]).abs().mean(1, keepdim=True)
    return (grad_disp_x * torch.exp(-grad_img_x)).mean() + (grad_disp_y * torch.exp(-grad_img_y)).mean()


def masked_mean(values: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean of ``values`` over the elements where ``mask`` is set: sum(m v) / sum(m).

    ``mask`` broadcasts against ``values`` (e.g. [B, 1, H, W] against [B, C, H, W]);
    None means all elements. An empty mask gives 0 (with zero gradient), not NaN.
    """
    if mask is None:
        return values.mean()
    weight = mask.to(values.dtype).expand_as(values)
    return (values * weight).sum() / weight.sum().clamp_min(1.0)


def masked_l1(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean absolute error over masked elements: sum(m |p - t|) / sum(m).  # scalar"""
    return masked_mean((pred - target).abs(), mask)


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean squared error over masked elements: sum(m (p - t)^2) / sum(m).  # scalar

    Unmasked elements may hold anything finite (e.g. depth 0 where invalid).
    """
    return masked_mean((pred - target).square(), mask)


def region_mean(values: Tensor, masks: Sequence[Tensor], weights: Sequence[float] | None = None) -> Tensor:
    """Weighted mean of the per-region means of ``values``, empty regions left out.

        sum_r w_r [n_r > 0] mean_r / sum_r w_r [n_r > 0],   mean_r = masked_mean(values, masks[r])

    n_r the elements of region r. Each region counts by its weight, whatever its size
    (a region of 90 % of the pixels weighs as much as one of 10 % at equal weights);
    one region with weight 1 is :func:`masked_mean`. Every region empty gives 0.

    Args:
        values: per-element errors.  # any shape
        masks: one bool or {0, 1} mask per region, each broadcasting against ``values``.
        weights: w_r >= 0 per region; None: 1 each.
    Returns:
        the weighted mean, scalar.
    """
    weights = [1.0] * len(masks) if weights is None else list(weights)
    if len(weights) != len(masks) or not masks:
        raise ValueError(f"need one weight per region and a region, got {len(weights)} for {len(masks)}")
    means = torch.stack([masked_mean(values, m) for m in masks])  # [R]
    present = torch.stack([m.any() for m in masks]).to(values.dtype)  # [R]
    w = present * torch.tensor(weights, dtype=values.dtype, device=values.device)
    return (w * means).sum() / w.sum().clamp_min(torch.finfo(values.dtype).tiny)
