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

Modules: :mod:`.rendering` (:func:`render_defocus`, its arguments and result),
:mod:`.footprint` (footprints and :class:`SplatConfig`), :mod:`.planes` (the plane case in
closed form), :mod:`._torch_impl` (the reference rasteriser), :mod:`.gsplat_backend`.
"""

from dfd_models.splat.footprint import BLENDS, FOOTPRINTS, SplatConfig, footprint_factors
from dfd_models.splat.planes import plane_kernel, plane_operators, render_planes
from dfd_models.splat.rendering import Camera, Gaussians, RenderOutput, render_defocus

__all__ = ["BLENDS", "FOOTPRINTS", "Camera", "Gaussians", "RenderOutput", "SplatConfig", "footprint_factors",
           "plane_kernel", "plane_operators", "render_defocus", "render_planes"]
