"""Pixel-aligned splats on fronto-parallel planes, in closed form: the plane case of
:func:`dfd_models.splat.render_defocus`, separable per footprint component, the fast path of the
plane sweep (:func:`dfd_models.focus.defocus_sweep`) and of :mod:`dfd_models.refine`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dfd_models.splat.footprint import SplatConfig, footprint_factors

__all__ = ["plane_kernel", "plane_operators", "render_planes"]


def plane_kernel(coc_px: Tensor, splat_px: float, config: SplatConfig, radius: int) -> Tensor:
    """The closed-form plane case: the alpha one splat of a fronto-parallel plane draws around its pixel.

    A splat centred on its pixel, isotropic with std ``splat_px`` pixels on screen, opacity 1,
    blurred by an (effective) CoC diameter c, has at the integer offsets d of the pixel centres

        alpha(d) = min(alpha_max, sum_k w_k s^2 / v_k exp(-|d - r mu_k|^2 / (2 v_k))), 0 below alpha_min

    (s^2 = splat_px^2 + eps2d, v_k = s^2 + (r a_k)^2, r = c/2; :data:`~dfd_models.splat.footprint.FOOTPRINTS`), as
    :func:`~dfd_models.splat.render_defocus` draws it. Under ``blend="sum"`` a plane of such splats, one per pixel
    with colours R, renders as C = alpha * R and alpha = alpha * 1 (a convolution, zero outside
    the image): C / alpha is the normalised convolution (tests/test_forward_model.py).

    Args:
        coc_px: effective CoC diameters c, pixels.  # [N]
        splat_px: the splats' std s on screen, pixels.
        config: footprint, eps2d and the alpha thresholds.
        radius: half-width of the kernel, pixels.
    Returns:
        alpha.  # [N, 2 radius + 1, 2 radius + 1] (rows y, columns x)
    """
    d = torch.arange(-radius, radius + 1, dtype=coc_px.dtype, device=coc_px.device).expand(len(coc_px), -1)
    var = torch.full_like(coc_px, splat_px**2 + config.eps2d)
    fx, fy = footprint_factors(d, d, coc_px / 2, var, config)  # [N, M, 2 radius + 1] each
    alpha = torch.einsum("nky,nkx->nyx", fy, fx).clamp_max(config.alpha_max)
    return torch.where(alpha >= config.alpha_min, alpha, 0.0)


def plane_operators(coc_px: Tensor, K_src: Tensor, K_dst: Tensor, height: int, width: int, splat_px: float,
                    config: SplatConfig) -> tuple[Tensor, Tensor]:
    """Pixel-aligned splats of one frame on fronto-parallel planes, drawn into other frames, as matrices.

    A splat on source pixel p (centre p + 0.5) images in a frame of the same camera (focus
    breathing: K_dst K_src^-1 is a scale a and a shift b, checked) at a (p + 0.5) + b, with std
    a splat_px, whatever its depth. Each footprint component of a plane's splats separates in x
    and y (:func:`plane_kernel`), so the plane renders as sum_k Gy_k X Gx_k^T for the colours X
    on the source grid: :func:`render_planes`. Exact up to the alpha thresholds, which act on
    each splat's sum over components (alpha_max clamps a sharp splat's centre by 1e-3 at most;
    alpha_min drops tails below it).

    Args:
        coc_px: effective CoC diameter of each plane in each destination frame, that frame's
            pixels.  # [B, T, L]
        K_src: intrinsics of the source grid.  # [B, 3, 3]
        K_dst: intrinsics of the destination frames.  # [B, T, 3, 3]
        height, width: image size, pixels (source and destination).
        splat_px: the splats' std on the source grid, pixels.
    Returns:
        Gy (weights folded in) and Gx.  # [B, T, L, M, H, H], [B, T, L, M, W, W] (destination, source)
    """
    ratio = K_dst @ torch.linalg.inv(K_src)[:, None]  # [B, T, 3, 3]
    scale = ratio[..., 0, 0]  # [B, T]
    expected = torch.zeros_like(ratio)
    expected[..., 0, 0] = expected[..., 1, 1] = scale
    expected[..., :2, 2], expected[..., 2, 2] = ratio[..., :2, 2], 1
    if not torch.allclose(ratio, expected, rtol=1e-5, atol=1e-6):
        raise ValueError("plane_operators needs K_dst K_src^-1 to be a scale and a shift (one camera, no motion)")
    centres_x = torch.arange(width, dtype=coc_px.dtype, device=coc_px.device) + 0.5
    centres_y = torch.arange(height, dtype=coc_px.dtype, device=coc_px.device) + 0.5
    a = scale[..., None, None]  # [B, T, 1, 1]
    # offsets [B, T, 1, destination, source] of the destination pixel centres from the splats' centres
    dx = centres_x[:, None] - (a * centres_x + ratio[..., 0, 2, None, None])[..., None, :]
    dy = centres_y[:, None] - (a * centres_y + ratio[..., 1, 2, None, None])[..., None, :]
    var = ((splat_px * scale) ** 2 + config.eps2d)[..., None].expand_as(coc_px)  # [B, T, L]
    fx, fy = footprint_factors(dx.flatten(-2), dy.flatten(-2), coc_px / 2, var, config)  # [B, T, L, M, n^2]
    gx = fx.unflatten(-1, (width, width))
    gy = fy.unflatten(-1, (height, height))
    return gy, gx


def render_planes(colors: Tensor, operators: tuple[Tensor, Tensor], per_layer: bool = False) -> Tensor:
    """Layers of pixel-aligned splats summed into every destination frame (:func:`plane_operators`).

    Args:
        colors: each layer's splat colours times their weight in it (0: no splat).  # [B, L, C, H, W]
        operators: (Gy, Gx) of :func:`plane_operators`.  # [B, T, L, M, H, H], [B, T, L, M, W, W]
        per_layer: keep each layer's image apart (to composite them with transmittance).
    Returns:
        sum over layers (unless ``per_layer``) and splats of alpha c, no transmittance
        ("sum").  # [B, T, C, H, W] or [B, L, T, C, H, W]
    """
    gy, gx = operators
    b, t, layers, m, h, _ = gy.shape
    c, w = colors.shape[2], colors.shape[4]
    # (Gy X) for every (frame, component) at once: one [T M H, H] x [H, C W] product per layer.
    rows = colors.transpose(2, 3).reshape(b, layers, h, c * w)  # [B, L, H, C W]
    out = gy.permute(0, 2, 1, 3, 4, 5).reshape(b, layers, t * m * h, h) @ rows
    out = out.reshape(b, layers, t, m, h * c, w) @ gx.permute(0, 2, 1, 3, 5, 4)  # (Gy X) Gx^T
    out = out.reshape(b, layers, t, m, h, c, w)
    return out.sum(3).transpose(3, 4) if per_layer else out.sum((1, 3)).transpose(2, 3)
