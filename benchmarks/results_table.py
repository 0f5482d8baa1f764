"""The results table (issue 6): every depth model trained and evaluated on one small_obj split.

Renders a reduced-scale ``small_obj`` dataset (reused when ``OUT/data`` already
holds the same recipe: the generator resumes), trains each registered model
with one ``dfdgen train`` command, evaluates it with ``dfdgen eval --json`` on
the test split, and writes ``docs/RESULTS.md``: MSE and RMS of depth normalised
to [0, 1] by the recipe's farthest wall and accuracy (delta1, %) as in the
published DDFF / LSTM-DDFF / recurrent-AE table, plus AbsRel and delta1, beside
the published synthetic numbers, with the exact commands, the recipe sha256 and
the scale.

The recipe is ``small_obj`` with one ramp of 5 frames per scene (the published
input: one focus stack of 4-5 frames), ``--size`` square images, ``--samples``
Cycles samples and an 80 / 20 train / test split. Models train on random
``--crop`` crops (the published runs used 256 px crops of larger frames) with
random flips, with their default configs but a warmup of a tenth of the steps
(the default 100 would take most of a short run); evaluation scores every valid
pixel of the full test frames, wall included, so the supervised models train on
the wall too. With ``--large-scenes N`` the same overrides render ``large_obj``
and the recurrent AE trains once more on small+large (the published fourth row),
evaluated on the same small_obj test split.

    python benchmarks/results_table.py                               # 200 + 100 scenes, 128 px
    python benchmarks/results_table.py --scenes 6 --large-scenes 4 --size 32 --crop 32 --steps 3 \
        --out-dir /tmp/rt                                            # smoke run
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
from dataclasses import dataclass
from pathlib import Path

import torch

from dfd_models.networks import MODELS
from generator.pipeline import render_dataset
from generator.recipe import load_recipe



@dataclass(frozen=True)
class Row:
    """One row of the table: a model trained on small_obj, or on small+large (``large``)."""

    model: str
    label: str
    large: bool = False

    @property
    def run(self) -> str:
        """Run directory name under ``OUT/runs``."""
        return f"{self.model}+large" if self.large else self.model


#: Rows in table order.
ROWS = [Row("ddff", "DDFF"), Row("lstm_ddff", "LSTM-DDFF"), Row("recurrent_ae", "recurrent AE"),
        Row("recurrent_ae", "recurrent AE, small+large objects", large=True),
        Row("defocusnet", "DefocusNet (PoolNet)"), Row("sdgs", "SDGS (self-supervised)")]
#: Published synthetic test numbers (MSE and RMS of depth normalised to [0, 1], accuracy %).
PUBLISHED = {
    "DDFF": (1.8e-3, 0.041, 86.78),
    "LSTM-DDFF": (1.1e-3, 0.033, 94.98),
    "recurrent AE": (3.4e-3, 0.058, 69.02),
    "recurrent AE, small+large objects": (3.2e-3, 0.056, 70.77),
}
#: Frames per focus stack (one ramp per scene).
FRAMES = 5
#: Share of the scenes in the test split (the rest train).
TEST_SHARE = 0.2


@dataclass
class ModelResult:
    """One model's run.

    Attributes:
        row: the table row run.
        train_cmd, eval_cmd: the commands as run (shell-quoted).
        train_s: wall-clock seconds of ``dfdgen train``.
        metrics: ``dfdgen eval``'s metrics (``mse_norm``, ``rms_norm``, ``accuracy``, ...).
    """

    row: Row
    train_cmd: str
    eval_cmd: str
    train_s: float
    metrics: dict


def recipe_overrides(scenes: int, size: int, samples: int) -> list[str]:
    """``--set`` overrides of ``small_obj`` for the benchmark's dataset."""
    return [f"count={scenes}", f"image.width={size}", f"image.height={size}", f"image.samples={samples}",
            "focus.ramps=1", f"focus.frames_per_ramp={FRAMES}",
            f"splits={{train: {1 - TEST_SHARE}, val: 0.0, test: {TEST_SHARE}}}"]


def _dfdgen() -> str:
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


def train_and_eval(row: Row, train_data: str, test_data: Path, runs: Path, *, steps: int, batch_size: int,
                   crop: int) -> ModelResult:
    """Train ``row``'s model for ``steps`` steps from scratch on ``train_data`` (a directory, or
    ``::``-joined directories) into ``runs/row.run``, then evaluate it on ``test_data``'s test split."""
    run_dir = runs / row.run
    shutil.rmtree(run_dir, ignore_errors=True)  # the benchmark's own run: always a fresh one
    run_dir.mkdir(parents=True)
    train_cmd = [_dfdgen(), "train", "--shards", train_data, "--model", row.model, "--out", str(run_dir),
                 "--max-steps", str(steps), "--seed", "0", "--set", f"data.crop=[{crop}, {crop}]",
                 "--set", f"data.batch_size={batch_size}", "--set", "data.workers=1",
                 "--set", f"optim.warmup_steps={steps // 10}",
                 "--set", f"train.ckpt_every={steps}", "--set", "train.image_every=0"]
    if MODELS[row.model].supervised:
        # dfdgen eval scores every valid pixel, the wall included: train on the same pixels.
        train_cmd += ["--set", "model.config.mask_wall=false"]
    train_s = _run(train_cmd, run_dir / "train.log")
    result_json = run_dir / "eval.json"
    eval_cmd = [_dfdgen(), "eval", "--shards", str(test_data), "--checkpoint", str(run_dir / "ckpt" / "last.pt"),
                "--split", "test", "--workers", "1", "--json", str(result_json)]
    _run(eval_cmd, run_dir / "eval.log")
    metrics = json.loads(result_json.read_text())["metrics"]
    return ModelResult(row, shlex.join(train_cmd), shlex.join(eval_cmd), train_s, metrics)


def format_results(results: list[ModelResult], skipped: list[str], *, scale: str, recipe_line: str,
                   render_cmd: str) -> str:
    """The Markdown of ``docs/RESULTS.md``.

    Args:
        results: the models run, in table order.
        skipped: one line per row not run, saying why.
        scale: one line stating scenes, image size, samples, steps, the machine and the commit.
        recipe_line: the recipes' names, overrides and sha256.
        render_cmd: the ``dfdgen render`` commands equivalent to the benchmark's
            ``render_dataset`` calls (same recipes, same bytes), one per line.
    """
    lines = [
        "# Results: depth models on small_obj (synthetic)",
        "",
        "Produced by `benchmarks/results_table.py`. **Scale:** " + scale,
        "",
        "MSE and RMS are of depth normalised to [0, 1] by the recipe's farthest wall "
        "(`mse_norm`, `rms_norm` of `dfdgen eval`); accuracy is delta1 (max(p/g, g/p) < 1.25) in %. "
        "Every valid pixel of the test split is scored, the background wall included.",
        "",
        "| model | MSE | RMS | accuracy % | AbsRel | delta1 | train s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        m = r.metrics
        lines.append(f"| {r.row.label} (`{r.row.run}`) | {m['mse_norm']:.2e} | {m['rms_norm']:.3f} | "
                     f"{m['accuracy']:.2f} | {m['abs_rel']:.3f} | {m['delta1']:.3f} | {r.train_s:.0f} |")
    lines += ["", "Published synthetic test numbers (the video depth-from-defocus work, its full scale):", "",
              "| model | MSE | RMS | accuracy % |", "|---|---|---|---|"]
    lines += [f"| {label} | {mse:.1e} | {rms:.3f} | {acc:.2f} |" for label, (mse, rms, acc) in PUBLISHED.items()]
    if skipped:
        lines += [""] + [f"- {line}" for line in skipped]
    lines += ["", "## Data", "", recipe_line, "Rendered in-process by `generator.pipeline.render_dataset`; "
              "the equivalent commands (same recipes, same bytes):", "", "```", render_cmd, "```", "",
              "## Commands", ""]
    for r in results:
        lines += [f"`{r.row.run}`:", "", "```", r.train_cmd, r.eval_cmd, "```", ""]
    return "\n".join(lines).rstrip() + "\n"


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
    parser.add_argument("--scenes", type=int, default=200, help="small_obj scenes rendered (train + test)")
    parser.add_argument("--large-scenes", type=int, default=100,
                        help="large_obj scenes rendered for the small+large row (0: no such row)")
    parser.add_argument("--size", type=int, default=128, help="image width and height, pixels")
    parser.add_argument("--crop", type=int, default=64, help="training crop width and height, pixels")
    parser.add_argument("--samples", type=int, default=16, help="Cycles samples per pixel")
    parser.add_argument("--steps", type=int, default=2000, help="training steps per model")
    parser.add_argument("--batch-size", type=int, default=8, help="stacks per training batch")
    parser.add_argument("--models", nargs="+", metavar="RUN", help="only these rows (run names, e.g. ddff "
                        "recurrent_ae+large); the table then lists only them")
    parser.add_argument("--render-workers", type=int, default=2, help="Blender worker processes")
    parser.add_argument("--out-dir", type=Path, default=Path("runs/results_table"), help="data and runs go here")
    parser.add_argument("--results", type=Path, default=Path("docs/RESULTS.md"), help="the Markdown written")
    args = parser.parse_args(argv)
    if args.crop > args.size:
        parser.error(f"--crop {args.crop} is larger than --size {args.size}")
    rows = [row for row in ROWS if args.models is None or row.run in args.models]
    unknown = set(args.models or ()) - {row.run for row in ROWS}
    if unknown:
        parser.error(f"unknown --models {sorted(unknown)}; rows: {[row.run for row in ROWS]}")

    overrides = recipe_overrides(args.scenes, args.size, args.samples)
    datasets = {"small_obj": (args.out_dir / "data", overrides)}
    if args.large_scenes and any(row.large for row in rows):
        datasets["large_obj"] = (args.out_dir / "data_large",
                                 recipe_overrides(args.large_scenes, args.size, args.samples))
    recipe_lines, render_cmds, reused = [], [], 0
    start = time.perf_counter()
    for name, (data, sets) in datasets.items():
        recipe = load_recipe(name, sets)
        summary = render_dataset(recipe, data, workers=args.render_workers)
        print(summary.line(), flush=True)
        reused += summary.skipped
        recipe_lines.append(f"Recipe `{name}` with `{' '.join(sets)}`, sha256 `{recipe.sha256}`.")
        render_cmds.append(shlex.join([_dfdgen(), "render", "--recipe", name, "--out", str(data),
                                       "--workers", str(args.render_workers)] + [a for o in sets for a in ("--set", o)]))
    render_s = time.perf_counter() - start

    small = datasets["small_obj"][0]
    results, skipped = [], []
    for row in rows:
        if row.model not in MODELS:
            skipped.append(f"`{row.run}` skipped: not registered in `dfd_models.networks.MODELS`.")
            continue
        if row.large and "large_obj" not in datasets:
            skipped.append(f"`{row.run}` skipped: no large_obj scenes (--large-scenes 0).")
            continue
        train_data = f"{small}::{datasets['large_obj'][0]}" if row.large else str(small)
        results.append(train_and_eval(row, train_data, small, args.out_dir / "runs", steps=args.steps,
                                      batch_size=args.batch_size, crop=args.crop))
        print(f"{row.run}: {json.dumps({k: results[-1].metrics[k] for k in ('mse_norm', 'rms_norm', 'accuracy')})}")

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    large = f" plus {args.large_scenes} large_obj scenes (same split) for the small+large row" if len(datasets) > 1 else ""
    scale = (f"{args.scenes} small_obj scenes ({round(args.scenes * (1 - TEST_SHARE))} train / "
             f"{round(args.scenes * TEST_SHARE)} test, as split by the recipe){large}, {args.size}x{args.size} px, "
             f"{FRAMES} frames per stack, {args.samples} Cycles samples; {args.steps} training steps of batch "
             f"{args.batch_size} random {args.crop}x{args.crop} crops per model, evaluated on full "
             f"{args.size}x{args.size} test frames, on {device}, {platform.machine()}; dataset render "
             f"{render_s:.0f} s ({reused} scenes reused from an earlier run); dfdgen commit {_commit()}. "
             f"Command: `python benchmarks/results_table.py {shlex.join(sys.argv[1:] if argv is None else argv)}`. "
             f"The published numbers come from 256x256 crops of a far "
             f"larger dataset and far longer training: this reduced run compares the models with each other on "
             f"dfdgen data, it does not reproduce the published table.")
    text = format_results(results, skipped, scale=scale, recipe_line="\n\n".join(recipe_lines),
                          render_cmd="\n".join(render_cmds))
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(text)
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
