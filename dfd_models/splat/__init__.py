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

Backends: ``"torch"`` (``_torch_impl``, the reference, CPU or GPU, any float
dtype) and ``"gsplat"`` (CUDA, float32, only the rasterisation step differs);
``"auto"`` picks gsplat for float32 CUDA tensors when it is installed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dfd_models.lens import LensParams, coc_signed_px, intrinsics
from dfd_models.splat import _torch_impl, gsplat_backend

__all__ = ["Camera", "Gaussians", "RenderOutput", "SplatConfig", "render_defocus"]


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
    """

    eps2d: float = 0.3
    alpha_min: float = 1.0 / 255.0
    alpha_max: float = 0.999
    t_min: float = 1e-4
    near_m: float = 0.01
    tile_size: int = 8

    def __post_init__(self) -> None:
        if not (0 < self.alpha_min <= self.alpha_max < 1):
            raise ValueError(f"need 0 < alpha_min <= alpha_max < 1, got {self.alpha_min}, {self.alpha_max}")
        if self.eps2d < 0 or not (0 <= self.t_min < 1) or self.near_m <= 0 or self.tile_size < 1:
            raise ValueError(f"invalid SplatConfig {self}")


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
            renderer adds only the rest, variance max(c^2 - floor^2, 0) / 16, so that a
            splat's total blur is its CoC c (Gaussian blurs add in variance).  # [B, N]
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
    backend = _choose_backend(backend, gaussians.means, config)

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
    coc_var = coc * coc / 16
    if coc_floor_px is not None:
        coc_var = (coc_var - _batched(coc_floor_px.to(dtype), 1, batch).square() / 16).clamp_min(0)
    conics, opacities, covars2d = _torch_impl._add_defocus(covars2d, opacities, coc_var, config.eps2d)
    radii = _torch_impl._support_radii(covars2d, opacities, config.alpha_min)  # [B, N, 2]

    # Expected depth rides along as one more colour channel.
    features = torch.cat([_batched(gaussians.colors, 2, batch), safe[..., None]], -1)  # [B, N, C + 1]
    args = (means2d, conics, features, opacities, radii, safe, camera.width, camera.height)
    thresholds = (config.alpha_min, config.alpha_max, config.t_min)
    if backend == "gsplat":
        image, alpha = gsplat_backend.rasterize_to_pixels(*args, *thresholds)  # [B, H, W, C + 1], [B, H, W, 1]
    else:
        image, alpha = _torch_impl._rasterize_to_pixels(*args, *thresholds, tile_size=config.tile_size)
    image, alpha = image.permute(0, 3, 1, 2), alpha.permute(0, 3, 1, 2)
    color, depth_sum = image[:, :-1], image[:, -1:]
    if background is not None:
        color = color + (1 - alpha) * _batched(background.to(dtype), 1, batch)[..., None, None]
    # alpha >= alpha_min wherever any splat landed, so the clamp only guards empty pixels.
    depth = depth_sum / alpha.clamp_min(1e-10)
    return RenderOutput(color=color, alpha=alpha, depth=depth, coc_px=coc)


def _choose_backend(backend: str, like: Tensor, config: SplatConfig) -> str:
    if backend not in ("auto", "torch", "gsplat"):
        raise ValueError(f"backend must be 'auto', 'torch' or 'gsplat', got {backend!r}")
    usable, why = gsplat_backend.usable(like, config)
    if backend == "gsplat" and not usable:
        raise RuntimeError(f"gsplat backend unusable: {why}")
    if backend == "auto":
        return "gsplat" if usable else "torch"
    return backend
