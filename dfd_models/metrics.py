"""Depth metrics on valid pixels (DESIGN.md section 7), exact over a whole dataset, per region.

With p the predicted and g the true planar depth (metres) at the n valid pixels
(summed over every image seen):

    MSE      = 1/n sum (p - g)^2                RMSE     = sqrt(MSE)
    MAE      = 1/n sum |p - g|
    AbsRel   = 1/n sum |p - g| / g              SqRel    = 1/n sum (p - g)^2 / g
    RMSE-log = sqrt(1/n sum (ln p - ln g)^2)    (natural log)
    delta_k  = 1/n #{max(p / g, g / p) < 1.25^k},  k = 1, 2, 3   (a fraction)
    accuracy = 100 delta_1                      (percent)
    InvMAE   = 1/n sum |1/p - 1/g|              InvRMSE  = sqrt(1/n sum (1/p - 1/g)^2)   (1/m)
    Pearson  = cov(p, g) / (std(p) std(g))      (pooled over every pixel; 0 for a constant p)

and, given the dataset's maximum depth D (the recipe's), the errors of depth
normalised to [0, 1] as in the DDFF / LSTM-DDFF / recurrent-AE table:

    MSE_norm = 1/n sum ((p - g) / D)^2          RMS_norm = sqrt(MSE_norm)

These are the definitions of Eigen et al. 2014 as used by monodepth2 and
ZoeDepth. :class:`DepthMetrics` accumulates sums over pixels (in float64), so a
dataset's metrics are the pixel-weighted ones, not a mean of per-batch means.

:class:`RegionMetrics` scores the same prediction over each region of
:data:`REGIONS`: ``all`` (every valid pixel) and ``objects`` (valid pixels off
the background wall). A wall that fills 90 % of the frame lets a constant
prediction at the wall's depth score delta_1 0.9 on ``all``; on ``objects`` it
scores what it is worth.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["DELTA_BASE", "REGIONS", "TOTALS", "DepthMetrics", "RegionMetrics", "delta_ratio", "depth_metrics"]

#: delta_k counts max(p / g, g / p) < DELTA_BASE ** k.
DELTA_BASE = 1.25

#: What :attr:`DepthMetrics.totals` holds, in order: the pixel count, then sums over pixels.
TOTALS = ("count", "sq", "abs", "abs_rel", "sq_rel", "sq_log", "delta1", "delta2", "delta3",
          "inv_abs", "inv_sq", "p", "g", "pp", "gg", "pg")

#: The regions :class:`RegionMetrics` scores, in order, and the pixels of each. ``objects``
#: is every valid pixel when the data has no wall (the loader's all-False ``wall`` mask).
REGIONS = {"all": "valid pixels", "objects": "valid pixels off the background wall"}


def delta_ratio(pred: Tensor, gt: Tensor) -> Tensor:
    """max(p / g, g / p), what delta_k compares with DELTA_BASE ** k (depths or inverse depths, > 0)."""
    return torch.maximum(pred / gt, gt / pred)


def _pearson(mean: dict[str, float]) -> float:
    """Pearson correlation of p and g from the means of p, g, p^2, g^2, p g (0 if either is constant)."""
    var_p, var_g = mean["pp"] - mean["p"] ** 2, mean["gg"] - mean["g"] ** 2
    if var_p <= 1e-12 * max(mean["pp"], 1e-300) or var_g <= 1e-12 * max(mean["gg"], 1e-300):
        return 0.0
    return (mean["pg"] - mean["p"] * mean["g"]) / math.sqrt(var_p * var_g)


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
        totals: float64 count of valid pixels and sums over them, named by :data:`TOTALS`.  # [16]
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
        err, inv_err = p - g, 1.0 / p - 1.0 / g
        ratio = delta_ratio(p, g)
        batch_sums = {
            "count": torch.ones_like(p),
            "sq": err.square(),
            "abs": err.abs(),
            "abs_rel": err.abs() / g,
            "sq_rel": err.square() / g,
            "sq_log": (p.log() - g.log()).square(),
            **{f"delta{k}": (ratio < DELTA_BASE**k).double() for k in (1, 2, 3)},
            "inv_abs": inv_err.abs(),
            "inv_sq": inv_err.square(),
            "p": p, "g": g, "pp": p * p, "gg": g * g, "pg": p * g,
        }
        self.totals += torch.stack([batch_sums[key].sum() for key in TOTALS]).cpu()

    def compute(self) -> dict[str, float]:
        """The metrics over every valid pixel seen so far.

        Returns:
            ``mse``, ``rmse``, ``mae`` (metres^2 or metres), ``abs_rel``, ``sq_rel``
            (metres), ``rmse_log``, ``delta1``, ``delta2``, ``delta3`` (fractions),
            ``accuracy`` (percent), ``inv_mae``, ``inv_rmse`` (1/metres), ``pearson``, ``n_pixels``;
            and ``mse_norm``, ``rms_norm`` when ``max_depth_m`` is set.
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
            "inv_mae": mean["inv_abs"],
            "inv_rmse": math.sqrt(mean["inv_sq"]),
            "pearson": _pearson(mean),
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


class RegionMetrics:
    """One :class:`DepthMetrics` per region of :data:`REGIONS`, fed the same predictions.

    Example::

        metrics = RegionMetrics(max_depth_m=2.0)
        for batch in loader:
            metrics.update(depth, batch["depth"], batch["valid"], batch["wall"])
        scores = metrics.compute()   # {"all": {...}, "objects": {...} or None}
        metrics.absent()             # {} or {"objects": "no valid pixel ..."}

    A region other than ``all`` that no pixel fell in is left out (``None`` in
    :meth:`compute`, its reason in :meth:`absent`), so an image of the wall alone
    does not stop the scoring of the rest. Under DDP, sum the ranks'
    :attr:`totals` before :meth:`compute`, as for :class:`DepthMetrics`.

    Args:
        max_depth_m: D for ``mse_norm`` and ``rms_norm``; None leaves them out.

    Attributes:
        regions: the accumulator of each region, by name, in :data:`REGIONS` order.
    """

    def __init__(self, max_depth_m: float | None = None):
        self.regions = {name: DepthMetrics(max_depth_m) for name in REGIONS}

    @property
    def totals(self) -> Tensor:
        """Each region's :attr:`DepthMetrics.totals`, rows in :data:`REGIONS` order; summable.  # [2, 11]"""
        return torch.stack([metrics.totals for metrics in self.regions.values()])

    @totals.setter
    def totals(self, value: Tensor) -> None:
        if value.shape != (len(REGIONS), len(TOTALS)):
            raise ValueError(f"totals must be [{len(REGIONS)}, {len(TOTALS)}], got {tuple(value.shape)}")
        for metrics, row in zip(self.regions.values(), value.double().cpu()):
            metrics.totals = row.clone()

    @torch.no_grad()
    def update(self, pred: Tensor, gt: Tensor, valid: Tensor | None = None, wall: Tensor | None = None) -> None:
        """Add one batch to every region.

        Args:
            pred, gt, valid: as for :meth:`DepthMetrics.update`.
            wall: pixels that see the background wall (the loader's ``wall``); None =
                no wall pixel (as the loader's all-False mask for recipes without a wall).  # like gt
        Raises:
            ValueError: see :meth:`DepthMetrics.update`; ``wall`` of another shape than ``gt``.
        """
        if wall is not None and wall.shape != gt.shape:
            raise ValueError(f"wall must have gt's shape {tuple(gt.shape)}, got {tuple(wall.shape)}")
        mask = gt > 0 if valid is None else valid.bool() & (gt > 0)
        self.regions["all"].update(pred, gt, mask)
        self.regions["objects"].update(pred, gt, mask if wall is None else mask & ~wall.bool())

    def absent(self) -> dict[str, str]:
        """The regions without a pixel so far, each with the reason, in words."""
        return {name: f"no {REGIONS[name]} among the pixels scored"
                for name, metrics in self.regions.items() if float(metrics.totals[0]) == 0}

    def compute(self) -> dict[str, dict[str, float] | None]:
        """The metrics of each region (keys of :meth:`DepthMetrics.compute`), ``None`` for
        a region without a pixel (see :meth:`absent`).

        Raises:
            ValueError: no valid pixel at all (region ``all`` is empty).
        """
        absent = self.absent()
        return {name: None if name in absent and name != "all" else metrics.compute()
                for name, metrics in self.regions.items()}
