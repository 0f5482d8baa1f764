"""Pure-PyTorch reference of the Gaussian-splat defocus renderer (CPU and GPU).

Slow and plain on purpose: every fast path (``gsplat_backend``) is tested
against it. Names mirror gsplat's ``_torch_impl.py``. Stages:

1. ``_quat_scale_to_covar``: 3D covariance  Sigma = R S S^T R^T.
2. ``_world_to_cam``: mean W mu + t, covariance W Sigma W^T (W the rotation of world_to_camera).
3. ``_persp_proj``: EWA projection (Zwicker et al. 2002), pixel mean K [x/z, y/z, 1]^T and
   2D covariance J W Sigma W^T J^T with J = d(u, v)/d(x, y, z) at the mean.
4. ``_add_defocus``: each splat convolved with its footprint, a mixture of M isotropic Gaussians
   scaled by the CoC radius r = c/2 (component k: mean r mu_k, covariance Sigma_2D + (eps2d +
   (r a_k)^2) I, opacity o w_k renormalised to keep its share of the splat's weight). One
   Gaussian of per-axis variance c^2/16 (``"gaussian"``, a uniform disc's variance) or a disc.
5. ``_isect_tiles`` + ``_rasterize_to_pixels``: per-tile lists of the splats whose support
   touches the tile, in depth order, composited per pixel: front to back (``"over"``), or
   summed without transmittance (``"sum"``, order-independent).

Limits of the reference rasteriser: it materialises [tiles, K, tile_size^2] tensors, tiles
grouped by the power of two at or above their count and K each group's largest number of
Gaussians touching one tile, so memory grows with the square of the largest splat radius
(a splat's support reaches sqrt(2 ln(255)) = 3.33 sigma at the default alpha_min;
benchmarks/splat_throughput.py measures it, docs/NOTES.md records it). Heavily defocused
scenes (CoC of tens of pixels) belong on the gsplat backend. A footprint of M Gaussians
(``"disc"``: 9) costs M exponentials per (tile, splat, pixel) entry.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _quat_to_rotmat(quats: Tensor) -> Tensor:
    """Rotation matrices of quaternions (w, x, y, z), normalised first.

    Args:
        quats: [..., 4]
    Returns:
        [..., 3, 3]
    """
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]  # fmt: skip
    return torch.stack(rows, -1).reshape(quats.shape[:-1] + (3, 3))


def _quat_scale_to_covar(quats: Tensor, scales: Tensor) -> Tensor:
    """3D covariance Sigma = (R S)(R S)^T, S = diag(scales) (standard deviations, metres).

    Args:
        quats: [..., 4] (w, x, y, z)
        scales: [..., 3]
    Returns:
        [..., 3, 3]
    """
    rs = _quat_to_rotmat(quats) * scales[..., None, :]  # [..., 3, 3]
    return rs @ rs.transpose(-1, -2)


def _world_to_cam(means: Tensor, covars: Tensor, world_to_camera: Tensor) -> tuple[Tensor, Tensor]:
    """Means and covariances in the OpenCV camera frame: W mu + t and W Sigma W^T.

    Args:
        means: [B, N, 3]
        covars: [B, N, 3, 3]
        world_to_camera: [B, 4, 4]
    Returns:
        means [B, N, 3], covars [B, N, 3, 3]
    """
    rot = world_to_camera[:, None, :3, :3]  # [B, 1, 3, 3]
    trans = world_to_camera[:, None, :3, 3]  # [B, 1, 3]
    means_c = (rot @ means[..., None])[..., 0] + trans
    return means_c, rot @ covars @ rot.transpose(-1, -2)


def _persp_proj(means_c: Tensor, covars_c: Tensor, K: Tensor) -> tuple[Tensor, Tensor]:
    """EWA perspective projection to pixels (centres at integer + 0.5).

    u = K[:2, :2] [x/z, y/z]^T + K[:2, 2];  Sigma_2D = J Sigma_c J^T with
    J = K[:2, :2] [[1/z, 0, -x/z^2], [0, 1/z, -y/z^2]]. No frustum clamping of J
    (3DGS clamps x/z for Gaussians far outside the view); z must be > 0.

    Args:
        means_c: [B, N, 3] camera frame
        covars_c: [B, N, 3, 3]
        K: [B, 3, 3]
    Returns:
        means2d [B, N, 2], covars2d [B, N, 2, 2]
    """
    x, y, z = means_c.unbind(-1)  # [B, N] each
    k2 = K[:, None, :2, :2]  # [B, 1, 2, 2]
    xy = torch.stack([x / z, y / z], -1)  # [B, N, 2]
    means2d = (k2 @ xy[..., None])[..., 0] + K[:, None, :2, 2]
    zero = torch.zeros_like(z)
    d_xy = torch.stack([1 / z, zero, -x / (z * z), zero, 1 / z, -y / (z * z)], -1)
    jac = k2 @ d_xy.reshape(z.shape + (2, 3))  # [B, N, 2, 3]
    return means2d, jac @ covars_c @ jac.transpose(-1, -2)


def _add_defocus(
    covars2d: Tensor, opacities: Tensor, coc_radius: Tensor, eps2d: float, mixture: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Convolve each splat with its defocus footprint, keeping its integrated weight.

    The footprint is a mixture of M isotropic Gaussians in units of the CoC radius r
    (``mixture`` rows (mu_x, mu_y, a, w), sum w = 1). Component k of a splat:

    Sigma_s = Sigma_2D + eps2d I              (sharp splat, 3DGS low-pass)
    Sigma_k = Sigma_s + (r a_k)^2 I           (convolved with the component's Gaussian)
    mean offset r mu_k,   o_k = o w_k sqrt(det Sigma_s / det Sigma_k)

    A splat o exp(-d^T Sigma^-1 d / 2) integrates to 2 pi o sqrt(det Sigma), so the components
    together are exactly the sharp splat convolved with the footprint. The one-Gaussian
    footprint (0, 0, 1/2, 1) gives variance r^2/4 = c^2/16. With r = 0 nothing changes.

    Args:
        covars2d: [B, N, 2, 2] pixels^2
        opacities: [B, N]
        coc_radius: [B, N] r, pixels (its sign is immaterial: footprints are symmetric)
        mixture: [M, 4]
    Returns:
        conics [B, N, M, 3] (upper triangle of Sigma_k^-1: xx, xy, yy), opacities [B, N, M],
        covars2d [B, N, M, 2, 2] (Sigma_k), offsets [B, N, M, 2] (pixels)
    """
    a, b, d = covars2d[..., 0, 0] + eps2d, covars2d[..., 0, 1], covars2d[..., 1, 1] + eps2d
    det_sharp = (a * d - b * b)[..., None]  # [B, N, 1]
    extra = (coc_radius[..., None] * mixture[:, 2]).square()  # [B, N, M]
    a, b, d = a[..., None] + extra, b[..., None].expand_as(extra), d[..., None] + extra
    det_blur = a * d - b * b
    opacities = opacities[..., None] * mixture[:, 3] * torch.sqrt(det_sharp / det_blur)
    conics = torch.stack([d / det_blur, -b / det_blur, a / det_blur], -1)
    blurred = torch.stack([a, b, b, d], -1).reshape(extra.shape + (2, 2))
    offsets = coc_radius[..., None, None] * mixture[:, :2]
    return conics, opacities, blurred, offsets


@torch.no_grad()
def _support_radii(covars2d: Tensor, opacities: Tensor, alpha_min: float, offsets: Tensor | None = None) -> Tensor:
    """Per-axis half-widths (pixels, int) of each splat's support {alpha >= alpha_min}.

    One Gaussian o exp(-m/2): the ellipse m = d^T Sigma^-1 d <= r^2, r^2 = 2 ln(o / alpha_min),
    whose bounding box has half-widths r sqrt(Sigma_xx), r sqrt(Sigma_yy); 0 where o < alpha_min.
    A mixture of M components (alpha is their sum): the union of each component's box for
    alpha_min / M, moved by its offset (where every component is below alpha_min / M, the sum
    is below alpha_min).

    Args:
        covars2d: [B, N, 2, 2], or [B, N, M, 2, 2] for a mixture
        opacities: [B, N], or [B, N, M]
        offsets: [B, N, M, 2] component means relative to the splat's centre (None: 0)
    Returns:
        [B, N, 2] int32
    """
    if covars2d.dim() == 4:
        covars2d, opacities = covars2d[:, :, None], opacities[..., None]
    m = opacities.shape[-1]
    r = torch.sqrt(2 * torch.log((opacities * m / alpha_min).clamp_min(1.0)))  # [B, N, M]
    diag = torch.diagonal(covars2d, dim1=-2, dim2=-1)  # [B, N, M, 2]
    reach = r[..., None] * diag.sqrt() * (r[..., None] > 0)
    if offsets is not None:
        reach = reach + offsets.abs() * (r[..., None] > 0)
    radii = torch.ceil(reach.amax(2))
    return torch.nan_to_num(radii, nan=0.0, posinf=0.0).to(torch.int32)


@torch.no_grad()
def _isect_tiles(
    means2d: Tensor, radii: Tensor, depths: Tensor, tile_size: int, tile_width: int, tile_height: int
) -> tuple[Tensor, Tensor]:
    """(tile, Gaussian) pairs whose bounding box overlaps, sorted by image, tile, then depth.

    Args:
        means2d: [B, N, 2]
        radii: [B, N, 2] int, 0 = culled
        depths: [B, N]
        tile_width, tile_height: number of tiles across and down
    Returns:
        tile_ids [M] (image * tiles per image + row * tile_width + col), flatten_ids [M]
        (image * N + gaussian)
    """
    n = depths.shape[1]
    lo = torch.floor((means2d - radii) / tile_size).long().clamp_min(0)  # [B, N, 2]
    hi = torch.floor((means2d + radii) / tile_size).long()
    hi = torch.minimum(hi, torch.tensor([tile_width - 1, tile_height - 1], device=hi.device))
    span = (hi - lo + 1).clamp_min(0) * (radii > 0)  # [B, N, 2] tiles across, down
    # Visit Gaussians in depth order; the stable sort by tile below keeps that order per tile.
    order = torch.argsort(depths.flatten(), stable=True)  # [B*N]
    count = (span[..., 0] * span[..., 1]).flatten()[order]
    flat = order.repeat_interleave(count)  # [M]
    k = torch.arange(flat.numel(), device=flat.device) - (torch.cumsum(count, 0) - count).repeat_interleave(count)
    across = span[..., 0].flatten()[flat]
    col = lo[..., 0].flatten()[flat] + k % across
    row = lo[..., 1].flatten()[flat] + k // across
    tile_ids = (flat // n) * (tile_width * tile_height) + row * tile_width + col
    tile_ids, perm = torch.sort(tile_ids, stable=True)
    return tile_ids, flat[perm]


def _rasterize_to_pixels(
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
    tile_size: int = 8,
    offsets: Tensor | None = None,
    blend: str = "over",
) -> tuple[Tensor, Tensor]:
    """Alpha compositing of depth-sorted splats at pixel centres (j + 0.5, i + 0.5).

    alpha_i = min(alpha_max, sum_k o_ik exp(-d_k^T Sigma_ik^-1 d_k / 2)) over splat i's
    components k (d_k from the component's mean, the splat's centre + its offset), dropped
    where < alpha_min. ``blend="over"``: T_i = prod_{j<i} (1 - alpha_j) over the splats
    touching the pixel, nearest first; colour = sum_i T_i alpha_i c_i, alpha = sum_i T_i alpha_i;
    compositing stops before a splat that would bring T to t_min or below (3DGS, so gsplat
    agrees). ``blend="sum"``: T_i = 1 (no occlusion, order-independent; alpha may exceed 1).

    The result does not depend on ``tile_size`` (each splat's support lies inside its box)
    nor on how tiles are grouped (padding slots have opacity 0).

    Args:
        means2d: [B, N, 2] pixels, the splats' centres
        conics: [B, N, 3] upper triangle of Sigma^-1, or [B, N, M, 3] per component
        colors: [B, N, D]
        opacities: [B, N], or [B, N, M] per component
        radii: [B, N, 2] int, from ``_support_radii`` (0 = culled)
        depths: [B, N] the sort key, metres
        offsets: [B, N, M, 2] component means relative to the centre, pixels (None: 0)
    Returns:
        colour [B, H, W, D], alpha [B, H, W, 1]
    """
    if conics.dim() == 3:
        conics, opacities = conics[:, :, None], opacities[..., None]
    if offsets is None:
        offsets = torch.zeros(conics.shape[:-1] + (2,), dtype=conics.dtype, device=conics.device)
    batch = depths.shape[0]
    tiles_w, tiles_h = math.ceil(width / tile_size), math.ceil(height / tile_size)
    n_tiles = batch * tiles_h * tiles_w
    tile_ids, flat_ids = _isect_tiles(means2d.detach(), radii, depths.detach(), tile_size, tiles_w, tiles_h)
    counts = torch.bincount(tile_ids, minlength=n_tiles)  # [n_tiles]
    starts = torch.cumsum(counts, 0) - counts
    # A last entry that every padding slot reads (flat_ids may be empty); its opacity is masked to 0.
    flat_ids = torch.cat([flat_ids, flat_ids.new_zeros(1)])
    # One row per splat (x, y, then per component offset x y, conic a b c, opacity; colour), so a
    # tile's splats are one gather.
    parts = torch.cat([offsets, conics, opacities[..., None]], -1).flatten(2)  # [B, N, 6 M]
    splats = torch.cat([means2d, parts, colors], -1).flatten(0, 1)  # [B N, 2 + 6 M + D]
    components = conics.shape[2]

    # Tiles are composited in groups by the power of two at or above their count, each group
    # padded to its own largest count: one table padded to the busiest tile of the frame
    # (a near splat's CoC) wastes most of its work on empty slots.
    group = torch.ceil(torch.log2(counts.clamp_min(1).to(torch.float32))).long()
    by_group = torch.argsort(group, stable=True)
    sizes = torch.unique_consecutive(group[by_group], return_counts=True)[1].tolist()
    colours, accs = zip(*(
        _composite_tiles(tiles, starts[tiles], counts[tiles], flat_ids, splats, components, tile_size, tiles_w,
                         tiles_h, alpha_min, alpha_max, t_min, blend)
        for tiles in by_group.split(sizes)
    ))
    back = torch.argsort(by_group)  # grouped order -> tile order

    def untile(x: Tensor) -> Tensor:  # [n_tiles, P, D] -> [B, H, W, D]
        x = x[back].reshape(batch, tiles_h, tiles_w, tile_size, tile_size, -1).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(batch, tiles_h * tile_size, tiles_w * tile_size, -1)[:, :height, :width]

    return untile(torch.cat(colours)), untile(torch.cat(accs))


def _composite_tiles(
    tiles: Tensor,
    starts: Tensor,
    counts: Tensor,
    flat_ids: Tensor,
    splats: Tensor,
    components: int,
    tile_size: int,
    tiles_w: int,
    tiles_h: int,
    alpha_min: float,
    alpha_max: float,
    t_min: float,
    blend: str,
) -> tuple[Tensor, Tensor]:
    """Compositing of the pixels of some tiles (see ``_rasterize_to_pixels``).

    Args:
        tiles: [n] tile ids (image * tiles per image + row * tiles_w + col)
        starts, counts: [n] each tile's run in ``flat_ids`` (depth-sorted Gaussians)
        flat_ids: [S + 1] image * N + gaussian, then one padding slot
        splats: [B N, 2 + 6 M + D] x, y (pixels), per component (offset x, y, conic a, b, c,
            opacity), colour; M = ``components``
    Returns:
        colour [n, P, D], alpha [n, P, 1]; P = tile_size^2 pixels in row-major order
    """
    # table[t, k]: the k-th nearest Gaussian touching tile t; past its count, the last entry.
    k = torch.arange(max(int(counts.max()), 1), device=tiles.device)
    present = k < counts[:, None]  # [n, K]
    g = flat_ids[torch.where(present, starts[:, None] + k, flat_ids.numel() - 1)]  # [n, K]

    # Pixel centres of a tile form a grid, so a splat's offsets to them are one dx per column
    # and one dy per row, and its quadratic form separates into row, column and cross terms:
    # sigma[i, j] = (a dx_j^2 + c dy_i^2) / 2 + b dx_j dy_i  (conic a, b, c). Fewer full-size
    # [n, K, P] tensors.
    tile = tiles % (tiles_h * tiles_w)
    local = torch.arange(tile_size, device=tiles.device, dtype=splats.dtype) + 0.5
    px = (tile % tiles_w * tile_size).to(splats.dtype)[:, None] + local  # [n, ts] column centres
    py = (tile // tiles_w * tile_size).to(splats.dtype)[:, None] + local  # [n, ts] row centres

    # index_select, not splats[g]: the latter's CPU backward adds repeated rows with threads
    # racing, so a step gave different gradients run to run; index_add_ sums in order.
    rows = splats.index_select(0, g.flatten()).reshape(*g.shape, -1)  # [n, K, 2 + 6 M + D]
    alpha = 0.0
    for k in range(components):
        ox, oy, a, b, c, opac = rows[..., 2 + 6 * k : 8 + 6 * k].unbind(-1)  # [n, K] each
        dx = (rows[..., 0] + ox)[..., None] - px[:, None, :]  # [n, K, ts]
        dy = (rows[..., 1] + oy)[..., None] - py[:, None, :]  # [n, K, ts]
        row = -0.5 * c[..., None] * dy * dy  # [n, K, ts]
        col = -0.5 * a[..., None] * dx * dx
        neg_sigma = row[..., :, None] + col[..., None, :] - (b[..., None] * dy)[..., :, None] * dx[..., None, :]
        alpha = alpha + (opac * present)[..., None] * torch.exp(neg_sigma.flatten(2))  # [n, K, P]
    alpha = alpha.clamp_max(alpha_max)
    alpha = torch.where(alpha >= alpha_min, alpha, 0.0)
    if blend == "sum":
        weight = alpha
    else:
        trans_after = torch.cumprod(1 - alpha, dim=1)  # T_{i+1}; 1 - alpha >= 1 - alpha_max > 0
        trans_before = torch.cat([torch.ones_like(trans_after[:, :1]), trans_after[:, :-1]], 1)
        weight = torch.where(trans_after > t_min, alpha * trans_before, 0.0)  # [n, K, P]

    colour = torch.einsum("tkp,tkd->tpd", weight, rows[..., 2 + 6 * components :])  # [n, P, D]
    return colour, weight.sum(1)[..., None]
