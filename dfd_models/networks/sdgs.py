"""``sdgs``: self-supervised depth from defocus with a Siamese defocus network and 3DGS re-rendering.

Training sees two frames i, j of one focal stack (same camera pose, focus F_i and
F_j), never ground-truth depth nor an all-in-focus image. Each frame goes through
the same two networks (shared weights, the Siamese branches):

    DefocusNet: (image, lens code) -> defocus map c (unsigned CoC diameter, pixels),
                                      sharp radiance R (all-in-focus estimate, linear RGB)
    DepthNet:   (image, c, lens code) -> inverse depth in [1/max_depth, 1/min_depth]

The lens code is what the lens does to this frame: the signed CoC (pixels, from
:func:`dfd_models.lens.coc_signed_px`) a point would have at ``min_depth_m`` and at
``max_depth_m``, divided by ``coc_scale_px``. Since the CoC is affine in 1/z, the
two numbers fix c(z) = k (1/F - 1/z), k = A L / p, for every depth: they carry
the focus distance, aperture, focal length and pixel pitch in the one combination
the image depends on. Both are broadcast as two constant channels.

Each branch's depth and radiance become one Gaussian per pixel (:func:`pixel_gaussians`),
rendered by :func:`dfd_models.splat.render_defocus` through the lens at the OTHER
frame's focus distance and K (:func:`rerender`). The loss (:meth:`SDGS.losses`), each
term a mean over the pixels of both branches:

    photometric  pe(branch i rendered at F_j, K_j; frame j) and pe(branch j at F_i, K_i; frame i),
                 pe = alpha (1 - SSIM) / 2 + (1 - alpha) L1 (monodepth2 eq. 1), on the pixels
                 both frames see (:func:`overlap_mask`)
    coc          |c - |coc_px(lens, z, F)|| / coc_scale_px: the defocus map is the lens-model
                 CoC (DESIGN.md 3) of the branch's own predicted depth z
    agreement    |ln z_i->j - ln z_j| and |ln z_j->i - ln z_i|, z_a->b the depth of branch a
                 rendered into frame b's pixel grid (exact under focus breathing), on the overlap
    smoothness   edge-aware smoothness of inverse depth (monodepth2 eq. 3)
    total        w_photometric photometric + w_coc coc + w_agreement agreement + w_smoothness smoothness

Frame i is always the stack's middle frame T // 2 (the loader's ``ref_frame``, so
``outputs["depth"]`` is comparable with ``batch["depth"]``, as monodepth2's target
frame); j is drawn per stack, uniformly among the other frames, from torch's
global CPU generator (deterministic under ``torch.manual_seed``).

At inference (:meth:`SDGS.predict`) one image with its focus distance and lens is
enough: T = 1 is allowed, and of a longer stack only frame T // 2 is used.
Image height and width must be multiples of 2^(len(channels) - 1) (8 by default).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dfd_models.lens import LensParams, coc_px, coc_signed_px
from dfd_models.losses import edge_aware_smoothness, masked_mean, photometric_error
from dfd_models.networks.base import DepthModel, lens_from_batch, register
from dfd_models.networks.blocks import UNet
from dfd_models.splat import Camera, Gaussians, RenderOutput, SplatConfig, render_defocus

__all__ = ["SDGS", "overlap_mask", "pixel_gaussians", "rerender"]


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
    )
    color = out.color / out.alpha.clamp_min(splat.alpha_min)
    return RenderOutput(color=color, alpha=out.alpha, depth=out.depth, coc_px=out.coc_px)


def overlap_mask(K_src: Tensor, K_dst: Tensor, height: int, width: int) -> Tensor:
    """Pixels of the destination frame that the source frame also sees (no camera motion).

    A destination pixel centre x_d = [u + 0.5, v + 0.5, 1] is the ray K_dst^-1 x_d, seen in
    the source at x_s = K_src K_dst^-1 x_d whatever its depth; it overlaps when x_s lies in
    [0, W] x [0, H]. Focus breathing changes K, so frames of one stack overlap only in part.

    Args:
        K_src, K_dst: intrinsics.  # [B, 3, 3]
    Returns:
        bool mask.  # [B, 1, H, W]
    """
    pixels = _pixel_centres(height, width, K_src)  # [1, HW, 3]
    src = pixels @ (K_src @ torch.linalg.inv(K_dst)).transpose(-1, -2)  # [B, HW, 3]
    x, y = src[..., 0] / src[..., 2], src[..., 1] / src[..., 2]
    inside = (x >= 0) & (x <= width) & (y >= 0) & (y <= height)  # [B, HW]
    return inside.reshape(-1, 1, height, width)


def _repeat_lens(lens: LensParams, repeats: int) -> LensParams:
    """The lens with every [B] field repeated element-wise to [B * repeats] (scalars kept)."""

    def rep(x: Tensor) -> Tensor:
        return x if x.dim() == 0 else x.repeat_interleave(repeats)

    return LensParams(lens.model, rep(lens.focal_length_m), rep(lens.f_number), rep(lens.sensor_width_m))


def _pairs(x: Tensor, index: Tensor) -> Tensor:
    """Frames ``index`` [B, 2] of each stack of ``x`` [B, T, ...], flattened to [2B, ...] (stack-major)."""
    rows = torch.arange(x.shape[0], device=x.device)[:, None]
    return x[rows, index].flatten(0, 1)


@register
class SDGS(DepthModel):
    """Self-supervised Siamese defocus network + DepthNet + 3DGS defocus re-rendering (module docstring).

    Config keys (:meth:`default_config`):
        min_depth_m, max_depth_m: depth range, metres; depth = 1 / (1/max + (1/min - 1/max) sigmoid(y)).
        channels: U-Net widths per level of both networks (4 levels: H, W multiples of 8).
        coc_scale_px: CoC normaliser, pixels (defocus map = coc_scale_px softplus(y); lens code / it).
        gaussian_scale_px: splat standard deviation, pixels (1 / sqrt(2 pi): one pixel of weight).
        splat_eps2d: the renderer's low-pass variance, pixels^2 (0: splats are already pixel-sized).
        splat_alpha_min: the renderer's alpha threshold (:func:`rerender` says why 1e-4, not
            3DGS's 1/255; the gsplat backend needs 1/255, ``"auto"`` picks torch otherwise).
        splat_backend: ``"auto"``, ``"torch"`` or ``"gsplat"`` (dfd_models.splat).
        ssim_alpha: SSIM weight of the photometric error (0.85).
        w_photometric, w_coc, w_agreement, w_smoothness: loss weights.

    Outputs of :meth:`forward` (B stacks; the axis of size 2 is the pair (i, j) of branches):
        ``depth`` [B, 1, H, W]: depth of frame i = T // 2, metres.
        ``frame_index`` [B, 2] int64: (i, j).
        ``depths`` [B, 2, 1, H, W], ``inv_depths`` [B, 2, 1, H, W] (1/m): each branch's depth.
        ``defocus_px`` [B, 2, 1, H, W]: each branch's defocus map (unsigned CoC, pixels).
        ``radiance`` [B, 2, 3, H, W]: each branch's sharp radiance.
        ``rendered`` [B, 2, 3, H, W]: branch i rendered as frame j, branch j as frame i.
        ``rendered_depth`` [B, 2, 1, H, W]: the same for depth (metres).
        ``overlap`` [B, 2, 1, H, W] bool: pixels of the rendered frame the branch's frame sees.
    """

    name = "sdgs"
    supervised = False
    min_frames = 2

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {
            "min_depth_m": 0.1,
            "max_depth_m": 3.0,
            "channels": [16, 32, 48, 64],
            "coc_scale_px": 8.0,
            "gaussian_scale_px": 1 / math.sqrt(2 * math.pi),
            "splat_eps2d": 0.0,
            "splat_alpha_min": 1e-4,
            "splat_backend": "auto",
            "ssim_alpha": 0.85,
            "w_photometric": 1.0,
            "w_coc": 0.05,
            "w_agreement": 0.1,
            "w_smoothness": 0.001,
        }

    def __init__(self, config: dict | None = None):
        super().__init__(config)
        cfg = self.config
        if not 0 < cfg["min_depth_m"] < cfg["max_depth_m"]:
            raise ValueError(f"need 0 < min_depth_m < max_depth_m, got {cfg['min_depth_m']}, {cfg['max_depth_m']}")
        # DefocusNet: image (3) + lens code (2) -> defocus (1) + radiance residual (3).
        self.defocus_net = UNet(3 + 2, 1 + 3, cfg["channels"])
        # DepthNet: image (3) + defocus (1) + lens code (2) -> inverse-depth logit (1).
        self.depth_net = UNet(3 + 1 + 2, 1, cfg["channels"])
        # Start at the geometric mean of the depth range rather than at the mean inverse depth
        # (which sits near min_depth): sigmoid(y0) = (1/z0 - 1/max) / (1/min - 1/max).
        z0 = math.sqrt(cfg["min_depth_m"] * cfg["max_depth_m"])
        s0 = (1 / z0 - 1 / cfg["max_depth_m"]) / (1 / cfg["min_depth_m"] - 1 / cfg["max_depth_m"])
        nn.init.constant_(self.depth_net.head.bias, math.log(s0 / (1 - s0)))
        self.size_multiple = self.defocus_net.size_multiple
        self.splat = SplatConfig(eps2d=cfg["splat_eps2d"], alpha_min=cfg["splat_alpha_min"])

    def lens_code(self, lens: LensParams, focus_m: Tensor, width_px: int) -> Tensor:
        """Signed CoC (pixels) at min_depth_m and max_depth_m for focus F, / coc_scale_px.

        Args:
            lens: fields [] or [N]; focus_m: [N] metres; width_px: image width W.
        Returns:
            the lens code.  # [N, 2]
        """
        depths = torch.tensor([self.config["min_depth_m"], self.config["max_depth_m"]], dtype=focus_m.dtype)
        depths = depths.to(focus_m.device).expand(focus_m.shape[0], 2)  # [N, 2]
        return coc_signed_px(lens, depths, focus_m, width_px) / self.config["coc_scale_px"]

    def branch(self, image: Tensor, focus_m: Tensor, lens: LensParams) -> dict[str, Tensor]:
        """One Siamese branch: defocus, radiance and depth of single frames.

        Args:
            image: linear RGB.  # [N, 3, H, W]
            focus_m: focus distance, metres.  # [N]
            lens: fields [] or [N], pixel pitch for width W.
        Returns:
            ``defocus_px`` [N, 1, H, W], ``radiance`` [N, 3, H, W], ``inv_depth``, ``depth``
            [N, 1, H, W] (1/m, m); float32.
        """
        n, _, h, w = image.shape
        code = self.lens_code(lens, focus_m, w)[:, :, None, None].expand(n, 2, h, w).to(image.dtype)
        out = self.defocus_net(torch.cat([image, code], 1)).float()  # [N, 4, H, W]
        scale = self.config["coc_scale_px"]
        defocus = scale * F.softplus(out[:, :1])
        radiance = image + out[:, 1:]
        logit = self.depth_net(torch.cat([image, (defocus / scale).to(image.dtype), code], 1)).float()
        inv_near, inv_far = 1 / self.config["min_depth_m"], 1 / self.config["max_depth_m"]
        inv_depth = inv_far + (inv_near - inv_far) * torch.sigmoid(logit)
        return {"defocus_px": defocus, "radiance": radiance, "inv_depth": inv_depth, "depth": 1 / inv_depth}

    def forward(self, batch: dict) -> dict[str, Tensor]:
        frames, focus, K = batch["frames"], batch["focus_m"], batch["K"]  # [B, T, 3, H, W], [B, T], [B, T, 3, 3]
        self.check_frames(frames, focus, K, min_frames=self.min_frames)
        b, t, _, h, w = frames.shape
        ref = t // 2
        other = torch.randint(t - 1, (b,))  # global CPU generator
        other = (other + (other >= ref).long()).to(frames.device)
        index = torch.stack([torch.full_like(other, ref), other], 1)  # [B, 2] = (i, j)
        swap = index.flip(1)  # the other frame of each branch

        lens = _repeat_lens(lens_from_batch(batch), 2)  # fields [2B]
        out = self.branch(_pairs(frames, index), _pairs(focus, index), lens)  # [2B, ...]
        with torch.autocast(frames.device.type, enabled=False):  # geometry in float32
            lens32 = lens.to(dtype=torch.float32)
            k_src, k_dst = _pairs(K, index).float(), _pairs(K, swap).float()  # [2B, 3, 3]
            render = rerender(
                out["depth"],
                out["radiance"],
                k_src,
                k_dst,
                _pairs(focus, swap).float(),
                lens32,
                scale_px=self.config["gaussian_scale_px"],
                splat=self.splat,
                backend=self.config["splat_backend"],
            )
            overlap = overlap_mask(k_src, k_dst, h, w)

        def pairs(x: Tensor) -> Tensor:  # [2B, ...] -> [B, 2, ...]
            return x.reshape((b, 2) + x.shape[1:])

        return {
            "depth": pairs(out["depth"])[:, 0],
            "frame_index": index,
            "depths": pairs(out["depth"]),
            "inv_depths": pairs(out["inv_depth"]),
            "defocus_px": pairs(out["defocus_px"]),
            "radiance": pairs(out["radiance"]),
            "rendered": pairs(render.color),
            "rendered_depth": pairs(render.depth),
            "overlap": pairs(overlap),
        }

    def losses(self, batch: dict, outputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Self-supervised terms (module docstring); reads only frames, focus, K and the lens."""
        cfg = self.config
        index = outputs["frame_index"]  # [B, 2]
        frames, focus = batch["frames"].float(), batch["focus_m"].float()
        width = frames.shape[-1]
        target = _pairs(frames, index.flip(1))  # [2B, 3, H, W]: the frame each branch is rendered as
        image = _pairs(frames, index)  # [2B, 3, H, W]: each branch's own frame
        overlap = outputs["overlap"].flatten(0, 1)  # [2B, 1, H, W]

        def flat(key: str) -> Tensor:
            return outputs[key].flatten(0, 1)

        photometric = masked_mean(photometric_error(flat("rendered"), target, cfg["ssim_alpha"]), overlap)

        lens = _repeat_lens(lens_from_batch(batch), 2).to(dtype=torch.float32)
        lens_coc = coc_px(lens, flat("depths"), _pairs(focus, index), width)  # [2B, 1, H, W]
        coc = (flat("defocus_px") - lens_coc).abs().mean() / cfg["coc_scale_px"]

        # rendered_depth[:, 0] (branch i seen from frame j) against depths[:, 1] (branch j), and back.
        seen = outputs["rendered_depth"].flatten(0, 1).clamp_min(cfg["min_depth_m"])
        log_gap = (seen.log() - outputs["depths"].flip(1).flatten(0, 1).log()).abs()
        agreement = masked_mean(log_gap, overlap)

        smoothness = edge_aware_smoothness(flat("inv_depths"), image)

        terms = {"photometric": photometric, "coc": coc, "agreement": agreement, "smoothness": smoothness}
        terms["total"] = sum(cfg[f"w_{name}"] * value for name, value in terms.items())
        return terms

    def predict(self, frames: Tensor, focus_m: Tensor, lens: LensParams, K: Tensor) -> Tensor:
        """Depth of frame T // 2 from that single image (T = 1 allowed); K is not needed by sdgs.

        Args and returns as :meth:`DepthModel.predict`.  # [B, T, 3, H, W] -> [B, 1, H, W]
        """
        self.check_frames(frames, focus_m, K, min_frames=1)
        ref = frames.shape[1] // 2
        return self.branch(frames[:, ref], focus_m[:, ref], lens)["depth"]
