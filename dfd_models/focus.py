"""Focal stacks without learning: one pixel grid, a focus measure, depth from focus, a sharp composite.

The frames of a stack share the camera pose but, under ``thin_lens`` focus
breathing, not K. Pixel x of frame r sees the ray K_r^-1 x whatever its depth,
which frame t images at K_t K_r^-1 x, so :func:`warp_to_frame` puts every frame
on frame r's grid exactly (bilinear resampling; no depth needed).

The focus measure is the energy of the Laplacian, sum over a w x w window of
(laplacian of the luminance)^2 ("LAP2" in Pertuz, Puig and Garcia, "Analysis of
focus measure operators for shape-from-focus", Pattern Recognition 46(5), 2013,
after Subbarao, Choi and Nikzad 1993), one of the best-ranked operators of that
survey under noise, taken on the luminance smoothed by a Gaussian of 1 px (a
Laplacian of Gaussian): Cycles' noise is per pixel and largest in the most
defocused frames, where the plain Laplacian reads it as sharp detail.

Depth from focus (:func:`dff_depth`) takes, per pixel, the frame of highest
measure and refines it with the vertex of the parabola through that frame and
its two neighbours in diopters (1/F), the axis in which the CoC is linear
(DESIGN.md 3); :func:`sharp_composite` takes the colour of that frame.

Resampling blurs: bilinear interpolation at a half-pixel offset averages two pixels,
which at 64 px erases much of the defocus cue of 3 px texture. The splat-footprint
sweep (:func:`defocus_sweep` with ``footprint``) therefore renders into every frame's
own grid and compares there, and builds its composite with bicubic resampling
(measured in tests/test_forward_model.py's docstring).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from dfd_models.lens import LensParams, coc_px
from dfd_models.metrics import DELTA_BASE, delta_ratio
from dfd_models.splat import SplatConfig, plane_operators, render_planes

__all__ = ["DFF_BEYOND_RANGE", "blur_features", "cost_at", "defocus_sweep", "dff_depth", "dff_depth_and_confidence",
           "focus_measure", "gamma_encode", "gaussian_blur", "sharp_composite", "splat_radiance", "splat_sweep_config",
           "SOFT_ARGMIN_SHARPNESS", "SWEEP_CONFIDENCES", "SWEEP_ESTIMATES", "relative_cost", "soft_argmin",
           "sweep_blur_px", "sweep_cost", "sweep_depths", "sweep_minimum", "warp_to_frame", "warp_to_grid"]

#: Rec. 709 luminance weights of linear RGB.
LUMA = (0.2126, 0.7152, 0.0722)
#: Focus-measure window, pixels (odd).
WINDOW_PX = 9
#: Std of the Gaussian the luminance is smoothed with before the Laplacian, pixels.
SMOOTH_PX = 1.0
#: Depth hypotheses of :func:`defocus_sweep`.
SWEEP_HYPOTHESES = 32
#: Ratio of consecutive depth hypotheses of :func:`sweep_depths`: finer than delta1's 1.25.
SWEEP_RATIO = 1.1
#: How :func:`sweep_minimum` rates its minimum: ``ratio`` (1 - least / mean cost) or ``margin``
#: (1 - least cost / least cost of the hypotheses off the minimum by more than delta1's 1.25).
SWEEP_CONFIDENCES = ("ratio", "margin")
#: How :func:`sweep_minimum` reads the depth off the cost volume: ``parabola`` (the least-cost plane,
#: refined by the parabola through it and its neighbours) or ``soft`` (:func:`soft_argmin`).
SWEEP_ESTIMATES = ("parabola", "soft")
#: The soft argmin's sharpness, per unit of cost relative to the pixel's mean cost: 20, the best of
#: 5, 10, 20, 50, 100 and 200 on fod500's validation objects, and within 0.01 of the best delta1 on
#: small_obj's (docs/NOTES.md, 2026-12-08).
SOFT_ARGMIN_SHARPNESS = 20.0
#: Splat alpha threshold of the splat-footprint sweep (sdgs' ``splat_alpha_min``: with 3DGS's
#: 1/255 a blurred splat's faint tails are cut and its blur comes out short).
SWEEP_ALPHA_MIN = 1e-4


def gaussian_blur(images: Tensor, sigma_px: float | Tensor) -> Tensor:
    """Separable Gaussian blur of std ``sigma_px`` pixels (3 sigma support, reflected borders; 0 = none).

    Args:
        images: images.  # [N, C, H, W]
        sigma_px: one std for every image, or one per image ([N]; 0 leaves that image as it is).
    Returns:
        the blurred images.  # [N, C, H, W]
    """
    n, c, h, w = images.shape
    sigma = torch.as_tensor(sigma_px, dtype=images.dtype, device=images.device).reshape(-1, 1)  # [N or 1, 1]
    top = float(sigma.max())
    if top <= 0:
        return images
    reach = min(math.ceil(3 * top), h - 1, w - 1)  # reflection needs reach < size
    x = torch.arange(-reach, reach + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (x / sigma.clamp_min(1e-6)) ** 2)  # [N or 1, 2 reach + 1]; a delta at sigma 0
    kernel = (kernel / kernel.sum(-1, keepdim=True)).expand(n, -1).repeat_interleave(c, 0)  # [N C, taps]
    out = F.pad(images.reshape(1, n * c, h, w), (reach, reach, reach, reach), mode="reflect")
    out = F.conv2d(out, kernel[:, None, None, :], groups=n * c)
    return F.conv2d(out, kernel[:, None, :, None], groups=n * c).reshape(n, c, h, w)


def gamma_encode(image: Tensor, gamma: float) -> Tensor:
    """(x + 1e-3)^gamma of a linear image, negatives clamped (the offset keeps the gradient finite
    at black); gamma 1 returns the image as it is.  # shape of image"""
    return image if gamma == 1.0 else (image.clamp_min(0) + 1e-3) ** gamma


def warp_to_grid(images: Tensor, K_src: Tensor, K_dst: Tensor, mode: str = "bilinear") -> Tensor:
    """Images on a source frame's pixel grid resampled onto a destination frame's (same camera pose).

    Destination pixel x sees the ray K_dst^-1 x, which the source images at K_src K_dst^-1 x
    (``mode`` of ``grid_sample``: bilinear, or bicubic, which keeps more of fine texture but
    can overshoot; outside the source's view its border pixels repeat).

    Args:
        images: images or maps.  # [N, C, H, W]
        K_src, K_dst: intrinsics, pixels.  # [N, 3, 3]
    Returns:
        the images on the destination grid.  # [N, C, H, W]
    """
    _, _, h, w = images.shape
    v, u = torch.meshgrid(torch.arange(h, dtype=K_src.dtype, device=K_src.device) + 0.5,
                          torch.arange(w, dtype=K_src.dtype, device=K_src.device) + 0.5, indexing="ij")
    pixels = torch.stack([u, v, torch.ones_like(u)], -1).reshape(1, h * w, 3)  # [1, HW, 3]
    src = pixels @ (K_src @ torch.linalg.inv(K_dst)).transpose(-1, -2)  # [N, HW, 3]
    xy = src[..., :2] / src[..., 2:]
    grid = torch.stack([2 * xy[..., 0] / w - 1, 2 * xy[..., 1] / h - 1], -1)  # align_corners=False convention
    return F.grid_sample(images, grid.reshape(-1, h, w, 2).to(images.dtype), mode=mode,
                         padding_mode="border", align_corners=False)


def warp_to_frame(images: Tensor, K: Tensor, ref: int, mode: str = "bilinear") -> Tensor:
    """Every frame of a stack resampled onto frame ``ref``'s pixel grid (:func:`warp_to_grid`).

    Args:
        images: frames (or any per-frame maps) of one camera pose.  # [B, T, C, H, W]
        K: intrinsics of each frame, pixels.  # [B, T, 3, 3]
        ref: the frame whose grid the result uses.
        mode: resampling, as :func:`warp_to_grid`.
    Returns:
        the frames on frame ``ref``'s grid.  # [B, T, C, H, W]
    """
    b, t = images.shape[:2]
    dst = K[:, ref : ref + 1].expand(b, t, 3, 3)
    return warp_to_grid(images.flatten(0, 1), K.flatten(0, 1), dst.flatten(0, 1), mode).reshape(images.shape)


def focus_measure(images: Tensor, window: int = WINDOW_PX, sigma_px: float = SMOOTH_PX) -> Tensor:
    """Energy of the Laplacian of the Gaussian-smoothed luminance over a ``window`` x ``window`` box.

    The smoothing (std ``sigma_px``; 0 = none) keeps path-tracing noise, which is
    independent per pixel and strongest in the most defocused frames, from reading as
    sharp detail (module docstring).

    Args:
        images: linear RGB.  # [..., 3, H, W]
    Returns:
        the measure (mean over the window; reflected borders).  # [..., 1, H, W]
    """
    lead, (h, w) = images.shape[:-3], images.shape[-2:]
    luma = (images.reshape(-1, 3, h, w) * images.new_tensor(LUMA)[:, None, None]).sum(1, keepdim=True)
    if sigma_px > 0:
        luma = gaussian_blur(luma, sigma_px)
    kernel = images.new_tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])[None, None]
    lap = F.conv2d(F.pad(luma, (1, 1, 1, 1), mode="reflect"), kernel)
    pad = window // 2
    energy = F.avg_pool2d(F.pad(lap.square(), (pad, pad, pad, pad), mode="reflect"), window, stride=1)
    return energy.reshape(*lead, 1, h, w)


def blur_features(image: Tensor, scales_px: list[float]) -> Tensor:
    """Parameter-free blur cues of one image: how the focus measure falls from scale to scale.

    The energy of the Laplacian E_s (:func:`dfd_models.focus.focus_measure`, 7 px window) of the
    image smoothed by a Gaussian of std s, for each s in ``scales_px``: a surface blurred by a
    Gaussian of std b keeps E_s about flat for s << b and loses it fast for s >> b, whatever its
    texture's contrast. Returned: log(E_s / E_s') for consecutive scales (contrast cancels) and
    log E of the first scale / 10 (is there texture at all).

    Args:
        image: linear RGB.  # [N, 3, H, W]
    Returns:
        float, same dtype as the image.  # [N, len(scales_px), H, W]
    """
    with torch.no_grad():
        logs = [(focus_measure(image.float(), 7, s) + 1e-8).log() for s in scales_px]
        ratios = [a - b for a, b in zip(logs, logs[1:])]
        return torch.cat([logs[0] / 10] + ratios, 1).to(image.dtype)


def _sharpest(frames: Tensor, K: Tensor, ref: int, mode: str = "bilinear") -> tuple[Tensor, Tensor, Tensor]:
    """(warped frames [B, T, 3, H, W] (``mode``), focus measure [B, T, H, W], index of the sharpest frame [B, H, W])."""
    # The measure is taken on each frame's own grid and then resampled: resampling the frames
    # first would smooth every frame but ``ref`` and pull the argmax towards it.
    warped = warp_to_frame(frames, K, ref, mode)
    measure = warp_to_frame(focus_measure(frames), K, ref)[:, :, 0]  # [B, T, H, W]
    return warped, measure, measure.argmax(1)


def _composite(warped: Tensor, best: Tensor) -> Tensor:
    """Each pixel's colour from frame ``best`` of the warped stack.  # [B, T, 3, H, W], [B, H, W] -> [B, 3, H, W]"""
    return warped.gather(1, best[:, None, None].expand(-1, 1, 3, -1, -1))[:, 0]


def _parabola_vertex(x0: Tensor, y0: Tensor, xc: Tensor, yc: Tensor, x2: Tensor, y2: Tensor) -> Tensor:
    """Abscissa of the vertex of the parabola through three points, clamped to [min(x0, x2), max(x0, x2)];
    xc where the three are collinear."""
    num = (xc - x0) ** 2 * (yc - y2) - (xc - x2) ** 2 * (yc - y0)
    den = (xc - x0) * (yc - y2) - (xc - x2) * (yc - y0)
    vertex = xc - 0.5 * num / torch.where(den.abs() > 1e-12, den, torch.ones_like(den))
    lo, hi = torch.minimum(x0, x2), torch.maximum(x0, x2)
    return torch.where(den.abs() > 1e-12, torch.minimum(torch.maximum(vertex, lo), hi), xc)


#: Values of :func:`dff_depth`'s ``beyond_range``: what depth a pixel gets whose sharpest frame is the
#: nearest- or farthest-focused one (its focus peak may lie beyond the stack's focus range).
DFF_BEYOND_RANGE = ("clamp", "extrapolate")
#: Confidence factor of a pixel whose sharpest frame is an end frame of the stack (its peak not
#: bracketed by two frames), at the end frame; it halves again for each focus step beyond it.
DFF_END_CONFIDENCE = 0.25
#: Depth hypotheses beyond an end frame of ``"extrapolate"`` (:func:`_beyond_range`).
DFF_BEYOND_HYPOTHESES = 16


def dff_depth(frames: Tensor, focus_m: Tensor, K: Tensor, ref: int, *, beyond_range: str = "clamp",
              lens: LensParams | None = None, min_depth_m: float | None = None,
              max_depth_m: float | None = None) -> Tensor:
    """Classical depth from focus on frame ``ref``'s grid (:func:`dff_depth_and_confidence`'s depth).

    With the defaults: planar depth, metres, within [focus_m.min, focus_m.max].  # [B, 1, H, W]
    """
    return dff_depth_and_confidence(frames, focus_m, K, ref, beyond_range=beyond_range, lens=lens,
                                    min_depth_m=min_depth_m, max_depth_m=max_depth_m)[0]


def dff_depth_and_confidence(frames: Tensor, focus_m: Tensor, K: Tensor, ref: int, *, beyond_range: str = "clamp",
                             lens: LensParams | None = None, min_depth_m: float | None = None,
                             max_depth_m: float | None = None) -> tuple[Tensor, Tensor]:
    """Classical depth from focus on frame ``ref``'s grid (module docstring), and its confidence.

    Per pixel: the frame t* of highest :func:`focus_measure` m; for 0 < t* < T - 1 the
    diopter x = 1/F at the vertex of the parabola through (x_t, m_t) for t = t* - 1, t*,
    t* + 1 (clamped to [x_{t*+1}, x_{t*-1}]); depth 1 / x. For T < 3, the sharpest frame's
    focus distance. Where t* is an end frame of the stack (t* = 0 or T - 1):

    - ``beyond_range="clamp"``: that frame's focus distance (depth within the focus range).
    - ``"extrapolate"``: depth from defocus with the lens (:func:`_beyond_range`): the depth,
      from halfway to the next frame out to ``max_depth_m`` (far end) or ``min_depth_m`` (near
      end), whose blur turns the end frame into the two frames next to it. Beyond the focus
      range the focus measure only rises towards the end frame, so which frame is sharpest
      says nothing more; how blurred the others are does. (A Gaussian fit of the measure
      across the end frames, Nayar and Nakagawa's interpolation, was tried first: ln m of a
      broadband texture is not a parabola in diopters, and on a synthetic stack a plane at
      the far focus itself came out at the 3 m bound.)

    Confidence, in [0, 1]: 1 - min_t m_t / max_t m_t (near 0 where the focus measure does not
    change across the stack: no texture, or a surface far beyond the range), times
    :data:`DFF_END_CONFIDENCE` where t* is an end frame, halved again for each focus step
    (the end frames' diopter spacing) the depth lies beyond that frame.

    Args:
        frames: linear RGB, sorted by focus distance.  # [B, T, 3, H, W]
        focus_m: focus distances, metres, increasing.  # [B, T]
        K: intrinsics, pixels.  # [B, T, 3, 3]
        ref: the frame whose grid the depth is on.
        beyond_range: ``"clamp"`` or ``"extrapolate"`` (above).
        lens: the lens, fields [] or [B], pixel pitch for width W (``"extrapolate"`` needs it).
        min_depth_m, max_depth_m: the bounds of extrapolated depth, metres, 0 < min < max
            (``"extrapolate"`` needs them; ignored by ``"clamp"``).
    Returns:
        (planar depth, metres, > 0; confidence).  # [B, 1, H, W] each
    Raises:
        ValueError: an unknown ``beyond_range``, or (``"extrapolate"``) no lens, or bounds
            missing or not 0 < min < max.
    """
    if beyond_range not in DFF_BEYOND_RANGE:
        raise ValueError(f"beyond_range must be one of {DFF_BEYOND_RANGE}, got {beyond_range!r}")
    extrapolate = beyond_range == "extrapolate"
    if extrapolate and not (min_depth_m is not None and max_depth_m is not None and 0 < min_depth_m < max_depth_m):
        raise ValueError(f"beyond_range='extrapolate' needs 0 < min_depth_m < max_depth_m, "
                         f"got {min_depth_m}, {max_depth_m}")
    if extrapolate and lens is None:
        raise ValueError("beyond_range='extrapolate' needs the lens (the blur a depth gives)")
    warped, measure, best = _sharpest(frames, K, ref)
    t = frames.shape[1]
    top = measure.amax(1)  # [B, H, W]
    contrast = (1 - measure.amin(1) / top.clamp_min(1e-20)).clamp(0, 1) * (top > 0)
    diopter = (1 / focus_m)[:, :, None, None].expand_as(measure)  # [B, T, H, W]
    x1 = diopter.gather(1, best[:, None])[:, 0]
    if t < 3:
        return (1 / x1)[:, None], contrast[:, None]
    mid = best.clamp(1, t - 2)[:, None]
    (x0, y0), (xc, yc), (x2, y2) = [
        (diopter.gather(1, mid + d)[:, 0], measure.gather(1, mid + d)[:, 0]) for d in (-1, 0, 1)]
    refined = _parabola_vertex(x0, y0, xc, yc, x2, y2)
    inner = (best > 0) & (best < t - 1)
    x = torch.where(inner, refined, x1)
    if extrapolate:
        x = _beyond_range(warped, focus_m, K, lens, ref, x, best == 0, best == t - 1, min_depth_m, max_depth_m,
                          WINDOW_PX)
    step = (x0 - x2).abs() / 2  # the diopter spacing of the three frames the depth came from
    beyond = torch.where(best == 0, x - x1, x1 - x).clamp_min(0) / step.clamp_min(1e-12)
    confidence = contrast * torch.where(inner, torch.ones_like(x), DFF_END_CONFIDENCE * 0.5**beyond)
    return (1 / x)[:, None], confidence[:, None]


def _beyond_range(warped: Tensor, focus_m: Tensor, K: Tensor, lens: LensParams, ref: int, x_end: Tensor,
                  near: Tensor, far: Tensor, min_depth_m: float, max_depth_m: float, window: int) -> Tensor:
    """Diopter of the pixels sharpest in an end frame by :func:`dff_depth_and_confidence`'s
    ``"extrapolate"``: the depth beyond that frame whose blur explains the next frames best.

    For each hypothesis z (:data:`DFF_BEYOND_HYPOTHESES`, uniform in diopters from the end
    frame's focus to ``max_depth_m``, or to ``min_depth_m`` at the near end), the end frame e
    blurred by the Gaussian of std sqrt(c_t(z)^2 - c_e(z)^2) / 4 (c the lens CoC in pixels of
    frame ``ref``'s grid, :func:`sweep_blur_px`; a disc of diameter c has std c / 4) is compared
    with each of the two frames t next to it: L1 of the gamma-encoded images (gamma 1/2.2),
    averaged over a ``window`` box, summed over the two. The least cost wins, refined by the
    parabola through it and its neighbours (in diopters).

    Args:
        warped: the frames on frame ``ref``'s grid.  # [B, T, 3, H, W]
        x_end: the end frame's diopter per pixel.  # [B, H, W]
        near, far: the pixels sharpest in the first / last frame.  # [B, H, W] bool
    Returns:
        diopters, x_end where neither.  # [B, H, W]
    """
    b, t, _, h, w = warped.shape
    out = x_end.clone()
    targets = gamma_encode(warped, 1 / 2.2)
    pad = window // 2
    for side, mask in (("near", near), ("far", far)):
        if not bool(mask.any()):
            continue
        end, others = (0, (1, 2)) if side == "near" else (t - 1, (t - 2, t - 3))
        x_e, x_in = 1 / focus_m[:, end].double(), 1 / focus_m[:, others[0]].double()  # [B]
        x0 = x_e + 0.5 * (x_in - x_e)  # halfway to the next frame: its peak would be bracketed beyond
        x1 = torch.full_like(x0, 1 / (min_depth_m if side == "near" else max_depth_m))
        x1 = torch.maximum(x1, x_e) if side == "near" else torch.minimum(x1, x_e)
        frac = torch.linspace(0, 1, DFF_BEYOND_HYPOTHESES, dtype=torch.float64, device=warped.device)
        inv = x0[:, None] + (x1 - x0)[:, None] * frac  # [B, D]
        sigma = sweep_blur_px(lens, (1 / inv).to(warped.dtype), focus_m, K, ref, w, 0.0)  # [B, T, D]
        cost = warped.new_empty(b, DFF_BEYOND_HYPOTHESES, h, w)
        for d in range(DFF_BEYOND_HYPOTHESES):
            total = 0
            for o in others:
                blurred = gaussian_blur(warped[:, end], (sigma[:, o, d].square() - sigma[:, end, d].square())
                                        .clamp_min(0).sqrt())
                error = (gamma_encode(blurred, 1 / 2.2) - targets[:, o]).abs().mean(1, keepdim=True)
                total = total + F.avg_pool2d(F.pad(error, (pad, pad, pad, pad), mode="reflect"), window, stride=1)
            cost[:, d] = total[:, 0]
        low = cost.argmin(1, keepdim=True)  # [B, 1, H, W]
        count = DFF_BEYOND_HYPOTHESES
        mid = low.clamp(1, count - 2)
        grid = inv.to(warped.dtype)[:, :, None, None].expand(b, count, h, w)
        (a0, c0), (ac, cc), (a2, c2) = ((grid.gather(1, mid + k), cost.gather(1, mid + k)) for k in (-1, 0, 1))
        inner = (low > 0) & (low < count - 1)
        best = torch.where(inner, _parabola_vertex(a0, c0, ac, cc, a2, c2), grid.gather(1, low))[:, 0]
        out = torch.where(mask, best, out)
    return out


def sharp_composite(frames: Tensor, K: Tensor, ref: int) -> Tensor:
    """An all-in-focus estimate on frame ``ref``'s grid: each pixel's colour from its sharpest frame.

    Args and shapes as :func:`dff_depth`.
    Returns:
        linear RGB.  # [B, 3, H, W]
    """
    warped, _, best = _sharpest(frames, K, ref)
    return _composite(warped, best)


def sweep_blur_px(lens: LensParams, depth_m: Tensor, focus_m: Tensor, K: Tensor, ref: int, width_px: int,
                  splat_px: float) -> Tensor:
    """Std of the Gaussian that re-renders the sharp composite on a plane at ``depth_m`` as each frame.

        sigma_t = sqrt(s^2 + max(c_t^2 - c_min^2, 0) / 16),   c_min = min over frames of c_t

    c_t the lens CoC (pixels of frame ``ref``'s grid: frame t's CoC scaled by its focal length
    ratio) and s the splats' std: what :func:`dfd_models.splat.render_defocus` does to
    pixel-aligned splats of std s on one plane, with ``coc_floor_px`` = c_min.

    Args:
        depth_m: plane depths, metres.  # [B, D]
        focus_m, K: the stack's focus distances [B, T] (metres) and intrinsics [B, T, 3, 3].
    Returns:
        sigma, pixels.  # [B, T, D]
    """
    scale = K[:, ref, 0, 0][:, None] / K[:, :, 0, 0]  # [B, T]: frame t's pixels in frame ref's
    t = focus_m.shape[1]
    coc = torch.stack([coc_px(lens, depth_m, focus_m[:, i], width_px) * scale[:, i : i + 1] for i in range(t)], 1)
    return (splat_px**2 + (coc.square() - coc.square().amin(1, keepdim=True)) / 16).sqrt()


def sweep_depths(min_depth_m: float, max_depth_m: float, ratio: float = SWEEP_RATIO) -> Tensor:
    """Depth hypotheses uniform in log depth from ``min_depth_m`` to ``max_depth_m`` (both included),
    consecutive ones at most ``ratio`` apart: the fewest that are.  # [D] float32, metres"""
    if not 0 < min_depth_m < max_depth_m or ratio <= 1:
        raise ValueError(f"need 0 < min_depth_m < max_depth_m and ratio > 1, got {min_depth_m}, {max_depth_m}, {ratio}")
    count = math.ceil(math.log(max_depth_m / min_depth_m) / math.log(ratio) - 1e-9) + 1
    return torch.logspace(math.log10(min_depth_m), math.log10(max_depth_m), count)


def defocus_sweep(frames: Tensor, focus_m: Tensor, K: Tensor, lens: LensParams, ref: int,
                  **options: Any) -> tuple[Tensor, Tensor]:
    """Depth from defocus by re-rendering: the depth whose blur explains every frame best.

    Analysis by synthesis over fronto-parallel hypotheses z_d: the stack's sharp composite R
    (:func:`sharp_composite`) placed at z_d and re-rendered as each frame t. The cost of z_d at
    a pixel is the L1 error of the gamma-encoded re-rendering against every frame, summed over
    frames and averaged over a ``window`` x ``window`` box (on frame ``ref``'s grid); each pixel
    takes the hypothesis of least cost, refined by the vertex of the parabola through it and
    its neighbours (in 1/z). Unlike depth from focus it uses how much every frame is blurred,
    not only which frame is sharpest, so depth beyond the focus range (a far wall) is found
    too; unlike a gradient step on the same error it cannot stop in a local minimum.

    Two forward models:

    - ``footprint=None`` (sdgs' teacher): R blurred by a Gaussian (:func:`sweep_blur_px`), on
      frame ``ref``'s grid against the frames resampled onto it (bilinear). This is what
      :func:`dfd_models.splat.render_defocus` gives for pixel-aligned splats on one plane
      (tests/test_sdgs.py checks the two rank planes alike), so the sweep minimises the
      re-rendering error sdgs trains with, globally, per pixel window.
    - ``footprint="gaussian"`` or ``"disc"``: the splat renderer applied to plane hypotheses.
      One splat per pixel of frame ``ref`` (std ``splat_px``, opacity 1) with colour R, at
      z_d, rendered into every frame's own grid and K with that footprint and ``blend="sum"``
      (:func:`dfd_models.splat.render_planes`; equal to :func:`dfd_models.splat.render_defocus`
      up to its alpha thresholds, and on frame ``ref``'s grid to the convolution with
      :func:`dfd_models.splat.plane_kernel`: tests/test_forward_model.py), colour normalised by
      alpha. The frames are compared unresampled, where frame ``ref``'s view covers them; the
      error maps are resampled onto frame ``ref``'s grid to be summed. R is composed from
      frames resampled bicubically, and carries the blur of its frame: each frame gets the
      rest of its CoC, sqrt(c_t^2 - min_s c_s^2) (the renderer's ``coc_floor_px``).

    The confidence is 1 - min / mean of the pixel's costs over the hypotheses, in [0, 1]:
    near 0 where no hypothesis explains the frames better than another (textureless surfaces).

    Args:
        frames, focus_m, K, lens, ref, options: as :func:`sweep_cost`.
    Returns:
        (planar depth in metres, confidence).  # [B, 1, H, W] each
    """
    return sweep_minimum(*sweep_cost(frames, focus_m, K, lens, ref, **options))


def sweep_minimum(inv: Tensor, cost: Tensor, confidence: str = "ratio", estimate: str = "parabola",
                  sharpness: float = SOFT_ARGMIN_SHARPNESS) -> tuple[Tensor, Tensor]:
    """:func:`defocus_sweep`'s depth and confidence from its cost volume (:func:`sweep_cost`).

    ``confidence`` (one of :data:`SWEEP_CONFIDENCES`) says how sure the minimum is, in [0, 1]:

    - ``ratio``: 1 - least / mean cost. High wherever some hypotheses are clearly wrong, even
      where every depth within a factor 2 of the minimum explains the frames as well: on fod500's
      far wall the planes from 0.45 to 3 m cost within 10 % of each other, yet the near planes'
      cost makes the ratio about 0.5 (docs/NOTES.md).
    - ``margin``: 1 - least cost / the least cost among the hypotheses whose depth differs from
      the minimum's by more than a factor 1.25 (delta1), the peak ratio of stereo matching (Hu
      and Mordohai, TPAMI 34(11), 2012). Near 0 where a depth off by more than delta1 explains
      the frames as well: the minimum says nothing at the precision depth is scored at.

    ``estimate`` (one of :data:`SWEEP_ESTIMATES`) says where the depth lies: at the parabola's vertex
    about the least-cost plane, or at the soft argmin (:func:`soft_argmin`), which weighs every plane
    that explains the frames almost as well. On the pages' validation objects the soft argmin is the
    better classical estimate (fod500 AbsRel 0.233 / delta1 0.630 / Pearson 0.79 against 0.256 /
    0.603 / 0.69, small_obj 0.197 / 0.738 / 0.67 against 0.213 / 0.736 / 0.60), worse on fod500's
    wall, and not a better teacher for ``sdgs_stack`` (docs/NOTES.md, 2026-12-08).

    Args:
        inv: the hypotheses' inverse depths, 1/m, increasing.  # [D]
        cost: the cost volume.  # [B, D, H, W]
        confidence: one of :data:`SWEEP_CONFIDENCES`.
        estimate: one of :data:`SWEEP_ESTIMATES`.
        sharpness: the soft argmin's, per unit of cost / the pixel's mean cost.
    Returns:
        (planar depth in metres, confidence).  # [B, 1, H, W] each
    """
    count = inv.numel()
    least, low = cost.min(1, keepdim=True)  # [B, 1, H, W]
    if estimate == "parabola":
        mid = low.clamp(1, count - 2)
        (x0, y0), (xc, yc), (x2, y2) = ((inv[mid + k], cost.gather(1, mid + k)) for k in (-1, 0, 1))
        inner = (low > 0) & (low < count - 1)
        best_inv = torch.where(inner, _parabola_vertex(x0, y0, xc, yc, x2, y2), inv[low])
    elif estimate == "soft":
        best_inv = soft_argmin(inv, relative_cost(cost), sharpness)
    else:
        raise ValueError(f"estimate {estimate!r}: one of {SWEEP_ESTIMATES}")
    if confidence == "ratio":
        rated = 1 - least / cost.mean(1, keepdim=True).clamp_min(1e-12)
    elif confidence == "margin":
        off = delta_ratio(inv[None, :, None, None], best_inv) > DELTA_BASE  # [B, D, H, W]
        rival = cost.masked_fill(~off, math.inf).amin(1, keepdim=True)  # inf: no hypothesis that far
        rated = (1 - least / rival.clamp_min(1e-12)).clamp(0, 1)
    else:
        raise ValueError(f"confidence {confidence!r}: one of {SWEEP_CONFIDENCES}")
    return 1 / best_inv, rated


def relative_cost(cost: Tensor) -> Tensor:
    """Each pixel's costs over their mean across the hypotheses (mean 1).  # [B, D, H, W] -> same"""
    return cost / cost.mean(1, keepdim=True).clamp_min(1e-12)


def soft_argmin(inv: Tensor, relative: Tensor, sharpness: float = SOFT_ARGMIN_SHARPNESS) -> Tensor:
    """Stereo matching's soft argmin (Kendall et al., ICCV 2017): the hypotheses' inverse depths
    averaged with weights softmax(-sharpness relative) over the hypotheses.

    Args:
        inv: the hypotheses' inverse depths, 1/m.  # [D]
        relative: costs in units of the pixel's mean cost (:func:`relative_cost`).  # [B, D, H, W]
        sharpness: per unit of relative cost.
    Returns:
        inverse depth, 1/m.  # [B, 1, H, W]
    """
    weights = torch.softmax(-sharpness * relative, 1)
    return (weights * inv[None, :, None, None].to(weights.dtype)).sum(1, keepdim=True)


def sweep_cost(
    frames: Tensor,
    focus_m: Tensor,
    K: Tensor,
    lens: LensParams,
    ref: int,
    *,
    min_depth_m: float,
    max_depth_m: float,
    hypotheses: int = SWEEP_HYPOTHESES,
    window: int = WINDOW_PX,
    gamma: float = 1 / 2.2,
    splat_px: float = 1 / math.sqrt(2 * math.pi),
    footprint: str | None = None,
    depths: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The cost volume of :func:`defocus_sweep` (which says what is rendered): each hypothesis's
    re-rendering error, summed over frames and averaged over the window.

    Args:
        frames: linear RGB, sorted by focus distance.  # [B, T, 3, H, W]
        focus_m: focus distances, metres.  # [B, T]
        K: intrinsics, pixels.  # [B, T, 3, 3]
        lens: the lens, fields [] or [B], pixel pitch for width W.
        ref: the frame whose grid the depth is on.
        min_depth_m, max_depth_m: the hypotheses' range, metres (``depths`` None).
        hypotheses: number of depth planes D, uniform in 1/z over the range (``depths`` None).
        window: cost-aggregation box, pixels (odd).
        gamma: exponent of the encoding compared, (x + 1e-3)^gamma (1 = linear).
        splat_px: the splats' own std s, pixels.
        footprint: None, or a key of :data:`dfd_models.splat.FOOTPRINTS` (:func:`defocus_sweep`).
        depths: the hypotheses, metres, increasing (e.g. :func:`sweep_depths`); None: ``hypotheses``.  # [D]
    Returns:
        (the hypotheses' inverse depths, 1/m, increasing [D]; cost, summed over frames, >= 0 [B, D, H, W])
    """
    if depths is None:
        inv = torch.linspace(1 / max_depth_m, 1 / min_depth_m, hypotheses, dtype=frames.dtype, device=frames.device)
    else:
        inv = 1 / depths.to(frames.dtype).to(frames.device).flip(0)  # increasing in 1/z, as the parabola wants
    if footprint is None:
        cost = _gaussian_sweep_cost(frames, focus_m, K, lens, ref, inv, window, gamma, splat_px)
    else:
        cost = _splat_sweep_cost(frames, focus_m, K, lens, ref, inv, window, gamma, splat_px, footprint)
    return inv, cost


def cost_at(inv: Tensor, cost: Tensor, inv_depth: Tensor) -> Tensor:
    """The cost volume read at each pixel's own inverse depth: a Catmull-Rom spline through the
    hypotheses (constant beyond the first and last), so that its minimum can lie between them, as
    :func:`sweep_minimum`'s parabola's does (a linear read would pull every pixel onto a hypothesis).

    Differentiable in ``inv_depth``: the re-rendering error of a fronto-parallel patch at that depth.

    Args:
        inv: the hypotheses' inverse depths, 1/m, increasing.  # [D]
        cost: :func:`sweep_cost`'s.  # [B, D, H, W]
        inv_depth: per-pixel inverse depth, 1/m.  # [B, 1, H, W]
    Returns:
        the cost there.  # [B, 1, H, W]
    """
    count = inv.numel()
    x = inv_depth.clamp(inv[0], inv[-1])
    upper = torch.searchsorted(inv, x.detach().contiguous()).clamp(1, count - 1)  # [B, 1, H, W]
    f = (x - inv[upper - 1]) / (inv[upper] - inv[upper - 1])  # position between the two, in [0, 1]
    p0, p1, p2, p3 = (cost.gather(1, (upper + k).clamp(0, count - 1)) for k in (-2, -1, 0, 1))
    return p1 + 0.5 * f * (p2 - p0 + f * (2 * p0 - 5 * p1 + 4 * p2 - p3 + f * (3 * (p1 - p2) + p3 - p0)))


def _gaussian_sweep_cost(frames: Tensor, focus_m: Tensor, K: Tensor, lens: LensParams, ref: int, inv: Tensor,
                         window: int, gamma: float, splat_px: float) -> Tensor:
    """Cost volume of :func:`defocus_sweep` with ``footprint=None``.  # [B, D, H, W]"""
    b, t, _, h, w = frames.shape
    warped, _, best = _sharpest(frames, K, ref)
    radiance = _composite(warped, best)  # [B, 3, H, W]
    targets = gamma_encode(warped, gamma)
    count = inv.numel()
    sigma = sweep_blur_px(lens, (1 / inv).expand(b, count), focus_m, K, ref, w, splat_px)  # [B, T, D]
    cost = frames.new_empty(b, count, h, w)
    pad = window // 2
    for d in range(count):
        rendered = gaussian_blur(radiance.repeat_interleave(t, 0), sigma[:, :, d].flatten())  # [B T, 3, H, W]
        error = (gamma_encode(rendered, gamma) - targets.flatten(0, 1)).abs().mean(1, keepdim=True)
        error = F.avg_pool2d(F.pad(error, (pad, pad, pad, pad), mode="reflect"), window, stride=1)
        cost[:, d] = error.reshape(b, t, h, w).sum(1)
    return cost


def splat_sweep_config(footprint: str) -> SplatConfig:
    """The splat settings of the splat-footprint sweep (and of :mod:`dfd_models.refine`): ``footprint``,
    blend ``"sum"`` (a plane renders as a convolution, as Cycles renders it), no low-pass, alpha_min 1e-4."""
    return SplatConfig(eps2d=0.0, alpha_min=SWEEP_ALPHA_MIN, footprint=footprint, blend="sum")


def splat_radiance(frames: Tensor, K: Tensor, ref: int, splat_px: float, config: SplatConfig) -> tuple[Tensor, Tensor]:
    """What the splat-footprint sweep re-renders, and where it compares.

    Returns:
        the sharp composite on frame ``ref``'s grid, from frames resampled bicubically (bilinear
        resampling blurs away the cue, module docstring), clamped at 0 (bicubic overshoots)
        [B, 3, H, W]; and the pixels of every frame that frame ``ref``'s view covers, where a
        sharp plane of its splats reaches alpha 1/2, as 0/1 [B, T, 1, H, W].
    """
    b, t, _, h, w = frames.shape
    warped, _, best = _sharpest(frames, K, ref, mode="bicubic")
    radiance = _composite(warped, best).clamp_min(0)
    ones = torch.ones_like(radiance[:, None, :1])  # [B, 1, 1, H, W]
    sharp = render_planes(ones, plane_operators(frames.new_zeros(b, t, 1), K[:, ref], K, h, w, splat_px, config))
    return radiance, (sharp >= 0.5).to(frames.dtype)


def _splat_sweep_cost(frames: Tensor, focus_m: Tensor, K: Tensor, lens: LensParams, ref: int, inv: Tensor,
                      window: int, gamma: float, splat_px: float, footprint: str) -> Tensor:
    """Cost volume of :func:`defocus_sweep` with a splat ``footprint``.  # [B, D, H, W]"""
    b, t, _, h, w = frames.shape
    config = splat_sweep_config(footprint)
    radiance, cover = splat_radiance(frames, K, ref, splat_px, config)
    layer = torch.cat([radiance, torch.ones_like(radiance[:, :1])], 1)[:, None]  # [B, 1, 4, H, W]: colour, alpha
    k_ref = K[:, ref]
    targets = gamma_encode(frames, gamma)
    to_ref = (K.flatten(0, 1), k_ref[:, None].expand(b, t, 3, 3).flatten(0, 1))
    count = inv.numel()
    coc = torch.stack([coc_px(lens, (1 / inv).expand(b, count), focus_m[:, i], w) for i in range(t)], 1)  # [B, T, D]
    rest = (coc.square() - coc.square().amin(1, keepdim=True)).clamp_min(0).sqrt()  # the composite's blur removed
    cost = frames.new_empty(b, count, h, w)
    pad = window // 2
    for d in range(count):
        out = render_planes(layer, plane_operators(rest[:, :, d : d + 1], k_ref, K, h, w, splat_px, config))
        rendered = out[:, :, :3] / out[:, :, 3:].clamp_min(config.alpha_min)  # [B, T, 3, H, W], frame grids
        error = (gamma_encode(rendered, gamma) - targets).abs().mean(2, keepdim=True) * cover
        # error and coverage onto frame ref's grid, each summed over the window, then their ratio
        error = warp_to_grid(torch.cat([error, cover], 2).flatten(0, 1), *to_ref)  # [B T, 2, H, W]
        error = F.avg_pool2d(F.pad(error, (pad, pad, pad, pad), mode="reflect"), window, stride=1)
        cost[:, d] = (error[:, 0] / error[:, 1].clamp_min(1e-3)).reshape(b, t, h, w).sum(1)
    return cost
