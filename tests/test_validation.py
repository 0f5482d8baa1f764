"""Validation during ``dfdgen train`` (issue 30): ``val.jsonl``, TensorBoard ``val/...``, ``ckpt/best.pt``
and ``best.json``, kept across ``--resume``; on fake shards written by the generator's own writer
(no Blender), with a small defocusnet on the CPU."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from fakes import make_spec, fake_render
from generator.cli import main
from generator.dataset.sample import encode_sample
from generator.recipe.recipe import load_recipe
from generator.dataset.shards import DatasetDir

#: Options that keep defocusnet fast on 2 CPU cores (fake frames are 24 x 32 px).
SMALL = (
    "--set", "data.crop=[16, 16]", "--set", "data.batch_size=2", "--set", "data.workers=0",
    "--set", "model.config.coc_channels=[4, 4, 4]", "--set", "model.config.depth_channels=[4, 4, 4]",
    "--set", "optim.warmup_steps=1", "--set", "optim.lr=1e-2",
)


def _write(out, splits):
    """A dataset directory of fake renders (24 x 32 px), one scene per entry of ``splits``, 2 per shard."""
    recipe = load_recipe("small_obj", [f"count={len(splits)}", "shards.max_samples=2", "image.width=32",
                                       "image.height=24"])
    dataset = DatasetDir(out, recipe, max_samples=2)
    for index, split in enumerate(splits):
        spec = make_spec(index, split=split)
        dataset.add(index, split, encode_sample(spec, fake_render(spec), recipe))
    dataset.finish()
    return out


@pytest.fixture(scope="module")
def with_val(tmp_path_factory):
    """4 train stacks and 2 val stacks."""
    return _write(tmp_path_factory.mktemp("with_val") / "ds", ["train"] * 4 + ["val"] * 2)


@pytest.fixture(scope="module")
def train_only(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("train_only") / "ds", ["train"] * 4)


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _train(shards, out, *args, model="defocusnet"):
    return _run("train", "--shards", shards, "--model", model, "--out", out,
                *(SMALL if model == "defocusnet" else ("--set", "data.workers=0")), *args)


def _val_log(run):
    return [json.loads(line) for line in (run / "val.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def validated(with_val, tmp_path_factory, torch):
    """A run of 6 steps, checkpoints every 3, validation every 2 (RUN directory, CLI output)."""
    run = tmp_path_factory.mktemp("validated") / "run"
    result = _train(with_val, run, "--max-steps", 6, "--set", "train.ckpt_every=3", "--set", "train.val_every=2")
    assert result.exit_code == 0, result.output
    return run, result.output


def test_validation_is_logged_at_the_expected_steps(validated, torch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, output = validated
    log = _val_log(run)
    assert [line["step"] for line in log] == [2, 4, 6]  # every val_every steps, and the last
    assert f"best on validation (objects.abs_rel): {run / 'ckpt' / 'best.pt'}" in output
    for line in log:
        assert line["split"] == "val" and line["samples"] == 2
        assert set(line["regions"]) == {"all", "objects"}
        for scores in line["regions"].values():
            assert {"abs_rel", "delta1", "rmse", "pearson", "n_pixels"} <= set(scores)
    assert sum(f"val step {s}: objects AbsRel" in output for s in (2, 4, 6)) == 3

    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    assert [e.step for e in events.Scalars("val/objects/abs_rel")] == [2, 4, 6]
    assert [e.step for e in events.Scalars("val/all/delta1")] == [2, 4, 6]
    # checkpoints keep their own schedule
    assert sorted(p.name for p in (run / "ckpt").iterdir()) == ["best.pt", "last.pt", "step_0000003.pt",
                                                                 "step_0000006.pt"]


def test_best_pt_is_the_checkpoint_of_the_best_logged_step(validated, with_val, torch):
    run, _ = validated
    log = _val_log(run)
    values = [line["regions"]["objects"]["abs_rel"] for line in log]
    best = log[values.index(min(values))]  # the first of equal values: a later one must be better
    ckpt = torch.load(run / "ckpt" / "best.pt", weights_only=True)
    assert ckpt["step"] == best["step"]
    record = json.loads((run / "best.json").read_text())
    assert record == {"metric": "objects.abs_rel", "higher_is_better": False, "step": best["step"],
                      "value": min(values), "checkpoint": "ckpt/best.pt"}

    # dfdgen eval reads best.pt and scores it as training did
    out = run.parent / "eval.json"
    result = _run("eval", "--shards", with_val, "--checkpoint", run / "ckpt" / "best.pt", "--split", "val",
                  "--workers", 0, "--json", out)
    assert result.exit_code == 0, result.output
    scored = json.loads(out.read_text())
    assert scored["step"] == best["step"]
    assert scored["regions"]["objects"]["abs_rel"] == pytest.approx(min(values), rel=1e-5)


def test_resume_keeps_a_better_best(with_val, tmp_path, torch):
    run = tmp_path / "run"
    args = ("--set", "train.ckpt_every=2", "--set", "train.val_every=2")
    assert _train(with_val, run, "--max-steps", 4, *args).exit_code == 0
    # a best no later step can beat, and a val.jsonl line from beyond the checkpoint (an interrupted run)
    record = json.loads((run / "best.json").read_text())
    (run / "best.json").write_text(json.dumps({**record, "value": 0.0}))
    best_bytes = (run / "ckpt" / "best.pt").read_bytes()
    with open(run / "val.jsonl", "a") as stream:
        stream.write(json.dumps({"step": 5, "split": "val", "samples": 2, "regions": {}}) + "\n")
        stream.write('{"step": 6, "spl')  # cut by the interruption

    result = _run("train", "--out", run, "--resume", "--max-steps", 6)
    assert result.exit_code == 0, result.output
    assert [line["step"] for line in _val_log(run)] == [2, 4, 6]
    assert (run / "ckpt" / "best.pt").read_bytes() == best_bytes
    assert json.loads((run / "best.json").read_text())["value"] == 0.0
    assert f"(best 0 at step {record['step']})" in result.output


@pytest.mark.parametrize("metric, scripted, best_step", [
    ("objects.abs_rel", [0.5, 0.3, 0.4, 0.3], 2),  # lower is better; an equal value is no improvement
    ("all.delta1", [0.5, 0.3, 0.7, 0.7], 3),  # higher is better
])
def test_best_pt_holds_the_weights_of_the_best_step(with_val, tmp_path, torch, monkeypatch, metric, scripted,
                                                     best_step):
    import dfd_models.validation

    region, name = metric.split(".")
    score, values = dfd_models.validation.score_model, iter(scripted)

    def scripted_score(*args, **kwargs):  # the real scores, with the ranked metric scripted
        regions, absent, samples = score(*args, **kwargs)
        regions[region][name] = next(values)
        return regions, absent, samples

    monkeypatch.setattr(dfd_models.validation, "score_model", scripted_score)
    run = tmp_path / "run"
    result = _train(with_val, run, "--max-steps", 4, "--set", "train.val_every=1", "--set", "train.ckpt_every=1",
                    "--set", f"train.best_metric={metric}")
    assert result.exit_code == 0, result.output
    assert [line["regions"][region][name] for line in _val_log(run)] == scripted
    best = torch.load(run / "ckpt" / "best.pt", weights_only=True)
    same_step = torch.load(run / "ckpt" / f"step_{best_step:07d}.pt", weights_only=True)
    assert best["step"] == best_step
    assert all(torch.equal(best["model"][k], same_step["model"][k]) for k in same_step["model"])
    record = json.loads((run / "best.json").read_text())
    assert (record["step"], record["value"], record["higher_is_better"]) == (best_step, scripted[best_step - 1],
                                                                            name == "delta1")


@pytest.mark.parametrize("value", ["objects.nope", "walls.abs_rel", "abs_rel"])
def test_a_bad_best_metric_exits_2_naming_the_allowed_values(with_val, tmp_path, torch, value):
    out = tmp_path / "run"
    result = _train(with_val, out, "--max-steps", 1, "--set", f"train.best_metric={value}")
    assert result.exit_code == 2, result.output
    assert "train.best_metric" in result.output and value in result.output
    assert "objects.abs_rel" in result.output and "all.delta1" in result.output
    assert not out.exists()


def test_shards_without_a_val_split_keep_no_best(train_only, tmp_path, torch):
    run = tmp_path / "run"
    result = _train(train_only, run, "--max-steps", 2, "--set", "train.ckpt_every=1")
    assert result.exit_code == 0, result.output
    assert "validation off: the shards have no 'val' split" in result.output
    assert not (run / "val.jsonl").exists() and not (run / "best.json").exists()
    assert sorted(p.name for p in (run / "ckpt").iterdir()) == ["last.pt", "step_0000001.pt", "step_0000002.pt"]


def test_a_fitted_reference_model_is_scored_once(with_val, tmp_path, torch):
    run = tmp_path / "run"
    result = _train(with_val, run, "--max-steps", 1, model="constant")
    assert result.exit_code == 0, result.output
    log = _val_log(run)
    assert [line["step"] for line in log] == [0] and set(log[0]["regions"]) == {"all", "objects"}
    assert "val step 0:" in result.output
    assert torch.load(run / "ckpt" / "best.pt", weights_only=True)["step"] == 0
    assert json.loads((run / "best.json").read_text())["step"] == 0


def test_best_metrics_are_metrics_the_evaluation_produces(torch):
    from dfd_models.config import BEST_METRICS, HIGHER_IS_BETTER
    from dfd_models.metrics import RegionMetrics
    from dfd_models.validation import Best

    metrics = RegionMetrics(2.0)
    depth = torch.rand(1, 1, 4, 4) + 0.5
    metrics.update(depth * 1.1, depth)
    assert set(BEST_METRICS) <= set(metrics.compute()["objects"]) and HIGHER_IS_BETTER <= set(BEST_METRICS)
    lower, higher = Best("objects.abs_rel", 1, 0.2), Best("all.pearson", 1, 0.2)
    assert lower.improves(0.1) and not lower.improves(0.2) and not lower.improves(0.3)
    assert higher.improves(0.3) and not higher.improves(0.1) and not higher.improves(float("nan"))
