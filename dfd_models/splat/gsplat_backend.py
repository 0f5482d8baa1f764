"""Optional CUDA rasterisation with gsplat (https://github.com/nerfstudio-project/gsplat, >= 1.0).

Only the tile intersection and the compositing run in gsplat's kernels
(``isect_tiles``, ``isect_offset_encode``, ``rasterize_to_pixels``); projection and
defocus stay in torch (``_torch_impl``), because the CoC variance is added to each
projected 2D covariance, which gsplat's fused projection does not expose. So this
module has the signature of ``_torch_impl._rasterize_to_pixels`` and is tested
against it.

gsplat's rasteriser hard-codes the 3DGS constants (alpha_min = 1/255,
alpha_max = 0.999, stop before T <= 1e-4) and works in float32; :func:`usable`
says when it can stand in for the reference.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import re

import torch
from torch import Tensor

GSPLAT_THRESHOLDS = (1.0 / 255.0, 0.999, 1e-4)  # alpha_min, alpha_max, t_min
TILE_SIZE = 16  # the tile size every gsplat release supports
# Channel counts gsplat's kernels are compiled for (GSPLAT_NUM_CHANNELS); others are padded.
_CHANNELS = (1, 2, 3, 4, 5, 8, 9, 16, 17, 24, 32, 33, 64, 65, 128, 129, 256, 257, 512, 513)


def _version() -> tuple[int, int] | None:
    """gsplat's (major, minor), or None when it is not installed."""
    if importlib.util.find_spec("gsplat") is None:
        return None
    match = re.match(r"(\d+)\.(\d+)", importlib.import_module("gsplat").__version__)
    return (int(match[1]), int(match[2])) if match else (0, 0)


def _gsplat_thresholds(*thresholds: float) -> bool:
    return all(math.isclose(a, b) for a, b in zip(thresholds, GSPLAT_THRESHOLDS))


def usable(like: Tensor, config) -> tuple[bool, str]:
    """Whether gsplat can render tensors like ``like`` under ``config`` (a SplatConfig), and why not."""
    if config.footprint != "gaussian" or config.blend != "over":
        return False, (f"gsplat draws one Gaussian per splat composited front to back; footprint="
                       f"{config.footprint!r} and blend={config.blend!r} need the torch backend")
    if not like.is_cuda:
        return False, "the tensors are not on a CUDA device"
    version = _version()
    if version is None or version < (1, 0):
        return False, "gsplat >= 1.0 is not installed"
    if like.dtype != torch.float32:
        return False, f"gsplat rasterises float32 only, got {like.dtype}"
    if not _gsplat_thresholds(config.alpha_min, config.alpha_max, config.t_min):
        return False, f"gsplat hard-codes (alpha_min, alpha_max, t_min) = {GSPLAT_THRESHOLDS}"
    return True, ""


def rasterize_to_pixels(
    means2d: Tensor,
    conics: Tensor,
    colors: Tensor,
    opacities: Tensor,
    radii: Tensor,
    depths: Tensor,
    width: int,
    height: int,
    alpha_min: float,
    alpha_max: float,
    t_min: float,
) -> tuple[Tensor, Tensor]:
    """gsplat's front-to-back compositing; same contract as ``_torch_impl._rasterize_to_pixels``.

    Args:
        means2d: [B, N, 2] pixels
        conics: [B, N, 3] upper triangle of Sigma^-1
        colors: [B, N, D]
        opacities: [B, N]
        radii: [B, N, 2] int per-axis support half-widths (0 = culled)
        depths: [B, N] the sort key, metres
        alpha_min, alpha_max, t_min: must equal gsplat's built-in GSPLAT_THRESHOLDS
    Returns:
        colour [B, H, W, D], alpha [B, H, W, 1]
    """
    import gsplat

    if not _gsplat_thresholds(alpha_min, alpha_max, t_min):
        raise ValueError(f"gsplat hard-codes (alpha_min, alpha_max, t_min) = {GSPLAT_THRESHOLDS}")
    batch, channels = depths.shape[0], colors.shape[-1]
    tiles_w, tiles_h = math.ceil(width / TILE_SIZE), math.ceil(height / TILE_SIZE)
    # gsplat < 1.5 takes one (square) radius per Gaussian, [B, N]; later releases [B, N, 2].
    radii = radii.int() if _version() >= (1, 5) else radii.amax(-1).int()
    _, isect_ids, flatten_ids = gsplat.isect_tiles(
        means2d.detach().contiguous(), radii.contiguous(), depths.detach().contiguous(), TILE_SIZE, tiles_w, tiles_h
    )
    offsets = gsplat.isect_offset_encode(isect_ids, batch, tiles_w, tiles_h)  # [B, tiles_h, tiles_w]
    padded = next((c for c in _CHANNELS if c >= channels), None)
    if padded is None:
        raise ValueError(f"gsplat rasterises at most {_CHANNELS[-1]} channels, got {channels} (colours + depth)")
    if padded != channels:
        colors = torch.cat([colors, colors.new_zeros(colors.shape[:-1] + (padded - channels,))], -1)
    color, alpha = gsplat.rasterize_to_pixels(
        means2d.contiguous(), conics.contiguous(), colors.contiguous(), opacities.contiguous(),
        width, height, TILE_SIZE, offsets, flatten_ids,
    )  # fmt: skip
    return color[..., :channels], alpha
