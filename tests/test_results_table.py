"""benchmarks/results_table.py's experiment list, choices and Markdown (no rendering or training)."""

from __future__ import annotations

import importlib
import json
import shlex
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def results(torch):
    """The benchmark's package ``benchmarks/results``, imported as ``benchmarks/results_table.py`` imports it:
    from its folder (it imports dfd_models.networks, so torch)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
        for name in ("results.experiments", "results.runner", "results.report", "results_table"):
            importlib.import_module(name)
        return importlib.import_module("results")


@pytest.fixture(scope="module")
def experiments(results):
    return results.experiments


@pytest.fixture(scope="module")
def runner(results):
    return results.runner


@pytest.fixture(scope="module")
def report(results):
    return results.report


@pytest.fixture(scope="module")
def entry(results):
    """``benchmarks/results_table.py``, the command line."""
    return importlib.import_module("results_table")


def _regions(abs_rel: float, all_delta1: float = 0.915, objects: bool = True) -> dict:
    every = {"abs_rel": abs_rel, "delta1": all_delta1, "rms_norm": 0.0351, "accuracy": 100 * all_delta1,
             "inv_mae": 0.2, "pearson": 0.0}
    return {"all": every, "objects": {**every, "abs_rel": 2 * abs_rel, "delta1": 1 - abs_rel,
                                      "pearson": 1 - 2 * abs_rel} if objects else None}


def _result(runner, row, test: list[dict], val: dict | None = None, lr: float | None = 1e-3,
            candidates: list = ()) -> object:
    """A RowResult of ``row`` with one run per training seed (their ``test`` regions)."""
    runs = [runner.Run(lr, seed, f"dfdgen train --model {row.model} --seed {seed}", 10.0, 40 + seed,
                      val or regions, Path(f"/o/runs/{row.run}/ckpt/best.pt"), regions,
                      f"dfdgen eval --checkpoint {row.run}-{seed}") for seed, regions in enumerate(test)]
    return runner.RowResult(row, list(candidates) or runs[:1], runs)


def _row(experiments, run: str):
    return next(row for row in experiments.ROWS + experiments.ABLATIONS if row.run == run)


def test_page_shows_protocol_both_constants_two_draws_claims_choices_and_ablation(experiments, runner, report):
    const, const_obj, dff = (_row(experiments, name) for name in ("constant", "constant-objects", "dff"))
    ddff, sdgs = _row(experiments, "ddff"), _row(experiments, "sdgs")
    first = {"constant": _result(runner, const, [_regions(0.3, 0.92)], lr=None),
             "constant-objects": _result(runner, const_obj, [_regions(0.9, 0.1)], lr=None),
             "dff": _result(runner, dff, [_regions(0.2, 0.05)], lr=None),
             "ddff": _result(runner, ddff, [_regions(0.05, 0.96)],
                             candidates=[runner.Run(3e-4, 0, "dfdgen train --set optim.lr=0.0003", 5.0, 12,
                                                   _regions(0.2), Path("/o/a.pt"))]),
             "sdgs": _result(runner, sdgs, [_regions(0.1, 0.5), _regions(0.14, 0.5)])}
    second = {"constant": _result(runner, const, [_regions(0.32, 0.9)], lr=None),
              "dff": _result(runner, dff, [_regions(0.24, 0.06)], lr=None),
              "ddff": _result(runner, ddff, [_regions(0.06, 0.95)]),
              "sdgs": _result(runner, sdgs, [_regions(0.3, 0.4)])}
    no_phot = _result(runner, _row(experiments, "sdgs-no_photometric"), [_regions(0.5), _regions(0.52)])
    text = report.format_results([first, second], ["`defocusnet` skipped: why"], recipe="small_obj",
                                scale="3 scenes", recipe_line="sha256 `abc`", render_cmd="dfdgen render",
                                ablations=[[first["sdgs"], no_phot]], ablation_scale="2 steps",
                                figure="RESULTS_small_obj.png")
    assert "**Protocol.**" in text and "60 / 20 / 20" in text and "Test is scored once" in text
    # both constants, the first draw's ddff row with its chosen rate and step, sdgs with its seeds' spread
    assert "| constant (training median, all pixels: the wall's depth) (`constant`) | 0.600 |" in text
    assert "| constant (training median of object pixels) (`constant-objects`) | 1.800 |" in text
    assert "| DDFF (`ddff`) | 0.100 | 0.950 | 0.200 | 0.90 | 0.050 | 0.960 | 0.035 | 96.00 | 1 | 0.001, 40 |" in text
    assert "| SDGS (self-supervised, one frame in) (`sdgs`) | 0.240 ± 0.040 |" in text
    assert "## Second draw (test)" in text and "| DDFF (`ddff`) | 0.120 |" in text
    # claims: ddff beats the all-pixel constant on all pixels and dff on objects beyond the spread; sdgs does not
    claims = text[text.index("## What holds"):text.index("## Choices")]
    ddff_line = next(line for line in claims.splitlines() if line.startswith("| `ddff`"))
    assert ddff_line.count("**yes**") == 5 and ddff_line.endswith("| beats both |"), ddff_line
    assert "| `sdgs` |" in claims and claims.count("not a result") == 1
    # choices: the candidate rates with their validation scores and the step kept
    assert "| `ddff` | 0.0003 -> 0.400 (12) | 0.001 | 40 |" in text
    assert "## Ablation of sdgs (validation)" in text
    assert "`sdgs-no_photometric`: validation objects abs_rel 1.020 against the full model's 0.240 ± 0.040" in text
    assert "helps." in text
    assert "- `defocusnet` skipped: why" in text and "**Scale:** 3 scenes" in text
    for line in ("dfdgen train --model ddff --seed 0", "dfdgen eval --checkpoint sdgs-1", "sha256 `abc`",
                 "dfdgen train --set optim.lr=0.0003", "`ddff`, draw 2:"):
        assert line in text
    fod = report.format_results([{"constant": first["constant"]}], [], recipe="fod500", scale="s",
                               recipe_line="r", render_cmd="c")
    assert "| DEReD (self-supervised; Si et al., CVPR 2023) | 0.746 | 0.351 | 0.177 |" in fod
    assert "| LSTM-DDFF |" not in fod and "Ablation" not in fod and "Second draw" not in fod


def test_better_needs_a_gap_beyond_both_spreads(experiments, runner, report):
    def draws(a: tuple[float, float], b: tuple[float, float]) -> list[dict]:
        row_a, row_b = _row(experiments, "ddff"), _row(experiments, "dff")
        return [{"a": _result(runner, row_a, [_regions(a[i])]), "b": _result(runner, row_b, [_regions(b[i])])}
                for i in range(2)]

    assert report.better(draws((0.10, 0.12), (0.20, 0.22)), "a", "b", "all", "abs_rel") is True
    assert report.better(draws((0.10, 0.30), (0.20, 0.22)), "a", "b", "all", "abs_rel") is False  # a's spread 0.1
    assert report.better(draws((0.20, 0.22), (0.10, 0.12)), "a", "b", "all", "abs_rel") is False
    assert report.better([draws((0.1, 0.1), (0.2, 0.2))[0]] * 2, "a", "missing", "all", "abs_rel") is None


def test_choices_come_from_validation_never_test(runner, tmp_path):
    lines = [{"step": 10, "regions": _regions(0.3)}, {"step": 20, "regions": _regions(0.1)},
             {"step": 30, "regions": _regions(0.1)}, {"step": 40, "regions": _regions(0.2)}]
    (tmp_path / "val.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    assert runner.best_validation(tmp_path) == (20, _regions(0.1))  # the earliest of ties
    (tmp_path / "val.jsonl").write_text("")
    with pytest.raises(RuntimeError, match="no validation"):
        runner.best_validation(tmp_path)
    good_val_bad_test = runner.Run(1e-3, 0, "", 1.0, 5, _regions(0.1), Path("a"), test=_regions(0.9))
    bad_val_good_test = runner.Run(3e-4, 0, "", 1.0, 5, _regions(0.2), Path("b"), test=_regions(0.01))
    assert runner.select([bad_val_good_test, good_val_bad_test]) is good_val_bad_test


def test_an_ablation_is_judged_against_the_full_models_seed_spread_both_ways(report):
    assert report.ablation_verdict(0.05, 0.02) == "helps"
    assert report.ablation_verdict(-0.05, 0.02).startswith("hurts")
    assert report.ablation_verdict(0.01, 0.02) == report.ablation_verdict(-0.01, 0.02) == \
        "does not change the score measurably"
    assert report.ablation_verdict(0.05, float("nan")).startswith("not judged")


def test_every_row_and_ablation_is_a_registered_model_with_valid_overrides(experiments):
    from dfd_models.networks import MODELS

    assert [row.run for row in experiments.REFERENCES] == ["constant", "constant-objects", "dff", "dff-full",
                                                           "dfd_sweep"]
    assert all(not MODELS[row.model].trainable for row in experiments.REFERENCES)
    for row in experiments.ROWS + experiments.ABLATIONS:
        config = MODELS[row.model].resolve_config(dict(row.config))
        assert row.config == () or config != MODELS[row.model].Config(), row.run
        assert row.sets == [f"model.config.{key}={value}" for key, value in row.config]
    assert (len({row.run for row in experiments.ROWS + experiments.ABLATIONS})
            == len(experiments.ROWS + experiments.ABLATIONS))
    assert {row.run for row in experiments.ROWS if row.self_supervised} == {"sdgs", "sdgs_stack"}
    assert experiments.ALL_PIXEL_REFERENCE in {r.run for r in experiments.REFERENCES}


def test_recipe_overrides_load_with_disjoint_splits_and_a_second_draw(experiments):
    from generator.recipe.recipe import load_recipe

    for name in ("small_obj", "large_obj", "fod500"):
        recipe = load_recipe(name, experiments.recipe_overrides(name, 10, 48, 4))
        assert (recipe.count, recipe.image.width, recipe.image.height, recipe.focus.ramps) == (10, 48, 48, 1)
        assert recipe.focus.frames_per_ramp == experiments.FRAMES
        assert (recipe.splits.train, recipe.splits.val, recipe.splits.test) == (0.6, 0.2, 0.2)
    first, second = (load_recipe("small_obj", experiments.recipe_overrides("small_obj", 10, 48, 4, seed))
                     for seed in (0, 1))
    assert (first.seed, second.seed) == (0, 1) and first.sha256 != second.sha256


def test_no_page_quotes_a_machines_absolute_path(report):
    """Pages quote `dfdgen ...` with paths relative to the benchmark's output folder, anyone can paste them."""
    import re

    docs = Path(__file__).parents[1] / "docs"
    for page in docs.glob("*.md"):
        found = re.findall(r"(?<![\w.])/(?:work|tmp|root|home|Users)/\S+", page.read_text())
        assert not found, (page.name, found[:3])
    out = Path("/data/bench")
    assert report.portable("/data/bench/runs/x --out-dir /data/bench", out) == "runs/x --out-dir OUT"
    assert report.portable("/data/bench_pages/x /data/bench.", out) == "/data/bench_pages/x OUT."  # a sibling keeps its name


def test_the_pages_splits_are_disjoint_scene_sets_and_the_draws_differ(experiments):
    """Each scene of a draw lies in exactly one of train / val / test (by scene, so no stack is in two),
    each split holds about its share of the 160 scenes, and the second draw splits other scenes."""
    from generator.draw.scene import scene_split
    from generator.recipe.recipe import load_recipe

    draws = []
    for seed in experiments.DRAWS:
        recipe = load_recipe("small_obj", experiments.recipe_overrides("small_obj", 160, 64, 64, seed))
        sets = {name: set() for name in experiments.SPLITS}
        for index in range(recipe.count):
            sets[scene_split(recipe, index)].add(index)
        assert set().union(*sets.values()) == set(range(160))
        assert sum(len(s) for s in sets.values()) == 160  # disjoint
        for name, share in experiments.SPLITS.items():
            assert abs(len(sets[name]) - share * 160) < 16, (seed, name, len(sets[name]))
        draws.append(sets)
    assert draws[0]["test"] != draws[1]["test"]


def test_settings_resolve_their_step_defaults_and_the_labels_say_what_supervised_rows_get(experiments):
    assert (experiments.Settings(steps=8).sdgs_steps, experiments.Settings(steps=8).ablation_steps) == (8, 8)
    assert experiments.Settings(steps=8, sdgs_steps=3).ablation_steps == 3
    assert experiments.Settings(ablation_steps=0).ablation_steps == 0  # 0: no ablation, not the default
    rows = experiments.table_rows(experiments.Settings(depth_space="log", blur_features=True), ["ddff", "sdgs"])
    assert [row.run for row in rows] == [row.run for row in experiments.REFERENCES] + ["ddff", "sdgs"]
    labels = {row.run: row.label for row in rows}
    assert labels["ddff"] == "DDFF (depth_space log, blur features)"
    assert labels["sdgs"] == "SDGS (self-supervised, one frame in)"  # not supervised: given nothing
    assert labels["constant"] == experiments.REFERENCES[0].label
    assert experiments.table_rows(experiments.Settings()) == experiments.ROWS


def test_the_command_line_fills_every_setting_with_its_default(entry, experiments):
    from dataclasses import fields

    args = entry._parser().parse_args([])
    assert experiments.Settings(**{f.name: getattr(args, f.name) for f in fields(experiments.Settings)}) \
        == experiments.Settings()
    args = entry._parser().parse_args(["--steps", "8", "--lr-grid", "1e-3", "3e-4", "--depth-space", "log"])
    assert (args.steps, args.lr_grid, args.depth_space) == (8, [1e-3, 3e-4], "log")


def test_a_run_is_reused_only_for_the_same_train_command(experiments, runner, tmp_path):
    """The reuse key is the train command: this pins its form, so earlier runs stay reusable."""
    settings = experiments.Settings(crop=32, batch_size=4, wall_weight=0.5, blur_features=True)
    row = _row(experiments, "ddff")
    cmd = [runner.dfdgen_path(), "train", "--shards", "D", "--model", "ddff", "--out", str(tmp_path),
           "--max-steps", "20", "--seed", "1", "--set", "data.crop=[32, 32]", "--set", "data.batch_size=4",
           "--set", "data.workers=1", "--set", "optim.lr=0.001", "--set", "optim.warmup_steps=2",
           "--set", "train.ckpt_every=20", "--set", "train.image_every=0", "--set", "train.val_every=2",
           "--set", "train.best_metric=objects.abs_rel", "--set", "model.config.regions=objects",
           "--set", "model.config.wall_weight=0.5", "--set", "model.config.depth_init_m=2.5",
           "--set", "model.config.blur_scales_px=[0.5, 1.0, 2.0, 4.0]"]
    (tmp_path / "done.json").write_text(json.dumps({"train_cmd": cmd, "train_s": 7.0, "step": 12,
                                                    "val": _regions(0.1)}))
    run = runner.train_row(row, "D", tmp_path, settings, steps=20, lr=1e-3, seed=1, depth_init_m=2.5, reuse=True)
    assert (run.lr, run.seed, run.train_s, run.step, run.val) == (1e-3, 1, 7.0, 12, _regions(0.1))
    assert run.train_cmd == shlex.join(cmd) and run.checkpoint == tmp_path / "ckpt" / "best.pt"


def test_a_run_trained_under_other_defaults_is_not_reused(runner):
    """A changed model default (here sdgs's teacher window, which ``dfd_sweep`` reads too) changes what
    the same train command trains: a record that holds other defaults is not reused; one written
    before records held defaults is taken at its command."""
    import dataclasses

    from dfd_models.networks import MODELS
    from dfd_models.networks.base import default_settings

    cmd = ["dfdgen", "train", "--model", "dfd_sweep"]
    now = json.loads(json.dumps(default_settings(MODELS["dfd_sweep"])))
    assert any("sweep_window_px" in d for d in now)  # the sweep's settings are part of dfd_sweep's run
    before = json.loads(json.dumps(default_settings(MODELS["dfd_sweep"])))
    next(d for d in before if "sweep_window_px" in d)["sweep_window_px"] = 9
    assert runner._same_run({"train_cmd": cmd, "defaults": now}, cmd, now)
    assert not runner._same_run({"train_cmd": cmd, "defaults": before}, cmd, now)
    assert runner._same_run({"train_cmd": cmd}, cmd, now)
    assert not runner._same_run({"train_cmd": cmd + ["--seed", "1"], "defaults": now}, cmd, now)
    assert default_settings(MODELS["sdgs"])[0] == dataclasses.asdict(MODELS["sdgs"].Config())

