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
Cycles samples and an 80 / 20 train / test split. Models train on full frames
with random flips, with their default configs (the supervised ones mask the
wall out of the loss) but a warmup of a tenth of the steps (the default 100
would take most of a short run); evaluation scores every valid pixel, wall
included.

    python benchmarks/results_table.py                               # 200 scenes, 128 px
    python benchmarks/results_table.py --scenes 6 --size 32 --steps 3 --out-dir /tmp/rt   # smoke run
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

#: Models in table order: registry name -> row label.
ROWS = {"ddff": "DDFF", "lstm_ddff": "LSTM-DDFF", "recurrent_ae": "recurrent AE",
        "defocusnet": "DefocusNet (PoolNet)", "sdgs": "SDGS (self-supervised)"}
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
        name: registry name.
        train_cmd, eval_cmd: the commands as run (shell-quoted).
        train_s: wall-clock seconds of ``dfdgen train``.
        metrics: ``dfdgen eval``'s metrics (``mse_norm``, ``rms_norm``, ``accuracy``, ...).
    """

    name: str
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


def train_and_eval(name: str, data: Path, runs: Path, steps: int, batch_size: int) -> ModelResult:
    """Train model ``name`` for ``steps`` steps from scratch into ``runs/name``, then evaluate it on the test split."""
    run_dir = runs / name
    shutil.rmtree(run_dir, ignore_errors=True)  # the benchmark's own run: always a fresh one
    run_dir.mkdir(parents=True)
    train_cmd = [_dfdgen(), "train", "--shards", str(data), "--model", name, "--out", str(run_dir),
                 "--max-steps", str(steps), "--seed", "0", "--set", "data.crop=null",
                 "--set", f"data.batch_size={batch_size}", "--set", "data.workers=1",
                 "--set", f"optim.warmup_steps={steps // 10}",
                 "--set", f"train.ckpt_every={steps}", "--set", "train.image_every=0"]
    if MODELS[name].supervised:
        # dfdgen eval scores every valid pixel, the wall included: train on the same pixels.
        train_cmd += ["--set", "model.config.mask_wall=false"]
    train_s = _run(train_cmd, run_dir / "train.log")
    result_json = run_dir / "eval.json"
    eval_cmd = [_dfdgen(), "eval", "--shards", str(data), "--checkpoint", str(run_dir / "ckpt" / "last.pt"),
                "--split", "test", "--workers", "1", "--json", str(result_json)]
    _run(eval_cmd, run_dir / "eval.log")
    metrics = json.loads(result_json.read_text())["metrics"]
    return ModelResult(name, shlex.join(train_cmd), shlex.join(eval_cmd), train_s, metrics)


def format_results(results: list[ModelResult], skipped: list[str], *, scale: str, recipe_line: str,
                   render_cmd: str) -> str:
    """The Markdown of ``docs/RESULTS.md``.

    Args:
        results: the models run, in table order.
        skipped: registry names of the table's models that are not registered.
        scale: one line stating scenes, image size, samples, steps and the machine.
        recipe_line: the recipe's name, overrides and sha256.
        render_cmd: the ``dfdgen render`` command equivalent to the benchmark's
            ``render_dataset`` call (same recipe, same bytes).
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
        lines.append(f"| {ROWS[r.name]} (`{r.name}`) | {m['mse_norm']:.2e} | {m['rms_norm']:.3f} | "
                     f"{m['accuracy']:.2f} | {m['abs_rel']:.3f} | {m['delta1']:.3f} | {r.train_s:.0f} |")
    lines += ["", "Published synthetic test numbers (the video depth-from-defocus work, its full scale):", "",
              "| model | MSE | RMS | accuracy % |", "|---|---|---|---|"]
    lines += [f"| {label} | {mse:.1e} | {rms:.3f} | {acc:.2f} |" for label, (mse, rms, acc) in PUBLISHED.items()]
    lines += ["", "The small+large row is not reproduced here (this benchmark renders small_obj only)."]
    if skipped:
        lines += [""] + [f"- `{name}` skipped: not registered in `dfd_models.networks.MODELS`." for name in skipped]
    lines += ["", "## Data", "", recipe_line, "Rendered in-process by `generator.pipeline.render_dataset`; "
              "the equivalent command (same recipe, same bytes):", "", "```", render_cmd, "```", "",
              "## Commands", ""]
    for r in results:
        lines += [f"`{r.name}`:", "", "```", r.train_cmd, r.eval_cmd, "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=200, help="scenes rendered (train + test)")
    parser.add_argument("--size", type=int, default=128, help="image width and height, pixels")
    parser.add_argument("--samples", type=int, default=16, help="Cycles samples per pixel")
    parser.add_argument("--steps", type=int, default=2000, help="training steps per model")
    parser.add_argument("--batch-size", type=int, default=8, help="stacks per training batch")
    parser.add_argument("--render-workers", type=int, default=2, help="Blender worker processes")
    parser.add_argument("--out-dir", type=Path, default=Path("runs/results_table"), help="data and runs go here")
    parser.add_argument("--results", type=Path, default=Path("docs/RESULTS.md"), help="the Markdown written")
    args = parser.parse_args(argv)

    overrides = recipe_overrides(args.scenes, args.size, args.samples)
    recipe = load_recipe("small_obj", overrides)
    data = args.out_dir / "data"
    start = time.perf_counter()
    print(render_dataset(recipe, data, workers=args.render_workers).line(), flush=True)
    render_s = time.perf_counter() - start

    results, skipped = [], []
    for name in ROWS:
        if name not in MODELS:
            print(f"skip {name}: not registered", flush=True)
            skipped.append(name)
            continue
        results.append(train_and_eval(name, data, args.out_dir / "runs", args.steps, args.batch_size))
        print(f"{name}: {json.dumps({k: results[-1].metrics[k] for k in ('mse_norm', 'rms_norm', 'accuracy')})}")

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    scale = (f"{args.scenes} scenes ({round(args.scenes * (1 - TEST_SHARE))} train / {round(args.scenes * TEST_SHARE)} "
             f"test, as split by the recipe), {args.size}x{args.size} px, {FRAMES} frames per stack, "
             f"{args.samples} Cycles samples; {args.steps} training steps of batch {args.batch_size} per model on "
             f"{device}, {platform.machine()}; dataset render {render_s:.0f} s. The published numbers come from "
             f"256x256 crops of a far larger dataset and far longer training: this reduced run is a smoke-level "
             f"comparison, not a reproduction.")
    recipe_line = f"Recipe `small_obj` with `{' '.join(overrides)}`, sha256 `{recipe.sha256}`."
    render_cmd = shlex.join([_dfdgen(), "render", "--recipe", "small_obj", "--out", str(data),
                             "--workers", str(args.render_workers)]
                            + [a for o in overrides for a in ("--set", o)])
    text = format_results(results, skipped, scale=scale, recipe_line=recipe_line, render_cmd=render_cmd)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(text)
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
