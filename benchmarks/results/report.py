"""The results page: Markdown tables of each draw, the claims that survive the spread between draws, the
choices made on validation, the ablations, the published numbers, a figure of test stacks and the
provenance (scale, machine, commit, recipes and every command, quoted without this machine's paths)."""

from __future__ import annotations

import os
import platform
import re
import shlex
import subprocess
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dfd_models.config import HIGHER_IS_BETTER
from dfd_models.networks import MODELS
from generator.dataset.format import read_manifest

from .experiments import (
    ALL_PIXEL_REFERENCE, BLUR_SCALES_PX, DRAWS, FIGURE_STACKS, FRAMES, OBJECT_REFERENCE, PUBLISHED, PUBLISHED_FOD,
    RESULT_PAGES, SELECT_ON, SPLITS, VALIDATIONS, Settings,
)
from .runner import Dataset, Rendering, RowResult, dfdgen_path

#: The table's metric columns: (region, metric, digits, heading).
COLUMNS = [("objects", "abs_rel", 3, "objects AbsRel"), ("objects", "delta1", 3, "objects delta1"),
           ("objects", "inv_mae", 3, "objects InvMAE 1/m"), ("objects", "pearson", 2, "objects Pearson"),
           ("all", "abs_rel", 3, "all AbsRel"), ("all", "delta1", 3, "all delta1"),
           ("all", "rms_norm", 3, "all RMS (norm.)"), ("all", "accuracy", 2, "all accuracy %")]

#: The claims checked per trainable row: (reference run, region, metric).
CLAIMS = [(ALL_PIXEL_REFERENCE, "all", "abs_rel"), (ALL_PIXEL_REFERENCE, "all", "delta1"),
          (OBJECT_REFERENCE, "objects", "abs_rel"), (OBJECT_REFERENCE, "objects", "delta1"),
          (OBJECT_REFERENCE, "objects", "pearson")]

#: The caveat of a page whose learning rates were not searched on validation (no ``--lr-grid``).
FIXED_LR_CAVEAT = ("The learning rates were not searched on validation in this run (`--lr-grid` was not given): "
                   "they were fixed in earlier trial runs whose test split holds these same test scenes (a "
                   "scene's split is drawn from one uniform number, so carving validation out of train kept "
                   "every test scene), so they may favour this test split. Every other choice was made on "
                   "validation.")


def portable(text: str, out_dir: Path) -> str:
    """``text`` without this machine's paths, so a page's commands can be pasted anywhere: the ``dfdgen``
    beside this Python as ``dfdgen``, paths under ``out_dir`` relative to it, ``out_dir`` itself as ``OUT``."""
    text = text.replace(dfdgen_path(), "dfdgen")
    for base in sorted({str(out_dir.resolve()), str(out_dir)}, key=len, reverse=True):
        # Only the folder itself or a path under it: a sibling such as ``OUT_pages`` keeps its name.
        text = re.sub(re.escape(base) + r"(/|(?![\w-]|\.\w))", lambda m: "" if m.group(1) else "OUT", text)
    return text


def _mean(values: list[float]) -> float:
    """The mean of the values that are not NaN (NaN where none is)."""
    values = [v for v in values if v == v]
    return sum(values) / len(values) if values else float("nan")


def _stat(values: list[float], digits: int) -> str:
    """One value, or the mean ± half the range of several."""
    values = [v for v in values if v == v]
    if not values:
        return "-"
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {(max(values) - min(values)) / 2:.{digits}f}"


def _table(results: list[RowResult], source: str = "test") -> list[str]:
    """A Markdown table: a row per result, its metrics on ``source`` (``test`` or ``val``; mean ± half
    the range where a row has several training seeds), the chosen learning rate and step, wall time (s)."""
    lines = ["| model | " + " | ".join(c[3] for c in COLUMNS) + " | seeds | lr, step | train s |",
             "|---|" + "---|" * (len(COLUMNS) + 3)]
    for r in results:
        cells = [_stat(getattr(r, source)(region, metric), digits) for region, metric, digits, _ in COLUMNS]
        chosen = "-" if r.chosen.lr is None else f"{r.chosen.lr:g}, {r.chosen.step}"
        lines.append(f"| {r.row.label} (`{r.row.run}`) | " + " | ".join(cells)
                     + f" | {len(r.seeds)} | {chosen} | {r.train_s:.0f} |")
    return lines


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


def ablation_verdict(gap: float, spread: float) -> str:
    """What an ablation row says of the part it removes: ``gap`` is how much worse the ablation
    scores than the full model (> 0: worse), ``spread`` the full model's range over training seeds
    (NaN: one seed). Beyond the spread either way it "helps" or "hurts"; within it, neither."""
    if spread != spread:
        return "not judged (one training seed: no spread)"
    if gap > spread:
        return "helps"
    if -gap > spread:
        return "hurts: the model scores better without it"
    return "does not change the score measurably"


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
            lines.append(f"- `{r.row.run}`: validation {region} {metric} {_mean(r.val(region, metric)):.3f} "
                         f"against the full model's {_stat(full_values, 3)} (range {spread:.3f} over training "
                         f"seeds): what it removes {ablation_verdict(gap, spread)}.")
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


def git_commit() -> str:
    """The repository's commit (``+dirty`` with uncommitted changes), or ``unknown``."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def recipe_line(dataset: Dataset) -> str:
    """The page's line of one dataset: its recipe, overrides and the recipe's sha256."""
    return f"Recipe `{dataset.name}` with `{' '.join(dataset.sets)}`, sha256 `{dataset.recipe.sha256}`."


def render_command(dataset: Dataset, workers: int) -> str:
    """The ``dfdgen render`` command that writes the same bytes as the benchmark's render of ``dataset``."""
    return shlex.join([dfdgen_path(), "render", "--recipe", dataset.name, "--out", str(dataset.path),
                       "--workers", str(workers)] + [a for o in dataset.sets for a in ("--set", o)])


def scale_line(settings: Settings, rendering: Rendering, draws: list[dict[str, RowResult]],
               ablations: list[list[RowResult]], commit: str, command: list[str]) -> str:
    """The page's **Scale** line: the data (split counts per draw), the training budget and what the
    supervised networks were given, the machine, the wall time (s), the commit and the benchmark's
    ``command`` line (its arguments)."""
    s = settings
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    large = (f" plus {s.large_scenes} large_obj scenes (same split) for the small+large row"
             if ("large_obj", 0) in rendering.datasets else "")
    wall = sum(r.train_s for d in draws for r in d.values()) + sum(r.train_s for g in ablations for r in g[1:])
    counts = []
    for seed in list(DRAWS)[:s.draws]:
        manifest = read_manifest(rendering.datasets[s.recipe, seed].path)
        counts.append(" / ".join(str(sum(m["samples"] for m in manifest["shards"] if m["split"] == split))
                                 for split in SPLITS))
    order = ("drawn at random per scene" if rendering.datasets[s.recipe, 0].recipe.splits.order in (None, "random")
             else "by scene index")
    lr_line = (f"the supervised rows' learning rate chosen on validation among "
               f"{', '.join(f'{lr:g}' for lr in s.lr_grid)}, {s.sdgs_lr:g} for the self-supervised rows"
               if s.lr_grid else
               f"peak learning rate {s.lr:g} ({s.sdgs_lr:g} for the self-supervised rows"
               f"{''.join(f', {r.row.lr:g} for {r.row.run}' for r in draws[0].values() if r.row.lr)}), fixed "
               "before these runs")
    return (f"{s.draws} draw{'s' if s.draws > 1 else ''} of {s.scenes} {s.recipe} scenes "
            f"(train / val / test: {'; '.join(counts)}; splits {order}){large}, {s.size}x{s.size} px, "
            f"{FRAMES} frames per stack, {s.samples} Cycles samples; {s.steps} training steps "
            f"({s.sdgs_steps} for the self-supervised rows, {s.seeds} training seeds each on the first draw) "
            f"of batch {s.batch_size} (AdamW, cosine, {lr_line}) on random {s.crop}x{s.crop} crops "
            f"(the supervised networks on {s.regions} regions"
            f"{f', wall weight {s.wall_weight:g}' if s.wall_weight is not None else ''}"
            f"{', starting at the all-pixel constant' if s.init_at_constant else ''}"
            f"{f', depth_space {s.depth_space}' if s.depth_space else ''}"
            f"{f', blur features {BLUR_SCALES_PX} px as extra input' if s.blur_features else ''}), "
            f"evaluated on full {s.size}x{s.size} frames; on {device}, {platform.machine()}; training "
            f"and fitting {wall:.0f} s in all, dataset render {rendering.seconds:.0f} s ({rendering.reused} scenes "
            f"reused from an earlier run); dfdgen commit {commit}. "
            f"Command: `python benchmarks/results_table.py {shlex.join(command)}`. "
            f"Published numbers come from far larger datasets, 256 px and far longer training: this reduced run "
            f"compares the models with each other and with the references on dfdgen data.")


def ablation_scale(settings: Settings) -> str:
    """The ablation's budget, as its sections state it."""
    s = settings
    return (f"{s.ablation_steps} training steps each, batch {s.batch_size}, {s.crop}x{s.crop} crops, "
            f"{s.seeds} training seeds")
