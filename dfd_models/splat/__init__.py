"""Gaussian-splat defocus renderer (DESIGN.md section 7).

3D Gaussians are projected with K (EWA), each splat is blurred by the circle of
confusion of its depth at the focus distance, and splats are composited front to
back:

    Sigma_b = J W Sigma W^T J^T + (eps2d + c^2 / 16) I
    o_b     = o sqrt(det(Sigma_2D + eps2d I) / det Sigma_b)
    C(x)    = sum_i T_i alpha_i c_i,   alpha_i = o_b,i exp(-d^T Sigma_b,i^-1 d / 2),
    T_i     = prod_{j<i} (1 - alpha_j)   (nearest first)

c is the CoC diameter in pixels from :mod:`dfd_models.lens` (a uniform disc of
diameter c has per-axis variance c^2/16). Pixel centres are at integer + 0.5,
the camera frame is OpenCV's (DESIGN.md section 2). Everything is differentiable
(means, depth included, scales, quaternions, opacities, colours, focus, lens).

Cycles blurs a point into a uniform disc (DESIGN.md 3), which one Gaussian of the
same variance matches poorly (43 % relative L2 error; :data:`FOOTPRINTS`):
``SplatConfig(footprint="disc")`` draws each splat as a mixture of 9 Gaussians
fitted to the disc (14 %), after CoCoGaussian (CVPR 2025), which also gives each
CoC several Gaussians. ``SplatConfig(blend="sum")`` drops the transmittance
(T_i = 1): splats of one surface then add in any order, so a fronto-parallel plane
renders as the convolution of its colours with :func:`plane_kernel`, as Cycles
renders it, where "over" weights each splat by the ones composited before it
(index order among equal depths). :func:`render_planes` draws pixel-aligned splats
on fronto-parallel planes into other frames of the same camera in closed form
(separable per mixture component), the fast path of the plane sweep
(:func:`dfd_models.focus.defocus_sweep`) and of :mod:`dfd_models.refine`.

Backends: ``"torch"`` (``_torch_impl``, the reference, CPU or GPU, any float
dtype) and ``"gsplat"`` (CUDA, float32, only the rasterisation step differs, the
default footprint and blend only, CoCs up to ``gsplat_backend.GSPLAT_MAX_COC_PX``
= 6.3 px: its fixed alpha_min 1/255 cuts wider blurs short); ``"auto"`` picks gsplat
for float32 CUDA tensors when it is installed and usable, and says once when the
CoC alone sends it to the torch reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from dfd_models.lens import LensParams, coc_signed_px, intrinsics
from dfd_models.splat import _torch_impl, gsplat_backend

__all__ = ["BLENDS", "FOOTPRINTS", "Camera", "Gaussians", "RenderOutput", "SplatConfig", "footprint_factors",
           "plane_kernel", "plane_operators", "render_defocus", "render_planes"]

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
class Gaussians:
    """3D Gaussians, shared by every image ([N, ...]) or one set per image ([B, N, ...]).

    Attributes:
        means: centres, metres, world frame (camera frame if no world_to_camera).  # [(B,) N, 3]
        scales: standard deviations along the local axes, metres.  # [(B,) N, 3]
        quats: rotations as quaternions (w, x, y, z), normalised on use.  # [(B,) N, 4]
        opacities: in [0, 1].  # [(B,) N]
        colors: colours or any features.  # [(B,) N, C]
    """

    means: Tensor  # [(B,) N, 3]
    scales: Tensor  # [(B,) N, 3]
    quats: Tensor  # [(B,) N, 4]
    opacities: Tensor  # [(B,) N]
    colors: Tensor  # [(B,) N, C]

    def __post_init__(self) -> None:
        lead = self.means.shape[:-1]
        if self.means.dim() not in (2, 3) or self.means.shape[-1] != 3 or self.means.shape[-2] == 0:
            raise ValueError(f"means must be [N, 3] or [B, N, 3] with N > 0, got {tuple(self.means.shape)}")
        want = {"scales": lead + (3,), "quats": lead + (4,), "opacities": lead}
        for name, shape in want.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name} must be {tuple(shape)}, got {tuple(getattr(self, name).shape)}")
        if self.colors.shape[:-1] != lead or self.colors.dim() != len(lead) + 1:
            raise ValueError(f"colors must be {tuple(lead)} + (C,), got {tuple(self.colors.shape)}")


@dataclass(frozen=True)
class Camera:
    """Image size and pose.

    Attributes:
        width, height: pixels.
        K: intrinsics in pixels; None = ``dfd_models.lens.intrinsics(lens, focus)``
            (focus breathing for ``thin_lens``).  # [(B,) 3, 3]
        world_to_camera: OpenCV world-to-camera; None = means are in the camera frame.  # [(B,) 4, 4]
    """

    width: int
    height: int
    K: Tensor | None = None  # [(B,) 3, 3]
    world_to_camera: Tensor | None = None  # [(B,) 4, 4]


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


@dataclass(frozen=True)
class RenderOutput:
    """What :func:`render_defocus` returns.

    Attributes:
        color: sum_i T_i alpha_i c_i (+ (1 - alpha) background).  # [B, C, H, W]
        alpha: accumulated opacity sum_i T_i alpha_i.  # [B, 1, H, W]
        depth: expected planar depth sum_i T_i alpha_i z_i / alpha, metres; 0 where alpha = 0
            (invalid, DESIGN.md 2).  # [B, 1, H, W]
        coc_px: signed CoC diameter of each Gaussian's centre, pixels (0 without a lens).  # [B, N]
    """

    color: Tensor  # [B, C, H, W]
    alpha: Tensor  # [B, 1, H, W]
    depth: Tensor  # [B, 1, H, W]
    coc_px: Tensor  # [B, N]


def _batch_size(named: dict[str, tuple[Tensor | None, int]]) -> int:
    """The common batch size B of tensors that are either unbatched (ndim == base) or [B, ...]."""
    sizes = {}
    for name, (value, base) in named.items():
        if value is not None and value.dim() == base + 1:
            sizes[name] = value.shape[0]
        elif value is not None and value.dim() != base:
            raise ValueError(f"{name} has {value.dim()} dims, expected {base} or {base + 1} (batched)")
    if len(set(sizes.values())) > 1:
        raise ValueError(f"inconsistent batch sizes {sizes}")
    return next(iter(sizes.values()), 1)


def _batched(x: Tensor, base: int, batch: int) -> Tensor:
    return x if x.dim() == base + 1 else x.expand((batch,) + x.shape)


def render_defocus(
    gaussians: Gaussians,
    camera: Camera,
    focus_m: Tensor | float | None = None,
    lens: LensParams | None = None,
    *,
    config: SplatConfig = SplatConfig(),
    background: Tensor | None = None,
    backend: str = "auto",
    coc_floor_px: Tensor | None = None,
) -> RenderOutput:
    """Render Gaussians as seen through ``lens`` focused at ``focus_m`` (all in focus if no lens).

    Args:
        gaussians: the scene.  # [(B,) N, ...]
        camera: size, K (from the lens if None) and pose.
        focus_m: focus distance F, metres (planar).  # [B] or []
        lens: the lens; its fields are [] or [B]. None with focus_m None: pinhole, no defocus.
        config: rasterisation constants.
        background: colour behind the splats.  # [C] or [B, C]
        backend: ``"auto"``, ``"torch"`` or ``"gsplat"``.
        coc_floor_px: blur each Gaussian's colour already carries, as a CoC diameter in pixels
            (e.g. a radiance taken from a frame that is itself slightly defocused); the
            renderer adds only the rest, a footprint of diameter sqrt(max(c^2 - floor^2, 0))
            (variance max(c^2 - floor^2, 0) / 16), so that a splat's total blur has the
            variance of its CoC c (blurs add in variance; exact for Gaussians).  # [B, N]
    Returns:
        :class:`RenderOutput` with B the common batch size of the inputs (1 if none is batched).
    """
    if (focus_m is None) != (lens is None):
        raise ValueError("give both focus_m and lens (defocus) or neither (all in focus)")
    dtype, device = gaussians.means.dtype, gaussians.means.device
    focus = None if focus_m is None else torch.as_tensor(focus_m, dtype=dtype, device=device)
    if camera.K is None and lens is None:
        raise ValueError("camera.K is required when no lens is given")
    lens_fields = {} if lens is None else {
        f"lens.{name}": (getattr(lens, name), 0) for name in ("focal_length_m", "f_number", "sensor_width_m")
    }
    batch = _batch_size(
        {
            "gaussians.means": (gaussians.means, 2),
            "camera.K": (camera.K, 2),
            "camera.world_to_camera": (camera.world_to_camera, 2),
            "focus_m": (focus, 0),
            "background": (background, 1),
            **lens_fields,
        }
    )
    if camera.K is not None and camera.K.shape[-2:] != (3, 3):
        raise ValueError(f"camera.K must be [(B,) 3, 3], got {tuple(camera.K.shape)}")
    if camera.world_to_camera is not None and camera.world_to_camera.shape[-2:] != (4, 4):
        raise ValueError(f"camera.world_to_camera must be [(B,) 4, 4], got {tuple(camera.world_to_camera.shape)}")
    channels = gaussians.colors.shape[-1]
    if background is not None and background.shape[-1] != channels:
        raise ValueError(f"background must be [{channels}] or [B, {channels}], got {tuple(background.shape)}")
    if backend not in ("auto", "torch", "gsplat"):
        raise ValueError(f"backend must be 'auto', 'torch' or 'gsplat', got {backend!r}")

    means = _batched(gaussians.means, 2, batch)  # [B, N, 3]
    covars = _torch_impl._quat_scale_to_covar(
        _batched(gaussians.quats, 2, batch), _batched(gaussians.scales, 2, batch)
    )  # [B, N, 3, 3]
    if camera.world_to_camera is not None:
        w2c = _batched(camera.world_to_camera.to(dtype), 2, batch)  # [B, 4, 4]
        means, covars = _torch_impl._world_to_cam(means, covars, w2c)
    K = intrinsics(lens, focus, camera.width, camera.height) if camera.K is None else camera.K.to(dtype)
    K = _batched(K, 2, batch)  # [B, 3, 3]

    depths = means[..., 2]  # [B, N]
    visible = depths > config.near_m
    # Culled Gaussians still go through the maths below; a safe depth keeps their (unused)
    # values finite so no inf * 0 = nan reaches the gradients.
    safe = torch.where(visible, depths, torch.ones_like(depths))
    means = torch.cat([means[..., :2], safe[..., None]], -1)
    means2d, covars2d = _torch_impl._persp_proj(means, covars, K)  # [B, N, 2], [B, N, 2, 2]
    if lens is None:
        coc = torch.zeros_like(depths)
    else:
        coc = coc_signed_px(lens, safe, focus, camera.width) * visible  # [B, N]
    opacities = _batched(gaussians.opacities, 1, batch) * visible  # [B, N]
    radius = coc / 2  # the signed CoC is smooth in depth and focus; footprints are symmetric
    if coc_floor_px is not None:
        # the clamp's zero gradient stands in for sqrt's infinite one where the floor takes it all
        rest = coc * coc - _batched(coc_floor_px.to(dtype), 1, batch).square()
        radius = rest.clamp_min(1e-12).sqrt() / 2
    conics, opacities, covars2d, offsets = _torch_impl._add_defocus(
        covars2d, opacities, radius, config.eps2d, config.mixture(coc))  # [B, N, M, ...]
    radii = _torch_impl._support_radii(covars2d, opacities, config.alpha_min, offsets)  # [B, N, 2]
    backend = _choose_backend(backend, gaussians.means, config, radius)

    # Expected depth rides along as one more colour channel.
    features = torch.cat([_batched(gaussians.colors, 2, batch), safe[..., None]], -1)  # [B, N, C + 1]
    thresholds = (config.alpha_min, config.alpha_max, config.t_min)
    if backend == "gsplat":  # one component, "over": gsplat_backend.usable says so
        args = (means2d, conics[:, :, 0], features, opacities[:, :, 0], radii, safe, camera.width, camera.height)
        image, alpha = gsplat_backend.rasterize_to_pixels(*args, *thresholds)  # [B, H, W, C + 1], [B, H, W, 1]
    else:
        args = (means2d, conics, features, opacities, radii, safe, camera.width, camera.height)
        image, alpha = _torch_impl._rasterize_to_pixels(*args, *thresholds, tile_size=config.tile_size,
                                                        offsets=offsets, blend=config.blend)
    image, alpha = image.permute(0, 3, 1, 2), alpha.permute(0, 3, 1, 2)
    color, depth_sum = image[:, :-1], image[:, -1:]
    if background is not None:
        color = color + (1 - alpha) * _batched(background.to(dtype), 1, batch)[..., None, None]
    # alpha >= alpha_min wherever any splat landed, so the clamp only guards empty pixels.
    depth = depth_sum / alpha.clamp_min(1e-10)
    return RenderOutput(color=color, alpha=alpha, depth=depth, coc_px=coc)


def _choose_backend(backend: str, like: Tensor, config: SplatConfig, radius: Tensor) -> str:
    """The backend that renders. ``"gsplat"`` refuses (RuntimeError) what gsplat cannot draw: the
    config and the largest CoC first, so the refusal reads the same on any machine, then the
    machine. ``"auto"`` takes the torch reference then, and warns once when only the CoC stood
    in the way.

    Args:
        radius: the blur each splat is given, CoC radius in pixels (culled splats 0).  # [B, N]
    """
    if backend == "torch":
        return backend

    def max_coc_px() -> float:  # a device sync: asked only when the answer matters
        return 2 * float(radius.detach().abs().max())

    if backend == "gsplat":
        usable, why = gsplat_backend.usable(like, config, max_coc_px())
        if not usable:
            raise RuntimeError(f"gsplat backend unusable: {why}")
        return backend
    if gsplat_backend.config_refusal(config) or gsplat_backend.environment_refusal(like):
        return "torch"
    why = gsplat_backend.coc_refusal(max_coc_px())
    if why:
        gsplat_backend.warn_fallback_once(why)
        return "torch"
    return "gsplat"


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


def plane_kernel(coc_px: Tensor, splat_px: float, config: SplatConfig, radius: int) -> Tensor:
    """The closed-form plane case: the alpha one splat of a fronto-parallel plane draws around its pixel.

    A splat centred on its pixel, isotropic with std ``splat_px`` pixels on screen, opacity 1,
    blurred by an (effective) CoC diameter c, has at the integer offsets d of the pixel centres

        alpha(d) = min(alpha_max, sum_k w_k s^2 / v_k exp(-|d - r mu_k|^2 / (2 v_k))), 0 below alpha_min

    (s^2 = splat_px^2 + eps2d, v_k = s^2 + (r a_k)^2, r = c/2; :data:`FOOTPRINTS`), as
    :func:`render_defocus` draws it. Under ``blend="sum"`` a plane of such splats, one per pixel
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


def render_planes(colors: Tensor, operators: tuple[Tensor, Tensor]) -> Tensor:
    """Layers of pixel-aligned splats summed into every destination frame (:func:`plane_operators`).

    Args:
        colors: each layer's splat colours times their weight in it (0: no splat).  # [B, L, C, H, W]
        operators: (Gy, Gx) of :func:`plane_operators`.  # [B, T, L, M, H, H], [B, T, L, M, W, W]
    Returns:
        sum over layers and splats of alpha c, no transmittance ("sum").  # [B, T, C, H, W]
    """
    gy, gx = operators
    b, t, layers, m, h, _ = gy.shape
    c, w = colors.shape[2], colors.shape[4]
    # (Gy X) for every (frame, component) at once: one [T M H, H] x [H, C W] product per layer.
    rows = colors.transpose(2, 3).reshape(b, layers, h, c * w)  # [B, L, H, C W]
    out = gy.permute(0, 2, 1, 3, 4, 5).reshape(b, layers, t * m * h, h) @ rows
    out = out.reshape(b, layers, t, m, h * c, w) @ gx.permute(0, 2, 1, 3, 5, 4)  # (Gy X) Gx^T
    return out.reshape(b, layers, t, m, h, c, w).sum((1, 3)).transpose(2, 3)
