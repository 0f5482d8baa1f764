"""Gaussian-splat defocus renderer (dfd_models.splat): analytic checks, defocus, occlusion, gradients."""

from __future__ import annotations

import math

import pytest
from conftest import require

from generator.core import lens as np_lens

F_PX = 60.0  # focal length of the test cameras, pixels


def _camera(torch, width, height, dtype=None):
    from dfd_models.splat import Camera

    K = torch.tensor([[F_PX, 0.0, width / 2], [0.0, F_PX, height / 2], [0.0, 0.0, 1.0]], dtype=dtype)
    return Camera(width, height, K=K)


def _random_scene(torch, n, width, height, seed=0, dtype=None, z_range=(1.0, 4.0), opacity=(0.3, 0.9)):
    """n Gaussians spread over the view, a few pixels wide, at random depths."""
    from dfd_models.splat import Gaussians

    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, lo=0.0, hi=1.0):
        return lo + (hi - lo) * torch.rand(*shape, generator=gen, dtype=dtype)

    z = rand(n, lo=z_range[0], hi=z_range[1])
    x = (rand(n, lo=0.1, hi=0.9) * width - width / 2) * z / F_PX
    y = (rand(n, lo=0.1, hi=0.9) * height - height / 2) * z / F_PX
    return Gaussians(
        means=torch.stack([x, y, z], -1),
        scales=rand(n, 3, lo=0.6, hi=2.0) * z[:, None] / F_PX,
        quats=torch.randn(n, 4, generator=gen, dtype=dtype),
        opacities=rand(n, lo=opacity[0], hi=opacity[1]),
        colors=rand(n, 3),
    )


def _rotation_and_quat(torch, axis, angle, dtype):
    """A rotation matrix from the axis-angle matrix exponential, and its (w, x, y, z) quaternion."""
    axis = torch.tensor(axis, dtype=dtype)
    axis = axis / axis.norm()
    skew = torch.tensor(
        [[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]], dtype=dtype
    )
    quat = torch.cat([torch.tensor([math.cos(angle / 2)], dtype=dtype), math.sin(angle / 2) * axis])
    return torch.linalg.matrix_exp(angle * skew), quat


@pytest.mark.parametrize("eps2d", [0.0, 0.3])
@pytest.mark.parametrize("defocus", [False, True])
def test_one_gaussian_is_the_analytic_2d_gaussian(torch, eps2d, defocus):
    """pixel value = o_b exp(-d^T S^-1 d / 2) at centres (j + 0.5, i + 0.5), 0 where below alpha_min.

    S = J Sigma J^T + eps2d I (+ c^2/16 I defocused, o_b = o sqrt(det S_sharp / det S));
    J from autograd of the pinhole projection, c from generator.core.lens (numpy).
    """
    from dfd_models.lens import LensParams
    from dfd_models.splat import Gaussians, SplatConfig, render_defocus

    dt = torch.float64
    width, height = 40, 32
    camera = _camera(torch, width, height, dt)
    rot, quat = _rotation_and_quat(torch, [0.3, -0.5, 0.8], 0.7, dt)
    scales = torch.tensor([0.09, 0.04, 0.06], dtype=dt)
    mean = torch.tensor([0.13, -0.07, 2.5], dtype=dt)
    opacity, color = 0.8, torch.tensor([0.2, 0.5, 0.9], dtype=dt)
    g = Gaussians(mean[None], scales[None], quat[None], torch.tensor([opacity], dtype=dt), color[None])
    config = SplatConfig(eps2d=eps2d)

    lens = np_lens.Lens("blender", 0.05, 2.0, 0.036)
    focus = 1.2
    if defocus:
        out = render_defocus(g, camera, focus, LensParams.from_lens(lens, dtype=dt), config=config)
        coc = float(np_lens.coc_px(lens, 2.5, focus, width))
        assert out.coc_px.abs().item() == pytest.approx(coc, rel=1e-12)
    else:
        out = render_defocus(g, camera, config=config)
        coc = 0.0

    def project(p):
        return (camera.K @ p)[:2] / p[2]

    jac = torch.autograd.functional.jacobian(project, mean)  # [2, 3]
    sigma3 = rot @ torch.diag(scales**2) @ rot.T
    sharp = jac @ sigma3 @ jac.T + eps2d * torch.eye(2, dtype=dt)
    blurred = sharp + coc**2 / 16 * torch.eye(2, dtype=dt)
    o_b = opacity * math.sqrt(torch.linalg.det(sharp) / torch.linalg.det(blurred))
    ys, xs = torch.meshgrid(torch.arange(height, dtype=dt) + 0.5, torch.arange(width, dtype=dt) + 0.5, indexing="ij")
    d = torch.stack([xs, ys], -1) - project(mean)  # [H, W, 2]
    m = torch.einsum("hwi,ij,hwj->hw", d, torch.linalg.inv(blurred), d)
    want = o_b * torch.exp(-0.5 * m)
    want = want * (want >= config.alpha_min)
    assert (want > 0).sum() > 30 and (want == 0).sum() > 30  # support inside the image, cut-off visible

    torch.testing.assert_close(out.alpha[0, 0], want, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(out.color[0], want * color[:, None, None], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(out.depth[0, 0], (want > 0).to(dt) * 2.5, rtol=1e-12, atol=1e-14)


def test_zero_coc_is_plain_splatting(torch):
    """CoC 0 (every Gaussian on the focal plane, or a pinhole aperture) equals rendering with no lens."""
    from dfd_models.lens import LensParams
    from dfd_models.splat import Gaussians, render_defocus

    dt = torch.float64
    camera = _camera(torch, 32, 24, dt)
    scene = _random_scene(torch, 40, 32, 24, seed=1, dtype=dt)
    lens = LensParams.from_lens(np_lens.Lens("thin_lens", 0.05, 1.4, 0.036), dtype=dt)

    on_plane = torch.cat([scene.means[:, :2] * (2.0 / scene.means[:, 2:]), torch.full((40, 1), 2.0, dtype=dt)], 1)
    flat = Gaussians(on_plane, scene.scales, scene.quats, scene.opacities, scene.colors)  # all at z = 2 m
    sharp = render_defocus(flat, camera)
    focused = render_defocus(flat, camera, 2.0, lens)
    assert torch.count_nonzero(focused.coc_px) == 0
    for name in ("color", "alpha", "depth"):
        torch.testing.assert_close(getattr(focused, name), getattr(sharp, name), rtol=0, atol=0)

    pinhole = LensParams("thin_lens", lens.focal_length_m, torch.tensor(1e12, dtype=dt), lens.sensor_width_m)
    tiny = render_defocus(scene, camera, 0.7, pinhole)
    sharp = render_defocus(scene, camera)
    for name in ("color", "alpha", "depth"):
        torch.testing.assert_close(getattr(tiny, name), getattr(sharp, name), rtol=1e-10, atol=1e-12)


def test_defocused_plane_is_sharp_render_blurred_by_coc_over_4(torch):
    """A fronto-parallel textured plane with CoC c renders as the sharp render convolved with N(0, (c/4)^2).

    This identity is exact per splat (a Gaussian convolved with a Gaussian, weight kept) and
    holds for the image while compositing is additive, i.e. T ~ 1. So the splats are faint
    (opacity 1e-3, summed alpha per pixel ~ 4e-3): compositing then scales both sides by
    1 - O(summed alpha / 2) ~ 0.998, nearly uniformly over an evenly covered plane, so the
    sides differ by much less. The other errors are smaller still: the discrete convolution
    of unit-spaced samples of Gaussians >= 0.8 px wide (Poisson aliasing ~ 1e-5) and the
    cut-offs (alpha_min = 1e-10, kernel truncated at 4.7 sigma).
    Tolerance: 0.25 % of the image's peak (measured: 0.002 %), compared 7 px away from the
    borders; a 10 % error in the blur's sigma fails it.
    """
    from dfd_models.lens import LensParams
    from dfd_models.splat import Gaussians, SplatConfig, render_defocus

    dt = torch.float64
    size, z, opacity, sigma_px = 48, 2.0, 1e-3, 0.8
    camera = _camera(torch, size, size, dt)
    gen = torch.Generator().manual_seed(3)
    centres = torch.arange(size, dtype=dt) + 0.5
    v, u = torch.meshgrid(centres, centres, indexing="ij")
    n = size * size
    plane = Gaussians(
        means=torch.stack([(u.flatten() - size / 2) * z / F_PX, (v.flatten() - size / 2) * z / F_PX,
                           torch.full((n,), z, dtype=dt)], -1),  # fmt: skip
        scales=torch.full((n, 3), sigma_px * z / F_PX, dtype=dt),
        quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=dt).expand(n, 4),
        opacities=torch.full((n,), opacity, dtype=dt),
        colors=torch.rand(n, 2, generator=gen, dtype=dt),  # texture
    )
    config = SplatConfig(eps2d=0.0, alpha_min=1e-10)
    lens_np = np_lens.Lens("blender", 0.05, 2.0, 0.036)
    lens = LensParams.from_lens(lens_np, dtype=dt)
    focus = 1 / 4.1  # c = 6 px at z = 2 m for this lens and 48 px
    coc = float(np_lens.coc_px(lens_np, z, focus, size))
    assert coc == pytest.approx(6.0)

    sharp = render_defocus(plane, camera, z, lens, config=config)
    blurred = render_defocus(plane, camera, focus, lens, config=config)
    assert blurred.coc_px.abs().max().item() == pytest.approx(coc, rel=1e-9)

    def convolve(image, sigma):  # [1, C, H, W] -> valid region [1, C, H - 2r, W - 2r]
        radius = 7
        k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=dt) / sigma) ** 2)
        k = k / k.sum()
        channels = image.shape[1]
        image = torch.nn.functional.conv2d(image, k.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
        return torch.nn.functional.conv2d(image, k.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)

    stack = lambda out: torch.cat([out.color, out.alpha], 1)  # noqa: E731
    got = stack(blurred)[..., 7:-7, 7:-7]
    tolerance = 0.0025 * got.abs().max()
    error = (convolve(stack(sharp), coc / 4) - got).abs().max()
    assert error < tolerance, (error, tolerance)
    assert (convolve(stack(sharp), 1.1 * coc / 4) - got).abs().max() > tolerance
    assert (convolve(stack(sharp), 0.9 * coc / 4) - got).abs().max() > tolerance


def test_occluder_hides_what_is_behind_whatever_the_input_order(torch):
    from dfd_models.splat import Gaussians, render_defocus

    dt = torch.float64
    camera = _camera(torch, 24, 24, dt)

    def scene(z_red, z_blue, order):
        means = torch.tensor([[0.0, 0.0, z_red], [0.0, 0.0, z_blue]], dtype=dt)
        scales = torch.tensor([[0.1, 0.1, 0.1], [0.05, 0.05, 0.05]], dtype=dt) * means[:, 2:]
        g = [means, scales, torch.tensor([[1.0, 0, 0, 0]] * 2, dtype=dt), torch.tensor([0.99, 0.9], dtype=dt),
             torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=dt)]  # fmt: skip
        return Gaussians(*[x[order] for x in g])

    # Alphas of each Gaussian alone at the centre pixel (red: 0.98, blue: 0.87).
    a_red = render_defocus(scene(1.0, 1e-3, [0, 1]), camera).alpha[0, 0, 12, 12].item()  # blue culled (near)
    a_blue = render_defocus(scene(1e-3, 3.0, [0, 1]), camera).alpha[0, 0, 12, 12].item()
    for order in ([0, 1], [1, 0]):
        red_front = render_defocus(scene(1.0, 3.0, order), camera)
        red, _, blue = red_front.color[0, :, 12, 12].tolist()
        assert (red, blue) == pytest.approx((a_red, (1 - a_red) * a_blue), rel=1e-12)  # blue shows through 2 %
        blue_front = render_defocus(scene(3.0, 1.0, order), camera)
        red, _, blue = blue_front.color[0, :, 12, 12].tolist()
        assert (red, blue) == pytest.approx(((1 - a_blue) * a_red, a_blue), rel=1e-12)

    forward, backward = (render_defocus(scene(1.0, 3.0, o), camera) for o in ([0, 1], [1, 0]))
    torch.testing.assert_close(forward.color, backward.color, rtol=0, atol=0)

    # Shuffling a bigger scene changes nothing either.
    many = _random_scene(torch, 60, 24, 24, seed=5, dtype=dt)
    perm = torch.randperm(60, generator=torch.Generator().manual_seed(0))
    shuffled = Gaussians(*(getattr(many, f)[perm] for f in ("means", "scales", "quats", "opacities", "colors")))
    a, b = render_defocus(many, camera), render_defocus(shuffled, camera)
    torch.testing.assert_close(a.color, b.color, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(a.depth, b.depth, rtol=1e-12, atol=1e-14)


def test_tile_size_batching_and_pose_do_not_change_the_image(torch):
    """Tiles are an implementation detail; a batch is its items; world + pose = camera frame."""
    from dfd_models.lens import LensParams
    from dfd_models.splat import Camera, Gaussians, SplatConfig, render_defocus

    dt = torch.float64
    width, height = 37, 29  # not multiples of any tile size
    scene = _random_scene(torch, 50, width, height, seed=2, dtype=dt)
    lens = LensParams.from_lens(np_lens.Lens("thin_lens", 0.05, 2.0, 0.036), dtype=dt)
    camera = Camera(width, height)  # K from the lens (breathing)
    focus = torch.tensor([0.8, 1.5, 3.0], dtype=dt)

    batch = render_defocus(scene, camera, focus, lens)  # [3, ...]
    assert batch.color.shape == (3, 3, height, width) and batch.depth.shape == (3, 1, height, width)
    for tile in (1, 5, 16):
        other = render_defocus(scene, camera, focus, lens, config=SplatConfig(tile_size=tile))
        torch.testing.assert_close(other.color, batch.color, rtol=1e-12, atol=1e-14)
    for i in range(3):
        single = render_defocus(scene, camera, focus[i], lens)
        torch.testing.assert_close(single.color[0], batch.color[i], rtol=1e-12, atol=1e-14)
    grey = torch.tensor([0.5, 0.5, 0.5], dtype=dt)
    backdrop = render_defocus(scene, camera, focus, lens, background=grey)
    torch.testing.assert_close(backdrop.color, batch.color + (1 - batch.alpha) * grey[:, None, None])

    rot, quat = _rotation_and_quat(torch, [1.0, 2.0, -0.5], 0.4, dt)
    w2c = torch.eye(4, dtype=dt)
    w2c[:3, :3], w2c[:3, 3] = rot.T, torch.tensor([0.1, -0.2, 0.3], dtype=dt)
    world = Gaussians(
        (scene.means - w2c[:3, 3]) @ rot.T,  # c2w applied: x_w = R (x_c - t)
        scene.scales, _quat_mul(torch, quat, scene.quats), scene.opacities, scene.colors,
    )  # fmt: skip
    posed = render_defocus(world, Camera(width, height, world_to_camera=w2c), focus, lens)
    torch.testing.assert_close(posed.color, batch.color, rtol=1e-9, atol=1e-11)


def test_rasteriser_matches_compositing_each_pixel_alone(torch):
    """Tiles, their grouping by splat count and the padding of each group change nothing.

    Splats from 0.3 to 6 px wide put a few to dozens of splats on a tile, so the tiles fall
    in several groups; each pixel is composited here on its own over every splat, nearest
    first, stopping before the splat that would bring T to t_min or below.
    """
    from dfd_models.splat import SplatConfig
    from dfd_models.splat import _torch_impl as impl

    dt, width, height, n = torch.float64, 29, 23, 70
    gen = torch.Generator().manual_seed(7)
    means2d = torch.rand(1, n, 2, generator=gen, dtype=dt) * torch.tensor([width, height], dtype=dt)
    sigma = 0.3 + 5.7 * torch.rand(1, n, 2, generator=gen, dtype=dt) ** 2
    rho = 0.8 * (2 * torch.rand(1, n, generator=gen, dtype=dt) - 1)
    cross = rho * sigma[..., 0] * sigma[..., 1]
    covars = torch.stack([sigma[..., 0] ** 2, cross, cross, sigma[..., 1] ** 2], -1).reshape(1, n, 2, 2)
    inv = torch.linalg.inv(covars)
    conics = torch.stack([inv[..., 0, 0], inv[..., 0, 1], inv[..., 1, 1]], -1)
    opacities = 0.2 + 0.79 * torch.rand(1, n, generator=gen, dtype=dt)
    colors = torch.rand(1, n, 3, generator=gen, dtype=dt)
    depths = 1 + torch.rand(1, n, generator=gen, dtype=dt)
    cfg = SplatConfig(tile_size=4)
    radii = impl._support_radii(covars, opacities, cfg.alpha_min)
    ts = cfg.tile_size
    tile_ids, _ = impl._isect_tiles(means2d, radii, depths, ts, math.ceil(width / ts), math.ceil(height / ts))
    counts = torch.bincount(tile_ids)
    assert counts.max() >= 4 * counts.min()  # tiles in three or more groups
    colour, alpha = impl._rasterize_to_pixels(means2d, conics, colors, opacities, radii, depths, width, height,
                                              cfg.alpha_min, cfg.alpha_max, cfg.t_min, tile_size=ts)

    want = torch.zeros(height, width, 4, dtype=dt)
    order = torch.argsort(depths[0])
    for i in range(height):
        for j in range(width):
            d = torch.tensor([j + 0.5, i + 0.5], dtype=dt) - means2d[0, order]  # [n, 2]
            a, b, c = conics[0, order].unbind(-1)
            power = a * d[:, 0] ** 2 + 2 * b * d[:, 0] * d[:, 1] + c * d[:, 1] ** 2
            alphas = (opacities[0, order] * torch.exp(-0.5 * power)).clamp_max(cfg.alpha_max)
            trans = 1.0
            for k in range(n):
                if alphas[k] < cfg.alpha_min:
                    continue
                if trans * (1 - alphas[k]) <= cfg.t_min:
                    break
                want[i, j, :3] += trans * alphas[k] * colors[0, order[k]]
                want[i, j, 3] += trans * alphas[k]
                trans = trans * (1 - alphas[k])
    assert (want[..., 3] > 0.9).any() and (want[..., 3] < 0.1).any()
    torch.testing.assert_close(colour[0], want[..., :3], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(alpha[0, ..., 0], want[..., 3], rtol=1e-12, atol=1e-12)


def test_rasteriser_gradients_are_the_same_bits_every_run(torch):
    """Many wide, overlapping splats on a 128 px frame: big enough that the CPU runs the
    gradient sums on several threads. Ten backward passes give bit-identical gradients, so a
    training step, and the zero-depth test, repeat exactly."""
    from dfd_models.splat import SplatConfig
    from dfd_models.splat import _torch_impl as impl

    size, n = 128, 400
    gen = torch.Generator().manual_seed(0)
    sigma = 2 + 10 * torch.rand(1, n, 2, generator=gen)  # px
    leaves = [
        torch.rand(1, n, 2, generator=gen) * size,  # means2d
        torch.stack([sigma[..., 0] ** -2, torch.zeros(1, n), sigma[..., 1] ** -2], -1),  # conics
        torch.rand(1, n, 3, generator=gen),  # colours
        0.05 + 0.3 * torch.rand(1, n, generator=gen),  # opacities
    ]
    leaves = [x.requires_grad_() for x in leaves]
    depths = torch.rand(1, n, generator=gen)
    cfg = SplatConfig()
    radii = impl._support_radii(torch.diag_embed(sigma**2), leaves[3].detach(), cfg.alpha_min)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(threads, 2))  # the race needs two threads, even on one core
    try:
        first = None
        for _ in range(10):
            colour, alpha = impl._rasterize_to_pixels(*leaves, radii, depths, size, size, cfg.alpha_min,
                                                      cfg.alpha_max, cfg.t_min, tile_size=cfg.tile_size)
            grads = torch.autograd.grad(colour.square().sum() + alpha.sum(), leaves)
            first = first or grads
            assert all(torch.equal(a, b) for a, b in zip(grads, first))
    finally:
        torch.set_num_threads(threads)


def _quat_mul(torch, q, r):
    """Hamilton product q * r, (w, x, y, z); q [4], r [N, 4]."""
    w1, x1, y1, z1 = q
    w2, x2, y2, z2 = r.unbind(-1)
    return torch.stack([
        w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
    ], -1)  # fmt: skip


@pytest.mark.slow
def test_gradcheck_tiny_scene(torch):
    """Gradients w.r.t. means (depth included), scales, quats, opacities, colours and focus."""
    from dfd_models.lens import LensParams
    from dfd_models.splat import Camera, Gaussians, SplatConfig, render_defocus

    dt = torch.float64
    width, height = 12, 10
    scene = _random_scene(torch, 4, width, height, seed=4, dtype=dt, z_range=(0.6, 2.0))
    # 10 mm sensor: about F_PX pixels of focal length over 12 px, like the scene.
    lens = LensParams.from_lens(np_lens.Lens("thin_lens", 0.05, 1.4, 0.01), dtype=dt)
    camera = Camera(width, height)  # K depends on focus (breathing): its gradient is checked too
    config = SplatConfig(tile_size=4)
    fields = ("means", "scales", "quats", "opacities", "colors")
    inputs = tuple(getattr(scene, f).clone().requires_grad_() for f in fields)
    focus = torch.tensor(1.0, dtype=dt, requires_grad=True)

    def render(means, scales, quats, opacities, colors, focus):
        out = render_defocus(Gaussians(means, scales, quats, opacities, colors), camera, focus, lens, config=config)
        return out.color, out.alpha, out.depth

    color, alpha, _ = render(*inputs, focus)
    assert alpha.max() > 0.5 and (alpha > 0).float().mean() > 0.5  # the scene covers the image
    assert torch.autograd.gradcheck(render, (*inputs, focus), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_shapes_are_checked(torch):
    from dfd_models.splat import Gaussians, render_defocus

    scene = _random_scene(torch, 5, 16, 16)
    with pytest.raises(ValueError, match="scales must be"):
        Gaussians(scene.means, scene.scales[:, :2], scene.quats, scene.opacities, scene.colors)
    with pytest.raises(ValueError, match="colors must be"):
        Gaussians(scene.means, scene.scales, scene.quats, scene.opacities, scene.colors[:4])
    camera = _camera(torch, 16, 16)
    with pytest.raises(ValueError, match="inconsistent batch sizes"):
        from dfd_models.splat import Camera

        render_defocus(scene, Camera(16, 16, K=camera.K.expand(2, 3, 3)), torch.ones(3), _lens(torch))
    with pytest.raises(ValueError, match="both focus_m and lens"):
        render_defocus(scene, camera, 1.0)
    with pytest.raises(ValueError, match="background must be"):
        render_defocus(scene, camera, background=torch.zeros(4))


def _lens(torch):
    from dfd_models.lens import LensParams

    return LensParams.from_lens(np_lens.Lens("blender", 0.05, 2.0, 0.036))


def _opened_lens(torch, scene, width, height, focus, coc_px):
    """``_lens`` with its f-number scaled so that the largest CoC of ``scene`` over ``focus`` is
    ``coc_px`` (the CoC goes as 1 / N), checked on the torch reference (CPU)."""
    from dfd_models.lens import LensParams
    from dfd_models.splat import Camera, render_defocus

    lens = _lens(torch)
    base = render_defocus(scene, Camera(width, height), focus, lens, backend="torch").coc_px.abs().max()
    opened = LensParams(lens.model, lens.focal_length_m, lens.f_number * float(base) / coc_px, lens.sensor_width_m)
    got = render_defocus(scene, Camera(width, height), focus, opened, backend="torch").coc_px.abs().max()
    assert float(got) == pytest.approx(coc_px, rel=1e-4)
    return opened


@pytest.mark.cuda
@pytest.mark.parametrize("share_of_limit", [None, 0.95])
def test_gsplat_backend_matches_reference(torch, share_of_limit):
    """gsplat (CUDA) agrees with the torch reference: forward and gradients, float32, on a scene
    whose largest CoC is ``_lens``'s (3.9 px) or 0.95 of the limit gsplat draws (6.0 px).

    Tolerances: images 2e-3 absolute (float32 and gsplat's fast __expf can flip a splat
    across alpha_min = 1/255, a ~4e-3 step, at an occasional pixel, so also mean error
    < 1e-5); gradients 1e-2 relative L2 (float32 sums in a different order, atomics).
    The scene and its CoCs are checked on the CPU first; only the comparison needs CUDA.
    """
    from dfd_models.splat import Camera, Gaussians, gsplat_backend, render_defocus

    width, height = 64, 48
    scene = _random_scene(torch, 300, width, height, seed=6, dtype=torch.float32)
    focus = torch.tensor([0.5, 1.5, 3.5])
    if share_of_limit is None:
        lens = _lens(torch)
    else:
        lens = _opened_lens(torch, scene, width, height, focus, share_of_limit * gsplat_backend.GSPLAT_MAX_COC_PX)
    coc = render_defocus(scene, Camera(width, height), focus, lens, backend="torch").coc_px.abs().max()
    assert 3.5 < float(coc) <= gsplat_backend.GSPLAT_MAX_COC_PX  # defocused, and gsplat draws it
    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available: the gsplat backend needs a CUDA device (gsplat itself is not checked)")
    require("gsplat")

    fields = ("means", "scales", "quats", "opacities", "colors")
    results = {}
    for backend in ("torch", "gsplat"):
        inputs = [getattr(scene, f).cuda().requires_grad_() for f in fields]
        focus_cuda = focus.cuda().requires_grad_()
        out = render_defocus(Gaussians(*inputs), Camera(width, height), focus_cuda, lens.to("cuda"), backend=backend)
        weights = torch.linspace(0.1, 1.0, out.color.numel(), device="cuda").reshape(out.color.shape)
        ((out.color * weights).sum() + out.alpha.sum() + 0.1 * out.depth.sum()).backward()
        results[backend] = (out, [x.grad for x in inputs] + [focus_cuda.grad])

    (ref, ref_grads), (fast, fast_grads) = results["torch"], results["gsplat"]
    assert ref.alpha.max() > 0.5
    for name in ("color", "alpha"):
        diff = (getattr(ref, name) - getattr(fast, name)).abs()
        assert diff.max() < 5e-3 and diff.mean() < 1e-5, (name, diff.max(), diff.mean())
    both = (ref.alpha > 0.5) & (fast.alpha > 0.5)
    torch.testing.assert_close(fast.depth[both], ref.depth[both], rtol=1e-3, atol=1e-3)
    for name, a, b in zip(fields + ("focus",), ref_grads, fast_grads):
        rel = (a - b).norm() / a.norm()
        assert rel < 1e-2, (name, rel.item())


def _one_pixel_splat(torch, size, coc_px, dtype):
    """One splat of one pixel of weight (opacity 1, std 1 / sqrt(2 pi) px) at 1 m, its camera,
    lens and the focus distance that blurs it by a CoC of ``coc_px``."""
    from dfd_models.lens import LensParams
    from dfd_models.splat import Camera, Gaussians

    s = 1 / math.sqrt(2 * math.pi)
    lens = LensParams("blender", *(torch.tensor(x, dtype=dtype) for x in (0.05, 1.0, 0.036)))
    K = torch.tensor([[100.0, 0, size / 2], [0, 100.0, size / 2], [0, 0, 1]], dtype=dtype)
    one = torch.ones(1, dtype=dtype)
    g = Gaussians(torch.tensor([[0.0, 0.0, 1.0]], dtype=dtype), torch.full((1, 3), s / 100.0, dtype=dtype),
                  torch.tensor([[1.0, 0, 0, 0]], dtype=dtype), one, one[:, None])
    focus = torch.tensor(1 / (1 + coc_px * (0.036 / size) / (0.05 * 0.05)), dtype=dtype)
    return g, Camera(size, size, K=K), focus, lens


def test_gsplat_coc_limit_is_what_its_threshold_draws(torch):
    """GSPLAT_MAX_COC_PX comes from gsplat's alpha_min 1/255 (gsplat_backend.blur_limit_px), and the
    torch reference agrees: at that CoC the one-pixel-weight splat it is derived for, cut at
    1/255, keeps 0.90 of the std of the same splat cut at 1e-12 and 1 - q = 0.935 of its weight
    (within 0.01); at twice the limit 0.735 and 0.75, as blur_limit_px's derivation says."""
    from dfd_models.splat import SplatConfig, gsplat_backend, render_defocus

    limit = gsplat_backend.GSPLAT_MAX_COC_PX
    assert limit == gsplat_backend.blur_limit_px(gsplat_backend.GSPLAT_THRESHOLDS[0],
                                                 gsplat_backend.GSPLAT_BLUR_TOLERANCE)
    assert limit == pytest.approx(6.30, abs=0.01)
    size, dt = 64, torch.float64

    def weight_and_std(coc, alpha_min):
        g, camera, focus, lens = _one_pixel_splat(torch, size, coc, dt)
        out = render_defocus(g, camera, focus, lens, config=SplatConfig(eps2d=0.0, alpha_min=alpha_min))
        assert float(out.coc_px.abs()) == pytest.approx(coc, rel=1e-9)
        alpha = out.alpha[0, 0]
        profile = alpha.sum(0) / alpha.sum()
        u = torch.arange(size, dtype=dt) + 0.5
        return float(alpha.sum()), float((profile * (u - size / 2) ** 2).sum().sqrt())

    for coc, want_std, want_weight in ((limit, 1 - gsplat_backend.GSPLAT_BLUR_TOLERANCE, 0.935),
                                       (2 * limit, 0.735, 0.75)):
        (w_cut, s_cut), (w_all, s_all) = weight_and_std(coc, 1 / 255), weight_and_std(coc, 1e-12)
        assert s_cut / s_all == pytest.approx(want_std, abs=0.01), coc
        assert w_cut / w_all == pytest.approx(want_weight, abs=0.01), coc


def test_gsplat_refuses_a_coc_beyond_its_limit_on_any_machine(torch, monkeypatch):
    """backend="gsplat" with a splat blurred beyond GSPLAT_MAX_COC_PX is one message naming the limit
    and the largest CoC, checked before the device (so here, on the CPU); the CoC checked is the
    blur drawn, what a coc_floor_px leaves of it."""
    from dfd_models.splat import gsplat_backend, render_defocus

    g, camera, focus, lens = _one_pixel_splat(torch, 64, 12.0, torch.float32)
    with pytest.raises(RuntimeError) as error:
        render_defocus(g, camera, focus, lens, backend="gsplat")
    message = str(error.value)
    assert f"up to {gsplat_backend.GSPLAT_MAX_COC_PX:.1f} px" in message and "6.3 px" in message
    assert "largest CoC here is 12.0 px" in message and "torch backend" in message
    # On a machine where gsplat would run (faked), the same refusal, and gsplat is never called.
    with monkeypatch.context() as patch:
        patch.setattr(gsplat_backend, "environment_refusal", lambda like: "")
        patch.setattr(gsplat_backend, "rasterize_to_pixels", lambda *args: pytest.fail("gsplat was called"))
        with pytest.raises(RuntimeError, match="largest CoC here is 12.0 px"):
            render_defocus(g, camera, focus, lens, backend="gsplat")
    # Within the limit the machine decides: this one has no CUDA tensors.
    small = _one_pixel_splat(torch, 64, 5.0, torch.float32)
    with pytest.raises(RuntimeError, match="not on a CUDA device"):
        render_defocus(*small, backend="gsplat")
    # A floor of 11 px leaves sqrt(12^2 - 11^2) = 4.8 px to draw.
    with pytest.raises(RuntimeError, match="not on a CUDA device"):
        render_defocus(g, camera, focus, lens, backend="gsplat", coc_floor_px=torch.tensor([[11.0]]))
    assert gsplat_backend.coc_refusal(gsplat_backend.GSPLAT_MAX_COC_PX) == ""


def test_auto_falls_back_to_the_reference_beyond_the_limit_and_says_so_once(torch, monkeypatch):
    """On a machine where gsplat would run (faked here: the device check passes), "auto" renders a
    CoC beyond the limit with the torch reference, with one warning per process however many
    renders; within the limit it picks gsplat; a config gsplat refuses anyway (sdgs's alpha_min
    1e-4) takes the reference without a word."""
    import warnings

    from dfd_models import splat
    from dfd_models.splat import SplatConfig, gsplat_backend, render_defocus

    monkeypatch.setattr(gsplat_backend, "environment_refusal", lambda like: "")
    monkeypatch.setattr(gsplat_backend, "_fallback_warned", False)
    g, camera, focus, lens = _one_pixel_splat(torch, 64, 12.0, torch.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outs = [render_defocus(g, camera, focus, lens, backend="auto") for _ in range(3)]
    said = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(said) == 1, said
    assert "up to 6.3 px" in said[0] and "largest CoC here is 12.0 px" in said[0] and "torch reference" in said[0]
    ref = render_defocus(g, camera, focus, lens, backend="torch")
    for out in outs:
        torch.testing.assert_close(out.color, ref.color, rtol=0, atol=0)

    like = torch.zeros(1)
    radius = torch.tensor([[0.5, 0.45 * gsplat_backend.GSPLAT_MAX_COC_PX]])  # CoC 0.9 of the limit
    assert splat.rendering._choose_backend("auto", like, SplatConfig(), radius) == "gsplat"
    assert splat.rendering._choose_backend("auto", like, SplatConfig(), 3 * radius) == "torch"
    monkeypatch.setattr(gsplat_backend, "_fallback_warned", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert splat.rendering._choose_backend("auto", like, SplatConfig(alpha_min=1e-4), 3 * radius) == "torch"
    assert not caught and not gsplat_backend._fallback_warned
    with pytest.raises(RuntimeError, match="hard-codes"):  # the config is named before the CoC
        splat.rendering._choose_backend("gsplat", like, SplatConfig(alpha_min=1e-4), 3 * radius)


def test_coc_floor_adds_only_the_rest_of_the_blur(torch):
    """A splat whose colour already carries blur f renders like one blurred by sqrt(c^2 - f^2):
    Gaussian blurs add in variance; a floor at or above c adds no blur at all."""
    from dfd_models.lens import LensParams
    from dfd_models.splat import Camera, Gaussians, SplatConfig, render_defocus

    lens = LensParams("blender", torch.tensor(0.05), torch.tensor(1.0), torch.tensor(0.036))
    size, z, focus = 48, 1.0, 0.4
    K = torch.tensor([[100.0, 0, size / 2], [0, 100.0, size / 2], [0, 0, 1]])
    g = Gaussians(torch.tensor([[0.0, 0.0, z]]), torch.full((1, 3), 0.4 * z / 100.0), torch.tensor([[1.0, 0, 0, 0]]),
                  torch.ones(1), torch.ones(1, 1))
    config = SplatConfig(eps2d=0.0, alpha_min=1e-4)
    full = render_defocus(g, Camera(size, size, K=K), torch.tensor(focus), lens, config=config)
    c = float(full.coc_px.abs())
    assert c > 4  # a clearly defocused splat

    def std(image):
        kernel = image[0, 0] / image.sum()
        u = torch.arange(size) + 0.5
        mean = (kernel.sum(0) * u).sum()
        return float(((kernel.sum(0) * (u - mean) ** 2).sum()).sqrt())

    floor = 0.6 * c
    part = render_defocus(g, Camera(size, size, K=K), torch.tensor(focus), lens, config=config,
                          coc_floor_px=torch.tensor([[floor]]))
    want = math.sqrt(0.4**2 + (c * c - floor * floor) / 16)
    assert std(part.color) == pytest.approx(want, rel=0.03) and std(part.color) < 0.9 * std(full.color)
    none = render_defocus(g, Camera(size, size, K=K), torch.tensor(focus), lens, config=config,
                          coc_floor_px=torch.tensor([[1.5 * c]]))
    sharp = render_defocus(g, Camera(size, size, K=K), config=config)
    torch.testing.assert_close(none.color, sharp.color)


def test_disc_footprint_keeps_a_splats_weight_and_variance(torch):
    """One defocused splat (CoC 8 px) drawn with the disc footprint and blend "sum": its alpha sums
    to the sharp splat's weight 2 pi o sqrt(det Sigma) and has the disc's per-axis variance
    s^2 + c^2/16 (both within 1 %, measured 1e-7 and 0.3 %), like the Gaussian footprint; but
    it is flat-topped: its centre is 0.61 of the Gaussian's (a uniform disc's: 1/2)."""
    from dfd_models.lens import LensParams
    from dfd_models.splat import Camera, Gaussians, SplatConfig, render_defocus

    dt, size, z, s = torch.float64, 48, 1.0, 0.5
    lens = LensParams("blender", *(torch.tensor(x, dtype=dt) for x in (0.05, 1.0, 0.036)))
    K = torch.tensor([[100.0, 0, size / 2], [0, 100.0, size / 2], [0, 0, 1]], dtype=dt)
    g = Gaussians(torch.tensor([[0.0, 0.0, z]], dtype=dt), torch.full((1, 3), s * z / 100.0, dtype=dt),
                  torch.tensor([[1.0, 0, 0, 0]], dtype=dt), torch.tensor([0.8], dtype=dt), torch.ones(1, 1, dtype=dt))
    focus = 1 / (1 / z + 8.0 * (0.036 / size) / (0.05 * 0.05))  # c = 8 px at z
    alphas = {}
    for footprint in ("disc", "gaussian"):
        config = SplatConfig(eps2d=0.0, alpha_min=1e-9, footprint=footprint, blend="sum")
        out = render_defocus(g, Camera(size, size, K=K), torch.tensor(focus, dtype=dt), lens, config=config)
        assert float(out.coc_px.abs()) == pytest.approx(8.0)
        alphas[footprint] = alpha = out.alpha[0, 0]
        assert float(alpha.sum()) == pytest.approx(2 * math.pi * 0.8 * s * s, rel=1e-2)
        u = torch.arange(size, dtype=dt) + 0.5
        profile = alpha.sum(0) / alpha.sum()
        variance = float((profile * (u - size / 2) ** 2).sum())
        assert variance == pytest.approx(s * s + 64 / 16, rel=1e-2), footprint
    centre = (slice(size // 2 - 1, size // 2 + 1),) * 2
    ratio = float(alphas["disc"][centre].mean() / alphas["gaussian"][centre].mean())
    assert 0.55 < ratio < 0.75, ratio


def test_mixture_and_sum_blend_are_refused_by_gsplat_and_differentiable(torch):
    """gsplat draws one Gaussian per splat front to back: it refuses the disc footprint and the sum
    blend with one message (before any CUDA check, so on every machine), and "auto" falls back to the
    torch reference. With the disc, a floor equal to the CoC (nothing left to blur) still gives
    finite gradients in depth."""
    from dfd_models.lens import LensParams
    from dfd_models.splat import Camera, Gaussians, SplatConfig, gsplat_backend, render_defocus

    for config in (SplatConfig(footprint="disc"), SplatConfig(blend="sum")):
        usable, why = gsplat_backend.usable(torch.zeros(1), config)
        assert not usable and "need the torch backend" in why
    lens = LensParams("blender", torch.tensor(0.05), torch.tensor(1.0), torch.tensor(0.036))
    K = torch.tensor([[100.0, 0, 8.0], [0, 100.0, 8.0], [0, 0, 1]])
    z = torch.tensor([1.0], requires_grad=True)
    means = torch.cat([torch.zeros(2), z])[None]
    g = Gaussians(means, torch.full((1, 3), 0.005), torch.tensor([[1.0, 0, 0, 0]]), torch.ones(1), torch.ones(1, 1))
    config = SplatConfig(eps2d=0.0, alpha_min=1e-4, footprint="disc")
    with pytest.raises(RuntimeError, match="need the torch backend"):
        render_defocus(g, Camera(16, 16, K=K), torch.tensor(0.6), lens, config=config, backend="gsplat")
    coc = render_defocus(g, Camera(16, 16, K=K), torch.tensor(0.6), lens, config=config).coc_px.detach()
    out = render_defocus(g, Camera(16, 16, K=K), torch.tensor(0.6), lens, config=config, coc_floor_px=coc.abs())
    out.color.sum().backward()
    assert torch.isfinite(z.grad).all()
