"""The sweep teacher on a dataset's validation stacks: its depth per window, and what its confidence weighs.

sdgs and ``sdgs_stack`` pull their depth to the re-rendering sweep's (:func:`dfd_models.networks.sdgs.sweep_teacher`),
each pixel weighted by the sweep's confidence times the balance bins (:func:`dfd_models.networks.sdgs._balance`).
On the first ``--stacks`` stacks of ``--split`` (whole frames, in order) this prints:

- per cost window (``--windows``, pixels): the teacher's object and all-pixel AbsRel, delta1 and Pearson,
  as ``dfd_sweep`` scores (sdgs's defaults otherwise);
- at the default window, per estimate (:data:`dfd_models.focus.SWEEP_ESTIMATES`): the parabola's vertex,
  and the soft argmin at each ``--sharpness`` (where :data:`dfd_models.focus.SOFT_ARGMIN_SHARPNESS` was chosen);
- per confidence (:data:`dfd_models.focus.SWEEP_CONFIDENCES`), at the default window: how well it ranks
  the pixels where the teacher lies within delta1 of the truth above the others (ROC AUC: 0.5 is
  chance, below 0.5 it prefers the wrong ones), over objects, the wall and all valid pixels; and,
  with the balance bins, the share of the sweep term's weight that falls on the wall and on pixels
  the teacher has wrong.

    python benchmarks/sweep_teacher.py --shards OUT/data [--split val] [--stacks 32] [--windows 5 7 9 11]
        [--sharpness 5 10 20 50 100 200]

Reads depth only to score. On the CPU; the budget line says what ran.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from dfd_models.data.batch import reference_index
from dfd_models.focus import SOFT_ARGMIN_SHARPNESS, SWEEP_CONFIDENCES, sweep_minimum
from dfd_models.metrics import DELTA_BASE, delta_ratio
from dfd_models.networks import lens_from_batch
from dfd_models.networks.sdgs import SDGSConfig, _balance, sweep_volume
from sdgs_signals import batches, line, score


def roc_auc(score: torch.Tensor, positive: torch.Tensor) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    order = torch.cat([score[positive], score[~positive]]).double()
    ranks = torch.empty_like(order)
    ranks[order.argsort()] = torch.arange(1, len(order) + 1, dtype=torch.float64)
    ranks = _mean_tied_ranks(order, ranks)
    pos, neg = int(positive.sum()), int((~positive).sum())
    return float((ranks[:pos].sum() - pos * (pos + 1) / 2) / (pos * neg)) if pos and neg else math.nan


def _mean_tied_ranks(values: torch.Tensor, ranks: torch.Tensor) -> torch.Tensor:
    """Each group of equal values gets the mean of its ranks."""
    unique, inverse = values.unique(return_inverse=True)
    total = torch.zeros(len(unique), dtype=torch.float64).index_add_(0, inverse, ranks)
    count = torch.zeros(len(unique), dtype=torch.float64).index_add_(0, inverse, torch.ones_like(ranks))
    return (total / count)[inverse]


def teacher_inputs(batch: dict) -> tuple:
    """A loader batch as :func:`dfd_models.networks.sdgs.sweep_volume`'s frames, focus_m, K, lens and ref (float32)."""
    frames = batch["frames"].float()
    return (frames, batch["focus_m"].float(), batch["K"].float(), lens_from_batch(batch).to(dtype=torch.float32),
            reference_index(frames.shape[1]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", required=True, help="a dataset folder")
    parser.add_argument("--split", default="val")
    parser.add_argument("--stacks", type=int, default=32)
    parser.add_argument("--windows", type=int, nargs="+", default=[5, 7, 9, 11, 15])
    parser.add_argument("--sharpness", type=float, nargs="+", default=[5, 10, SOFT_ARGMIN_SHARPNESS, 50, 100, 200])
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    stacks = batches(args.shards, args.split, args.stacks, 4)
    default = SDGSConfig()
    print(f"budget: the first {sum(len(b['frames']) for b in stacks)} {args.split} stacks of {args.shards} "
          f"({tuple(stacks[0]['frames'].shape[-2:])} px, {stacks[0]['frames'].shape[1]} frames), whole frames; "
          f"{torch.get_num_threads()} CPU threads")
    print("the teacher per cost window (sweep_window_px)")
    volumes = {}  # the default window's cost volumes, kept for the confidences
    for window in sorted({*args.windows, default.sweep_window_px}):
        config = SDGSConfig(sweep_window_px=window)
        start = time.perf_counter()
        each = [sweep_volume(config, *teacher_inputs(b)) for b in stacks]
        if window == default.sweep_window_px:
            volumes = each
        if window in args.windows:
            of = {id(b): volume for b, volume in zip(stacks, each)}
            scores = score(stacks, lambda b: sweep_minimum(*of[id(b)])[0])
            print(line(f"window {window}" + (" (default)" if window == default.sweep_window_px else ""), scores,
                       time.perf_counter() - start), flush=True)
    print(f"its estimate at window {default.sweep_window_px}")
    of = {id(b): volume for b, volume in zip(stacks, volumes)}
    print(line("parabola (default)", score(stacks, lambda b: sweep_minimum(*of[id(b)])[0])), flush=True)
    for sharpness in sorted(args.sharpness):
        scores = score(stacks, lambda b: sweep_minimum(*of[id(b)], estimate="soft", sharpness=sharpness)[0])
        print(line(f"soft argmin, sharpness {sharpness:g}", scores), flush=True)
    print(f"its confidence at window {default.sweep_window_px}: ROC AUC for 'within delta1 of the truth'; "
          "the share of the sweep term's weight (confidence x balance bins) on the wall and on wrong pixels")
    for kind in SWEEP_CONFIDENCES:
        rated, right, wall, weight = [], [], [], []
        for b, volume in zip(stacks, volumes):
            depth, confidence = sweep_minimum(*volume, kind)
            valid = b["valid"].bool()
            balance = _balance(1 / depth, 1 / default.max_depth_m, 1 / default.min_depth_m, default.balance_bins,
                               default.balance_space)
            rated.append(confidence[valid])
            right.append((delta_ratio(depth, b["depth"].float()) < DELTA_BASE)[valid])
            wall.append(b["wall"].bool()[valid])
            weight.append((confidence * balance)[valid])
        rated, right, wall, weight = (torch.cat(x) for x in (rated, right, wall, weight))
        objects = ~wall
        total = weight.sum()
        print(f"  {kind:7s} AUC objects {roc_auc(rated[objects], right[objects]):.3f} wall "
              f"{roc_auc(rated[wall], right[wall]):.3f} all {roc_auc(rated, right):.3f} | weight on the wall "
              f"{float(weight[wall].sum() / total):.2f}, on wrong pixels {float(weight[~right].sum() / total):.2f} "
              f"(objects {float(weight[objects & ~right].sum() / weight[objects].sum()):.2f})", flush=True)


if __name__ == "__main__":
    main()
