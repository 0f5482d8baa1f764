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


def test_inverse_depth_errors(torch, metrics):
    """inv_mae = mean |1/p - 1/g| and inv_rmse = sqrt(mean (1/p - 1/g)^2), in 1/m."""
    gt = torch.tensor([1.0, 2.0, 0.5, 4.0], dtype=torch.float64).reshape(1, 1, 2, 2)
    pred = torch.tensor([2.0, 2.0, 1.0, 1.0], dtype=torch.float64).reshape(1, 1, 2, 2)
    out = metrics.depth_metrics(pred, gt)
    inv_errors = [0.5, 0.0, 1.0, 0.75]  # |1/2 - 1|, 0, |1 - 2|, |1 - 1/4|
    assert out["inv_mae"] == pytest.approx(sum(inv_errors) / 4)
    assert out["inv_rmse"] == pytest.approx(math.sqrt(sum(e * e for e in inv_errors) / 4))
    assert out["inv_mae"] != pytest.approx(out["mae"])  # mae = (1 + 0 + 0.5 + 3) / 4


def _hand_made(torch):
    """A 2 x 3 image: two wall pixels at 2 m (top left), three object pixels, one without a surface."""
    gt = torch.tensor([[2.0, 2.0, 1.0], [0.5, 1.0, 0.0]], dtype=torch.float64).reshape(1, 1, 2, 3)
    pred = torch.tensor([[2.0, 2.6, 1.2], [1.0, 1.0, 3.0]], dtype=torch.float64).reshape(1, 1, 2, 3)
    wall = torch.tensor([[True, True, False], [False, False, False]]).reshape(1, 1, 2, 3)
    return pred, gt, gt > 0, wall


def test_regions_on_a_hand_made_prediction(torch, metrics):
    """all: ratios 1, 1.3, 1.2, 2, 1; objects: the last three valid pixels (1.2, 2, 1)."""
    pred, gt, valid, wall = _hand_made(torch)
    acc = metrics.RegionMetrics(max_depth_m=2.0)
    acc.update(pred, gt, valid, wall)
    scores = acc.compute()
    assert list(scores) == ["all", "objects"] and acc.absent() == {}
    every, objects = scores["all"], scores["objects"]
    assert every["n_pixels"] == 5 and objects["n_pixels"] == 3
    assert every["abs_rel"] == pytest.approx((0 + 0.3 + 0.2 + 1.0 + 0) / 5)
    assert objects["abs_rel"] == pytest.approx((0.2 + 1.0 + 0) / 3)
    assert every["delta1"] == pytest.approx(3 / 5) and objects["delta1"] == pytest.approx(2 / 3)
    assert every["inv_mae"] == pytest.approx((0 + 3 / 26 + 1 / 6 + 1 + 0) / 5)  # |1/2.6 - 1/2| = 3/26
    assert objects["inv_mae"] == pytest.approx((1 / 6 + 1 + 0) / 3)
    assert objects["inv_rmse"] == pytest.approx(math.sqrt((1 / 36 + 1 + 0) / 3))
    assert objects["mae"] == pytest.approx(0.7 / 3) and objects["rms_norm"] == pytest.approx(objects["rmse"] / 2)
    assert every == pytest.approx(metrics.depth_metrics(pred, gt, valid, max_depth_m=2.0), rel=1e-12)


def test_constant_at_the_wall_scores_well_only_on_all(torch, metrics):
    """A 10 x 10 frame, 90 % wall at 2 m, 10 object pixels at 0.5..0.9 m; predict 2 m everywhere."""
    gt = torch.full((1, 1, 10, 10), 2.0)
    gt[0, 0, 0, :] = torch.linspace(0.5, 0.9, 10)
    wall = gt == 2.0
    acc = metrics.RegionMetrics()
    acc.update(torch.full_like(gt, 2.0), gt, gt > 0, wall)
    scores = acc.compute()
    assert scores["all"]["delta1"] == pytest.approx(0.9) and scores["all"]["n_pixels"] == 100
    assert scores["objects"]["delta1"] == 0.0 and scores["objects"]["n_pixels"] == 10
    assert scores["objects"]["abs_rel"] > 1.2 and scores["objects"]["inv_mae"] > 0.6
    assert scores["objects"]["abs_rel"] == pytest.approx(10 * scores["all"]["abs_rel"])  # wall pixels err 0


def test_regions_without_a_wall_or_without_objects(torch, metrics):
    pred, gt, valid, wall = _hand_made(torch)
    no_wall = metrics.RegionMetrics()  # a recipe without a wall: the loader's mask is all False
    no_wall.update(pred, gt, valid, torch.zeros_like(wall))
    scores = no_wall.compute()
    assert scores["objects"] == scores["all"] and scores["all"]["n_pixels"] == 5
    none_given = metrics.RegionMetrics()
    none_given.update(pred, gt, valid)
    assert none_given.compute() == scores

    only_wall = metrics.RegionMetrics()  # every valid pixel on the wall: objects absent, all scored
    only_wall.update(pred, gt, valid & wall, wall)
    scores = only_wall.compute()
    assert scores["objects"] is None and scores["all"]["n_pixels"] == 2
    assert "off the background wall" in only_wall.absent()["objects"] and list(only_wall.absent()) == ["objects"]

    empty = metrics.RegionMetrics()
    empty.update(pred, gt, torch.zeros_like(valid), wall)
    with pytest.raises(ValueError, match="no valid pixels"):
        empty.compute()
    with pytest.raises(ValueError, match="wall"):
        empty.update(pred, gt, valid, wall[..., :2])


def test_region_totals_sum_across_ranks(torch, metrics):
    """DDP: the totals of two accumulators (two ranks' halves) summed give the whole's metrics."""
    gt = _depth(torch, seed=4, shape=(4, 1, 6, 6)).double()
    pred = gt * 1.2
    wall = torch.rand(gt.shape, generator=torch.Generator().manual_seed(5)) > 0.5
    ranks = [metrics.RegionMetrics(), metrics.RegionMetrics()]
    ranks[0].update(pred[:1], gt[:1], None, wall[:1])
    ranks[1].update(pred[1:], gt[1:], None, wall[1:])
    merged = metrics.RegionMetrics()
    merged.totals = ranks[0].totals + ranks[1].totals
    whole = metrics.RegionMetrics()
    whole.update(pred, gt, None, wall)
    assert merged.totals.shape == (2, len(metrics.TOTALS))
    for region, scores in whole.compute().items():
        assert merged.compute()[region] == pytest.approx(scores, rel=1e-12)
    with pytest.raises(ValueError, match="totals"):
        merged.totals = torch.zeros(len(metrics.TOTALS))


def test_pearson_is_pooled_over_batches_and_zero_for_a_constant(torch):
    """Pearson of depth pooled over two batches equals numpy's over all their pixels; an affine
    map of the truth scores 1, its negation -1, a constant 0."""
    import numpy as np

    from dfd_models.metrics import DepthMetrics

    gen = torch.Generator().manual_seed(0)
    gt = [0.5 + torch.rand(1, 1, 4, 5, generator=gen, dtype=torch.float64) for _ in range(2)]
    pred = [g + 0.3 * torch.rand(g.shape, generator=gen, dtype=torch.float64) for g in gt]
    metrics = DepthMetrics()
    for p, g in zip(pred, gt):
        metrics.update(p, g)
    want = np.corrcoef(torch.cat([p.flatten() for p in pred]).numpy(), torch.cat([g.flatten() for g in gt]).numpy())
    assert metrics.compute()["pearson"] == pytest.approx(want[0, 1], rel=1e-9)
    for mapped, r in ((0.5 * gt[0] + 0.1, 1.0), (3.0 - gt[0], -1.0), (torch.full_like(gt[0], 1.2), 0.0)):
        one = DepthMetrics()
        one.update(mapped, gt[0])
        assert one.compute()["pearson"] == pytest.approx(r, abs=1e-9)
