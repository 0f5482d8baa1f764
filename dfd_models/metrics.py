"""Depth metrics on valid pixels (DESIGN.md section 7), exact over a whole dataset.

With p the predicted and g the true planar depth (metres) at the n valid pixels
(summed over every image seen):

    MSE      = 1/n sum (p - g)^2                RMSE     = sqrt(MSE)
    MAE      = 1/n sum |p - g|
    AbsRel   = 1/n sum |p - g| / g              SqRel    = 1/n sum (p - g)^2 / g
    RMSE-log = sqrt(1/n sum (ln p - ln g)^2)    (natural log)
    delta_k  = 1/n #{max(p / g, g / p) < 1.25^k},  k = 1, 2, 3   (a fraction)
    accuracy = 100 delta_1                      (percent)

and, given the dataset's maximum depth D (the recipe's), the errors of depth
normalised to [0, 1] as in the DDFF / LSTM-DDFF / recurrent-AE table:

    MSE_norm = 1/n sum ((p - g) / D)^2          RMS_norm = sqrt(MSE_norm)

These are the definitions of Eigen et al. 2014 as used by monodepth2 and
ZoeDepth. :class:`DepthMetrics` accumulates sums over pixels (in float64), so a
dataset's metrics are the pixel-weighted ones, not a mean of per-batch means.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["DELTA_BASE", "TOTALS", "DepthMetrics", "depth_metrics"]

#: delta_k counts max(p / g, g / p) < DELTA_BASE ** k.
DELTA_BASE = 1.25

#: What :attr:`DepthMetrics.totals` holds, in order: the pixel count, then sums over pixels.
TOTALS = ("count", "sq", "abs", "abs_rel", "sq_rel", "sq_log", "delta1", "delta2", "delta3")


class DepthMetrics:
    """Accumulator of the metrics over any number of batches: :meth:`update`, then :meth:`compute`.

    Example::

        metrics = DepthMetrics(max_depth_m=2.0)
        for batch in loader:
            metrics.update(model.predict(...), batch["depth"], batch["valid"])
        print(metrics.compute())   # {"rmse": ..., "abs_rel": ..., "delta1": ..., ...}

    Under DDP, sum the ranks' :attr:`totals` before :meth:`compute` (e.g.
    ``t = metrics.totals.cuda(); dist.all_reduce(t); metrics.totals = t.cpu()``).

    Args:
        max_depth_m: D for ``mse_norm`` and ``rms_norm``; None leaves them out.

    Attributes:
        totals: float64 count of valid pixels and sums over them, named by :data:`TOTALS`.  # [9]
    """

    def __init__(self, max_depth_m: float | None = None):
        if max_depth_m is not None and not max_depth_m > 0:
            raise ValueError(f"max_depth_m must be > 0, got {max_depth_m}")
        self.max_depth_m = max_depth_m
        self.totals = torch.zeros(len(TOTALS), dtype=torch.float64)

    @torch.no_grad()
    def update(self, pred: Tensor, gt: Tensor, valid: Tensor | None = None) -> None:
        """Add the valid pixels of one batch.

        Args:
            pred: predicted depth, metres, > 0 where valid.  # [B, 1, H, W] (any shape of gt)
            gt: true depth, metres; 0 = no surface.  # [B, 1, H, W]
            valid: pixels to score; None = gt > 0. Always restricted to gt > 0.  # like gt
        Raises:
            ValueError: shapes differ, or a prediction on a valid pixel is not finite and > 0.
        """
        if pred.shape != gt.shape or (valid is not None and valid.shape != gt.shape):
            shapes = [tuple(t.shape) for t in (pred, gt, valid) if t is not None]
            raise ValueError(f"pred, gt (and valid) must have one shape, got {shapes}")
        mask = gt > 0 if valid is None else valid.bool() & (gt > 0)
        p, g = pred[mask].double(), gt[mask].double()  # [n]
        if not bool(torch.all(torch.isfinite(p) & (p > 0))):
            raise ValueError("predicted depth must be finite and > 0 on valid pixels")
        err = p - g
        ratio = torch.maximum(p / g, g / p)
        batch_sums = {
            "count": torch.ones_like(p),
            "sq": err.square(),
            "abs": err.abs(),
            "abs_rel": err.abs() / g,
            "sq_rel": err.square() / g,
            "sq_log": (p.log() - g.log()).square(),
            **{f"delta{k}": (ratio < DELTA_BASE**k).double() for k in (1, 2, 3)},
        }
        self.totals += torch.stack([batch_sums[key].sum() for key in TOTALS]).cpu()

    def compute(self) -> dict[str, float]:
        """The metrics over every valid pixel seen so far.

        Returns:
            ``mse``, ``rmse``, ``mae`` (metres^2 or metres), ``abs_rel``, ``sq_rel``
            (metres), ``rmse_log``, ``delta1``, ``delta2``, ``delta3`` (fractions),
            ``accuracy`` (percent), ``n_pixels``; and ``mse_norm``, ``rms_norm`` when
            ``max_depth_m`` is set.
        Raises:
            ValueError: no valid pixel has been seen.
        """
        count = float(self.totals[0])
        if count == 0:
            raise ValueError("no valid pixels: nothing to compute metrics on")
        mean = {key: float(total) / count for key, total in zip(TOTALS, self.totals)}
        out = {
            "mse": mean["sq"],
            "rmse": math.sqrt(mean["sq"]),
            "mae": mean["abs"],
            "abs_rel": mean["abs_rel"],
            "sq_rel": mean["sq_rel"],
            "rmse_log": math.sqrt(mean["sq_log"]),
            "delta1": mean["delta1"],
            "delta2": mean["delta2"],
            "delta3": mean["delta3"],
            "accuracy": 100.0 * mean["delta1"],
            "n_pixels": count,
        }
        if self.max_depth_m is not None:
            out["mse_norm"] = mean["sq"] / self.max_depth_m**2
            out["rms_norm"] = math.sqrt(out["mse_norm"])
        return out


def depth_metrics(
    pred: Tensor, gt: Tensor, valid: Tensor | None = None, max_depth_m: float | None = None
) -> dict[str, float]:
    """The metrics of one batch (see :class:`DepthMetrics` for arguments and keys)."""
    metrics = DepthMetrics(max_depth_m)
    metrics.update(pred, gt, valid)
    return metrics.compute()
