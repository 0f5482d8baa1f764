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

This file is the command line; ``benchmarks/results/`` does the work: ``experiments`` (the rows and
settings, as data), ``runner`` (rendering, ``dfdgen train`` / ``eval`` subprocesses, choices on
validation) and ``report`` (the page, its figure and provenance).

    python benchmarks/results_table.py                               # small_obj, 160 scenes, 64 px
    python benchmarks/results_table.py --scenes 10 --size 32 --crop 32 --steps 4 --sdgs-steps 2 \
        --ablation-steps 2 --out-dir /tmp/rt                         # smoke run
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields
from pathlib import Path

from dfd_models.networks.supervised import DEPTH_SPACES, REGIONS
from results.experiments import ABLATIONS, BLUR_SCALES_PX, RESULT_PAGES, ROWS, Settings, table_rows
from results.report import (
    FIXED_LR_CAVEAT, ablation_scale, format_results, git_commit, portable, recipe_line, render_command, scale_line,
    write_figure,
)
from results.runner import Benchmark, render_draws

DEFAULTS = Settings()


def _parser() -> argparse.ArgumentParser:
    """The command line; the options that are :class:`Settings` fields share their names and defaults."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", choices=("small_obj", "fod500"), default=DEFAULTS.recipe,
                        help="the dataset's recipe")
    parser.add_argument("--scenes", type=int, default=DEFAULTS.scenes,
                        help="scenes rendered per draw (train + val + test)")
    parser.add_argument("--large-scenes", type=int, default=DEFAULTS.large_scenes,
                        help="large_obj scenes rendered for the small+large row (small_obj only; 0: no such row)")
    parser.add_argument("--size", type=int, default=DEFAULTS.size, help="image width and height, pixels")
    parser.add_argument("--crop", type=int, default=DEFAULTS.crop, help="training crop width and height, pixels")
    parser.add_argument("--samples", type=int, default=DEFAULTS.samples, help="Cycles samples per pixel")
    parser.add_argument("--steps", type=int, default=DEFAULTS.steps, help="training steps per supervised network")
    parser.add_argument("--sdgs-steps", type=int, default=None,
                        help="training steps of the self-supervised models (default --steps; a step re-renders "
                             "every frame, 10-20x the cost of a supervised step on the CPU)")
    parser.add_argument("--ablation-steps", type=int, default=None,
                        help="training steps of each sdgs ablation row (default --sdgs-steps; 0: no ablation)")
    parser.add_argument("--ablations", nargs="+", metavar="RUN", default=None,
                        help=f"only these ablation rows (default: all; {', '.join(r.run for r in ABLATIONS)})")
    parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="stacks per training batch")
    parser.add_argument("--lr", type=float, default=DEFAULTS.lr,
                        help="peak learning rate of the supervised networks")
    parser.add_argument("--sdgs-lr", type=float, default=DEFAULTS.sdgs_lr,
                        help="peak learning rate of the self-supervised ones")
    parser.add_argument("--lr-grid", type=float, nargs="+", default=None, metavar="LR",
                        help="candidate peak learning rates of every supervised row, chosen on validation "
                             "(default: the row's one rate; the self-supervised rows keep --sdgs-lr)")
    parser.add_argument("--seeds", type=int, default=DEFAULTS.seeds,
                        help="training seeds of the self-supervised rows and the ablation (their spread is shown)")
    parser.add_argument("--draws", type=int, choices=(1, 2), default=DEFAULTS.draws,
                        help="draws of the data (2: the main rows again on a dataset of recipe seed 1)")
    parser.add_argument("--regions", choices=REGIONS, default=DEFAULTS.regions,
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
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
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
    settings = Settings(**{f.name: getattr(args, f.name) for f in fields(Settings)})
    rows = table_rows(settings, args.models)
    ablation_rows = [row for row in ABLATIONS if args.ablations is None or row.run in args.ablations]
    results = args.results or Path("docs") / RESULT_PAGES.get(settings.recipe, f"RESULTS_{settings.recipe}.md")
    figure = args.figure or results.parent / f"RESULTS_{settings.recipe}.png"

    commit = git_commit()  # before anything here is written (the figure is tracked)
    rendering = render_draws(settings, args.out_dir, rows, workers=args.render_workers)
    bench = Benchmark(settings, rendering, args.out_dir, reuse=args.reuse)
    draws, skipped = bench.run_draws(rows)
    ablations = bench.run_ablations(ablation_rows, draws[0])
    write_figure(list(draws[0].values()), bench.data(0), figure)

    datasets = rendering.datasets.values()
    text = format_results(
        draws, skipped, recipe=settings.recipe,
        scale=scale_line(settings, rendering, draws, ablations, commit, sys.argv[1:] if argv is None else argv),
        recipe_line="\n\n".join(recipe_line(d) for d in datasets),
        render_cmd="\n".join(render_command(d, rendering.workers) for d in datasets),
        ablations=ablations, ablation_scale=ablation_scale(settings),
        figure=os.path.relpath(figure, results.parent), caveats=[] if settings.lr_grid else [FIXED_LR_CAVEAT])
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(portable(text, args.out_dir))
    print(f"wrote {results} and {figure}")


if __name__ == "__main__":
    main()
