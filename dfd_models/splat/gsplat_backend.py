"""Optional CUDA rasterisation with gsplat (https://github.com/nerfstudio-project/gsplat, >= 1.0).

Only the tile intersection and the compositing run in gsplat's kernels
(``isect_tiles``, ``isect_offset_encode``, ``rasterize_to_pixels``); projection and
defocus stay in torch (``_torch_impl``), because the CoC variance is added to each
projected 2D covariance, which gsplat's fused projection does not expose. So this
module has the signature of ``_torch_impl._rasterize_to_pixels`` and is tested
against it.

gsplat's rasteriser hard-codes the 3DGS constants (alpha_min = 1/255,
alpha_max = 0.999, stop before T <= 1e-4) and works in float32; :func:`usable`
says when it can stand in for the reference. The fixed 1/255 cut also bounds the blur
it draws: a splat blurred by a CoC c has its peak alpha fall as 1 / c^2, and the cut
takes its tails, so beyond :data:`GSPLAT_MAX_COC_PX` (6.3 px) the blur drawn is more
than :data:`GSPLAT_BLUR_TOLERANCE` short of the model's; wider CoCs are refused
(``"auto"``: the torch reference, whose ``alpha_min`` is the config's).
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import re
import warnings

import torch
from torch import Tensor

GSPLAT_THRESHOLDS = (1.0 / 255.0, 0.999, 1e-4)  # alpha_min, alpha_max, t_min
TILE_SIZE = 16  # the tile size every gsplat release supports


def blur_limit_px(alpha_min: float, tolerance: float, opacity: float = 1.0,
                  variance_px2: float = 1 / (2 * math.pi)) -> float:
    """The largest CoC diameter (px) at which the cut at ``alpha_min`` leaves a splat's blur
    std within ``tolerance`` of the model's.

    A splat of opacity o and isotropic variance s^2 (``variance_px2``, pixels^2, eps2d
    included) blurred by a CoC c is o_b exp(-m/2) with variance v = s^2 + c^2/16 and
    o_b = o s^2 / v (``_torch_impl._add_defocus``). The cut keeps m <= R^2 with
    q = exp(-R^2/2) = alpha_min / o_b; what it keeps has the per-axis variance
    v (1 - q ln(1/q) / (1 - q)) and the weight 1 - q of the whole. So the drawn std is
    (1 - tolerance) of the model's where q ln(1/q) / (1 - q) = 1 - (1 - tolerance)^2
    (increasing in q: solved by bisection), and then c^2 = 16 s^2 (o q / alpha_min - 1).
    Measured on the torch reference: ``tests/test_splat.py``.
    """
    target = 1 - (1 - tolerance) ** 2
    lo, hi = 1e-12, 1 - 1e-12
    for _ in range(100):
        q = (lo + hi) / 2
        lo, hi = (q, hi) if q * math.log(1 / q) / (1 - q) < target else (lo, q)
    return 4 * math.sqrt(variance_px2 * max(opacity * lo / alpha_min - 1, 0.0))


#: How far short of the model's (std sqrt(s^2 + c^2/16)) the blur gsplat draws may fall.
GSPLAT_BLUR_TOLERANCE = 0.1
#: The largest CoC diameter gsplat draws to :data:`GSPLAT_BLUR_TOLERANCE`, pixels: 6.3 px.
#: From its cut alpha_min = 1/255 (:func:`blur_limit_px`: q = 0.065, where a kept std of 0.9
#: leaves 6.5 % of the weight below the cut) for the narrowest splat dfdgen renders, one pixel
#: of weight (opacity 1, s^2 = 1 / (2 pi) px^2: sdgs's pixel Gaussians, eps2d 0); a wider splat
#: keeps its blur to a larger CoC, a fainter one to a smaller. (At 20 %: 10.3 px; beyond
#: 25.4 px, where o_b < 1/255, such a splat is dropped whole.) A 256 px small_obj frame has
#: CoCs up to ~40 px.
GSPLAT_MAX_COC_PX = blur_limit_px(1.0 / 255.0, GSPLAT_BLUR_TOLERANCE)
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


def config_refusal(config) -> str:
    """Why gsplat cannot render under ``config`` (a SplatConfig), or "" (no device check)."""
    if config.footprint != "gaussian" or config.blend != "over":
        return (f"gsplat draws one Gaussian per splat composited front to back; footprint="
                f"{config.footprint!r} and blend={config.blend!r} need the torch backend")
    if not _gsplat_thresholds(config.alpha_min, config.alpha_max, config.t_min):
        return f"gsplat hard-codes (alpha_min, alpha_max, t_min) = {GSPLAT_THRESHOLDS}"
    return ""


def coc_refusal(max_coc_px: float) -> str:
    """Why gsplat cannot draw a largest CoC diameter of ``max_coc_px`` pixels, or "" (pure arithmetic)."""
    if max_coc_px <= GSPLAT_MAX_COC_PX:
        return ""
    return (f"gsplat draws a CoC only up to {GSPLAT_MAX_COC_PX:.1f} px (its fixed alpha_min 1/255 cuts a wider "
            f"splat's blur more than {GSPLAT_BLUR_TOLERANCE:.0%} short), the largest CoC here is "
            f"{max_coc_px:.1f} px: the torch backend draws it (whole with an alpha_min below 1/255, e.g. "
            f"sdgs's 1e-4)")


def environment_refusal(like: Tensor) -> str:
    """Why gsplat cannot render tensors like ``like`` on this machine, or ""."""
    if not like.is_cuda:
        return "the tensors are not on a CUDA device"
    version = _version()
    if version is None or version < (1, 0):
        return "gsplat >= 1.0 is not installed"
    if like.dtype != torch.float32:
        return f"gsplat rasterises float32 only, got {like.dtype}"
    return ""


def usable(like: Tensor, config, max_coc_px: float | None = None) -> tuple[bool, str]:
    """Whether gsplat can render tensors like ``like`` under ``config`` (a SplatConfig) with a largest
    CoC of ``max_coc_px`` pixels (None: not checked), and why not. The config and the CoC are
    checked before the machine, so the refusals read the same on every machine."""
    why = config_refusal(config) or (coc_refusal(max_coc_px) if max_coc_px is not None else "")
    why = why or environment_refusal(like)
    return not why, why


_fallback_warned = False


def warn_fallback_once(why: str) -> None:
    """Warn, once per process, that ``"auto"`` renders with the torch reference where gsplat would
    have run but for ``why`` (a training run meets it every step)."""
    global _fallback_warned
    if not _fallback_warned:
        _fallback_warned = True
        warnings.warn(f"splat backend auto: {why}; rendering with the torch reference (said once)",
                      RuntimeWarning, stacklevel=4)


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
