"""Loss functions (dfd_models.losses): identities, known values, masks."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def losses(torch):
    from dfd_models import losses

    return losses


def _image(torch, seed=0, shape=(2, 3, 8, 10)):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def test_ssim_identity_and_contrast(torch, losses):
    """SSIM(x, x) = 1; against a constant image it is exactly the luminance-free formula of one window."""
    x = _image(torch)
    torch.testing.assert_close(losses.ssim(x, x), torch.ones_like(x))
    assert losses.photometric_error(x, x).abs().max() < 1e-6
    # A constant y = c: sigma_y = sigma_xy = 0, so SSIM = (2 mu c + C1) C2 / ((mu^2 + c^2 + C1)(var + C2)).
    y = torch.full_like(x, 0.5)
    mu = x[0, 0, 3:6, 3:6].mean()
    var = (x[0, 0, 3:6, 3:6] ** 2).mean() - mu**2
    c1, c2 = losses.SSIM_C1, losses.SSIM_C2
    want = (2 * mu * 0.5 + c1) * c2 / ((mu**2 + 0.25 + c1) * (var + c2))
    torch.testing.assert_close(losses.ssim(x, y)[0, 0, 4, 4], want)


def test_photometric_error_is_l1_for_a_constant_offset(torch, losses):
    """A constant offset d leaves SSIM's structure terms at 1, so pe = 0.85 (1 - l) / 2 + 0.15 d,
    l the luminance term; with alpha = 0 it is exactly the L1 error."""
    x = _image(torch)
    pe = losses.photometric_error(x + 0.1, x, alpha=0.0)
    assert pe.shape == (2, 1, 8, 10)
    torch.testing.assert_close(pe, torch.full_like(pe, 0.1))
    with pytest.raises(ValueError, match="shape"):
        losses.photometric_error(x, x[:, :1])


def test_smoothness(torch, losses):
    """Zero for a constant map; a horizontal ramp of step s and mean m costs s / m (every x
    difference is s / m after normalisation, every y difference 0), times exp(-1) across image
    steps of 1."""
    image = torch.zeros(1, 3, 4, 5)
    assert losses.edge_aware_smoothness(torch.full((1, 1, 4, 5), 2.0), image) == 0
    ramp = torch.arange(5.0).expand(1, 1, 4, 5) + 1  # 1..5, mean 3
    torch.testing.assert_close(losses.edge_aware_smoothness(ramp, image), torch.tensor(1 / 3))
    # scale-invariant in the map
    torch.testing.assert_close(losses.edge_aware_smoothness(10 * ramp, image), torch.tensor(1 / 3))
    # an image step of 1 between every column weights the x term by exp(-1)
    edges = torch.arange(5.0).expand(1, 3, 4, 5)
    torch.testing.assert_close(losses.edge_aware_smoothness(ramp, edges), torch.exp(torch.tensor(-1.0)) / 3)


def test_masked_helpers(torch, losses):
    pred = torch.tensor([[1.0, 2.0], [3.0, 10.0]]).reshape(1, 1, 2, 2)
    target = torch.tensor([[1.0, 1.0], [1.0, 0.0]]).reshape(1, 1, 2, 2)
    mask = target > 0
    assert losses.masked_l1(pred, target, mask) == pytest.approx((0 + 1 + 2) / 3)
    assert losses.masked_mse(pred, target, mask) == pytest.approx((0 + 1 + 4) / 3)
    assert losses.masked_mse(pred, target) == pytest.approx((0 + 1 + 4 + 100) / 4)
    # a [B, 1, H, W] mask weights every channel of a [B, C, H, W] error
    assert losses.masked_mean(pred.expand(1, 3, 2, 2), mask) == pytest.approx(2.0)
    # an empty mask gives 0 and a zero (not NaN) gradient
    p = pred.clone().requires_grad_()
    out = losses.masked_l1(p, target, torch.zeros_like(mask))
    out.backward()
    assert out == 0 and (p.grad == 0).all()
