"""The splat renderer's public entry, :func:`render_defocus`: checks and batches its arguments,
projects and blurs the Gaussians, and hands rasterisation to a backend (the torch reference,
``_torch_impl``, or gsplat), as gsplat keeps its wrappers apart from its ``__init__``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dfd_models.lens import LensParams, coc_signed_px, intrinsics
from dfd_models.splat import _torch_impl, gsplat_backend
from dfd_models.splat.footprint import SplatConfig

#: Rasterisers :func:`render_defocus` can use: ``auto`` (gsplat where it applies, else the torch
#: reference), ``torch`` (the reference), ``gsplat`` (the CUDA fast path).
BACKENDS = ("auto", "torch", "gsplat")

__all__ = ["Camera", "Gaussians", "RenderOutput", "render_defocus"]


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
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")

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
