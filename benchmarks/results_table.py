"""The results table (issues 6 and 14): every depth model beside the reference predictors, on one split.

Renders a reduced-scale dataset of ``--recipe`` (``small_obj``, the thesis's
setting, or ``fod500``, DefocusNet's; reused when ``OUT/data`` already holds the
same recipe: the generator resumes), fits the two reference predictors
(``constant``: the training split's median depth; ``dff``: classical depth from
focus) and trains every network with one ``dfdgen train`` command each, evaluates
each with ``dfdgen eval --json`` on the test split, and writes ``--results``:

- the main table: every row scored on two regions, ``objects`` (valid pixels off
  the background wall) and ``all`` (every valid pixel), so a model that only
  learns the wall cannot hide behind it; AbsRel, delta1, the error of inverse depth
  and the Pearson correlation of depth with the truth on objects; AbsRel, delta1
  and the normalised RMS of the published DDFF table on all pixels;
- the published synthetic numbers (video depth-from-defocus work; DEReD and
  DefocusNet on DefocusNet's data for ``fod500``);
- an ablation of ``sdgs``: each of its design choices removed in turn (same data,
  steps, batch and crop);
- a PNG figure (``--figure``) of a few test stacks: input frame, true depth and
  every model's depth on one colour scale;
- the budget (scenes, size, samples, steps, wall time, machine), the recipe
  sha256 and every command.

The recipe gets one ramp of 5 frames per scene, ``--size`` square images,
``--samples`` Cycles samples and an 80 / 20 train / test split. Networks train on
random ``--crop`` crops with random flips, their default configs and a warmup of a
tenth of the steps; the supervised ones leave the wall out of their loss (config
``mask_wall``, as the thesis trained them) unless ``--no-mask-wall``. With
``--large-scenes N`` (``small_obj`` only) ``large_obj`` is rendered with the same
overrides and the recurrent AE trains once more on small+large (the published
fourth row), evaluated on the same small_obj test split.

    python benchmarks/results_table.py                               # 160 scenes, 64 px, 800 steps
    python benchmarks/results_table.py --scenes 6 --large-scenes 0 --size 32 --crop 32 --steps 3 \
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
from dfd_models.networks.supervised import DEPTH_SPACES
from generator.format import read_manifest
from generator.pipeline import render_dataset
from generator.recipe import load_recipe


@dataclass(frozen=True)
class Row:
    """One row: a model trained on the recipe's data (or on small+large, ``large``), its config
    updated with ``config`` (``model.config`` keys), at peak learning rate ``lr`` (None: the
    command's ``--lr``, or ``--sdgs-lr`` for sdgs)."""

    model: str
    label: str
    large: bool = False
    config: tuple[tuple[str, object], ...] = ()
    run_name: str | None = None
    lr: float | None = None

    @property
    def sets(self) -> list[str]:
        """The ``--set`` overrides of ``config``."""
        return [f"model.config.{key}={value}" for key, value in self.config]

    @property
    def run(self) -> str:
        """Run directory name under ``OUT/runs``."""
        return self.run_name or (f"{self.model}+large" if self.large else self.model)


#: The blur features' scales (px) of the defocusnet-blur row and of ``--blur-features``.
BLUR_SCALES_PX = [0.5, 1.0, 2.0, 4.0]

#: The results page of each recipe the benchmark is run on (docs/).
RESULT_PAGES = {"small_obj": "RESULTS.md", "fod500": "RESULTS_fod500.md"}

#: Reference predictors: no trainable parameters. Every table shows them.
REFERENCES = [Row("constant", "constant (training median)"), Row("dff", "classical depth from focus"),
              Row("dfd_sweep", "depth from defocus by re-rendering sweep (sdgs's teacher)")]
#: Rows in table order.
ROWS = REFERENCES + [
    # recurrent_ae at 1e-3: at 3e-4 it stayed near the objects' mean depth (object delta1 0.35), while ddff
    # at 1e-3 stalled on a constant; each row keeps the rate at which it learned in a trial run.
    Row("ddff", "DDFF"), Row("lstm_ddff", "LSTM-DDFF"), Row("recurrent_ae", "recurrent AE", lr=1e-3),
    Row("recurrent_ae", "recurrent AE, small+large objects", large=True, lr=1e-3),
    # defocusnet at 1e-3 too: at 3e-4 it learned no depth in 1500 steps on fod500 even with blur features
    Row("defocusnet", "DefocusNet (PoolNet)", lr=1e-3),
    # the paper's PoolNet learns no CoC from raw RGB at this budget (its CoC stage collapses to a
    # constant); given the parameter-free blur features sdgs's DefocusNet uses, it does
    Row("defocusnet", "DefocusNet (PoolNet) + blur features", run_name="defocusnet-blur", lr=1e-3,
        config=(("coc_channels", [16, 32, 64]), ("depth_channels", [16, 32, 64]),
                ("blur_scales_px", BLUR_SCALES_PX))),
    Row("sdgs", "SDGS (self-supervised)"),
]
#: sdgs with one design choice removed each (dfd_models/networks/sdgs.py), same budget as ``sdgs``.
ABLATIONS = [
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
#: Share of the scenes in the test split (the rest train).
TEST_SHARE = 0.2
#: Test stacks drawn in the figure.
FIGURE_STACKS = 4


@dataclass
class ModelResult:
    """One model's run.

    Attributes:
        row: the table row run.
        train_cmd, eval_cmd: the commands as run (shell-quoted).
        train_s: wall-clock seconds of ``dfdgen train`` (fitting, for the references).
        regions: ``dfdgen eval``'s metrics per region (``all``, ``objects``; None if absent).
        checkpoint: the checkpoint evaluated.
    """

    row: Row
    train_cmd: str
    eval_cmd: str
    train_s: float
    regions: dict
    checkpoint: Path = field(default=Path())


def recipe_overrides(recipe: str, scenes: int, size: int, samples: int) -> list[str]:
    """``--set`` overrides of ``recipe`` for the benchmark's dataset (fod500 keeps its 5-frame list)."""
    ramp = [] if recipe == "fod500" else ["focus.ramps=1", f"focus.frames_per_ramp={FRAMES}"]
    return [f"count={scenes}", f"image.width={size}", f"image.height={size}", f"image.samples={samples}",
            *ramp, f"splits.train={1 - TEST_SHARE}", "splits.val=0.0", f"splits.test={TEST_SHARE}"]  # order kept


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


def train_and_eval(row: Row, train_data: str, test_data: Path, runs: Path, *, steps: int, batch_size: int,
                   crop: int, lr: float, mask_wall: bool, depth_space: str | None = None,
                   blur_scales_px: list[float] | None = None, reuse: bool = False) -> ModelResult:
    """Train (or fit) ``row``'s model from scratch on ``train_data`` (a directory, or ``::``-joined
    directories) into ``runs/row.run``, then evaluate it on ``test_data``'s test split. Supervised
    rows get config ``mask_wall`` and, unless None (the model's default), ``depth_space`` and
    ``blur_scales_px`` (the row's own config comes after, so it wins).

    With ``reuse``, a run directory that finished the same train command before (its
    ``done.json``) is not trained again: its evaluation and wall time are read back.
    """
    run_dir = runs / row.run
    train_cmd = [_dfdgen(), "train", "--shards", train_data, "--model", row.model, "--out", str(run_dir),
                 "--max-steps", str(steps), "--seed", "0"]
    if MODELS[row.model].trainable:
        train_cmd += ["--set", f"data.crop=[{crop}, {crop}]", "--set", f"data.batch_size={batch_size}",
                      "--set", "data.workers=1", "--set", f"optim.lr={lr:g}",
                      "--set", f"optim.warmup_steps={steps // 10}",
                      "--set", f"train.ckpt_every={steps}", "--set", "train.image_every=0"]
        if MODELS[row.model].supervised:
            train_cmd += ["--set", f"model.config.mask_wall={str(mask_wall).lower()}"]
            if depth_space is not None:
                train_cmd += ["--set", f"model.config.depth_space={depth_space}"]
            if blur_scales_px is not None:
                train_cmd += ["--set", f"model.config.blur_scales_px={blur_scales_px}"]
    for override in row.sets:
        train_cmd += ["--set", override]
    result_json, checkpoint, done = run_dir / "eval.json", run_dir / "ckpt" / "last.pt", run_dir / "done.json"
    if reuse and done.is_file() and json.loads(done.read_text()).get("train_cmd") == train_cmd:
        record = json.loads(done.read_text())
        print(f"{row.run}: reused (same command, {record['train_s']:.0f} s when run)", flush=True)
        return ModelResult(row, shlex.join(train_cmd), record["eval_cmd"], record["train_s"],
                           json.loads(result_json.read_text())["regions"], checkpoint)
    shutil.rmtree(run_dir, ignore_errors=True)  # the benchmark's own run: always a fresh one
    run_dir.mkdir(parents=True)
    train_s = _run(train_cmd, run_dir / "train.log")
    eval_cmd = [_dfdgen(), "eval", "--shards", str(test_data), "--checkpoint", str(checkpoint),
                "--split", "test", "--workers", "1", "--json", str(result_json)]
    _run(eval_cmd, run_dir / "eval.log")
    regions = json.loads(result_json.read_text())["regions"]
    done.write_text(json.dumps({"train_cmd": train_cmd, "eval_cmd": shlex.join(eval_cmd), "train_s": train_s}))
    return ModelResult(row, shlex.join(train_cmd), shlex.join(eval_cmd), train_s, regions, checkpoint)


def _cells(regions: dict) -> str:
    """The metric cells of one row: objects AbsRel, delta1, InvMAE, Pearson | all AbsRel, delta1, RMS_norm, acc."""
    objects, every = regions.get("objects"), regions["all"]
    obj = ("- | " * 4) if objects is None else (
        f"{objects['abs_rel']:.3f} | {objects['delta1']:.3f} | {objects['inv_mae']:.3f} | {objects['pearson']:.2f} | ")
    return (obj + f"{every['abs_rel']:.3f} | {every['delta1']:.3f} | {every.get('rms_norm', float('nan')):.3f} | "
            f"{every['accuracy']:.2f}")


_HEADER = ["| model | objects AbsRel | objects delta1 | objects InvMAE 1/m | objects Pearson | "
           "all AbsRel | all delta1 | all RMS (norm.) | all accuracy % | train s |",
           "|---|---|---|---|---|---|---|---|---|---|"]


def format_results(results: list[ModelResult], skipped: list[str], *, recipe: str, scale: str, recipe_line: str,
                   render_cmd: str, ablations: list[ModelResult] = (), ablation_scale: str = "",
                   figure: str | None = None) -> str:
    """The Markdown of the results page.

    Args:
        results: the rows run, in table order (references first).
        skipped: one line per row not run, saying why.
        recipe: the recipe's name (the page's title and published numbers follow it).
        scale: one line stating scenes, image size, samples, steps, the machine and the commit.
        recipe_line: the recipes' names, overrides and sha256.
        render_cmd: the ``dfdgen render`` commands equivalent to the benchmark's
            ``render_dataset`` calls (same recipes, same bytes), one per line.
        ablations: the sdgs ablation's rows: the full model at the ablation's budget first,
            then each variant.
        ablation_scale: the ablation's budget.
        figure: file name of the figure, relative to the page.
    """
    lines = [
        f"# Results: depth models on {recipe} (synthetic)",
        "",
        "Produced by `benchmarks/results_table.py`. **Scale:** " + scale,
        "",
        f"Pages: {' and '.join(f'[{name}]({page})' for name, page in RESULT_PAGES.items())}.",
        "",
        "Every row is scored on the test split over two regions: **objects** (valid pixels that are not the "
        "background wall) and **all** valid pixels. The wall fills most of the frame, so a constant depth "
        "scores well on *all* and not at all on *objects*: a row is a result only where it beats both "
        "reference predictors, `constant` (the training split's median depth) and `dff` (classical depth "
        "from focus: energy of the Laplacian, sharpest frame, parabola in diopters; no learning), on objects. "
        "AbsRel = mean |p - g| / g; delta1 = share of pixels with max(p/g, g/p) < 1.25; InvMAE = mean "
        "|1/p - 1/g| (1/m; defocus is linear in 1/z); Pearson = correlation of predicted and true depth "
        "pooled over the region's pixels; RMS (norm.) = RMS of depth normalised by the recipe's farthest "
        "wall and accuracy = 100 delta1, as in the DDFF / LSTM-DDFF / recurrent-AE table. "
        "`dff` and `constant` have no training steps; `sdgs` never reads depth or an all-in-focus image.",
        "",
        *_HEADER,
    ]
    for r in results:
        lines.append(f"| {r.row.label} (`{r.row.run}`) | {_cells(r.regions)} | {r.train_s:.0f} |")
    if skipped:
        lines += [""] + [f"- {line}" for line in skipped]
    lines.append("")
    if figure:
        lines += [f"![input frame, true depth and each model's depth]({figure})", "",
                  f"`{figure}`: test stacks, one per row: the frame focused nearest (sRGB), the true depth, then "
                  f"the depth of {', '.join(f'`{r.row.run}`' for r in results)}, left to right, all on one colour "
                  "scale per row (viridis from the stack's nearest to its farthest true depth: near = dark; "
                  "invalid = black).", ""]
    if ablations:
        lines += ["## Ablation of sdgs", "", "The first row is `sdgs` as built; each other row removes one of its "
                  f"design choices (`dfd_models/networks/sdgs.py`); same data and budget ({ablation_scale}).", "",
                  *_HEADER]
        lines += [f"| {r.row.label} (`{r.row.run}`) | {_cells(r.regions)} | {r.train_s:.0f} |" for r in ablations]
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
    lines += ["", "## Data", "", recipe_line, "Rendered in-process by `generator.pipeline.render_dataset`; "
              "the equivalent commands (same recipes, same bytes):", "", "```", render_cmd, "```", "",
              "## Commands", ""]
    for r in [*results, *ablations]:
        lines += [f"`{r.row.run}`:", "", "```", r.train_cmd, r.eval_cmd, "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_figure(results: list[ModelResult], data: Path, path: Path, stacks: int = FIGURE_STACKS) -> None:
    """A PNG grid, one test stack per row: input frame (nearest focus), true depth, each model's depth.

    Depth is coloured on one scale per row, from the nearest to the farthest true depth of that stack.
    """
    from dfd_models.checkpoint import load_model
    from dfd_models.data import DataSection, make_loader, resolve_shards
    from dfd_models.evaluate import predict_depth
    from dfd_models.networks import lens_from_batch
    from generator.inspect import colorize
    from generator.codec import linear_to_srgb

    loader = make_loader(DataSection.for_eval(resolve_shards(data, "test"), split=None, batch_size=stacks),
                         rank=0, world_size=1)
    batch = next(iter(loader))
    models = [load_model(r.checkpoint)[0] for r in results]
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
    parser.add_argument("--scenes", type=int, default=160, help="scenes rendered (train + test)")
    parser.add_argument("--large-scenes", type=int, default=0,
                        help="large_obj scenes rendered for the small+large row (small_obj only; 0: no such row)")
    parser.add_argument("--size", type=int, default=64, help="image width and height, pixels")
    parser.add_argument("--crop", type=int, default=32, help="training crop width and height, pixels")
    parser.add_argument("--samples", type=int, default=64, help="Cycles samples per pixel")
    parser.add_argument("--steps", type=int, default=800, help="training steps per network")
    parser.add_argument("--sdgs-steps", type=int, default=None,
                        help="training steps of sdgs (default --steps; a step re-renders every frame, 10-20x "
                             "the cost of a supervised step on the CPU)")
    parser.add_argument("--ablation-steps", type=int, default=None,
                        help="training steps of each sdgs ablation row (default --steps; 0: no ablation)")
    parser.add_argument("--batch-size", type=int, default=4, help="stacks per training batch")
    parser.add_argument("--lr", type=float, default=3e-4, help="peak learning rate of the supervised networks")
    parser.add_argument("--sdgs-lr", type=float, default=1e-3, help="peak learning rate of sdgs")
    parser.add_argument("--no-mask-wall", dest="mask_wall", action="store_false",
                        help="supervised networks also train on the wall (default: masked, as the thesis)")
    parser.add_argument("--depth-space", choices=DEPTH_SPACES, default=None,
                        help="depth map and loss of the supervised networks (default: their config's, linear); "
                             "log suits depth ranges that span decades, as fod500's")
    parser.add_argument("--blur-features", action="store_true",
                        help=f"give every supervised network the blur features (config blur_scales_px="
                             f"{BLUR_SCALES_PX}) as extra input, as the defocusnet-blur row has them")
    parser.add_argument("--models", nargs="+", metavar="RUN", help="only these rows (run names, e.g. ddff "
                        "recurrent_ae+large); the references always run")
    parser.add_argument("--reuse", action="store_true",
                        help="keep rows whose run directory finished the same train command (dfdgen commit aside)")
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
    rows = [row for row in ROWS if row in REFERENCES or args.models is None or row.run in args.models]
    changes = ([f"depth_space {args.depth_space}"] if args.depth_space else []) + (
        ["blur features"] if args.blur_features else [])
    if changes:  # the supervised rows' labels say what they were given beyond their defaults
        rows = [replace(row, label=f"{row.label} ({', '.join(changes)})")
                if MODELS.get(row.model) and MODELS[row.model].supervised and MODELS[row.model].trainable else row
                for row in rows]
    sdgs_steps = args.steps if args.sdgs_steps is None else args.sdgs_steps
    ablation_steps = sdgs_steps if args.ablation_steps is None else args.ablation_steps
    args.results = args.results or Path("docs") / RESULT_PAGES.get(args.recipe, f"RESULTS_{args.recipe}.md")
    figure = args.figure or args.results.parent / f"RESULTS_{args.recipe}.png"

    overrides = recipe_overrides(args.recipe, args.scenes, args.size, args.samples)
    datasets = {args.recipe: (args.out_dir / "data", overrides)}
    if args.recipe == "small_obj" and args.large_scenes and any(row.large for row in rows):
        datasets["large_obj"] = (args.out_dir / "data_large",
                                 recipe_overrides("large_obj", args.large_scenes, args.size, args.samples))
    recipe_lines, render_cmds, reused, recipes = [], [], 0, {}
    start = time.perf_counter()
    for name, (data, sets) in datasets.items():
        recipes[name] = recipe = load_recipe(name, sets)
        summary = render_dataset(recipe, data, workers=args.render_workers)
        print(summary.line(), flush=True)
        reused += summary.skipped
        recipe_lines.append(f"Recipe `{name}` with `{' '.join(sets)}`, sha256 `{recipe.sha256}`.")
        render_cmds.append(shlex.join([_dfdgen(), "render", "--recipe", name, "--out", str(data),
                                       "--workers", str(args.render_workers)] + [a for o in sets for a in ("--set", o)]))
    render_s = time.perf_counter() - start

    main_data = datasets[args.recipe][0]
    results, skipped, ablations = [], [], []

    def run(row: Row, steps: int) -> ModelResult:
        train_data = f"{main_data}::{datasets['large_obj'][0]}" if row.large else str(main_data)
        result = train_and_eval(row, train_data, main_data, args.out_dir / "runs", steps=steps,
                                batch_size=args.batch_size, crop=args.crop,
                                lr=row.lr or (args.sdgs_lr if row.model == "sdgs" else args.lr),
                                mask_wall=args.mask_wall, depth_space=args.depth_space,
                                blur_scales_px=BLUR_SCALES_PX if args.blur_features else None,
                                reuse=args.reuse)
        objects = result.regions.get("objects") or {}
        print(f"{row.run}: objects {json.dumps({k: objects.get(k) for k in ('abs_rel', 'delta1', 'pearson')})}",
              flush=True)
        return result

    for row in rows:
        if row.model not in MODELS:
            skipped.append(f"`{row.run}` skipped: not registered in `dfd_models.networks.MODELS`.")
        elif row.large and "large_obj" not in datasets:
            skipped.append(f"`{row.run}` skipped: no large_obj scenes (--large-scenes 0).")
        else:
            results.append(run(row, sdgs_steps if row.model == "sdgs" else args.steps))
    if ablation_steps and any(r.row.run == "sdgs" for r in results):
        full = next(r for r in results if r.row.run == "sdgs")
        if ablation_steps != sdgs_steps:  # the full model at the ablation's budget, so the rows compare
            full = run(Row("sdgs", "sdgs, as built", run_name=f"sdgs-{ablation_steps}steps"), ablation_steps)
        ablations = [full] + [run(row, ablation_steps) for row in ABLATIONS]
    write_figure(results, main_data, figure)

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    large = f" plus {args.large_scenes} large_obj scenes (same split) for the small+large row" if len(datasets) > 1 else ""
    wall = sum(r.train_s for r in [*results, *ablations])
    manifest = read_manifest(main_data)
    per_split = {split: sum(s["samples"] for s in manifest["shards"] if s["split"] == split) for split in ("train", "test")}
    order = "drawn at random per scene" if recipes[args.recipe].splits.order in (None, "random") else "by scene index, train first"
    scale = (f"{args.scenes} {args.recipe} scenes ({per_split['train']} train / {per_split['test']} test, splits "
             f"{order}){large}, {args.size}x{args.size} px, "
             f"{FRAMES} frames per stack, {args.samples} Cycles samples; {args.steps} training steps ({sdgs_steps} for sdgs) of batch "
             f"{args.batch_size} (AdamW, cosine, peak learning rate {args.lr:g}; {args.sdgs_lr:g} for sdgs"
             f"{''.join(f', {r.row.lr:g} for {r.row.run}' for r in results if r.row.lr)}) random "
             f"{args.crop}x{args.crop} crops per network (the supervised ones with the wall "
             f"{'left out of' if args.mask_wall else 'in'} their loss"
             f"{f', depth_space {args.depth_space}' if args.depth_space else ''}"
             f"{f', blur features {BLUR_SCALES_PX} px as extra input' if args.blur_features else ''}), "
             f"evaluated on full "
             f"{args.size}x{args.size} test frames; on {device}, {platform.machine()}; training and fitting "
             f"{wall:.0f} s in all, dataset render {render_s:.0f} s ({reused} scenes reused from an earlier run); "
             f"dfdgen commit {_commit()}. "
             f"Command: `python benchmarks/results_table.py {shlex.join(sys.argv[1:] if argv is None else argv)}`. "
             f"Published numbers come from far larger datasets, 256 px and far longer training: this reduced run "
             f"compares the models with each other and with the references on dfdgen data.")
    text = format_results(results, skipped, recipe=args.recipe, scale=scale, recipe_line="\n\n".join(recipe_lines),
                          render_cmd="\n".join(render_cmds), ablations=ablations,
                          ablation_scale=f"{ablation_steps} training steps each, batch {args.batch_size}, "
                                         f"{args.crop}x{args.crop} crops",
                          figure=os.path.relpath(figure, args.results.parent))
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(portable(text, args.out_dir))
    print(f"wrote {args.results} and {figure}")


if __name__ == "__main__":
    main()
