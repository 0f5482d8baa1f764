"""The results pages (issues 6, 14 and 30): every depth model beside the reference predictors, chosen on
validation, scored once on test, on two draws of the data.

Renders two reduced-scale datasets of ``--recipe`` (``small_obj``, the thesis's setting, or ``fod500``,
DefocusNet's) with the same overrides and two recipe seeds (``OUT/data``: seed 0; ``OUT/data-seed1``: seed 1;
reused when a folder already holds the same recipe: the generator resumes). Each is split by scene into
train / validation / test (60 / 20 / 20). On each draw:

1. the reference predictors are fitted (``constant`` at the training split's median over all pixels and
   over object pixels, ``dff``, ``dfd_sweep``; no learning) and every network is trained with one
   ``dfdgen train`` command per learning rate of ``--lr-grid`` (or its row's one rate), validated on the
   validation split every tenth of its steps; its checkpoint best on validation object AbsRel is kept;
2. on the first draw, the learning rate with the best validation object AbsRel is chosen per row and
   reused on the second draw (no choice is made twice); self-supervised rows train once more per extra
   ``--seeds`` at that rate, so the page shows the spread between training seeds;
3. the chosen checkpoint (each seed's) is scored once on the test split with ``dfdgen eval --json``.

The page (``--results``) holds: the protocol; the first draw's table, the second draw's and their mean and
spread; the claims that survive the spread (a row is called better than another only where the gap of
their means over the two draws exceeds both rows' spread, half the difference between the draws); every
choice made on validation; the sdgs and sdgs_stack ablations, scored on validation (their rows' training seeds give the
spread); the published numbers; a PNG figure (``--figure``) of a few test stacks, every model's depth of
the whole frame on one colour scale; the budget (scenes, size, samples, steps, wall time, machine), the
recipes' sha256 and every command, with paths relative to ``--out-dir`` (written ``OUT``).

Every row is scored on two regions, ``objects`` (valid pixels off the background wall) and ``all`` (every
valid pixel): AbsRel, delta1, the error of inverse depth and the Pearson correlation on objects; AbsRel,
delta1 and the normalised RMS of the published DDFF table on all pixels. The supervised networks train on
the pixels ``--regions`` says (model config ``regions``; default ``objects``, the thesis's); the ``defocusnet-split``
row predicts the whole frame (``regions: split``: a wall head beside the network).

    python benchmarks/results_table.py                               # small_obj, 160 scenes, 64 px
    python benchmarks/results_table.py --scenes 10 --size 32 --crop 32 --steps 4 --sdgs-steps 2 \
        --ablation-steps 2 --out-dir /tmp/rt                         # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dfd_models.networks import MODELS
from dfd_models.networks.supervised import DEPTH_SPACES, REGIONS
from generator.dataset.format import read_manifest
from generator.render.pipeline import render_dataset
from generator.recipe.recipe import load_recipe


@dataclass(frozen=True)
class Row:
    """One row: a model trained on the recipe's data (or on small+large, ``large``), its config
    updated with ``config`` (``model.config`` keys), at peak learning rate ``lr`` (None: the
    command's ``--lr``, or ``--sdgs-lr`` for the self-supervised models). ``main`` rows are
    scored on both draws; the others on the first only."""

    model: str
    label: str
    large: bool = False
    config: tuple[tuple[str, object], ...] = ()
    run_name: str | None = None
    lr: float | None = None
    main: bool = True

    @property
    def sets(self) -> list[str]:
        """The ``--set`` overrides of ``config``."""
        return [f"model.config.{key}={value}" for key, value in self.config]

    @property
    def run(self) -> str:
        """Run directory name under ``OUT/runs``."""
        return self.run_name or (f"{self.model}+large" if self.large else self.model)

    @property
    def self_supervised(self) -> bool:
        """Trained without labels (``sdgs``, ``sdgs_stack``): its rows show the spread of training seeds."""
        spec = MODELS.get(self.model)
        return bool(spec and spec.trainable and not spec.supervised)


#: The blur features' scales (px) of the defocusnet-blur row and of ``--blur-features``.
BLUR_SCALES_PX = [0.5, 1.0, 2.0, 4.0]

#: The results page of each recipe the benchmark is run on (docs/).
RESULT_PAGES = {"small_obj": "RESULTS.md", "fod500": "RESULTS_fod500.md"}

#: Reference predictors: no trainable parameters. Every table shows them.
REFERENCES = [
    Row("constant", "constant (training median, all pixels: the wall's depth)"),
    Row("constant", "constant (training median of object pixels)", config=(("region", "objects"),),
        run_name="constant-objects"),
    Row("dff", "classical depth from focus"),
    Row("dff", "classical depth from focus, full frame (depth beyond the focus sweep from its blur)",
        config=(("beyond_range", "extrapolate"),), run_name="dff-full"),
    Row("dfd_sweep", "depth from defocus by re-rendering sweep (sdgs's teacher)"),
]
#: The reference every row must beat on all pixels, and the one on objects (run names).
ALL_PIXEL_REFERENCE, OBJECT_REFERENCE = "constant", "dff"
#: Rows in table order.
ROWS = REFERENCES + [
    Row("ddff", "DDFF"), Row("lstm_ddff", "LSTM-DDFF"), Row("recurrent_ae", "recurrent AE", lr=1e-3),
    Row("recurrent_ae", "recurrent AE, small+large objects", large=True, lr=1e-3, main=False),
    Row("defocusnet", "DefocusNet (PoolNet)", lr=1e-3),
    # the paper's PoolNet learns no CoC from raw RGB at this budget (its CoC stage collapses to a
    # constant); given the parameter-free blur features sdgs's DefocusNet uses, it does
    Row("defocusnet", "DefocusNet (PoolNet) + blur features, narrower", run_name="defocusnet-blur", lr=1e-3,
        config=(("coc_channels", [16, 32, 64]), ("depth_channels", [16, 32, 64]),
                ("blur_scales_px", BLUR_SCALES_PX))),
    # the whole frame: the network's depth learns the objects, a wall head where the wall is and how far
    Row("defocusnet", "DefocusNet (PoolNet), whole frame (regions split: a wall head beside it)", lr=1e-3,
        config=(("regions", "split"),), run_name="defocusnet-split", main=False),
    Row("sdgs", "SDGS (self-supervised, one frame in)"),
    Row("sdgs_stack", "SDGS-stack (self-supervised, the stack in)"),
]
#: sdgs and sdgs_stack with one design choice removed each (dfd_models/networks/sdgs.py), same budget as the model.
ABLATIONS = [
    Row("sdgs", "no splat re-rendering: depth learns from the re-rendering sweep alone",
        config=(("w_photometric", 0.0),), run_name="sdgs-no_photometric"),
    Row("sdgs", "no re-rendering sweep: depth and defocus maps learn from the splat re-rendering alone",
        config=(("w_sweep", 0.0),), run_name="sdgs-no_sweep"),
    Row("sdgs", "sweep pixels not balanced across inverse depth (the wall outweighs the objects)",
        config=(("balance_bins", 0),), run_name="sdgs-no_balance"),
    Row("sdgs", "DepthNet predicts depth freely, not as a correction of the defocus map's 1/F - c/k",
        config=(("depth_from_defocus", False),), run_name="sdgs-free_depth"),
    Row("sdgs", "no single-image blur features (focus-measure ratios across scales)",
        config=(("blur_scales_px", []),), run_name="sdgs-no_blur_features"),
    Row("sdgs", "radiance = the input frame, not the stack's sharpest pixels",
        config=(("radiance", "frame"),), run_name="sdgs-radiance_frame"),
    Row("sdgs", "re-renders the input frame and one other, not every frame",
        config=(("render_frames", "pair"),), run_name="sdgs-render_pair"),
    Row("sdgs", "sees the middle frame, not the nearest-focus one",
        config=(("input_frame", "middle"),), run_name="sdgs-input_middle"),
    Row("sdgs", "photometric error on linear RGB (gamma 1)",
        config=(("photometric_gamma", 1.0),), run_name="sdgs-linear"),
    Row("sdgs_stack", "no splat re-rendering: depth learns from the re-rendering sweep alone",
        config=(("w_photometric", 0.0),), run_name="sdgs_stack-no_photometric"),
    Row("sdgs_stack", "DepthNet without the views' blur features",
        config=(("depth_blur_features", False),), run_name="sdgs_stack-no_depth_blur_features"),
]
#: Published synthetic test numbers (MSE and RMS of depth normalised to [0, 1], accuracy %).
PUBLISHED = {
    "DDFF": (1.8e-3, 0.041, 86.78),
    "LSTM-DDFF": (1.1e-3, 0.033, 94.98),
    "recurrent AE": (3.4e-3, 0.058, 69.02),
    "recurrent AE, small+large objects": (3.2e-3, 0.056, 70.77),
}
#: Published numbers on DefocusNet's synthetic data (what fod500 imitates): delta1, RMSE (m), AbsRel.
PUBLISHED_FOD = {
    "DEReD (self-supervised; Si et al., CVPR 2023)": (0.746, 0.351, 0.177),
    "DefocusNet (supervised; Maximov et al., CVPR 2020), as reported by DEReD": (0.912, None, None),
}
#: Frames per focus stack (one ramp per scene).
FRAMES = 5
#: Shares of the scenes in the train, validation and test splits, drawn per scene.
SPLITS = {"train": 0.6, "val": 0.2, "test": 0.2}
#: The recipe seeds of the two draws and their data folders under OUT (the first is the recipe's own seed).
DRAWS = {0: "data", 1: "data-seed1"}
#: What every choice is made on: validation object AbsRel (``train.best_metric``).
SELECT_ON = ("objects", "abs_rel")
#: Validations per training run (the best one's checkpoint is scored).
VALIDATIONS = 10
#: Test stacks drawn in the figure.
FIGURE_STACKS = 4
#: Metrics where higher is better (the others: lower is better).
HIGHER_IS_BETTER = {"delta1", "delta2", "delta3", "pearson", "accuracy"}


@dataclass
class Run:
    """One training (or fitting) of a row: one learning rate, one training seed, one draw.

    Attributes:
        lr: peak learning rate (None: a reference, nothing trained).
        seed: ``dfdgen train --seed``.
        train_cmd, eval_cmd: the commands as run (shell-quoted); ``eval_cmd`` scores test.
        train_s: wall-clock seconds of ``dfdgen train`` (fitting, for the references).
        step: the checkpoint's training step, the best on validation.
        val: ``dfdgen eval``'s regions on the validation split at that step.
        test: the same on the test split (None until scored).
        checkpoint: the checkpoint scored.
    """

    lr: float | None
    seed: int
    train_cmd: str
    train_s: float
    step: int
    val: dict
    checkpoint: Path
    test: dict | None = None
    eval_cmd: str = ""


@dataclass
class RowResult:
    """A row on one draw: the learning-rate candidates (seed 0), the chosen run, and every training seed's
    run at the chosen rate (``seeds[0]`` is the chosen one), each scored on test."""

    row: Row
    candidates: list[Run]
    seeds: list[Run] = field(default_factory=list)

    @property
    def chosen(self) -> Run:
        return self.seeds[0]

    def test(self, region: str, metric: str) -> list[float]:
        """The metric on test, one value per training seed (NaN where the region is absent)."""
        return [(run.test.get(region) or {}).get(metric, float("nan")) for run in self.seeds]

    def val(self, region: str, metric: str) -> list[float]:
        """The metric on validation, one value per training seed."""
        return [(run.val.get(region) or {}).get(metric, float("nan")) for run in self.seeds]

    @property
    def train_s(self) -> float:
        return sum(run.train_s for run in self.candidates + self.seeds[1:])


def recipe_overrides(recipe: str, scenes: int, size: int, samples: int, seed: int = 0) -> list[str]:
    """``--set`` overrides of ``recipe`` for the benchmark's dataset (fod500 keeps its 5-frame list)."""
    ramp = [] if recipe == "fod500" else ["focus.ramps=1", f"focus.frames_per_ramp={FRAMES}"]
    return [f"count={scenes}", f"image.width={size}", f"image.height={size}", f"image.samples={samples}",
            *ramp, *(f"splits.{name}={share}" for name, share in SPLITS.items()),
            *([f"seed={seed}"] if seed else [])]


def _dfdgen() -> str:
    """The ``dfdgen`` entry point next to this Python, else the one on PATH."""
    beside = Path(sys.executable).parent / "dfdgen"
    return str(beside) if beside.exists() else "dfdgen"


def portable(text: str, out_dir: Path) -> str:
    """``text`` without this machine's paths, so a page's commands can be pasted anywhere: the ``dfdgen``
    beside this Python as ``dfdgen``, paths under ``out_dir`` relative to it, ``out_dir`` itself as ``OUT``."""
    text = text.replace(_dfdgen(), "dfdgen")
    for base in sorted({str(out_dir.resolve()), str(out_dir)}, key=len, reverse=True):
        text = text.replace(base + "/", "").replace(base, "OUT")
    return text


def _run(cmd: list[str], log: Path) -> float:
    """Run ``cmd``, its output to ``log``; wall-clock seconds. Raises CalledProcessError on failure."""
    print("$", shlex.join(cmd), flush=True)
    start = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        print(log.read_text()[-3000:], file=sys.stderr)
        raise subprocess.CalledProcessError(done.returncode, cmd)
    return time.perf_counter() - start


def best_validation(run_dir: Path) -> tuple[int, dict]:
    """The step and regions of ``run_dir/val.jsonl``'s best line on :data:`SELECT_ON` (the earliest of ties),
    the validation ``dfdgen train`` kept ``ckpt/best.pt`` for."""
    region, metric = SELECT_ON
    lines = [json.loads(line) for line in (run_dir / "val.jsonl").read_text().splitlines() if line.strip()]
    if not lines:
        raise RuntimeError(f"{run_dir / 'val.jsonl'} holds no validation: the data needs a val split")
    sign = -1 if metric in HIGHER_IS_BETTER else 1
    best = min(lines, key=lambda line: (sign * line["regions"][region][metric], line["step"]))
    return best["step"], best["regions"]


def train_row(row: Row, train_data: str, run_dir: Path, *, steps: int, lr: float | None, seed: int,
              batch_size: int, crop: int, regions: str, wall_weight: float | None = None,
              depth_init_m: float | None = None, depth_space: str | None = None,
              blur_scales_px: list[float] | None = None, reuse: bool = False) -> Run:
    """Train (or fit) ``row``'s model from scratch on ``train_data`` (a directory, or ``::``-joined
    directories) into ``run_dir``, validated on its val split; the run at its best validation (``ckpt/best.pt``).
    Supervised rows get config ``regions`` and, unless None (the model's default), ``wall_weight``,
    ``depth_init_m``, ``depth_space`` and ``blur_scales_px`` (the row's own config comes after, so it wins).

    With ``reuse``, a run directory that finished the same train command before (its ``done.json``) is
    not trained again: its record is read back.
    """
    spec = MODELS[row.model]
    train_cmd = [_dfdgen(), "train", "--shards", train_data, "--model", row.model, "--out", str(run_dir),
                 "--max-steps", str(steps), "--seed", str(seed)]
    if spec.trainable:
        train_cmd += ["--set", f"data.crop=[{crop}, {crop}]", "--set", f"data.batch_size={batch_size}",
                      "--set", "data.workers=1", "--set", f"optim.lr={lr:g}",
                      "--set", f"optim.warmup_steps={steps // 10}",
                      "--set", f"train.ckpt_every={steps}", "--set", "train.image_every=0",
                      "--set", f"train.val_every={max(1, steps // VALIDATIONS)}",
                      "--set", f"train.best_metric={'.'.join(SELECT_ON)}"]
        if spec.supervised:
            train_cmd += ["--set", f"model.config.regions={regions}"]
            for key, value in (("wall_weight", wall_weight), ("depth_init_m", depth_init_m)):
                if value is not None:
                    train_cmd += ["--set", f"model.config.{key}={value:g}"]
            if depth_space is not None:
                train_cmd += ["--set", f"model.config.depth_space={depth_space}"]
            if blur_scales_px is not None:
                train_cmd += ["--set", f"model.config.blur_scales_px={blur_scales_px}"]
    for override in row.sets:
        train_cmd += ["--set", override]
    record_path = run_dir / "done.json"
    if reuse and record_path.is_file() and json.loads(record_path.read_text()).get("train_cmd") == train_cmd:
        record = json.loads(record_path.read_text())
        print(f"{run_dir.name}: reused (same command, {record['train_s']:.0f} s when run)", flush=True)
    else:
        shutil.rmtree(run_dir, ignore_errors=True)  # the benchmark's own run: always a fresh one
        run_dir.mkdir(parents=True)
        train_s = _run(train_cmd, run_dir / "train.log")
        step, val = best_validation(run_dir)  # a reference's one validation is of its fit (step 0)
        record = {"train_cmd": train_cmd, "train_s": train_s, "step": step, "val": val}

        record_path.write_text(json.dumps(record))
    return Run(lr if spec.trainable else None, seed, shlex.join(train_cmd), record["train_s"], record["step"],
               record["val"], run_dir / "ckpt" / "best.pt")


def score_test(run: Run, data: Path, run_dir: Path, reuse: bool = False) -> None:
    """Score ``run``'s checkpoint once on ``data``'s test split (``run.test``, ``run.eval_cmd``)."""
    out = run_dir / "test.json"
    cmd = [_dfdgen(), "eval", "--shards", str(data), "--checkpoint", str(run.checkpoint), "--split", "test",
           "--workers", "1", "--json", str(out)]
    if not (reuse and out.is_file() and out.stat().st_mtime >= run.checkpoint.stat().st_mtime):
        _run(cmd, run_dir / "test.log")
    run.eval_cmd, run.test = shlex.join(cmd), json.loads(out.read_text())["regions"]


def fitted_constant(checkpoint: Path) -> float:
    """The depth (m) a fitted ``constant`` checkpoint predicts everywhere."""
    return float(torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]["depth_m"])


def select(candidates: list[Run]) -> Run:
    """The candidate best on validation (:data:`SELECT_ON`); the first of ties."""
    region, metric = SELECT_ON
    sign = -1 if metric in HIGHER_IS_BETTER else 1
    return min(candidates, key=lambda run: sign * (run.val.get(region) or {}).get(metric, float("inf")))


# --- the page ----------------------------------------------------------------------------------------


def _stat(values: list[float], digits: int) -> str:
    """One value, or the mean ± half the range of several."""
    values = [v for v in values if v == v]
    if not values:
        return "-"
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {(max(values) - min(values)) / 2:.{digits}f}"


#: The table's metric columns: (region, metric, digits, heading).
COLUMNS = [("objects", "abs_rel", 3, "objects AbsRel"), ("objects", "delta1", 3, "objects delta1"),
           ("objects", "inv_mae", 3, "objects InvMAE 1/m"), ("objects", "pearson", 2, "objects Pearson"),
           ("all", "abs_rel", 3, "all AbsRel"), ("all", "delta1", 3, "all delta1"),
           ("all", "rms_norm", 3, "all RMS (norm.)"), ("all", "accuracy", 2, "all accuracy %")]


def _table(results: list[RowResult], source: str = "test") -> list[str]:
    """A Markdown table: a row per result, its metrics on ``source`` (``test`` or ``val``; mean ± half
    the range where a row has several training seeds), the chosen learning rate and step, wall time."""
    lines = ["| model | " + " | ".join(c[3] for c in COLUMNS) + " | seeds | lr, step | train s |",
             "|---|" + "---|" * (len(COLUMNS) + 3)]
    for r in results:
        cells = [_stat(getattr(r, source)(region, metric), digits) for region, metric, digits, _ in COLUMNS]
        chosen = "-" if r.chosen.lr is None else f"{r.chosen.lr:g}, {r.chosen.step}"
        lines.append(f"| {r.row.label} (`{r.row.run}`) | " + " | ".join(cells)
                     + f" | {len(r.seeds)} | {chosen} | {r.train_s:.0f} |")
    return lines


def _mean(values: list[float]) -> float:
    values = [v for v in values if v == v]
    return sum(values) / len(values) if values else float("nan")


def draw_summary(draws: list[dict[str, RowResult]], region: str, metric: str, run: str) -> tuple[float, float]:
    """A row's mean over the draws (each draw's mean over training seeds) and its spread, half the range
    between the draws; NaN where the row is missing on a draw."""
    values = [_mean(d[run].test(region, metric)) if run in d else float("nan") for d in draws]
    if any(v != v for v in values):
        return float("nan"), float("nan")
    return sum(values) / len(values), (max(values) - min(values)) / 2


def better(draws: list[dict[str, RowResult]], a: str, b: str, region: str, metric: str) -> bool | None:
    """Whether row ``a`` is better than row ``b`` on ``metric`` beyond the spread: the gap of their means
    over the draws exceeds both rows' spread. None where either row misses a draw."""
    (mean_a, spread_a), (mean_b, spread_b) = (draw_summary(draws, region, metric, r) for r in (a, b))
    if mean_a != mean_a or mean_b != mean_b:
        return None
    gap = (mean_a - mean_b) if metric in HIGHER_IS_BETTER else (mean_b - mean_a)
    return gap > max(spread_a, spread_b)


#: The claims checked per trainable row: (reference run, region, metric).
CLAIMS = [(ALL_PIXEL_REFERENCE, "all", "abs_rel"), (ALL_PIXEL_REFERENCE, "all", "delta1"),
          (OBJECT_REFERENCE, "objects", "abs_rel"), (OBJECT_REFERENCE, "objects", "delta1"),
          (OBJECT_REFERENCE, "objects", "pearson")]


def _claims(draws: list[dict[str, RowResult]]) -> list[str]:
    """The claims table: each trainable main row against the all-pixel constant on all pixels and
    against ``dff`` on objects, mean ± spread over the draws, "yes" only beyond the spread."""
    names = {"abs_rel": "AbsRel", "delta1": "delta1", "pearson": "Pearson"}
    lines = ["| model | " + " | ".join(f"{region} {names[metric]} vs `{ref}`" for ref, region, metric in CLAIMS)
             + " | result |", "|---|" + "---|" * (len(CLAIMS) + 1)]
    for run, result in draws[0].items():
        if not MODELS[result.row.model].trainable or not all(run in d for d in draws):
            continue
        cells, wins = [], []
        for ref, region, metric in CLAIMS:
            mean, spread = draw_summary(draws, region, metric, run)
            ref_mean, ref_spread = draw_summary(draws, region, metric, ref)
            win = better(draws, run, ref, region, metric)
            wins.append(win)
            cells.append(f"{mean:.3f} ± {spread:.3f} vs {ref_mean:.3f} ± {ref_spread:.3f}: "
                         f"{'**yes**' if win else 'no'}")
        lines.append(f"| `{run}` | " + " | ".join(cells) + f" | {'beats both' if all(wins) else 'not a result'} |")
    return lines


def _choices(results: list[RowResult]) -> list[str]:
    """The choices made on validation: per trainable row, each candidate learning rate's validation
    object AbsRel at its best step, the rate chosen and the step kept."""
    lines = ["| model | candidates: lr -> validation objects AbsRel (step) | chosen lr | step kept |",
             "|---|---|---|---|"]
    for r in results:
        if r.chosen.lr is None:
            continue
        cands = ", ".join(f"{c.lr:g} -> {(c.val.get('objects') or {}).get('abs_rel', float('nan')):.3f} ({c.step})"
                          for c in r.candidates)
        lines.append(f"| `{r.row.run}` | {cands} | {r.chosen.lr:g} | {', '.join(str(s.step) for s in r.seeds)} |")
    return lines


def format_results(draws: list[dict[str, RowResult]], skipped: list[str], *, recipe: str, scale: str,
                   recipe_line: str, render_cmd: str, ablations: list[list[RowResult]] = (), ablation_scale: str = "",
                   figure: str | None = None, caveats: list[str] = ()) -> str:
    """The Markdown of the results page.

    Args:
        draws: per draw of the data (the first, then the second), the rows run, by run name, in table
            order (references first); the second holds the main rows.
        skipped: one line per row not run, saying why.
        recipe: the recipe's name (the page's title and published numbers follow it).
        scale: one line stating scenes, image size, samples, steps, the machine and the commit.
        recipe_line: the recipes' names, overrides and sha256.
        render_cmd: the ``dfdgen render`` commands equivalent to the benchmark's ``render_dataset``
            calls (same recipes, same bytes), one per line.
        ablations: per model ablated (sdgs, sdgs_stack), its rows on the first draw, scored on
            validation: the full model at the ablation's budget first, then each variant.
        ablation_scale: the ablation's budget.
        figure: file name of the figure, relative to the page.
        caveats: sentences that qualify the protocol, shown after it.
    """
    first = list(draws[0].values())
    region, metric = SELECT_ON
    lines = [
        f"# Results: depth models on {recipe} (synthetic)",
        "",
        "Produced by `benchmarks/results_table.py`. **Scale:** " + scale,
        "",
        f"Pages: {' and '.join(f'[{name}]({page})' for name, page in RESULT_PAGES.items())}.",
        "",
        "**Protocol.** Each draw of the data is split by scene into train, validation and test "
        f"({' / '.join(f'{round(100 * s)}' for s in SPLITS.values())} %); the splits are disjoint. Every choice is "
        f"made on validation {region} {metric}: the checkpoint (validated {VALIDATIONS} times per run, the best "
        "kept), the learning rate (among the candidates below, on the first draw; the second draw reuses it) and "
        "the ablation's verdict. Test is scored once per row and training seed, on the chosen checkpoint, and was "
        "not looked at to choose anything. The second draw is the same recipe and overrides with another recipe "
        "seed: a row is called better than another only where the gap of their means over the two draws exceeds "
        "both rows' spread (half the difference between the draws). Commands are quoted with paths relative to "
        "the benchmark's `--out-dir` (OUT).",
        "",
        *(f"**Caveat.** {line}\n" for line in caveats),
        "Every row is scored over two regions: **objects** (valid pixels that are not the background wall) and "
        "**all** valid pixels. The wall fills most of the frame, so a constant at the training median (the "
        "wall's depth) scores well on *all* and not at all on *objects*, and a constant at the objects' median "
        "does the reverse: a row is a result only where it beats the all-pixel constant on all pixels and `dff` "
        "(classical depth from focus: energy of the Laplacian, sharpest frame, parabola in diopters; no "
        "learning) on objects. AbsRel = mean |p - g| / g; delta1 = share of pixels with max(p/g, g/p) < 1.25; "
        "InvMAE = mean |1/p - 1/g| (1/m; defocus is linear in 1/z); Pearson = correlation of predicted and true "
        "depth pooled over the region's pixels; RMS (norm.) = RMS of depth normalised by the recipe's farthest "
        "wall and accuracy = 100 delta1, as in the DDFF / LSTM-DDFF / recurrent-AE table. Cells with several "
        "training seeds give their mean ± half their range. References have no training steps; `sdgs` and "
        "`sdgs_stack` never read depth or an all-in-focus image.",
        "",
        "## First draw (test)",
        "",
        *_table(first),
    ]
    if skipped:
        lines += [""] + [f"- {line}" for line in skipped]
    lines.append("")
    if figure:
        lines += [f"![input frame, true depth and each model's depth]({figure})", "",
                  f"`{figure}`: test stacks of the first draw, one per row: the frame focused nearest (sRGB), the "
                  f"true depth, then the whole frame's depth of {', '.join(f'`{r.row.run}`' for r in first)}, "
                  "left to right, all on one colour scale per row (viridis from the stack's nearest to its "
                  "farthest true depth: near = dark; invalid = black).", ""]
    if len(draws) > 1:
        lines += ["## Second draw (test)", "", "The main rows, trained again from scratch on the second draw at "
                  "the learning rates chosen on the first draw's validation split.", "",
                  *_table(list(draws[1].values())), "",
                  "## What holds across the draws", "",
                  "Each trainable row against the all-pixel constant on all pixels and against `dff` on "
                  "objects: the mean over the two draws ± the spread; **yes** only where the gap exceeds both "
                  "spreads.", "", *_claims(draws), ""]
    lines += ["## Choices made on validation", "", *_choices(first), ""]
    for group in ablations:
        full = group[0]
        model = full.row.model
        lines += [f"## Ablation of {model} (validation)", "",
                  f"The first row is `{model}` as built; each other row removes one of its design choices "
                  f"(`dfd_models/networks/`); same data and budget ({ablation_scale}), scored on the "
                  "first draw's **validation** split (the ablation is a choice).", "", *_table(group, "val"),
                  ""]
        full_values = full.val(region, metric)
        spread = (max(full_values) - min(full_values)) if len(full_values) > 1 else float("nan")
        for r in group[1:]:
            gap = _mean(r.val(region, metric)) - _mean(full_values)
            if metric in HIGHER_IS_BETTER:
                gap = -gap
            verdict = ("helps" if gap > spread else "does not help measurably") if spread == spread else \
                "not judged (one training seed: no spread)"
            lines.append(f"- `{r.row.run}`: validation {region} {metric} {_mean(r.val(region, metric)):.3f} "
                         f"against the full model's {_stat(full_values, 3)} (range {spread:.3f} over training "
                         f"seeds): what it removes {verdict}.")
        lines.append("")
    if recipe == "fod500":
        lines += ["Published numbers on DefocusNet's synthetic data (full scale, 256 px; not this run):", "",
                  "| model | delta1 | RMSE m | AbsRel |", "|---|---|---|---|"]
        lines += [f"| {label} | {d1:.3f} | {'-' if rmse is None else f'{rmse:.3f}'} | "
                  f"{'-' if rel is None else f'{rel:.3f}'} |" for label, (d1, rmse, rel) in PUBLISHED_FOD.items()]
    else:
        lines += ["Published synthetic test numbers (the video depth-from-defocus work, its full scale, all pixels):",
                  "", "| model | MSE | RMS | accuracy % |", "|---|---|---|---|"]
        lines += [f"| {label} | {mse:.1e} | {rms:.3f} | {acc:.2f} |" for label, (mse, rms, acc) in PUBLISHED.items()]
    lines += ["", "## Data", "", recipe_line, "Rendered in-process by `generator.render.pipeline.render_dataset`; "
              "the equivalent commands (same recipes, same bytes):", "", "```", render_cmd, "```", "",
              "## Commands", ""]
    for number, draw in enumerate(draws, 1):
        for r in draw.values():
            runs = [*r.candidates, *r.seeds[1:]]
            lines += [f"`{r.row.run}`, draw {number}:", "", "```", *(run.train_cmd for run in runs),
                      *(run.eval_cmd for run in r.seeds), "```", ""]
    for r in (r for group in ablations for r in group[1:]):
        lines += [f"`{r.row.run}` (ablation):", "", "```", *(run.train_cmd for run in r.seeds), "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_figure(results: list[RowResult], data: Path, path: Path, stacks: int = FIGURE_STACKS) -> None:
    """A PNG grid, one test stack per row: input frame (nearest focus), true depth, each model's depth
    (its chosen checkpoint), the whole frame.

    Depth is coloured on one scale per row, from the nearest to the farthest true depth of that stack.
    """
    from dfd_models.checkpoint import load_model
    from dfd_models.data import DataSection, make_loader, resolve_shards
    from dfd_models.evaluate import predict_depth
    from dfd_models.networks import lens_from_batch
    from generator.core.display import colorize
    from generator.core.display import linear_to_srgb

    loader = make_loader(DataSection.for_eval(resolve_shards(data, "test"), split=None, batch_size=stacks),
                         rank=0, world_size=1)
    batch = next(iter(loader))
    models = [load_model(r.chosen.checkpoint)[0] for r in results]
    with torch.no_grad():
        preds = [predict_depth(m, batch["frames"], batch["focus_m"], lens_from_batch(batch), batch["K"])
                 for m in models]
    rows = []
    for i in range(batch["frames"].shape[0]):
        true, valid = batch["depth"][i, 0].numpy(), batch["valid"][i, 0].numpy()
        low, high = float(true[valid].min()), float(true[valid].max())
        frame = linear_to_srgb(np.clip(batch["frames"][i, 0].permute(1, 2, 0).numpy(), 0, 1))
        tiles = [(frame * 255 + 0.5).astype(np.uint8), colorize(true, low, high, invalid=~valid)]
        tiles += [colorize(p[i, 0].float().numpy(), low, high) for p in preds]
        gap = np.full((true.shape[0], 2, 3), 255, np.uint8)
        rows.append(np.concatenate([t for tile in tiles for t in (tile, gap)][:-1], axis=1))
    grid = np.concatenate([r for row in rows for r in (row, np.full((2,) + row.shape[1:], 255, np.uint8))][:-1])
    scale = max(1, 96 // batch["frames"].shape[-1])  # small frames drawn larger
    Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST).save(path)


def _commit() -> str:
    """The repository's commit (``+dirty`` with uncommitted changes), or ``unknown``."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")



def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", choices=("small_obj", "fod500"), default="small_obj", help="the dataset's recipe")
    parser.add_argument("--scenes", type=int, default=160, help="scenes rendered per draw (train + val + test)")
    parser.add_argument("--large-scenes", type=int, default=0,
                        help="large_obj scenes rendered for the small+large row (small_obj only; 0: no such row)")
    parser.add_argument("--size", type=int, default=64, help="image width and height, pixels")
    parser.add_argument("--crop", type=int, default=64, help="training crop width and height, pixels")
    parser.add_argument("--samples", type=int, default=64, help="Cycles samples per pixel")
    parser.add_argument("--steps", type=int, default=600, help="training steps per supervised network")
    parser.add_argument("--sdgs-steps", type=int, default=None,
                        help="training steps of the self-supervised models (default --steps; a step re-renders "
                             "every frame, 10-20x the cost of a supervised step on the CPU)")
    parser.add_argument("--ablation-steps", type=int, default=None,
                        help="training steps of each sdgs ablation row (default --sdgs-steps; 0: no ablation)")
    parser.add_argument("--ablations", nargs="+", metavar="RUN", default=None,
                        help=f"only these ablation rows (default: all; {', '.join(r.run for r in ABLATIONS)})")
    parser.add_argument("--batch-size", type=int, default=4, help="stacks per training batch")
    parser.add_argument("--lr", type=float, default=3e-4, help="peak learning rate of the supervised networks")
    parser.add_argument("--sdgs-lr", type=float, default=1e-3, help="peak learning rate of the self-supervised ones")
    parser.add_argument("--lr-grid", type=float, nargs="+", default=None, metavar="LR",
                        help="candidate peak learning rates of every supervised row, chosen on validation "
                             "(default: the row's one rate; the self-supervised rows keep --sdgs-lr)")
    parser.add_argument("--seeds", type=int, default=2,
                        help="training seeds of the self-supervised rows and the ablation (their spread is shown)")
    parser.add_argument("--draws", type=int, choices=(1, 2), default=2,
                        help="draws of the data (2: the main rows again on a dataset of recipe seed 1)")
    parser.add_argument("--regions", choices=REGIONS, default="objects",
                        help="pixels the supervised networks train on (model config regions)")
    parser.add_argument("--wall-weight", type=float, default=None,
                        help="weight of the wall region in the supervised losses against the objects' 1 "
                             "(model config wall_weight; default the model's)")
    parser.add_argument("--init-at-constant", action="store_true",
                        help="supervised networks start at the all-pixel constant's depth, fitted on the draw's "
                             "training split (model config depth_init_m)")
    parser.add_argument("--depth-space", choices=DEPTH_SPACES, default=None,
                        help="depth map and loss of the supervised networks (default: their config's, linear); "
                             "log suits depth ranges that span decades, as fod500's")
    parser.add_argument("--blur-features", action="store_true",
                        help=f"give every supervised network the blur features (config blur_scales_px="
                             f"{BLUR_SCALES_PX}) as extra input, as the defocusnet-blur row has them")
    parser.add_argument("--models", nargs="+", metavar="RUN", help="only these rows (run names, e.g. ddff "
                        "recurrent_ae+large); the references always run")
    parser.add_argument("--reuse", action="store_true",
                        help="keep runs whose directory finished the same train command (dfdgen commit aside)")
    parser.add_argument("--render-workers", type=int, default=2, help="Blender worker processes")
    parser.add_argument("--out-dir", type=Path, default=Path("runs/results_table"), help="data and runs go here")
    parser.add_argument("--results", type=Path, default=None,
                        help="the Markdown written  [default: docs/RESULTS.md for small_obj, docs/RESULTS_<recipe>.md]")
    parser.add_argument("--figure", type=Path, default=None,
                        help="the PNG written (default: beside --results, RESULTS_<recipe>.png)")
    args = parser.parse_args(argv)
    if args.crop > args.size:
        parser.error(f"--crop {args.crop} is larger than --size {args.size}")
    known = {row.run for row in ROWS}
    unknown = set(args.models or ()) - known
    if unknown:
        parser.error(f"unknown --models {sorted(unknown)}; rows: {sorted(known)}")
    unknown = set(args.ablations or ()) - {row.run for row in ABLATIONS}
    if unknown:
        parser.error(f"unknown --ablations {sorted(unknown)}; rows: {[row.run for row in ABLATIONS]}")
    rows = [row for row in ROWS if row in REFERENCES or args.models is None or row.run in args.models]
    changes = ([f"depth_space {args.depth_space}"] if args.depth_space else []) + (
        ["blur features"] if args.blur_features else [])
    if changes:  # the supervised rows' labels say what they were given beyond their defaults
        rows = [replace(row, label=f"{row.label} ({', '.join(changes)})")
                if MODELS.get(row.model) and MODELS[row.model].supervised and MODELS[row.model].trainable else row
                for row in rows]
    sdgs_steps = args.steps if args.sdgs_steps is None else args.sdgs_steps
    ablation_steps = sdgs_steps if args.ablation_steps is None else args.ablation_steps
    ablation_rows = [row for row in ABLATIONS if args.ablations is None or row.run in args.ablations]
    args.results = args.results or Path("docs") / RESULT_PAGES.get(args.recipe, f"RESULTS_{args.recipe}.md")
    figure = args.figure or args.results.parent / f"RESULTS_{args.recipe}.png"

    datasets = {(args.recipe, seed): (args.out_dir / folder,
                                      recipe_overrides(args.recipe, args.scenes, args.size, args.samples, seed))
                for seed, folder in list(DRAWS.items())[:args.draws]}
    if args.recipe == "small_obj" and args.large_scenes and any(row.large for row in rows):
        datasets[("large_obj", 0)] = (args.out_dir / "data_large",
                                      recipe_overrides("large_obj", args.large_scenes, args.size, args.samples))
    commit = _commit()  # before anything here is written (the figure is tracked)
    recipe_lines, render_cmds, reused, recipes = [], [], 0, {}
    start = time.perf_counter()
    for (name, seed), (data, sets) in datasets.items():
        recipes[name, seed] = recipe = load_recipe(name, sets)
        summary = render_dataset(recipe, data, workers=args.render_workers)
        print(summary.line(), flush=True)
        reused += summary.skipped
        recipe_lines.append(f"Recipe `{name}` with `{' '.join(sets)}`, sha256 `{recipe.sha256}`.")
        render_cmds.append(shlex.join([_dfdgen(), "render", "--recipe", name, "--out", str(data),
                                       "--workers", str(args.render_workers)] + [a for o in sets for a in ("--set", o)]))
    render_s = time.perf_counter() - start

    def lr_of(row: Row) -> float:
        return row.lr or (args.sdgs_lr if row.self_supervised else args.lr)

    def run_row(row: Row, draw: int, steps: int, lrs: list[float | None], seeds: int,
                runs: Path, test: bool = True) -> RowResult:
        """``row`` on draw ``draw``: every candidate rate at seed 0, the best on validation, its other seeds."""
        data = datasets[args.recipe, draw][0]
        train_data = f"{data}::{datasets['large_obj', 0][0]}" if row.large else str(data)

        def one(lr: float | None, seed: int) -> Run:
            name = row.run + (f"-lr{lr:g}" if len(lrs) > 1 else "") + (f"-seed{seed}" if seed else "")
            return train_row(row, train_data, runs / name, steps=steps, lr=lr, seed=seed,
                             batch_size=args.batch_size, crop=args.crop, regions=args.regions,
                             wall_weight=args.wall_weight, depth_init_m=depth_init.get(draw),
                             depth_space=args.depth_space,
                             blur_scales_px=BLUR_SCALES_PX if args.blur_features else None, reuse=args.reuse)

        result = RowResult(row, [one(lr, 0) for lr in lrs])
        chosen = select(result.candidates)
        result.seeds = [chosen] + [one(chosen.lr, seed) for seed in range(1, seeds)]
        if test:
            for run in result.seeds:
                score_test(run, data, run.checkpoint.parent.parent, reuse=args.reuse)
        objects = result.chosen.test or result.chosen.val
        print(f"{row.run} (draw {draw}): {'test' if test else 'val'} objects "
              f"{json.dumps({k: (objects.get('objects') or {}).get(k) for k in ('abs_rel', 'delta1', 'pearson')})}",
              flush=True)
        return result

    depth_init: dict[int, float] = {}  # per draw: the all-pixel constant, where supervised networks start
    draws: list[dict[str, RowResult]] = []
    skipped, ablations = [], []
    chosen_lr: dict[str, float | None] = {}
    for draw in list(DRAWS)[:args.draws]:
        results, runs = {}, args.out_dir / ("runs" if draw == 0 else f"runs-{DRAWS[draw]}")
        for row in rows:
            if draw and not row.main:
                continue
            if row.model not in MODELS:
                skipped.append(f"`{row.run}` skipped: not registered in `dfd_models.networks.MODELS`.")
                continue
            if row.large and ("large_obj", 0) not in datasets:
                skipped.append(f"`{row.run}` skipped: no large_obj scenes (--large-scenes 0).")
                continue
            trainable = MODELS[row.model].trainable
            grid = args.lr_grid if args.lr_grid and not row.self_supervised else [lr_of(row)]
            lrs = [None] if not trainable else ([chosen_lr[row.run]] if draw else grid)
            seeds = args.seeds if row.self_supervised and draw == 0 else 1
            results[row.run] = run_row(row, draw, sdgs_steps if row.self_supervised else args.steps, lrs, seeds,
                                       runs)
            chosen_lr[row.run] = results[row.run].chosen.lr
            if row.run == ALL_PIXEL_REFERENCE and args.init_at_constant:
                depth_init[draw] = round(fitted_constant(results[row.run].chosen.checkpoint), 3)
        draws.append(results)
    for model in dict.fromkeys(row.model for row in ablation_rows):  # each model ablated, in ABLATIONS' order
        if not ablation_steps or model not in draws[0]:
            continue
        full = draws[0][model]
        if ablation_steps != sdgs_steps:  # the full model at the ablation's budget, so the rows compare
            full = run_row(Row(model, f"{model}, as built", run_name=f"{model}-{ablation_steps}steps"), 0,
                           ablation_steps, [chosen_lr[model]], args.seeds, args.out_dir / "runs", test=False)
        ablations.append([full] + [run_row(row, 0, ablation_steps, [chosen_lr[model]], args.seeds,
                                           args.out_dir / "runs", test=False)
                                   for row in ablation_rows if row.model == model])
    write_figure(list(draws[0].values()), datasets[args.recipe, 0][0], figure)

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    large = (f" plus {args.large_scenes} large_obj scenes (same split) for the small+large row"
             if ("large_obj", 0) in datasets else "")
    wall = sum(r.train_s for d in draws for r in d.values()) + sum(r.train_s for g in ablations for r in g[1:])
    counts = []
    for seed in list(DRAWS)[:args.draws]:
        manifest = read_manifest(datasets[args.recipe, seed][0])
        counts.append(" / ".join(str(sum(s["samples"] for s in manifest["shards"] if s["split"] == split))
                                 for split in SPLITS))
    order = ("drawn at random per scene" if recipes[args.recipe, 0].splits.order in (None, "random")
             else "by scene index")
    lr_line = (f"the supervised rows' learning rate chosen on validation among "
               f"{', '.join(f'{lr:g}' for lr in args.lr_grid)}, {args.sdgs_lr:g} for the self-supervised rows"
               if args.lr_grid else
               f"peak learning rate {args.lr:g} ({args.sdgs_lr:g} for the self-supervised rows"
               f"{''.join(f', {r.row.lr:g} for {r.row.run}' for r in draws[0].values() if r.row.lr)}), fixed "
               "before these runs")
    scale = (f"{args.draws} draw{'s' if args.draws > 1 else ''} of {args.scenes} {args.recipe} scenes "
             f"(train / val / test: {'; '.join(counts)}; splits {order}){large}, {args.size}x{args.size} px, "
             f"{FRAMES} frames per stack, {args.samples} Cycles samples; {args.steps} training steps "
             f"({sdgs_steps} for the self-supervised rows, {args.seeds} training seeds each on the first draw) "
             f"of batch {args.batch_size} (AdamW, cosine, {lr_line}) on random {args.crop}x{args.crop} crops "
             f"(the supervised networks on {args.regions} regions"
             f"{f', wall weight {args.wall_weight:g}' if args.wall_weight is not None else ''}"
             f"{', starting at the all-pixel constant' if args.init_at_constant else ''}"
             f"{f', depth_space {args.depth_space}' if args.depth_space else ''}"
             f"{f', blur features {BLUR_SCALES_PX} px as extra input' if args.blur_features else ''}), "
             f"evaluated on full {args.size}x{args.size} frames; on {device}, {platform.machine()}; training "
             f"and fitting {wall:.0f} s in all, dataset render {render_s:.0f} s ({reused} scenes reused from an "
             f"earlier run); dfdgen commit {commit}. "
             f"Command: `python benchmarks/results_table.py {shlex.join(sys.argv[1:] if argv is None else argv)}`. "
             f"Published numbers come from far larger datasets, 256 px and far longer training: this reduced run "
             f"compares the models with each other and with the references on dfdgen data.")
    text = format_results(draws, skipped, recipe=args.recipe, scale=scale, recipe_line="\n\n".join(recipe_lines),
                          render_cmd="\n".join(render_cmds), ablations=ablations,
                          ablation_scale=f"{ablation_steps} training steps each, batch {args.batch_size}, "
                                         f"{args.crop}x{args.crop} crops, {args.seeds} training seeds",
                          figure=os.path.relpath(figure, args.results.parent),
                          caveats=[] if args.lr_grid else [
                              "The learning rates were not searched on validation in this run (`--lr-grid` "
                              "was not given): they were fixed in earlier trial runs whose test split holds "
                              "these same test scenes (a scene's split is drawn from one uniform number, so "
                              "carving validation out of train kept every test scene), so they may favour "
                              "this test split. Every other choice was made on validation."])
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(portable(text, args.out_dir))
    print(f"wrote {args.results} and {figure}")


if __name__ == "__main__":
    main()
