"""``sdgs``: self-supervised depth from defocus with a Siamese defocus network and 3DGS re-rendering.

Inference (:meth:`SDGS.predict`) sees one image, frame r of a stack (``input_frame``: ``nearest``,
r = 0, the default; ``middle``, T // 2; ``farthest``, T - 1), with its focus distance and lens:

    DefocusNet: (image, lens code, blur features) -> defocus map c (unsigned CoC diameter, pixels)
    DepthNet:   (image, c, lens code) -> inverse depth in [1/max_depth, 1/min_depth]

The lens code is the signed CoC at ``min_depth_m`` and ``max_depth_m`` over ``coc_scale_px``, which
fixes c(z) = k (1/F - 1/z) for every depth; the blur features are the image's focus-measure ratios
(:func:`dfd_models.focus.blur_features`). With ``depth_from_defocus`` DepthNet corrects the depth
the map implies through the lens, 1/z = 1/F -+ c / k (minus for ``nearest``, where every surface is
behind the plane of focus, plus for ``farthest``). Depth is returned on the reference frame's grid (T // 2).

Training sees the stack, never depth nor an all-in-focus image: the same DefocusNet gives every
frame's c_t, and the stack is re-rendered (:func:`rerender`) from one splat per pixel of frame r at
the predicted depth, coloured by a sharp radiance R (``radiance: stack``: each pixel's sharpest frame,
:func:`dfd_models.focus.sharp_composite`; ``frame``: frame r), each splat blurred by the part of frame
t's CoC that R does not already carry (``coc_floor_px``). The terms (:meth:`SDGS.losses`):

    photometric  pe(P g(render_t), P g(frame_t)) over the frames rendered (``render_frames``: ``all``, or
                 ``pair``: frame r and one drawn), pe = alpha (1 - SSIM) / 2 + (1 - alpha) L1 (monodepth2
                 eq. 1), g(x) = (x + 1e-3)^photometric_gamma, P average pooling by ``photometric_pool``
                 (path-tracing noise is per pixel, defocus spans pixels), where the blur disc lies inside
                 frame r's view; ``photometric_renderer: layers``: :func:`dfd_models.refine.forward_model`;
                 ``planes``: the teacher's cost volume (:func:`sweep_volume`: every pixel's window re-rendered
                 as a plane of splats at each hypothesis, scored against every frame) read at the pixel's
                 predicted 1/z (:func:`dfd_models.focus.cost_at`), over its mean across the hypotheses,
                 weighted by the balance bins: the re-rendering error at the predicted depth, no argmin
    sweep        mean of w |1/z - 1/z_s| (``sweep_space: inverse``) or w-weighted mean of |ln z - ln z_s|
                 (``log``, the error AbsRel scores), z_s the plane of least re-rendering error
                 (:func:`sweep_teacher`), w its confidence times equal weight per occupied depth bin
                 (``balance_bins``, ``balance_space``: the wall would otherwise outweigh every object);
                 off with ``w_sweep: 0``
    coc          mean over the frames of w |c_t - |coc_px(lens, z_s, F_t)|| / coc_scale_px (without the
                 sweep: the predicted depth, held fixed): the maps learn from the depth, not the reverse
    smoothness   edge-aware smoothness of inverse depth (monodepth2 eq. 3)
    total        w_photometric photometric + w_sweep sweep + w_coc coc + w_smoothness smoothness
                 (``w_photometric: 0``, an ablation, does not re-render)

The start: ``defocus_init_px`` starts DefocusNet's map at that value everywhere, so the untrained
depth lies inside the range for every lens; the default (null) is a zero head, chosen on validation.

Why: every frame must be explained by one sharp radiance and one depth, which no constant depth does;
the sweep finds the global minimum of that forward model, where a gradient step finds a local one.
The design and its reasons: docs/DESIGN.md section 7; what was measured: docs/NOTES.md.

Draws (the other frame of ``pair``) come from torch's global CPU generator (deterministic under
``torch.manual_seed``). Image height and width must be multiples of 2^(len(channels) - 1) (8 by default).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from generator.core.schema import setting
from dfd_models.config import ConfigError
from dfd_models.data.batch import reference_index
from dfd_models.focus import (SWEEP_CONFIDENCES, SWEEP_ESTIMATES, SWEEP_HYPOTHESES, blur_features, cost_at,
                              gamma_encode, sharp_composite, sweep_cost, sweep_depths, sweep_minimum, warp_to_grid)
from dfd_models.lens import LensParams, coc_px, coc_signed_px
from dfd_models.losses import edge_aware_smoothness, masked_mean, photometric_error
from dfd_models.networks.base import BLUR_SCALES, WIDTHS, DepthModel, DepthRangeConfig, lens_from_batch, register
from dfd_models.networks.blocks import UNet
from dfd_models.refine import forward_model
from dfd_models.splat.rendering import BACKENDS
from dfd_models.splat import Camera, Gaussians, RenderOutput, SplatConfig, render_defocus

__all__ = ["BALANCE_SPACES", "BATCH_KEYS", "INPUT_FRAMES", "LAYERS_NEEDS", "PHOTOMETRIC_RENDERERS", "RADIANCES",
           "RENDER_FRAMES", "SDGS", "SDGSConfig", "SWEEP_FOOTPRINTS", "SWEEP_SPACES", "overlap_margin",
           "overlap_mask", "pixel_gaussians", "rerender", "self_supervised_batch", "sweep_teacher", "sweep_volume"]

#: Config ``input_frame``: which frame of a stack the networks see.
INPUT_FRAMES = ("nearest", "middle", "farthest")
#: Config ``radiance``: the sharp radiance the re-rendering uses in training.
RADIANCES = ("stack", "frame")
#: Config ``render_frames``: which frames the photometric loss re-renders.
RENDER_FRAMES = ("all", "pair")
#: Config ``sweep_footprint``: the teacher's forward model (:func:`dfd_models.focus.defocus_sweep`):
#: ``blur`` a Gaussian blur on frame r's grid (its ``footprint=None``), else the splat footprint.
SWEEP_FOOTPRINTS = ("blur", "gaussian", "disc")
#: Config ``photometric_renderer``: how the photometric term re-renders the stack. ``splats``: one
#: Gaussian per pixel through :func:`dfd_models.splat.render_defocus` (:func:`rerender`); ``layers``: the
#: splat forward model of :func:`dfd_models.refine.forward_model` (disc footprints, drawn as layers);
#: ``planes``: each pixel's window re-rendered as a fronto-parallel plane of splats at the pixel's
#: predicted depth, the teacher's forward model (:func:`sweep_volume`, read by :func:`dfd_models.focus.cost_at`).
PHOTOMETRIC_RENDERERS = ("splats", "layers", "planes")
#: Config ``balance_space``: the steps of the balance bins (:func:`_balance`).
BALANCE_SPACES = ("inverse", "log")
#: Config ``sweep_space``: where the sweep term measures the distance to the teacher's depth.
SWEEP_SPACES = ("inverse", "log")
#: The batch keys the self-supervised models read, all of them: the frames, their focus distances
#: and intrinsics, and the lens (:func:`dfd_models.networks.base.lens_from_batch`). No depth, no
#: validity, no CoC, no wall mask, no all-in-focus image.
BATCH_KEYS = ("frames", "focus_m", "K", "lens_model", "focal_length_m", "f_number", "pixel_pitch_m")


def self_supervised_batch(batch: dict) -> dict:
    """The batch restricted to :data:`BATCH_KEYS` (an allow-list: whatever else a loader adds is dropped)."""
    return {key: batch[key] for key in BATCH_KEYS}


def _pixel_centres(height: int, width: int, like: Tensor) -> Tensor:
    """Homogeneous pixel centres [u + 0.5, v + 0.5, 1] in row-major order (DESIGN.md 2).  # [1, H W, 3]"""
    v, u = torch.meshgrid(
        torch.arange(height, dtype=like.dtype, device=like.device) + 0.5,
        torch.arange(width, dtype=like.dtype, device=like.device) + 0.5,
        indexing="ij",
    )
    return torch.stack([u, v, torch.ones_like(u)], -1).reshape(1, height * width, 3)


def pixel_gaussians(depth: Tensor, colors: Tensor, K: Tensor, scale_px: float) -> Gaussians:
    """One opaque, isotropic Gaussian per pixel, at the pixel's point at its depth.

        mu(u, v) = z(u, v) K^-1 [u + 0.5, v + 0.5, 1]^T     (camera frame, metres; DESIGN.md 2)
        s(u, v)  = scale_px z(u, v) / f_x                   (std of all three axes, metres)

    so each splat, seen with the same K, is centred on its pixel with a standard
    deviation of ``scale_px`` pixels. With scale_px = 1 / sqrt(2 pi) = 0.399 and
    opacity 1 a splat's integrated weight 2 pi scale_px^2 is one pixel.

    Args:
        depth: planar depth z, metres, > 0.  # [B, 1, H, W]
        colors: per-pixel colour or features.  # [B, C, H, W]
        K: intrinsics of the image the pixels belong to.  # [B, 3, 3]
        scale_px: splat standard deviation, pixels.
    Returns:
        Gaussians with N = H W, row-major.  # [B, N, ...]
    """
    b, _, h, w = depth.shape
    rays = _pixel_centres(h, w, depth) @ torch.linalg.inv(K).transpose(-1, -2)  # [B, N, 3], z = 1
    z = depth.reshape(b, h * w, 1)  # [B, N, 1]
    scale = scale_px * z / K[:, None, 0:1, 0]  # [B, N, 1]
    quats = torch.zeros(b, h * w, 4, dtype=depth.dtype, device=depth.device)
    quats[..., 0] = 1.0
    return Gaussians(
        means=rays * z,
        scales=scale.expand(b, h * w, 3),
        quats=quats,
        opacities=torch.ones(b, h * w, dtype=depth.dtype, device=depth.device),
        colors=colors.flatten(2).transpose(1, 2),  # [B, N, C]
    )


def rerender(
    depth: Tensor,
    colors: Tensor,
    K_src: Tensor,
    K_dst: Tensor,
    focus_m: Tensor,
    lens: LensParams,
    *,
    scale_px: float,
    splat: SplatConfig,
    backend: str = "auto",
    size: tuple[int, int] | None = None,
    coc_floor_px: Tensor | None = None,
) -> RenderOutput:
    """The image seen in one frame re-rendered as another frame of the same stack.

    Pixel-aligned Gaussians of the source frame (:func:`pixel_gaussians` with
    ``K_src``) are rendered with :func:`dfd_models.splat.render_defocus` at the
    destination's K and focus distance through ``lens``; the camera does not move.
    The colour is normalised by the accumulated opacity, C / alpha (alpha > 0):
    splats blurred by defocus are semi-transparent and only sum to alpha ~ 1 - 1/e
    inside a defocused surface, so the plain composite would darken with blur (and
    at image borders); C / alpha is a normalised blur that still lets nearer
    splats occlude farther ones. Where no splat lands (alpha = 0) colour is 0.

    Blur fidelity (measured: impulse response of a fronto-parallel plane against the
    Gaussian of std sqrt(scale_px^2 + c^2/16) the renderer models, scale_px = 0.4):
    a blurred splat's peak alpha falls as 1 / c^2, and alphas below ``splat.alpha_min``
    are dropped, so with 3DGS's 1/255 the blur is cut short (std 0.79 of the model's at
    c = 10 px, 0.45 at 20 px) and splats vanish beyond c ~ 25 px; with 1e-4 the std is
    within 3 % up to 20 px (7 % at 30 px). Front-to-back order among splats of equal depth
    (index order) skews the kernel towards later splats by about 0.27 std (down the image).

    Args:
        depth: source planar depth, metres.  # [B, 1, H, W]
        colors: source radiance.  # [B, C, H, W]
        K_src, K_dst: intrinsics of the source and destination frames.  # [B, 3, 3]
        focus_m: destination focus distance F, metres.  # [B]
        lens: the lens; fields [] or [B], pixel pitch for width W (see ``lens_from_batch``).
        scale_px, splat, backend: splat size (pixels), rasterisation constants, backend.
        size: destination (height, width), pixels; None = the source's.
        coc_floor_px: blur the source colours already carry, CoC diameter in pixels
            (:func:`dfd_models.splat.render_defocus`); None = sharp.  # [B, 1, H, W]
    Returns:
        RenderOutput with ``color`` normalised, ``depth`` the expected source depth
        seen from the destination grid, ``alpha`` the accumulated opacity.  # [B, ., H, W]
    """
    h, w = depth.shape[-2:] if size is None else size
    out = render_defocus(
        pixel_gaussians(depth, colors, K_src, scale_px),
        Camera(w, h, K=K_dst),
        focus_m,
        lens,
        config=splat,
        backend=backend,
        coc_floor_px=None if coc_floor_px is None else coc_floor_px.flatten(1),
    )
    color = out.color / out.alpha.clamp_min(splat.alpha_min)
    return RenderOutput(color=color, alpha=out.alpha, depth=out.depth, coc_px=out.coc_px)


def overlap_margin(K_src: Tensor, K_dst: Tensor, height: int, width: int) -> Tensor:
    """How far inside the source frame's view each destination pixel lies (no camera motion).

    A destination pixel centre x_d = [u + 0.5, v + 0.5, 1] is the ray K_dst^-1 x_d, seen in
    the source at x_s = K_src K_dst^-1 x_d whatever its depth; its margin is the distance
    from x_s to the nearest edge of [0, W] x [0, H], source pixels, negative outside. Focus
    breathing changes K, so frames of one stack overlap only in part.

    Args:
        K_src, K_dst: intrinsics.  # [B, 3, 3]
    Returns:
        margin, pixels.  # [B, 1, H, W]
    """
    pixels = _pixel_centres(height, width, K_src)  # [1, HW, 3]
    src = pixels @ (K_src @ torch.linalg.inv(K_dst)).transpose(-1, -2)  # [B, HW, 3]
    x, y = src[..., 0] / src[..., 2], src[..., 1] / src[..., 2]
    margin = torch.minimum(torch.minimum(x, width - x), torch.minimum(y, height - y))  # [B, HW]
    return margin.reshape(-1, 1, height, width)


def overlap_mask(K_src: Tensor, K_dst: Tensor, height: int, width: int) -> Tensor:
    """Pixels of the destination frame that the source frame also sees: margin >= 0 (:func:`overlap_margin`).

    Returns:
        bool mask.  # [B, 1, H, W]
    """
    return overlap_margin(K_src, K_dst, height, width) >= 0


def _input_index(choice: str, frames: int) -> int:
    """Index of the frame the networks see: 0 (``nearest``), the reference frame T // 2 (``middle``,
    :func:`~dfd_models.data.batch.reference_index`) or T - 1 (``farthest``)."""
    return {"nearest": 0, "middle": reference_index(frames), "farthest": frames - 1}[choice]


def _repeat_lens(lens: LensParams, repeats: int) -> LensParams:
    """The lens with every [B] field repeated element-wise to [B * repeats] (scalars kept)."""

    def rep(x: Tensor) -> Tensor:
        return x if x.dim() == 0 else x.repeat_interleave(repeats)

    return LensParams(lens.model, rep(lens.focal_length_m), rep(lens.f_number), rep(lens.sensor_width_m))


def _balance(inv_depth: Tensor, low: float, high: float, bins: int, space: str) -> Tensor:
    """Per-pixel weights that give every occupied bin of depth the same total weight (mean 1).

    A far wall that fills 90 % of the pixels would otherwise outweigh every object. The bins are
    ``bins`` equal steps over [low, high] (1/m; the model's depth range), counted over the batch:
    of log inverse depth (``space: "log"``: equal ratios of depth, so the far objects are not lumped
    with the wall) or of inverse depth (``"inverse"``: over 1/3-10 1/m everything beyond 0.65 m falls
    in the first bin). Beyond the range: the end bins.  # [B, 1, H, W] -> same
    """
    if space == "log":
        lo, hi, x = math.log(low), math.log(high), inv_depth.clamp_min(1e-12).log()
    else:
        lo, hi, x = low, high, inv_depth
    index = ((x - lo) / (hi - lo) * bins).floor().long().clamp(0, bins - 1)
    counts = torch.bincount(index.flatten(), minlength=bins).to(inv_depth.dtype)
    occupied = (counts > 0).sum()
    return (index.numel() / (occupied * counts.clamp_min(1)))[index]


def sweep_teacher(config: SDGSConfig, frames: Tensor, focus_m: Tensor, K: Tensor, lens: LensParams,
                  ref: int) -> tuple[Tensor, Tensor]:
    """The sweep's depth and confidence on frame ``ref``'s grid, with an sdgs config's forward model
    (:func:`dfd_models.focus.defocus_sweep` of :func:`sweep_volume`).

    Args and shapes as :func:`sweep_volume`.
    Returns:
        (depth, metres; confidence in [0, 1]).  # [B, 1, H, W] each
    """
    return sweep_minimum(*sweep_volume(config, frames, focus_m, K, lens, ref), config.sweep_confidence,
                         config.sweep_estimate)


def sweep_volume(config: SDGSConfig, frames: Tensor, focus_m: Tensor, K: Tensor, lens: LensParams,
                 ref: int) -> tuple[Tensor, Tensor]:
    """The sweep's cost volume on frame ``ref``'s grid, with an sdgs config's forward model.

    :func:`dfd_models.focus.sweep_cost` over [min_depth_m, max_depth_m]: ``sweep_footprint``
    (``blur``: its ``footprint=None``), hypotheses :func:`dfd_models.focus.sweep_depths` at most
    ``sweep_ratio`` apart (0: ``sweep_hypotheses`` planes uniform in 1/z), ``photometric_gamma``,
    ``gaussian_scale_px``. Frames only.

    Args:
        config: an sdgs config.
        frames, focus_m, K, lens, ref: as :func:`dfd_models.focus.defocus_sweep` (float32).
    Returns:
        (the hypotheses' inverse depths, 1/m, increasing [D]; the re-rendering error [B, D, H, W])
    """
    footprint = None if config.sweep_footprint == "blur" else config.sweep_footprint
    depths = (sweep_depths(config.min_depth_m, config.max_depth_m, config.sweep_ratio)
              if config.sweep_ratio > 0 else None)
    return sweep_cost(frames, focus_m, K, lens, ref, min_depth_m=config.min_depth_m,
                      max_depth_m=config.max_depth_m, hypotheses=config.sweep_hypotheses,
                      window=config.sweep_window_px, gamma=config.photometric_gamma,
                      splat_px=config.gaussian_scale_px, footprint=footprint, depths=depths)


def sweep_plane_count(config: SDGSConfig) -> int:
    """The number D of depth planes :func:`sweep_volume` tests with ``config``."""
    if config.sweep_ratio > 0:
        return sweep_depths(config.min_depth_m, config.max_depth_m, config.sweep_ratio).numel()
    return config.sweep_hypotheses


#: What ``photometric_renderer: layers`` needs of the other keys: its term is the refinement's
#: error (:func:`dfd_models.refine.forward_model`): every frame from the composite, L1, unpooled.
LAYERS_NEEDS = {"render_frames": "all", "radiance": "stack", "photometric_pool": 1, "ssim_alpha": 0.0}


@dataclass(frozen=True, kw_only=True)
class SDGSConfig(DepthRangeConfig):
    """``sdgs``'s config (module docstring); the depth range, metres, is :class:`DepthRangeConfig`'s:
    depth = 1 / (1/max + (1/min - 1/max) sigmoid(y)).

    Attributes:
        depth_init_m: the depth an untrained DepthNet predicts without ``depth_from_defocus``,
            metres (0: the geometric mean of the range; kept at least 5 % inside the range). 2 m:
            behind the focus range of the recipes, so the far background starts in its own basin
            (measured: started at 0.55 m, small_obj's wall settles at 0.47 m, a local minimum
            behind a barrier where frames focus on it) and nearer surfaces move in, along the side
            where blur grows with depth.
        channels: U-Net widths per level of both networks, channels (4 levels: H, W multiples of 8).
        coc_scale_px: CoC normaliser, pixels (defocus map = coc_scale_px softplus(y); lens code / it).
        input_frame, radiance, render_frames: see :data:`INPUT_FRAMES`, :data:`RADIANCES`,
            :data:`RENDER_FRAMES` and the module docstring.
        gaussian_scale_px: splat standard deviation, pixels (1 / sqrt(2 pi): one pixel of weight).
        splat_eps2d: the renderer's low-pass variance, pixels^2 (0: splats are already pixel-sized).
        splat_alpha_min: the renderer's alpha threshold (:func:`rerender` says why 1e-4, not
            3DGS's 1/255; the gsplat backend needs 1/255, ``"auto"`` picks torch otherwise).
        splat_backend: one of :data:`dfd_models.splat.rendering.BACKENDS` (:func:`dfd_models.splat.render_defocus`).
        ssim_alpha: SSIM weight of the photometric error, in [0, 1] (monodepth2's 0.85).
        photometric_gamma: exponent of the encoding the photometric error compares (1 = linear).
        photometric_pool: average-pooling factor of the images the photometric error compares, pixels.
        photometric_renderer: one of :data:`PHOTOMETRIC_RENDERERS`; ``layers`` needs the values of
            :data:`LAYERS_NEEDS` (the refinement's error).
        w_photometric, w_sweep, w_coc, w_smoothness: loss weights, >= 0 (w_photometric 0: the stack
            is not re-rendered; w_sweep 0: no sweep term).
        depth_from_defocus: DepthNet corrects the defocus map's depth (module docstring; ``sdgs_stack``
            with ``depth_views: all``: each frame's vote starts at its focus distance).
        blur_scales_px: smoothing scales of :func:`dfd_models.focus.blur_features`, pixels ([]: none).
        depth_blur_features: DepthNet also sees each view's blur features (``blur_scales_px``); off
            for ``sdgs`` (one image: validation object AbsRel 0.62 with them, 0.35 without, after 200
            teacher-only steps), on for ``sdgs_stack``, where they made its two-view DepthNet learn
            (docs/DESIGN.md).
        balance_bins: bins of the sweep's depth given equal weight (0: no balance).
        balance_space: one of :data:`BALANCE_SPACES`: ``inverse`` (bins equal in 1/z) or ``log``
            (equal depth ratios), :func:`_balance`.
        sweep_space: one of :data:`SWEEP_SPACES` (module docstring): ``inverse`` for ``sdgs``, ``log``
            for ``sdgs_stack`` (validation object AbsRel 0.230 against 0.274 after 400 teacher-only
            steps, mean of two seeds; docs/NOTES.md). The two terms differ in scale as well as space:
            ``log`` is divided by the mean weight (so its size is that of a log error whatever the
            confidences), ``inverse`` is not (sdgs's term as it was measured).
        sweep_hypotheses: depth planes of the sweep with ``sweep_ratio`` 0 (3 at least: the best
            plane is refined by a parabola through its neighbours).
        sweep_footprint: the teacher's forward model, one of :data:`SWEEP_FOOTPRINTS` (:func:`sweep_teacher`).
        sweep_ratio: ratio of the teacher's consecutive depth planes, > 1 (0: ``sweep_hypotheses``
            planes uniform in 1/z).
        sweep_confidence: how the teacher rates its minimum, one of
            :data:`dfd_models.focus.SWEEP_CONFIDENCES` (:func:`dfd_models.focus.sweep_minimum`); the
            sweep term and the CoC term weigh each pixel by it.
        sweep_estimate: where the teacher reads its depth off the cost volume, one of
            :data:`dfd_models.focus.SWEEP_ESTIMATES` (:func:`dfd_models.focus.sweep_minimum`).
        sweep_window_px: the teacher's cost-aggregation box, pixels, odd (7: the best of 3, 5, 7 and 9 on
            small_obj's validation split at 64 px, and tied with 9 among 5-21 on fod500's at 128 px,
            docs/NOTES.md).
        defocus_init_px: DefocusNet's untrained output, pixels, in (0, 2 coc_scale_px) (null: a zero
            head, coc_scale_px ln 2; module docstring: the start).
    """

    depth_init_m: float = setting(2.0, ge=0)
    channels: list[int] = setting([16, 32, 48, 64], **WIDTHS)
    coc_scale_px: float = setting(8.0, gt=0)
    input_frame: str = setting("nearest", choices=INPUT_FRAMES)
    radiance: str = setting("stack", choices=RADIANCES)
    render_frames: str = setting("all", choices=RENDER_FRAMES)
    gaussian_scale_px: float = setting(1 / math.sqrt(2 * math.pi), gt=0)
    splat_eps2d: float = setting(0.0, ge=0)
    splat_alpha_min: float = setting(1e-4, gt=0, le=SplatConfig.alpha_max)
    splat_backend: str = setting("auto", choices=BACKENDS)
    ssim_alpha: float = setting(0.85, ge=0, le=1)
    photometric_gamma: float = setting(1 / 2.2, gt=0)
    photometric_pool: int = setting(4, ge=1)
    photometric_renderer: str = setting("splats", choices=PHOTOMETRIC_RENDERERS)
    w_photometric: float = setting(1.0, ge=0)
    w_coc: float = setting(0.05, ge=0)
    w_smoothness: float = setting(0.001, ge=0)
    w_sweep: float = setting(1.0, ge=0)
    depth_from_defocus: bool = setting(True)
    blur_scales_px: list[float] = setting([0.5, 1.0, 2.0, 4.0], **BLUR_SCALES)
    depth_blur_features: bool = setting(False)
    balance_bins: int = setting(8, ge=0)
    balance_space: str = setting("inverse", choices=BALANCE_SPACES)
    sweep_space: str = setting("inverse", choices=SWEEP_SPACES)
    sweep_hypotheses: int = setting(SWEEP_HYPOTHESES, ge=3)
    sweep_footprint: str = setting("blur", choices=SWEEP_FOOTPRINTS)
    sweep_ratio: float = setting(0.0, ge=0)
    sweep_window_px: int = setting(7, ge=1)
    sweep_confidence: str = setting("ratio", choices=SWEEP_CONFIDENCES)
    sweep_estimate: str = setting("parabola", choices=SWEEP_ESTIMATES)
    defocus_init_px: float | None = setting(None, gt=0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sweep_window_px % 2 == 0:
            raise ConfigError("model.config.sweep_window_px", self.sweep_window_px, "an odd number of pixels")
        if 0 < self.sweep_ratio <= 1:
            raise ConfigError("model.config.sweep_ratio", self.sweep_ratio,
                              "0 (sweep_hypotheses planes) or a ratio > 1")
        if self.defocus_init_px is not None and not self.defocus_init_px < 2 * self.coc_scale_px:
            raise ConfigError("model.config.defocus_init_px", self.defocus_init_px,
                              f"null or less than 2 coc_scale_px = {2 * self.coc_scale_px} px")
        unmet = [f"{key} {value!r} (got {getattr(self, key)!r})" for key, value in LAYERS_NEEDS.items()
                 if getattr(self, key) != value]
        if self.photometric_renderer == "layers" and unmet:
            raise ConfigError("model.config.photometric_renderer", self.photometric_renderer,
                              "splats, or layers (the refinement's error) with " + ", ".join(unmet))

    @property
    def splat(self) -> SplatConfig:
        """The splat renderer's constants of the re-rendering: ``splat_eps2d``, ``splat_alpha_min``."""
        return SplatConfig(eps2d=self.splat_eps2d, alpha_min=self.splat_alpha_min)


@register
class SDGS(DepthModel):
    """Self-supervised Siamese defocus network + DepthNet + 3DGS defocus re-rendering (module docstring).

    Config: :class:`SDGSConfig`.

    Outputs of :meth:`forward` (B stacks, T frames, r the input frame):
        ``depth`` [B, 1, H, W]: depth on the reference frame's grid, metres.
        ``input_depth``, ``inv_depth`` [B, 1, H, W]: depth (m) and inverse depth (1/m) on frame r's grid.
        ``input_frame`` int: r.
        ``defocus_px`` [B, T, 1, H, W]: every frame's defocus map (unsigned CoC, pixels, its own grid).
        ``radiance`` [B, 3, H, W]: the sharp radiance re-rendered (frame r's grid).
        ``rendered`` [B, T, 3, H, W]: the radiance rendered as every frame (zeros for the frames
            ``pair`` does not render).
        ``rendered_mask`` [B, T, 1, H, W] bool: pixels the photometric loss scores (frames
            rendered, blur disc inside frame r's view; all False for frames ``pair`` leaves out).
    """

    name = "sdgs"
    Config = SDGSConfig
    config: SDGSConfig
    supervised = False
    min_frames = 2

    def __init__(self, config: Mapping[str, Any] | SDGSConfig | None = None):
        super().__init__(config)
        cfg = self.config
        z0 = cfg.depth_init_m or math.sqrt(cfg.min_depth_m * cfg.max_depth_m)
        z0 = min(max(z0, 1.05 * cfg.min_depth_m), cfg.max_depth_m / 1.05)  # inside the range
        # DefocusNet: image (3) + lens code (2) + blur features -> defocus (1).
        self.defocus_net = UNet(3 + 2 + len(cfg.blur_scales_px), 1, cfg.channels)
        # With defocus_init_px the untrained map is that everywhere (softplus(b) = defocus_init_px /
        # coc_scale_px): small, the depth it implies (1/F_r - c / k) lies inside the range for every
        # lens; a zero bias (null), coc_scale_px ln 2 = 5.5 px, puts it beyond max_depth_m for ~72 % of
        # small_obj's lenses at 64 px. Yet the zero bias measured better on validation (DESIGN.md).
        if cfg.defocus_init_px is not None:
            x = cfg.defocus_init_px / cfg.coc_scale_px
            nn.init.constant_(self.defocus_net.head.bias, math.log(math.expm1(x)))
        # DepthNet: the frames it sees, each image (3) + defocus (1) + lens code (2) -> inverse-depth logit (1).
        view = 6 + (len(cfg.blur_scales_px) if cfg.depth_blur_features else 0)
        self.depth_net = UNet(*self.depth_net_channels(view), cfg.channels)
        # sigmoid(y0) = (1/z0 - 1/max) / (1/min - 1/max)
        s0 = (1 / z0 - 1 / cfg.max_depth_m) / (1 / cfg.min_depth_m - 1 / cfg.max_depth_m)
        if not cfg.depth_from_defocus:
            nn.init.constant_(self.depth_net.head.bias, math.log(s0 / (1 - s0)))
        self.size_multiple = self.defocus_net.size_multiple

    def depth_net_channels(self, view: int) -> tuple[int, int]:
        """DepthNet's input and output channels, given one view's channels: frame r's view in, the
        inverse-depth logit out."""
        return view, 1

    def lens_code(self, lens: LensParams, focus_m: Tensor, width_px: int) -> Tensor:
        """Signed CoC (pixels) at min_depth_m and max_depth_m for focus F, / coc_scale_px.

        Args:
            lens: fields [] or [N]; focus_m: [N] metres; width_px: image width W.
        Returns:
            the lens code.  # [N, 2]
        """
        depths = torch.tensor([self.config.min_depth_m, self.config.max_depth_m], dtype=focus_m.dtype)
        depths = depths.to(focus_m.device).expand(focus_m.shape[0], 2)  # [N, 2]
        return coc_signed_px(lens, depths, focus_m, width_px) / self.config.coc_scale_px

    def _code(self, image: Tensor, focus_m: Tensor, lens: LensParams) -> Tensor:
        """The lens code as two constant channels.  # [N, 2, H, W]"""
        n, _, h, w = image.shape
        return self.lens_code(lens, focus_m, w)[:, :, None, None].expand(n, 2, h, w).to(image.dtype)

    def defocus(self, image: Tensor, focus_m: Tensor, lens: LensParams) -> Tensor:
        """One Siamese defocus branch: the defocus map (unsigned CoC, pixels) of single frames.

        Args:
            image: linear RGB.  # [N, 3, H, W]
            focus_m: focus distance, metres.  # [N]
            lens: fields [] or [N], pixel pitch for width W.
        Returns:
            float32.  # [N, 1, H, W]
        """
        features = [image, self._code(image, focus_m, lens)]
        if self.config.blur_scales_px:
            features.append(blur_features(image, self.config.blur_scales_px))
        out = self.defocus_net(torch.cat(features, 1)).float()
        return self.config.coc_scale_px * F.softplus(out)

    def depth(self, image: Tensor, defocus_px: Tensor, focus_m: Tensor, lens: LensParams) -> Tensor:
        """DepthNet: inverse depth (1/m, float32) of single frames from the image and its defocus map.

        Args as :meth:`defocus`; ``defocus_px`` [N, 1, H, W].  # -> [N, 1, H, W]
        """
        code = self._code(image, focus_m, lens)
        logit = self.depth_net(self._view(image, defocus_px, code)).float()
        side = 1.0 if self.config.input_frame == "farthest" else -1.0
        return self._inverse_depth(logit, defocus_px, focus_m, code, side)

    def _view(self, image: Tensor, defocus_px: Tensor, code: Tensor) -> Tensor:
        """DepthNet's input channels for one frame: image, defocus / coc_scale_px, lens code, and with
        ``depth_blur_features`` the image's blur features.  # [N, 6 (+ len(blur_scales_px)), H, W]"""
        views = [image, (defocus_px / self.config.coc_scale_px).to(image.dtype), code]
        if self.config.depth_blur_features and self.config.blur_scales_px:
            views.append(blur_features(image, self.config.blur_scales_px))
        return torch.cat(views, 1)

    def inverse_logit(self, inv_depth: Tensor) -> Tensor:
        """The logit y of inverse depths (1/m, clamped 0.1 % inside the range): the inverse of
        :meth:`inverse_of_logit`.  # shape of inv_depth"""
        inv_near, inv_far = 1 / self.config.min_depth_m, 1 / self.config.max_depth_m
        position = ((inv_depth - inv_far) / (inv_near - inv_far)).clamp(1e-3, 1 - 1e-3)
        return torch.log(position / (1 - position))

    def inverse_of_logit(self, logit: Tensor) -> Tensor:
        """Inverse depth, 1/m: 1/max + (1/min - 1/max) sigmoid(y).  # shape of logit"""
        inv_near, inv_far = 1 / self.config.min_depth_m, 1 / self.config.max_depth_m
        return inv_far + (inv_near - inv_far) * torch.sigmoid(logit)

    def _inverse_depth(self, logit: Tensor, defocus_px: Tensor, focus_m: Tensor, code: Tensor, side: float) -> Tensor:
        """Inverse depth (1/m) from DepthNet's logit, with ``depth_from_defocus`` added to the logit of the
        depth that ``defocus_px`` implies through the lens of ``focus_m`` / ``code`` (``side`` -1: behind
        the plane of focus, +1: in front).  # [N, 1, H, W] each -> [N, 1, H, W]"""
        cfg = self.config
        inv_near, inv_far = 1 / cfg.min_depth_m, 1 / cfg.max_depth_m
        if cfg.depth_from_defocus:
            # c = k |1/F - 1/z|, k = CoC per dioptre: 1/z = 1/F - c / k behind the plane of focus (the
            # nearest frame's view of everything), 1/F + c / k in front of it (the farthest frame's).
            k = (code[:, 1:2] - code[:, 0:1]).float() * cfg.coc_scale_px / (inv_near - inv_far)
            inv_base = 1 / focus_m.float()[:, None, None, None] + side * defocus_px / k.clamp_min(1e-6)
            logit = logit + self.inverse_logit(inv_base)
        return self.inverse_of_logit(logit)

    def seen_frames(self, frames: int) -> list[int]:
        """Indices of the frames of a T-frame stack that the networks see at inference: frame r alone."""
        return [_input_index(self.config.input_frame, frames)]

    def inverse_depth(self, frames: Tensor, defocus_px: Tensor, focus_m: Tensor, K: Tensor,
                      lens: LensParams) -> Tensor:
        """Inverse depth (1/m) on frame r's grid from the frames :meth:`seen_frames` names and their
        defocus maps (the others' are not read).

        Args:
            frames [B, T, 3, H, W], defocus_px [B, T, 1, H, W] (pixels), focus_m [B, T], K [B, T, 3, 3],
            lens fields [B].
        Returns:
            float32.  # [B, 1, H, W]
        """
        r = _input_index(self.config.input_frame, frames.shape[1])
        return self.depth(frames[:, r], defocus_px[:, r], focus_m[:, r], lens)

    def forward(self, batch: dict) -> dict[str, Tensor]:
        frames, focus, K = batch["frames"], batch["focus_m"], batch["K"]  # [B, T, 3, H, W], [B, T], [B, T, 3, 3]
        self.check_frames(frames, focus, K, min_frames=self.min_frames)
        lens = lens_from_batch(batch)  # fields [B]
        defocus = self.defocus_maps(frames, focus, lens)
        return self.reconstruct(batch, self.inverse_depth(frames, defocus, focus, K, lens), defocus)

    def defocus_maps(self, frames: Tensor, focus_m: Tensor, lens: LensParams) -> Tensor:
        """Every frame's defocus map (:meth:`defocus`, the Siamese branch on each frame).

        Args: frames [B, T, 3, H, W], focus_m [B, T] metres, lens fields [B].  # -> [B, T, 1, H, W] pixels
        """
        b, t, _, h, w = frames.shape
        defocus = self.defocus(frames.flatten(0, 1), focus_m.flatten(), _repeat_lens(lens, t))  # [B T, 1, H, W]
        return defocus.reshape(b, t, 1, h, w)

    def reconstruct(self, batch: dict, inv_depth: Tensor, defocus_px: Tensor) -> dict[str, Tensor]:
        """The outputs of :meth:`forward` for a given inverse depth and defocus maps: the stack
        re-rendered from them (what :meth:`losses` scores; also used to fit free depth maps).

        Args:
            inv_depth: inverse depth on the input frame's grid, 1/m.  # [B, 1, H, W]
            defocus_px: every frame's defocus map, pixels.  # [B, T, 1, H, W]
        """
        cfg = self.config
        frames, focus, K = batch["frames"], batch["focus_m"], batch["K"]
        b, t, _, h, w = frames.shape
        r, mid = _input_index(cfg.input_frame, t), reference_index(t)
        depth = 1 / inv_depth
        rows = torch.arange(b, device=frames.device)[:, None]
        if cfg.render_frames == "all":
            index = torch.arange(t, device=frames.device).expand(b, t)  # [B, n]: the frames rendered
        else:  # frame r and one other per stack
            other = torch.randint(t - 1, (b,))  # global CPU generator
            other = (other + (other >= r).long()).to(frames.device)
            index = torch.stack([torch.full_like(other, r), other], 1)
        n = index.shape[1]
        with torch.autocast(frames.device.type, enabled=False), torch.no_grad():
            radiance = (sharp_composite(frames.float(), K.float(), r) if cfg.radiance == "stack"
                        else frames[:, r].float())  # [B, 3, H, W]
        with torch.autocast(frames.device.type, enabled=False):  # geometry in float32
            lens = lens_from_batch(batch).to(dtype=torch.float32)
            lens_n = _repeat_lens(lens, n)
            rendered = frames.new_zeros(b, t, 3, h, w, dtype=torch.float32)
            mask = torch.zeros(b, t, 1, h, w, dtype=torch.bool, device=frames.device)
            if cfg.w_photometric > 0 and cfg.photometric_renderer == "layers":
                with torch.no_grad():  # the splats' colours, the layers and the covered pixels: no parameters
                    model = forward_model(frames.float(), focus.float(), K.float(), lens, r,
                                          min_depth_m=cfg.min_depth_m, max_depth_m=cfg.max_depth_m,
                                          splat_px=cfg.gaussian_scale_px, gamma=cfg.photometric_gamma)
                radiance = model.layer[:, :3]
                rendered = model.render(depth.clamp(cfg.min_depth_m, cfg.max_depth_m))
                mask = model.cover > 0
            elif cfg.w_photometric > 0 and cfg.photometric_renderer == "splats":
                # else nothing reads the re-rendering (w_photometric 0, an ablation; planes: :meth:`losses`)
                # The radiance is blurred already, by the CoC of the stack's frame nearest in focus at
                # this depth (the sharpest one, for a composite that is right): the renderer adds
                # only the rest of frame t's blur. (The frame the composite actually took the pixel
                # from would let any depth that blurs that frame heavily render every frame unblurred.)
                coc_all = torch.stack([coc_signed_px(lens, depth, focus[:, s].float(), w) for s in range(t)], 1)
                floor = coc_all.abs().amin(1, keepdim=True).expand(b, n, 1, h, w).flatten(0, 1)  # [B n, 1, H, W]
                k_src = K[:, r : r + 1].expand(b, n, 3, 3).flatten(0, 1).float()  # [B n, 3, 3]
                k_dst = K[rows, index].flatten(0, 1).float()
                focus_dst = focus[rows, index].flatten().float()
                render = rerender(
                    depth.repeat_interleave(n, 0),
                    radiance.repeat_interleave(n, 0),
                    k_src,
                    k_dst,
                    focus_dst,
                    lens_n,
                    scale_px=cfg.gaussian_scale_px,
                    splat=cfg.splat,
                    backend=cfg.splat_backend,
                    coc_floor_px=floor,
                )
                # A pixel is scored where its whole blur disc lies inside the source's view: nearer
                # the edge, the splats that would blur into it from outside the view are missing.
                reach = coc_px(lens_n, render.depth.detach().clamp_min(cfg.min_depth_m), focus_dst, w)
                margin = overlap_margin(k_src, k_dst, h, w)
                rendered[rows, index] = render.color.reshape(b, n, 3, h, w)
                mask[rows, index] = (margin >= reach / 2 + 2 * cfg.gaussian_scale_px).reshape(b, n, 1, h, w)
            depth_mid = depth if r == mid else warp_to_grid(depth, K[:, r].float(), K[:, mid].float())
        return {
            "depth": depth_mid,
            "input_depth": depth,
            "inv_depth": inv_depth,
            "input_frame": r,
            "defocus_px": defocus_px,
            "radiance": radiance,
            "rendered": rendered,
            "rendered_mask": mask,
        }

    def teacher(self, frames: Tensor, focus_m: Tensor, K: Tensor, lens: LensParams, ref: int,
                volume: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """The sweep teacher with this config (:func:`sweep_teacher`), from ``volume`` when given
        (:func:`sweep_volume`'s, already computed).  # -> ([B, 1, H, W], [B, 1, H, W])"""
        if volume is None:
            volume = sweep_volume(self.config, frames, focus_m, K, lens, ref)
        return sweep_minimum(*volume, self.config.sweep_confidence, self.config.sweep_estimate)

    def losses(self, batch: dict, outputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Self-supervised terms (module docstring); reads only frames, focus, K and the lens."""
        cfg = self.config
        frames, focus, K = batch["frames"].float(), batch["focus_m"].float(), batch["K"].float()
        lens = lens_from_batch(batch).to(dtype=torch.float32)  # fields [B]
        b, t, _, h, w = frames.shape
        r, gamma = outputs["input_frame"], cfg.photometric_gamma
        terms = {}
        planes = cfg.w_photometric > 0 and cfg.photometric_renderer == "planes"
        if planes or cfg.w_sweep > 0:
            with torch.no_grad():  # forward's, where it computed it (sdgs_stack's volume view)
                volume = ((outputs["sweep_inv"], outputs["sweep_cost"]) if "sweep_cost" in outputs
                          else sweep_volume(cfg, frames, focus, K, lens, r))
                sweep_depth, confidence = self.teacher(frames, focus, K, lens, r, volume)
                balance = (_balance(1 / sweep_depth, 1 / cfg.max_depth_m, 1 / cfg.min_depth_m, cfg.balance_bins,
                                    cfg.balance_space) if cfg.balance_bins else torch.ones_like(sweep_depth))
        if planes:  # each pixel's re-rendering error at its own depth, relative to its mean over the hypotheses
            inv, cost = volume
            error = cost_at(inv, cost, outputs["inv_depth"]) / cost.mean(1, keepdim=True).clamp_min(1e-12)
            terms["photometric"] = (balance * error).mean()
        elif cfg.w_photometric > 0:  # 0: an ablation; the stack is not re-rendered (:meth:`reconstruct`)
            rendered, target = outputs["rendered"].flatten(0, 1), frames.flatten(0, 1)
            mask = outputs["rendered_mask"].flatten(0, 1)
            pool = cfg.photometric_pool
            if pool > 1:  # path-tracing noise is per pixel, defocus spans pixels
                rendered, target = F.avg_pool2d(rendered, pool), F.avg_pool2d(target, pool)
                mask = -F.max_pool2d(-mask.float(), pool) > 0  # a pooled pixel counts if all its pixels do
            error = photometric_error(gamma_encode(rendered, gamma), gamma_encode(target, gamma), cfg.ssim_alpha)
            terms["photometric"] = masked_mean(error, mask)

        weight = torch.ones_like(outputs["inv_depth"])
        if cfg.w_sweep > 0:
            weight = confidence * balance
            if cfg.sweep_space == "log":  # ln z - ln z_s = ln(1/z_s) - ln(1/z)
                error = (outputs["inv_depth"].log() + sweep_depth.log()).abs()
                sweep = (weight * error).mean() / weight.mean().clamp_min(1e-12)
            else:
                sweep = (weight * (outputs["inv_depth"] - 1 / sweep_depth).abs()).mean()
        # The defocus maps learn from a depth, not the other way round: pulled towards a map, the
        # depth would be dragged to wherever the CoC matches it, e.g. towards a plane of focus. That
        # depth is the sweep's (weighted by its confidence) when there is one, else the prediction.
        depth = sweep_depth if cfg.w_sweep > 0 else outputs["input_depth"].detach()
        lens_coc = coc_px(_repeat_lens(lens, t), depth.repeat_interleave(t, 0), focus.flatten(), w)  # every frame's, frame r's grid
        k_src, k_dst = K.flatten(0, 1), K[:, r : r + 1].expand(b, t, 3, 3).flatten(0, 1)
        defocus = warp_to_grid(outputs["defocus_px"].flatten(0, 1), k_src, k_dst)
        coc = (weight.repeat_interleave(t, 0) * (defocus - lens_coc).abs()).mean() / cfg.coc_scale_px

        smoothness = edge_aware_smoothness(outputs["inv_depth"], frames[:, r])

        terms.update({"coc": coc, "smoothness": smoothness})
        if cfg.w_sweep > 0:
            terms["sweep"] = sweep
        weights = {"photometric": cfg.w_photometric, "sweep": cfg.w_sweep, "coc": cfg.w_coc,
                   "smoothness": cfg.w_smoothness}
        terms["total"] = sum(weights[name] * value for name, value in terms.items())
        return terms

    def predict(self, frames: Tensor, focus_m: Tensor, lens: LensParams, K: Tensor) -> Tensor:
        """Depth from the frames :meth:`seen_frames` names (``sdgs``: frame r alone, ``input_frame``; T = 1
        allowed), on the reference frame's grid.

        Args and returns as :meth:`DepthModel.predict`.  # [B, T, 3, H, W] -> [B, 1, H, W]
        """
        self.check_frames(frames, focus_m, K, min_frames=1)
        b, t, _, h, w = frames.shape
        r, mid = _input_index(self.config.input_frame, t), reference_index(t)
        seen = self.seen_frames(t)
        defocus = frames.new_zeros(b, t, 1, h, w, dtype=torch.float32)
        maps = self.defocus(frames[:, seen].flatten(0, 1), focus_m[:, seen].flatten(), _repeat_lens(lens, len(seen)))
        defocus[:, seen] = maps.reshape(b, len(seen), 1, h, w)
        depth = 1 / self.inverse_depth(frames, defocus, focus_m, K, lens)
        return depth if r == mid else warp_to_grid(depth, K[:, r].float(), K[:, mid].float())
