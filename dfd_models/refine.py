"""Per-scene depth from the splat re-rendering error: continuous refinement, and the per-pixel scan.

The forward model is the splat-footprint sweep's (:func:`dfd_models.focus.defocus_sweep` with
``footprint``), with one depth per pixel instead of one per hypothesis: one splat per pixel of
frame ``ref`` (std ``splat_px``, opacity 1) coloured by the stack's composite R
(:func:`dfd_models.focus.splat_radiance`), at that pixel's depth, blurred by the rest of each
frame's CoC over the composite's own, rendered into every frame's own grid with the footprint
and blend ``"sum"``, colour normalised by alpha; the error is the L1 of gamma-encoded colours
where frame ``ref``'s view covers the frame.

Layers (:func:`render_depth`): a depth map is drawn as fronto-parallel layers at nodes uniform
in log depth, ``NODE_RATIO`` apart; each splat splits its weight between the two nodes around
its depth, linearly in log z, and every layer renders in closed form
(:func:`dfd_models.splat.render_planes`), much faster than :func:`dfd_models.splat.render_defocus`
(blend "sum", disc) draws the same splats, whose colours it matches within 2e-3
(tests/test_forward_model.py).

Refinement (:func:`refine_depth`): Adam on log depth from a start (the sweep's), coarse to
fine: at each scale s of ``scales`` the correction to the start is a map s times coarser,
upsampled bilinearly (1/8 by default). A free depth per pixel drifts from the truth: on
small_obj at 64 px the error's per-pixel minimum lies within delta1 of the true depth on only about
half of the textured object pixels (:func:`depth_scan`), for Monte Carlo noise, occlusion edges
(the layers are summed, and nothing stands for the background an object hides) and CoCs near 1 px
(benchmarks/scan_gaps.py measures each; the figures: docs/NOTES.md, issue 31).

The scan (:func:`depth_scan`): the change of the total error when one pixel's depth alone
moves to each hypothesis, the others held, computed exactly from the pixel's own footprint
(the other splats' sums drawn once).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from dfd_models.focus import gamma_encode, splat_radiance, splat_sweep_config, sweep_depths
from dfd_models.lens import LensParams, coc_px
from dfd_models.splat import footprint_factors, plane_operators, render_planes

__all__ = ["NODE_RATIO", "REFINE_LR", "REFINE_SCALES", "REFINE_STEPS", "ForwardModel", "depth_scan", "descend",
           "forward_model", "layer_weights", "refine_depth", "render_depth", "rest_of_coc"]

#: Ratio of consecutive layer depths of :func:`render_depth`.
NODE_RATIO = 1.03
#: Adam steps per scale, learning rate (on log depth) and scales of :func:`refine_depth`.
REFINE_STEPS = 30
REFINE_LR = 0.01
REFINE_SCALES = (8,)


def rest_of_coc(lens: LensParams, depth_m: Tensor, focus_m: Tensor, width_px: int, sharp: bool = False) -> Tensor:
    """Each frame's CoC diameter beyond the radiance's own blur, pixels of frame t: sqrt(c_t^2 - min_s c_s^2)
    for the composite (its pixel carries the blur of the stack's sharpest frame), c_t for a ``sharp`` one.

    Args:
        depth_m: depths, metres.  # [B, D]
        focus_m: the stack's focus distances, metres.  # [B, T]
    Returns:
        diameters.  # [B, T, D]
    """
    coc = torch.stack([coc_px(lens, depth_m, focus_m[:, t], width_px) for t in range(focus_m.shape[1])], 1)
    return coc if sharp else (coc.square() - coc.square().amin(1, keepdim=True)).clamp_min(0).sqrt()


def layer_weights(depth: Tensor, nodes: Tensor) -> Tensor:
    """Each pixel's weight on every layer: split between the two nodes around its depth, linearly in
    log depth (differentiable in depth).

    Args:
        depth: depth per pixel, metres, within the nodes.  # [B, 1, H, W]
        nodes: the layers' depths, uniform in log depth, metres.  # [L]
    Returns:
        weights, two non-zero per pixel, summing to 1.  # [B, L, H, W]
    """
    logs = nodes.log()
    count = len(nodes)
    pos = ((depth.log() - logs[0]) / (logs[1] - logs[0])).clamp(0, count - 1)  # [B, 1, H, W]
    low = pos.detach().floor().clamp(max=count - 2)
    frac = pos - low
    index = torch.arange(count, device=depth.device).reshape(1, -1, 1, 1)
    return torch.where(index == low, 1 - frac, torch.where(index == low + 1, frac, 0.0))


def render_depth(depth: Tensor, layer: Tensor, nodes: Tensor, operators: tuple[Tensor, Tensor]) -> Tensor:
    """The splats of ``layer`` at per-pixel depths, drawn as weighted fronto-parallel layers.

    Args:
        depth: depth per pixel of the source grid, metres, within the nodes.  # [B, 1, H, W]
        layer: colour and alpha (ones) channels of the splats.  # [B, C, H, W]
        nodes: the layers' depths, uniform in log depth, metres.  # [L]
        operators: :func:`dfd_models.splat.plane_operators` of the nodes.  # [B, T, L, M, ., .]
    Returns:
        sum over splats of alpha times ``layer`` in every frame (no normalisation).  # [B, T, C, H, W]
    """
    weight = layer_weights(depth, nodes)
    gy, gx = operators
    images = []
    for i in range(len(depth)):  # each image draws only the layers its splats are on
        used = weight[i].detach().flatten(1).amax(1) > 0  # [L]
        colors = weight[i : i + 1, used, None] * layer[i : i + 1, None]  # [1, L', C, H, W]
        images.append(render_planes(colors, (gy[i : i + 1, :, used], gx[i : i + 1, :, used])))
    return torch.cat(images)


@dataclass(frozen=True)
class ForwardModel:
    """The splat forward model of one batch of stacks (module docstring), built by :func:`forward_model`.

    Attributes:
        layer: the splats' colour and alpha (ones) on frame ``ref``'s grid.  # [B, 4, H, W]
        cover: the frames' pixels scored, 0/1: those frame ``ref``'s view covers.  # [B, T, 1, H, W]
        nodes: the layers' depths, metres.  # [L]
        operators: :func:`dfd_models.splat.plane_operators` of the nodes.
        config: the splat config (footprint, blend "sum").
        gamma: exponent of the encoding the error compares.
        frames: the frames the renderings are compared with, linear RGB.  # [B, T, 3, H, W]
    """

    layer: Tensor
    cover: Tensor
    nodes: Tensor
    operators: Any
    config: Any
    gamma: float
    frames: Tensor

    def render(self, depth: Tensor) -> Tensor:
        """Every frame re-rendered from the splats at ``depth`` (metres, within the nodes), colour
        normalised by alpha (0 where no splat lands).  # [B, 1, H, W] -> [B, T, 3, H, W]"""
        rendered = render_depth(depth, self.layer, self.nodes, self.operators)
        return rendered[:, :, :3] / rendered[:, :, 3:].clamp_min(1e-4)

    def error(self, depth: Tensor) -> Tensor:
        """Mean re-rendering error over the covered pixels of every frame at ``depth`` (m).  # []"""
        residual = gamma_encode(self.render(depth), self.gamma) - gamma_encode(self.frames, self.gamma)
        return (residual.abs().mean(2, keepdim=True) * self.cover).sum() / self.cover.sum()


def forward_model(
    frames: Tensor,
    focus_m: Tensor,
    K: Tensor,
    lens: LensParams,
    ref: int,
    *,
    min_depth_m: float,
    max_depth_m: float,
    footprint: str = "disc",
    splat_px: float = 1 / math.sqrt(2 * math.pi),
    gamma: float = 1 / 2.2,
    node_ratio: float = NODE_RATIO,
    radiance: Tensor | None = None,
) -> ForwardModel:
    """The forward model of a batch of stacks: splats of frame ``ref``'s grid, layers over the range.

    Args:
        frames, focus_m, K, lens, ref: the stacks, as :func:`dfd_models.focus.defocus_sweep`.
        min_depth_m, max_depth_m: the depths the model can render, metres (the layers span them).
        footprint, splat_px, gamma, node_ratio: the splat footprint, its std (pixels), the error's
            encoding exponent and the ratio of consecutive layer depths.
        radiance: None, the stack's composite (:func:`dfd_models.focus.splat_radiance`), blurred by
            the rest of each frame's CoC; else a sharp radiance, blurred by the whole CoC.  # [B, 3, H, W]
    """
    b, t, _, h, w = frames.shape
    config = splat_sweep_config(footprint)
    composite, cover = splat_radiance(frames, K, ref, splat_px, config)
    layer = composite if radiance is None else radiance
    layer = torch.cat([layer, torch.ones_like(layer[:, :1])], 1)
    nodes = sweep_depths(min_depth_m, max_depth_m, node_ratio).to(frames)
    rest = rest_of_coc(lens, nodes.expand(b, -1), focus_m, w, sharp=radiance is not None)  # [B, T, L]
    return ForwardModel(layer, cover, nodes, plane_operators(rest, K[:, ref], K, h, w, splat_px, config), config,
                        gamma, frames)


def refine_depth(
    frames: Tensor,
    focus_m: Tensor,
    K: Tensor,
    lens: LensParams,
    ref: int,
    depth: Tensor,
    *,
    min_depth_m: float,
    max_depth_m: float,
    footprint: str = "disc",
    splat_px: float = 1 / math.sqrt(2 * math.pi),
    gamma: float = 1 / 2.2,
    scales: tuple[int, ...] = REFINE_SCALES,
    steps: int = REFINE_STEPS,
    lr: float = REFINE_LR,
    node_ratio: float = NODE_RATIO,
) -> Tensor:
    """Depth refined by Adam on the splat re-rendering error (module docstring), frames only.

    Args:
        frames, focus_m, K, lens, ref: the stack, as :func:`dfd_models.focus.defocus_sweep`.
        depth: the start (e.g. the sweep's), metres, on frame ``ref``'s grid.  # [B, 1, H, W]
        min_depth_m, max_depth_m: the depth range, metres (the layers span it).
        footprint, splat_px, gamma: the forward model (as the sweep's).
        scales: coarse-to-fine schedule: the correction is a map ``s`` times coarser for each
            ``s`` in turn (H and W divisible by each).
        steps, lr: Adam steps per scale and learning rate (log depth).
        node_ratio: ratio of consecutive layer depths.
    Returns:
        depth, metres, within the range.  # [B, 1, H, W]
    """
    model = forward_model(frames, focus_m, K, lens, ref, min_depth_m=min_depth_m, max_depth_m=max_depth_m,
                          footprint=footprint, splat_px=splat_px, gamma=gamma, node_ratio=node_ratio)
    return descend(model.error, depth, min_depth_m=min_depth_m, max_depth_m=max_depth_m, scales=scales, steps=steps,
                   lr=lr)


def descend(error: Callable[[Tensor], Tensor], depth: Tensor, *, min_depth_m: float, max_depth_m: float,
            scales: tuple[int, ...] = REFINE_SCALES, steps: int = REFINE_STEPS, lr: float = REFINE_LR) -> Tensor:
    """:func:`refine_depth`'s search for any error of a depth map: Adam on log depth from ``depth``,
    coarse to fine (at scale s the correction is a map s times coarser, upsampled bilinearly).

    Args:
        error: the scalar to lower, of a depth map in metres.
        depth: the start, metres.  # [B, 1, H, W]
        min_depth_m, max_depth_m, scales, steps, lr: as :func:`refine_depth`.
    Returns:
        depth, metres, within the range.  # [B, 1, H, W]
    """
    lo, hi = math.log(min_depth_m), math.log(max_depth_m)
    log_depth = depth.detach().log().clamp(lo, hi)
    with torch.enable_grad():
        for scale in scales:
            correction = torch.zeros_like(F.avg_pool2d(log_depth, scale), requires_grad=True)
            optimiser = torch.optim.Adam([correction], lr=lr)

            def current() -> Tensor:
                up = F.interpolate(correction, scale_factor=scale, mode="bilinear", align_corners=False)
                return (log_depth + up).clamp(lo, hi)

            for _ in range(steps):
                loss = error(current().exp())
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            log_depth = current().detach()
    return log_depth.exp()


def depth_scan(
    frames: Tensor,
    focus_m: Tensor,
    K: Tensor,
    lens: LensParams,
    ref: int,
    depth: Tensor,
    pixels: Tensor,
    depths: Tensor,
    *,
    radiance: Tensor | None = None,
    footprint: str = "disc",
    splat_px: float = 1 / math.sqrt(2 * math.pi),
    gamma: float = 1 / 2.2,
    node_ratio: float = 1.01,
    by_frame: bool = False,
) -> Tensor:
    """The total re-rendering error as a function of one pixel's depth, every other pixel held at ``depth``.

    The forward model of :func:`refine_depth` (one stack, B = 1). Moving splat p from depth z_p to z
    changes every frame only inside p's footprint: sums S(x) = sum_q alpha_q(x) (R_q, 1) become
    S(x) + (alpha_p^z(x) - alpha_p^{z_p}(x)) (R_p, 1). S is drawn once (:func:`render_depth`, layers
    ``node_ratio`` apart); the change is exact, from p's own footprint at its sub-pixel position
    in each frame, over a window that holds the footprint at every depth scanned.

    Args:
        frames, focus_m, K, lens, ref: the stack, B = 1.
        depth: the depths held, metres, on frame ``ref``'s grid.  # [1, 1, H, W]
        pixels: flat indices (row * W + col) of the pixels scanned.  # [P]
        depths: the depths tried, metres.  # [D]
        radiance: sharp colours of the splats, e.g. the all-in-focus image, blurred by the whole CoC
            (None: the composite of :func:`dfd_models.focus.splat_radiance`, by the rest of it).  # [1, 3, H, W]
        footprint, splat_px, gamma: the forward model.
        by_frame: keep each frame's change apart (what a frame rendered with its own free CoC
            would minimise) instead of summing over the frames.
    Returns:
        error at each depth tried minus the error at ``depth``, summed over frames (unless
        ``by_frame``), pixels and colour channels (mean).  # [D, P] or [D, T, P]
    """
    _, t, _, h, w = frames.shape
    lo, hi = float(min(depths.min(), depth.min())), float(max(depths.max(), depth.max()))
    model = forward_model(frames, focus_m, K, lens, ref, min_depth_m=lo / node_ratio, max_depth_m=hi * node_ratio,
                          footprint=footprint, splat_px=splat_px, gamma=gamma, node_ratio=node_ratio, radiance=radiance)
    layer, cover, config = model.layer, model.cover, model.config
    sharp = radiance is not None
    sums = render_depth(depth, layer, model.nodes, model.operators)[0]  # [T, 4, H, W]
    # p's centre in frame t and the window of pixels around it
    scale = K[0, :, 0, 0] / K[0, ref, 0, 0]  # [T]
    shift = K[0, :, :2, 2] - scale[:, None] * K[0, ref, :2, 2]  # [T, 2]
    col, row = (pixels % w).to(frames.dtype) + 0.5, (pixels // w).to(frames.dtype) + 0.5
    centre = torch.stack([scale[:, None] * col + shift[:, :1], scale[:, None] * row + shift[:, 1:]], -1)  # [T, P, 2]
    extremes = torch.stack([depths.min(), depths.max(), depth.min(), depth.max()])[None].to(frames)
    reach = float(rest_of_coc(lens, extremes, focus_m, w, sharp).max()) / 2
    radius = math.ceil(reach + 4 * math.sqrt((splat_px * float(scale.max())) ** 2 + (0.5 * reach) ** 2)) + 1
    step = torch.arange(-radius, radius + 1, dtype=frames.dtype, device=frames.device)
    nearest = (centre - 0.5).round()  # [T, P, 2]: the pixel the centre falls in
    cols, rows = nearest[..., 0:1] + step, nearest[..., 1:2] + step  # [T, P, n]
    inside = ((cols >= 0) & (cols < w))[..., None, :] & ((rows >= 0) & (rows < h))[..., :, None]  # [T, P, n, n]
    index = rows.clamp(0, h - 1)[..., :, None] * w + cols.clamp(0, w - 1)[..., None, :]
    index = index.long().flatten(2)  # [T, P, n^2]
    inside = inside.flatten(2) & (cover[0, :, 0].flatten(1).gather(1, index.flatten(1)).reshape(index.shape) > 0)
    dx, dy = cols + 0.5 - centre[..., 0:1], rows + 0.5 - centre[..., 1:2]  # [T, P, n]
    var = ((splat_px * scale) ** 2)[:, None].expand(t, len(pixels))  # [T, P]

    def footprint_at(diameter: Tensor) -> Tensor:  # [T, P] -> alpha of p's splat over its window [T, P, n^2]
        fx, fy = footprint_factors(dx, dy, diameter / 2, var, config)  # [T, P, M, n] each
        return torch.einsum("tpky,tpkx->tpyx", fy, fx).flatten(2) * inside

    window = sums.flatten(2).gather(2, index.flatten(1)[:, None].expand(t, 4, -1))
    window = window.reshape(t, 4, *index.shape[1:])  # [T, 4, P, n^2]
    target = gamma_encode(frames[0].flatten(2).gather(2, index.flatten(1)[:, None].expand(t, 3, -1)), gamma)
    target = target.reshape(t, 3, *index.shape[1:])  # [T, 3, P, n^2]
    own = layer[0].flatten(1)[:, pixels]  # [4, P]: p's colour and alpha channel

    def error(sums_p: Tensor) -> Tensor:  # [T, 4, P, n^2] -> [P] ([T, P] by frame)
        colour = sums_p[:, :3] / sums_p[:, 3:].clamp_min(1e-4)
        per_frame = ((gamma_encode(colour, gamma) - target).abs().mean(1) * inside).sum(2)
        return per_frame if by_frame else per_frame.sum(0)

    held = rest_of_coc(lens, depth.flatten()[pixels][None], focus_m, w, sharp)[0]  # [T, P]
    base = footprint_at(held)
    before = error(window)
    rest = rest_of_coc(lens, depths[None].to(frames), focus_m, w, sharp)[0]  # [T, D]
    changes = []
    for d in range(len(depths)):
        delta = footprint_at(rest[:, d : d + 1].expand_as(held)) - base  # [T, P, n^2]
        changes.append(error(window + delta[:, None] * own[None, :, :, None]) - before)
    return torch.stack(changes)
