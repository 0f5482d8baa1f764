"""The benchmark's runner: renders the draws in-process, trains and fits every row with one ``dfdgen train``
subprocess per learning rate and training seed, chooses on validation and scores the choice once on test
with ``dfdgen eval``. With ``reuse``, a run whose folder finished the same train command is read back
instead of trained again (the command string is the key)."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dfd_models.config import HIGHER_IS_BETTER
from dfd_models.networks import MODELS
from dfd_models.networks.base import default_settings
from generator.recipe.recipe import Recipe, load_recipe
from generator.render.pipeline import render_dataset

from .experiments import (
    ALL_PIXEL_REFERENCE, BLUR_SCALES_PX, DRAWS, SELECT_ON, VALIDATIONS, Row, Settings, recipe_overrides,
)


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
        """Wall-clock seconds of every run trained for the row, the candidates and the other seeds."""
        return sum(run.train_s for run in self.candidates + self.seeds[1:])


@dataclass(frozen=True)
class Dataset:
    """One rendered dataset: recipe ``name`` at recipe seed ``seed`` with ``--set`` overrides ``sets``,
    in folder ``path``."""

    name: str
    seed: int
    path: Path
    sets: list[str]
    recipe: Recipe


@dataclass(frozen=True)
class Rendering:
    """The benchmark's datasets, by (recipe name, recipe seed), in render order; ``seconds`` of wall
    time rendering them with ``workers`` Blender processes, ``reused`` scenes found done before."""

    datasets: dict[tuple[str, int], Dataset]
    seconds: float
    reused: int
    workers: int


def render_draws(settings: Settings, out_dir: Path, rows: list[Row], workers: int) -> Rendering:
    """Render (or resume) each draw of ``settings.recipe`` into its ``DRAWS`` folder under ``out_dir``,
    and the ``large_obj`` scenes (``OUT/data_large``) when a small+large row runs on small_obj."""
    wanted = {(settings.recipe, seed): out_dir / folder for seed, folder in list(DRAWS.items())[:settings.draws]}
    if settings.recipe == "small_obj" and settings.large_scenes and any(row.large for row in rows):
        wanted["large_obj", 0] = out_dir / "data_large"
    datasets, reused = {}, 0
    start = time.perf_counter()
    for (name, seed), path in wanted.items():
        scenes = settings.large_scenes if name == "large_obj" else settings.scenes
        sets = recipe_overrides(name, scenes, settings.size, settings.samples, seed)
        recipe = load_recipe(name, sets)
        summary = render_dataset(recipe, path, workers=workers)
        print(summary.line(), flush=True)
        reused += summary.skipped
        datasets[name, seed] = Dataset(name, seed, path, sets, recipe)
    return Rendering(datasets, time.perf_counter() - start, reused, workers)


def dfdgen_path() -> str:
    """The ``dfdgen`` entry point next to this Python, else the one on PATH."""
    beside = Path(sys.executable).parent / "dfdgen"
    return str(beside) if beside.exists() else "dfdgen"


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


def train_row(row: Row, train_data: str, run_dir: Path, settings: Settings, *, steps: int, lr: float | None,
              seed: int, depth_init_m: float | None = None, reuse: bool = False) -> Run:
    """Train (or fit) ``row``'s model from scratch on ``train_data`` (a directory, or ``::``-joined
    directories) into ``run_dir``, validated on its val split; the run at its best validation (``ckpt/best.pt``).
    Trainable rows get ``settings``' crop and batch; supervised rows its ``regions`` and, unless None (the
    model's default), ``wall_weight``, ``depth_init_m`` (m), ``depth_space`` and the blur features (the
    row's own config comes after, so it wins).

    With ``reuse``, a run directory that finished the same train command before (its ``done.json``),
    with the same defaults of the model where the record holds them
    (:func:`dfd_models.networks.base.default_settings`), is not trained again: its record is read back.
    """
    spec = MODELS[row.model]
    train_cmd = [dfdgen_path(), "train", "--shards", train_data, "--model", row.model, "--out", str(run_dir),
                 "--max-steps", str(steps), "--seed", str(seed)]
    if spec.trainable:
        crop = settings.crop
        train_cmd += ["--set", f"data.crop=[{crop}, {crop}]", "--set", f"data.batch_size={settings.batch_size}",
                      "--set", "data.workers=1", "--set", f"optim.lr={lr:g}",
                      "--set", f"optim.warmup_steps={steps // 10}",
                      "--set", f"train.ckpt_every={steps}", "--set", "train.image_every=0",
                      "--set", f"train.val_every={max(1, steps // VALIDATIONS)}",
                      "--set", f"train.best_metric={'.'.join(SELECT_ON)}"]
        if spec.supervised:
            train_cmd += ["--set", f"model.config.regions={settings.regions}"]
            for key, value in (("wall_weight", settings.wall_weight), ("depth_init_m", depth_init_m)):
                if value is not None:
                    train_cmd += ["--set", f"model.config.{key}={value:g}"]
            if settings.depth_space is not None:
                train_cmd += ["--set", f"model.config.depth_space={settings.depth_space}"]
            if settings.blur_features:
                train_cmd += ["--set", f"model.config.blur_scales_px={BLUR_SCALES_PX}"]
    for override in row.sets:
        train_cmd += ["--set", override]
    record_path = run_dir / "done.json"
    defaults = json.loads(json.dumps(default_settings(spec)))  # as done.json holds them; a changed default
    # changes the run, not its command
    if reuse and record_path.is_file() and _same_run(json.loads(record_path.read_text()), train_cmd, defaults):
        record = json.loads(record_path.read_text())
        print(f"{run_dir.name}: reused (same command, {record['train_s']:.0f} s when run)", flush=True)
    else:
        shutil.rmtree(run_dir, ignore_errors=True)  # the benchmark's own run: always a fresh one
        run_dir.mkdir(parents=True)
        train_s = _run(train_cmd, run_dir / "train.log")
        step, val = best_validation(run_dir)  # a reference's one validation is of its fit (step 0)
        record = {"train_cmd": train_cmd, "defaults": defaults, "train_s": train_s, "step": step, "val": val}

        record_path.write_text(json.dumps(record))
    return Run(lr if spec.trainable else None, seed, shlex.join(train_cmd), record["train_s"], record["step"],
               record["val"], run_dir / "ckpt" / "best.pt")


def _same_run(record: dict, train_cmd: list[str], defaults: list[dict]) -> bool:
    """Whether a finished run's record is of ``train_cmd`` with the model's ``defaults`` (a record
    written before defaults were kept is taken at its command, so earlier runs stay reusable)."""
    return record.get("train_cmd") == train_cmd and record.get("defaults", defaults) == defaults


def score_test(run: Run, data: Path, run_dir: Path, reuse: bool = False) -> None:
    """Score ``run``'s checkpoint once on ``data``'s test split (``run.test``, ``run.eval_cmd``)."""
    out = run_dir / "test.json"
    cmd = [dfdgen_path(), "eval", "--shards", str(data), "--checkpoint", str(run.checkpoint), "--split", "test",
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


class Benchmark:
    """Every row on the rendered draws, as the results table's docstring lists the steps: the learning
    rates chosen on the first draw's validation and reused on the second, the supervised networks
    started at the draw's all-pixel constant where ``settings.init_at_constant``."""

    def __init__(self, settings: Settings, rendering: Rendering, out_dir: Path, reuse: bool = False):
        self.settings, self.datasets, self.out_dir, self.reuse = settings, rendering.datasets, out_dir, reuse
        self.depth_init: dict[int, float] = {}  # per draw: the all-pixel constant (m), where supervised networks start
        self.chosen_lr: dict[str, float | None] = {}  # per run name: the rate chosen on the first draw

    def data(self, draw: int) -> Path:
        """The folder of draw ``draw`` (a recipe seed of :data:`DRAWS`)."""
        return self.datasets[self.settings.recipe, draw].path

    def run_row(self, row: Row, draw: int, steps: int, lrs: list[float | None], seeds: int, runs: Path,
                test: bool = True) -> RowResult:
        """``row`` on draw ``draw``: every candidate rate at seed 0, the best on validation, its other seeds,
        run folders under ``runs``; each seed scored on test unless ``test`` is False."""
        data = self.data(draw)
        train_data = f"{data}::{self.datasets['large_obj', 0].path}" if row.large else str(data)

        def one(lr: float | None, seed: int) -> Run:
            name = row.run + (f"-lr{lr:g}" if len(lrs) > 1 else "") + (f"-seed{seed}" if seed else "")
            return train_row(row, train_data, runs / name, self.settings, steps=steps, lr=lr, seed=seed,
                             depth_init_m=self.depth_init.get(draw), reuse=self.reuse)

        result = RowResult(row, [one(lr, 0) for lr in lrs])
        chosen = select(result.candidates)
        result.seeds = [chosen] + [one(chosen.lr, seed) for seed in range(1, seeds)]
        if test:
            for run in result.seeds:
                score_test(run, data, run.checkpoint.parent.parent, reuse=self.reuse)
        objects = result.chosen.test or result.chosen.val
        print(f"{row.run} (draw {draw}): {'test' if test else 'val'} objects "
              f"{json.dumps({k: (objects.get('objects') or {}).get(k) for k in ('abs_rel', 'delta1', 'pearson')})}",
              flush=True)
        return result

    def run_draws(self, rows: list[Row]) -> tuple[list[dict[str, RowResult]], list[str]]:
        """``rows`` on each draw (the second: the main rows only), by run name in table order; and one
        line per row skipped, saying why."""
        settings = self.settings
        draws, skipped = [], []
        for draw in list(DRAWS)[:settings.draws]:
            results, runs = {}, self.out_dir / ("runs" if draw == 0 else f"runs-{DRAWS[draw]}")
            for row in rows:
                if draw and not row.main:
                    continue
                if row.model not in MODELS:
                    skipped.append(f"`{row.run}` skipped: not registered in `dfd_models.networks.MODELS`.")
                    continue
                if row.large and ("large_obj", 0) not in self.datasets:
                    skipped.append(f"`{row.run}` skipped: no large_obj scenes (--large-scenes 0).")
                    continue
                trainable = MODELS[row.model].trainable
                grid = settings.lr_grid if settings.lr_grid and not row.self_supervised else [settings.lr_of(row)]
                lrs = [None] if not trainable else ([self.chosen_lr[row.run]] if draw else grid)
                seeds = settings.seeds if row.self_supervised and draw == 0 else 1
                results[row.run] = self.run_row(row, draw, settings.steps_of(row), lrs, seeds, runs)
                self.chosen_lr[row.run] = results[row.run].chosen.lr
                if row.run == ALL_PIXEL_REFERENCE and settings.init_at_constant:
                    self.depth_init[draw] = round(fitted_constant(results[row.run].chosen.checkpoint), 3)
            draws.append(results)
        return draws, skipped

    def run_ablations(self, rows: list[Row], first: dict[str, RowResult]) -> list[list[RowResult]]:
        """Per model ablated (in ``rows``' order) and run on the first draw (``first``): the full model at the
        ablation's budget, then each of its ``rows``, at the model's chosen rate, scored on validation."""
        steps, seeds, runs = self.settings.ablation_steps, self.settings.seeds, self.out_dir / "runs"
        ablations = []
        for model in dict.fromkeys(row.model for row in rows):
            if not steps or model not in first:
                continue
            full = first[model]
            if steps != self.settings.sdgs_steps:  # the full model at the ablation's budget, so the rows compare
                full = self.run_row(Row(model, f"{model}, as built", run_name=f"{model}-{steps}steps"), 0,
                                    steps, [self.chosen_lr[model]], seeds, runs, test=False)
            ablations.append([full] + [self.run_row(row, 0, steps, [self.chosen_lr[model]], seeds, runs, test=False)
                                       for row in rows if row.model == model])
        return ablations
