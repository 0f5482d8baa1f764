"""Which of sdgs's signals teach depth: each term alone and together, on one dataset, scored on validation.

Trains ``sdgs_stack`` (or ``--model``) from the same seed on the first ``--train-stacks`` stacks of the
training split, in order, one batch per step (batch ``--batch-size``, whole frames, AdamW at ``--lr``,
constant, or with ``--schedule cosine`` a linear warmup over ``--warmup`` steps then a cosine to 0,
gradients clipped at 1), once per variant, and scores each on the first ``--val-stacks`` stacks of
the validation split: object AbsRel, delta1 and Pearson, all-pixel AbsRel and delta1 (with
``--val-every N`` also every N steps: the trajectory of object AbsRel is printed). Beside them,
on the same stacks, the registry's references as the results pages fit them: ``constant`` at the
training stacks' object median, ``dff`` and ``dfd_sweep`` (the teacher the networks learn from).

Variants (``--variants``, default all):

- ``teacher``: the sweep term alone (``w_photometric: 0``): what the networks learn from the teacher;
- ``teacher, view blur features off`` (``on`` for ``sdgs``): the same, DepthNet's views' blur
  features (``depth_blur_features``) the other way from the model's default;
- ``teacher + splats``: the default photometric term beside it (one Gaussian per pixel through the
  splat renderer, SSIM + L1 on 4 x 4-pooled images, weight 1);
- ``teacher + planes``: the photometric term read from the teacher's own cost volume at each pixel's
  predicted depth (``photometric_renderer: planes``: its window re-rendered as a plane there);
- ``planes alone``: that term and no sweep term (``w_sweep: 0``): the re-rendering error the only depth signal;
- ``teacher + layers x W``: the refinement's forward model as the photometric term
  (``photometric_renderer: layers``, L1, no pooling), weight W (``--layer-weights``);
- ``teacher, then + layers x W``: the teacher alone, then for the last ``--refine-steps`` steps the
  layers term beside it (search first, refine after, as :func:`dfd_models.refine.refine_depth`
  refines the sweep), one variant per weight;
- ``truth as teacher``: the sweep term pulled to the true depth (confidence 1) instead of the
  sweep's: a diagnostic of what the networks can learn at this budget, never a model;
- ``sdgs_stack`` only: ``teacher, ends views`` and ``teacher, inverse sweep``: the teacher alone with
  DepthNet on the two end frames (``depth_views: ends``) or the sweep term in inverse depth
  (``sweep_space: inverse``), the two choices its defaults were measured against.

    python benchmarks/sdgs_signals.py --shards OUT/data [--steps 200] [--lr 1e-3] [--model sdgs_stack]
        [--schedule cosine --warmup 20 --val-every 20]

Prints one line per variant with its wall time; the budget line says what ran. On the CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from collections.abc import Callable

import torch

from dfd_models.config import DataSection
from dfd_models.data import make_loader
from dfd_models.metrics import RegionMetrics
from dfd_models.networks import MODELS, build_model, lens_from_batch
from dfd_models.networks.sdgs import SDGS

#: Variant name -> model config changes.
VARIANTS = {
    "teacher": {"w_photometric": 0.0},
    "teacher + splats": {},
    "teacher + planes": {"photometric_renderer": "planes"},
    "teacher + planes x 0.3": {"photometric_renderer": "planes", "w_photometric": 0.3},
    "planes alone": {"photometric_renderer": "planes", "w_sweep": 0.0},
    "truth as teacher": {"w_photometric": 0.0},
}
#: The diagnostic variant: the sweep term pulled to the true depth.
TRUTH = "truth as teacher"
LAYERS = {"photometric_renderer": "layers", "photometric_pool": 1, "ssim_alpha": 0.0}


def batches(shards: str, split: str, stacks: int, size: int) -> list[dict]:
    """The first ``stacks`` stacks of ``split``, ramp 0, in batches of ``size``."""
    out, seen = [], 0
    for batch in make_loader(DataSection.for_eval(shards, split=split, batch_size=size)):
        out.append(batch)
        seen += len(batch["frames"])
        if seen >= stacks:
            break
    return out


class TruthTeacher:
    """sdgs's teacher replaced by the batch's true depth (confidence 1), for the diagnostic variant."""

    def __init__(self, model: SDGS):
        self.batch: dict = {}
        self.config = model.config  # the depth range the true depth is clamped to
        model.teacher = self.teacher  # the instance's teacher; every other model is untouched

    def teacher(self, frames, focus_m, K, lens, ref, volume=None):
        depth = self.batch["depth"].float()  # the reference frame's grid; ~frame ref's at this breathing
        return depth.clamp(self.config.min_depth_m, self.config.max_depth_m), torch.ones_like(depth)


def train_and_score(model_name: str, config: dict, train: list[dict], val: list[dict], steps: int,
                    lr: float, truth_teacher: bool = False, later: tuple[dict, int] = ({}, 0),
                    seed: int = 0, warmup: int | None = None, val_every: int = 0) -> tuple[dict, float, list[float]]:
    """{region: metrics} on ``val`` after ``steps`` steps on ``train`` from ``seed``, the training seconds
    and the validation object AbsRel every ``val_every`` steps (0: none); with ``later`` = (config
    changes, n) the last n steps train with those changes (a schedule); ``warmup`` None: a constant
    learning rate, else that many warmup steps and a cosine to 0 at ``steps``."""
    torch.manual_seed(seed)
    model = build_model(model_name, config)
    truth = TruthTeacher(model) if truth_teacher else None
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr)
    factor = ((lambda s: 1.0) if warmup is None else
              (lambda s: min(1.0, (s + 1) / max(warmup, 1)) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, factor)
    trajectory: list[float] = []
    seconds = 0.0
    for step in range(steps):
        start = time.perf_counter()
        model.train()
        if step == steps - later[1]:  # the model reads its config at every step
            model.config = dataclasses.replace(model.config, **later[0])
        batch = train[step % len(train)]
        if truth is not None:
            truth.batch = batch
        loss = model.losses(batch, model(batch))["total"]
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        scheduler.step()
        seconds += time.perf_counter() - start
        if val_every and (step + 1) % val_every == 0:
            trajectory.append(evaluate(model, val)["objects"]["abs_rel"])
    return evaluate(model, val), seconds, trajectory


def evaluate(model: torch.nn.Module, val: list[dict]) -> dict:
    """{region: metrics} of ``model``'s predictions on ``val``, in eval mode."""
    model.eval()
    with torch.no_grad():
        return score(val, lambda b: model.predict(b["frames"], b["focus_m"], lens_from_batch(b), b["K"]))


def score(val: list[dict], predict: Callable[[dict], torch.Tensor]) -> dict:
    """{region: metrics} of ``predict`` (batch -> depth on the reference frame's grid) over ``val``."""
    metrics = RegionMetrics()
    for batch in val:
        metrics.update(predict(batch), batch["depth"], batch["valid"], batch["wall"])
    return metrics.compute()


def line(name: str, scores: dict, seconds: float | None = None) -> str:
    o, a = scores["objects"], scores["all"]
    time_s = "" if seconds is None else f" | {seconds:5.0f} s"
    return (f"  {name:34s} objects AbsRel {o['abs_rel']:.3f} delta1 {o['delta1']:.3f} Pearson {o['pearson']:+.2f}"
            f" | all AbsRel {a['abs_rel']:.3f} delta1 {a['delta1']:.3f}{time_s}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", required=True, help="a dataset folder with train and val splits")
    parser.add_argument("--model", default="sdgs_stack", choices=["sdgs", "sdgs_stack"])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--train-stacks", type=int, default=64)
    parser.add_argument("--val-stacks", type=int, default=32)
    parser.add_argument("--layer-weights", type=float, nargs="*", default=[1.0, 10.0],
                        help="weights of the layers photometric term, one variant each")
    parser.add_argument("--refine-steps", type=int, default=100,
                        help="steps of the 'then + layers' variants that add the layers term")
    parser.add_argument("--variants", nargs="*", default=None, help="only these variants (names as printed)")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per variant, 0, 1, ...")
    parser.add_argument("--schedule", choices=["constant", "cosine"], default="constant",
                        help="learning rate: constant, or linear warmup then cosine to 0")
    parser.add_argument("--warmup", type=int, default=20, help="warmup steps of --schedule cosine")
    parser.add_argument("--val-every", type=int, default=0, help="also score every N steps (0: at the end only)")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    variants = dict(VARIANTS)
    flipped = not MODELS[args.model].Config().depth_blur_features
    variants[f"teacher, view blur features {'on' if flipped else 'off'}"] = {"w_photometric": 0.0,
                                                                             "depth_blur_features": flipped}
    if args.model == "sdgs_stack":
        variants["teacher, ends views"] = {"w_photometric": 0.0, "depth_views": "ends"}
        variants["teacher, inverse sweep"] = {"w_photometric": 0.0, "sweep_space": "inverse"}
    later = {}
    for weight in args.layer_weights:
        variants[f"teacher + layers x {weight:g}"] = {**LAYERS, "w_photometric": weight}
        name = f"teacher, then + layers x {weight:g}"
        variants[name] = {**LAYERS, "w_photometric": 0.0}
        later[name] = ({"w_photometric": weight}, args.refine_steps)
    unknown = set(args.variants or ()) - set(variants)
    if unknown:
        parser.error(f"unknown --variants {sorted(unknown)}; one of {sorted(variants)}")
    train = batches(args.shards, "train", args.train_stacks, args.batch_size)
    val = batches(args.shards, "val", args.val_stacks, args.batch_size)
    schedule = "" if args.schedule == "constant" else f" ({args.warmup} warmup steps, then cosine to 0)"
    print(f"budget: {args.model}, {args.steps} steps of batch {args.batch_size} over the first "
          f"{sum(len(b['frames']) for b in train)} training stacks, lr {args.lr:g}{schedule}; scored on the first "
          f"{sum(len(b['frames']) for b in val)} validation stacks ({tuple(val[0]['frames'].shape[-2:])} px); "
          f"{torch.get_num_threads()} CPU threads")
    print("references (same validation stacks; the registry's, as on the results pages)")
    for name, label, config in (("constant", "constant (train objects' median)", {"region": "objects"}),
                                ("dff", "dff", {}), ("dfd_sweep", "the teacher (dfd_sweep)", {})):
        reference = build_model(name, config)
        if name == "constant":
            reference.fit(train)
        print(line(label, score(val, lambda b: reference.predict(b["frames"], b["focus_m"], lens_from_batch(b),
                                                                   b["K"]))))
    print("trained")
    for name, config in variants.items():
        if args.variants is None or name in args.variants:
            for seed in range(args.seeds):
                scores, seconds, trajectory = train_and_score(
                    args.model, config, train, val, args.steps, args.lr, name == TRUTH, later.get(name, ({}, 0)),
                    seed, args.warmup if args.schedule == "cosine" else None, args.val_every)
                print(line(name if args.seeds == 1 else f"{name}, seed {seed}", scores, seconds), flush=True)
                if trajectory:
                    print(f"    objects AbsRel every {args.val_every} steps: "
                          + " ".join(f"{value:.2f}" for value in trajectory), flush=True)


if __name__ == "__main__":
    main()
