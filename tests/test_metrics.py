"""Depth metrics (dfd_models.metrics): hand-computed cases and exact accumulation over batches."""

from __future__ import annotations

import math

import pytest


@pytest.fixture(scope="module")
def metrics(torch):
    from dfd_models import metrics

    return metrics


def _depth(torch, seed=0, shape=(2, 1, 4, 5)):
    gen = torch.Generator().manual_seed(seed)
    return 0.3 + 2.0 * torch.rand(shape, generator=gen)


def test_ten_percent_too_far(torch, metrics):
    """p = 1.1 g: AbsRel 0.1, SqRel 0.01 mean(g), RMSE-log ln 1.1, every delta 1, accuracy 100 %."""
    gt = _depth(torch).double()
    out = metrics.depth_metrics(1.1 * gt, gt, max_depth_m=2.0)
    assert out["abs_rel"] == pytest.approx(0.1)
    assert out["sq_rel"] == pytest.approx(0.01 * float(gt.mean()))
    assert out["mae"] == pytest.approx(0.1 * float(gt.mean()))
    assert out["mse"] == pytest.approx(0.01 * float((gt**2).mean()))
    assert out["rmse"] == pytest.approx(math.sqrt(out["mse"]))
    assert out["rmse_log"] == pytest.approx(math.log(1.1))
    assert out["delta1"] == out["delta2"] == out["delta3"] == 1.0 and out["accuracy"] == 100.0
    assert out["mse_norm"] == pytest.approx(out["mse"] / 4) and out["rms_norm"] == pytest.approx(out["rmse"] / 2)
    assert out["n_pixels"] == gt.numel()


def test_deltas_and_invalid_pixels(torch, metrics):
    """Ratios 1.2 (in delta1), 1.5 and 1/1.5 (delta2 only), 1.9 (delta3 only), 3 (none);
    pixels with gt = 0 or valid = False are ignored whatever the prediction."""
    gt = torch.tensor([1.0, 2.0, 1.0, 1.0, 1.0, 0.0, 1.0]).reshape(1, 1, 1, 7)
    pred = torch.tensor([1.2, 3.0, 1 / 1.5, 1.9, 3.0, 5.0, -1.0]).reshape(1, 1, 1, 7)
    valid = torch.tensor([True] * 6 + [False]).reshape(1, 1, 1, 7)
    out = metrics.depth_metrics(pred, gt, valid)
    assert out["n_pixels"] == 5
    assert out["delta1"] == pytest.approx(1 / 5) and out["accuracy"] == pytest.approx(20.0)
    assert out["delta2"] == pytest.approx(3 / 5)  # 1.25^2 = 1.5625
    assert out["delta3"] == pytest.approx(4 / 5)  # 1.25^3 = 1.953
    errors = [0.2, 1.0, 1 / 3, 0.9, 2.0]
    assert out["mae"] == pytest.approx(sum(errors) / 5)
    assert out["abs_rel"] == pytest.approx((0.2 + 0.5 + 1 / 3 + 0.9 + 2.0) / 5)
    assert out["sq_rel"] == pytest.approx((0.04 + 0.5 + 1 / 9 + 0.81 + 4.0) / 5)
    assert "mse_norm" not in out


def test_accumulator_is_pixel_weighted(torch, metrics):
    """Two batches with different valid counts give the metrics of their union, not the mean of two."""
    gt = _depth(torch, seed=1, shape=(3, 1, 6, 6))
    pred = gt * (1 + 0.3 * torch.randn(gt.shape, generator=torch.Generator().manual_seed(2))).abs().clamp_min(0.1)
    valid = torch.rand(gt.shape, generator=torch.Generator().manual_seed(3)) > 0.3
    valid[0] = valid[0] & (torch.arange(6)[:, None] < 2)  # the first image has few valid pixels
    acc = metrics.DepthMetrics(max_depth_m=2.5)
    acc.update(pred[:1], gt[:1], valid[:1])
    acc.update(pred[1:], gt[1:], valid[1:])
    whole = metrics.depth_metrics(pred, gt, valid, max_depth_m=2.5)
    assert acc.compute() == pytest.approx(whole, rel=1e-12)
    first = metrics.depth_metrics(pred[:1], gt[:1], valid[:1])
    rest = metrics.depth_metrics(pred[1:], gt[1:], valid[1:])
    assert whole["abs_rel"] != pytest.approx((first["abs_rel"] + rest["abs_rel"]) / 2, rel=1e-3)


def test_bad_input(torch, metrics):
    gt = _depth(torch)
    with pytest.raises(ValueError, match="one shape"):
        metrics.depth_metrics(gt[:, :, :2], gt)
    with pytest.raises(ValueError, match="> 0"):
        metrics.depth_metrics(torch.zeros_like(gt), gt)
    with pytest.raises(ValueError, match="no valid pixels"):
        metrics.depth_metrics(gt, torch.zeros_like(gt))
    with pytest.raises(ValueError, match="max_depth_m"):
        metrics.DepthMetrics(max_depth_m=0.0)
