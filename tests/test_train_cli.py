"""``dfdgen train``, ``eval`` and ``predict`` on the tiny rendered dataset (CPU, model sdgs with
small channels, 32 x 32 crops, batch 2), the training config, and bad input (exit status 2)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from generator.cli import main
from generator.core.errors import BadInput

#: Options that keep sdgs fast on 2 CPU cores.
SMALL = (
    "--set", "data.crop=[32, 32]", "--set", "data.batch_size=2", "--set", "data.workers=0",
    "--set", "model.config.channels=[8, 16]", "--set", "optim.warmup_steps=2",
)
METRICS = {"mse", "rmse", "mae", "abs_rel", "sq_rel", "rmse_log", "delta1", "delta2", "delta3", "accuracy",
           "inv_mae", "inv_rmse", "pearson", "mse_norm", "rms_norm", "n_pixels"}
LENS = ("--lens-focal-length-mm", "50", "--f-number", "2")  # the tiny recipe's sensor width is fixed


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _train(shards, out, *args):
    return _run("train", "--shards", shards, "--model", "sdgs", "--out", out, *SMALL, *args)


def checkpoint_loss(shards, checkpoint) -> float:
    """The training loss of ``checkpoint``'s model on one fixed batch of ``shards`` (4 stacks of
    the train split, full frames, ramp 0, no flips), in eval mode with seed 0."""
    import torch

    from dfd_models.checkpoint import load_model
    from dfd_models.data import DataSection, make_loader

    batch = next(iter(make_loader(DataSection.for_eval(shards, split="train", batch_size=4))))
    model, _ = load_model(checkpoint)
    torch.manual_seed(0)
    with torch.no_grad():
        return float(model.losses(batch, model(batch))["total"])


@pytest.fixture(scope="module")
def trained(tiny_dataset, tmp_path_factory, torch):
    """A run of 16 steps with checkpoints every 4 (RUN directory)."""
    run = tmp_path_factory.mktemp("train") / "run"
    result = _train(tiny_dataset, run, "--max-steps", 16, "--set", "optim.lr=2e-3", "--set", "train.ckpt_every=4",
                    "--set", "train.log_every=4", "--set", "train.image_every=12")
    assert result.exit_code == 0, result.output
    assert "trained sdgs to step 16" in result.output
    return run


@pytest.fixture(scope="module")
def frame_pngs(tiny_dataset, tmp_path_factory):
    """Two frames of the tiny dataset as PNG files (64 x 64 sRGB)."""
    out = tmp_path_factory.mktemp("frames")
    with tarfile.open(next(Path(tiny_dataset).glob("*-train-000000.tar"))) as tar:
        for name in ("00000000.f000.png", "00000001.f002.png"):
            (out / name.replace(".", "_", 1)).write_bytes(tar.extractfile(name).read())
    return sorted(out.glob("*.png"))


# Training


def test_train_writes_the_run_and_lowers_the_loss(trained, tiny_dataset, torch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from dfd_models.config import TrainConfig

    ckpts = sorted(p.name for p in (trained / "ckpt").iterdir())
    assert ckpts == ["last.pt"] + [f"step_{s:07d}.pt" for s in range(4, 17, 4)]
    config = TrainConfig.from_dict(yaml.safe_load((trained / "config.yaml").read_text()))
    last = torch.load(trained / "ckpt" / "last.pt", weights_only=True)
    assert last["config"] == config.to_dict() and last["step"] == 16
    assert config.model.config["channels"] == [8, 16] and config.data.shards == str(tiny_dataset)
    assert last["data"]["recipe"]["name"] == "tiny64" and last["data"]["max_depth_m"] == 2.0
    assert last["data"]["image"] == {"width": 64, "height": 64}

    events = EventAccumulator(str(trained / "tb"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"loss/total", "loss/photometric", "loss/coc", "lr", "grad_norm"} <= scalars
    assert len(events.Scalars("loss/total")) == 4
    assert set(events.Tags()["images"]) == {"frames", "depth/predicted", "depth/true"}

    early, late = (checkpoint_loss(tiny_dataset, trained / "ckpt" / name) for name in ("step_0000004.pt", "last.pt"))
    assert late < early, (early, late)


def test_resume_continues_exactly(tiny_dataset, tmp_path, torch, monkeypatch):
    import dfd_models.train

    args = ("--max-steps", 4, "--set", "train.ckpt_every=2", "--set", "optim.lr=2e-3")
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert _train(tiny_dataset, whole, *args).exit_code == 0

    step, calls = dfd_models.train.train_step, []

    def interrupted_at_step_3(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return step(*a, **kw)

    monkeypatch.setattr(dfd_models.train, "train_step", interrupted_at_step_3)
    result = _train(tiny_dataset, cut, *args)
    assert result.exit_code == 130 and "--resume" in result.output
    assert torch.load(cut / "ckpt" / "last.pt", weights_only=True)["step"] == 2
    monkeypatch.setattr(dfd_models.train, "train_step", step)
    result = _run("train", "--out", cut, "--resume")
    assert result.exit_code == 0, result.output

    a, b = (torch.load(run / "ckpt" / "last.pt", weights_only=True) for run in (whole, cut))
    assert (a["step"], a["epoch"], a["batch_in_epoch"]) == (b["step"], b["epoch"], b["batch_in_epoch"])
    assert a["step"] == 4
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    moments = [(s["exp_avg"], t["exp_avg"]) for s, t in zip(a["optimizer"]["state"].values(),
                                                             b["optimizer"]["state"].values())]
    assert moments and all(torch.equal(x, y) for x, y in moments)
    assert a["scheduler"] == b["scheduler"]


# Eval and predict


def test_eval_prints_and_writes_every_metric(trained, tiny_dataset, tmp_path):
    out = tmp_path / "metrics.json"
    result = _run("eval", "--shards", tiny_dataset, "--checkpoint", trained / "ckpt" / "last.pt", "--split", "train",
                  "--json", out)
    assert result.exit_code == 0, result.output
    assert "abs_rel" in result.output and "on 8 samples of split 'train'" in result.output
    assert "8/8 [" in result.output  # the progress bar knows its total, from the manifest
    report = json.loads(out.read_text())
    assert set(report["metrics"]) == METRICS
    assert report["samples"] == 8 and report["step"] == 16 and report["model"] == "sdgs"
    assert report["max_depth_m"] == 2.0 and 0 < report["metrics"]["n_pixels"] <= 8 * 64 * 64
    assert report["metrics"]["accuracy"] == pytest.approx(100 * report["metrics"]["delta1"])
    assert all(np.isfinite(v) for v in report["metrics"].values())


def test_eval_scores_all_pixels_and_objects(trained, tiny_dataset, tmp_path, torch):
    """Regions all (every valid pixel) and objects (valid, off the wall): JSON, counts and table."""
    from dfd_models.data import DataSection, make_loader

    out = tmp_path / "metrics.json"
    result = _run("eval", "--shards", tiny_dataset, "--checkpoint", trained / "ckpt" / "last.pt", "--split", "train",
                  "--json", out)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert list(report["regions"]) == ["all", "objects"] and report["absent_regions"] == {}
    assert report["regions"]["all"] == report["metrics"] and set(report["regions"]["objects"]) == METRICS
    valid = objects = 0
    for batch in make_loader(DataSection.for_eval(tiny_dataset, split="train", batch_size=4)):
        scored = batch["valid"] & (batch["depth"] > 0)
        valid += int(scored.sum())
        objects += int((scored & ~batch["wall"]).sum())
    assert 0 < objects < valid  # the tiny recipe has a wall and objects in front of it
    assert report["regions"]["all"]["n_pixels"] == valid and report["regions"]["objects"]["n_pixels"] == objects
    assert report["objects_fraction"] == pytest.approx(objects / valid)
    assert report["regions"]["objects"] != report["regions"]["all"]

    lines = [line.split() for line in result.output.splitlines()]
    assert ["metric", "all", "objects"] in lines
    rows = lines[lines.index(["metric", "all", "objects"]) + 1:]
    table = {row[0]: row[1:] for row in rows if row and row[0] in METRICS}
    assert set(table) == METRICS and table["n_pixels"] == [str(valid), str(objects)]
    assert float(table["inv_mae"][1]) == pytest.approx(report["regions"]["objects"]["inv_mae"], rel=1e-5)


# Bad input


def _check_exit_2(result, *texts):
    assert result.exit_code == 2, result.output
    for text in texts:
        assert text in result.output, result.output


@pytest.mark.parametrize(("args", "texts"), [
    (("--set", "optim.lrr=1"), ("optim.lrr", "did you mean 'lr'")),
    (("--set", "optim.lr=fast"), ("optim.lr", "a number")),
    (("--set", "optim.lr"), ("key.path=value",)),
    (("--set", "model.config.chanels=[4]"), ("chanels", "channels")),
    (("--set", "data.crop=[33, 33]"), ("data.crop", "multiples of 2")),
    (("--set", "optim.amp=fp16"), ("optim.amp", "CUDA")),
    (("--set", "train.device=cuda"), ("train.device", "no CUDA")),
    (("--epochs", 2), ("data.epoch_len",)),
    (("--set", "data.crop=[32, 96]"), ("data.crop", "[32, 96]", "64 x 64")),
])
def test_train_bad_config_exits_2_and_writes_nothing(tiny_dataset, tmp_path, torch, args, texts):
    out = tmp_path / "run"
    _check_exit_2(_train(tiny_dataset, out, "--max-steps", 1, *args), *texts)
    assert not out.exists()


def test_train_crop_larger_than_the_images_exits_2(tiny_dataset, tmp_path, torch):
    """A user's crop of 128 x 128 on 64 px shards: refused before any step, nothing written."""
    out = tmp_path / "run"
    result = _run("train", "--shards", tiny_dataset, "--model", "sdgs", "--out", out, "--max-steps", 3,
                  "--set", "data.crop=[128, 128]")
    _check_exit_2(result, "data.crop", "[128, 128]", "64 x 64")
    assert "Traceback" not in result.output and not out.exists()


# Sizes chosen for the data and the device


def test_auto_data_sizes_crop_and_batch_to_the_images_and_the_device():
    from dfd_models.config import DataSection
    from dfd_models.sizing import auto_data

    auto = DataSection(shards="x")
    assert (auto.crop, auto.batch_size, auto.workers) == ("auto", "auto", "auto")

    def sized(data=auto, **kw):
        section, line = auto_data(data, **kw)
        return section.crop, section.batch_size, line

    crop, batch, line = sized(image={"width": 128, "height": 128}, device="cpu", model="sdgs")
    assert (crop, batch) == ([64, 64], 2)
    assert line.startswith("data: crop 64x64 px, batch 2 (sdgs on CPU; the data is 128x128 px)")
    assert sized(image={"width": 128, "height": 128}, device="cpu", model="defocusnet")[:2] == ([64, 64], 4)
    assert sized(image={"width": 256, "height": 256}, device="cpu", model="sdgs")[:2] == ([64, 64], 2)
    assert sized(image={"width": 256, "height": 256}, device="cuda", model="sdgs")[:2] == ([128, 128], 8)
    assert sized(image={"width": 64, "height": 64}, device="cuda", model="sdgs")[:2] == ([64, 64], 8)
    # smaller than the largest crop: the image's own sides, rounded down to the model's multiple
    assert sized(image={"width": 40, "height": 48}, device="cpu", model="ddff", multiple=16)[:2] == ([48, 32], 4)
    crop, batch, line = sized(image=None, device="cpu", model="ddff")
    assert (crop, batch) == ([64, 64], 4) and "unknown" in line

    # the user's values are kept; only what is auto is chosen
    crop, batch, line = sized(DataSection(shards="x", crop=[32, 32]), image={"width": 64, "height": 64},
                              device="cpu", model="sdgs")
    assert (crop, batch) == ([32, 32], 2) and "crop 32x32 px as set" in line and "batch 2 (" in line
    assert sized(DataSection(shards="x", crop=None), image={"width": 64, "height": 64}, device="cuda")[:2] == (None, 8)
    both = DataSection(shards="x", crop=[16, 24], batch_size=3)
    assert auto_data(both, image={"width": 64, "height": 64}, device="cpu", model="sdgs") == (both, None)
    # a costly size is pointed out before training, with the options that pick the default
    big = DataSection(shards="x", crop=[128, 128], batch_size=8)
    section, line = auto_data(big, image={"width": 256, "height": 256}, device="cpu", model="sdgs")
    assert section == big and line == (
        "data: crop 128x128 px as set, batch 8 as set: 16 times the pixels per step of the default for sdgs on CPU "
        "(crop 64x64 px, batch 2); --set 'data.crop=[64, 64]' --set data.batch_size=2 for that")
    line = auto_data(DataSection(shards="x", crop=None), image={"width": 256, "height": 256}, device="cuda",
                     model="ddff")[1]
    assert line.startswith("data: full frames as set, batch 8 (ddff on CUDA; the data is 256x256 px): 4 times")


def test_train_records_the_sizes_it_chose_and_shows_the_loss_from_step_1(tiny_dataset, tmp_path, torch,
                                                                         monkeypatch):
    """Default crop, batch and workers on the CPU: chosen from the 64 px images, said in one line,
    recorded in config.yaml and the checkpoint (a resume reads the same); the progress bar shows a
    loss before the first log_every; a slow first step says what the run costs."""
    import dfd_models.train_log
    from dfd_models.runtime import Process, auto_workers

    monkeypatch.setattr(dfd_models.train_log, "SLOW_STEP_S", 0.0)  # every step is "slow"
    run = tmp_path / "run"
    result = _run("train", "--shards", tiny_dataset, "--model", "sdgs", "--out", run, "--max-steps", 2,
                  "--set", "model.config.channels=[8, 16]", "--set", "train.log_every=50",
                  "--set", "train.device=cpu")
    assert result.exit_code == 0, result.output
    assert "data: crop 64x64 px, batch 2 (sdgs on CPU; the data is 64x64 px)" in result.output
    assert "loss=" in result.output  # in the progress bar's postfix, 48 steps before the first log point
    assert "step 1 took" in result.output and "1 steps left" in result.output
    assert "--set data.batch_size=1" in result.output and "--set 'data.crop=[32, 32]'" in result.output
    assert "Warning" not in result.output and "workers" not in result.output
    data = yaml.safe_load((run / "config.yaml").read_text())["data"]
    workers = min(4, auto_workers(Process(0, 1, torch.device("cpu"))))  # 4 shards
    assert (data["crop"], data["batch_size"], data["workers"]) == ([64, 64], 2, workers)
    assert torch.load(run / "ckpt" / "last.pt", weights_only=True)["config"]["data"] == data

    result = _run("train", "--out", run, "--resume", "--max-steps", 3)
    assert result.exit_code == 0, result.output
    assert "data: crop" not in result.output  # nothing left to choose: the recorded sizes are used
    assert yaml.safe_load((run / "config.yaml").read_text())["data"] == data


def test_train_keeps_the_users_sizes_and_caps_the_workers_at_the_shards(tiny_dataset, tmp_path, torch):
    config = tmp_path / "train.yaml"
    config.write_text("data: {crop: [32, 32], workers: 8}\n")
    run = tmp_path / "run"
    result = _run("train", "--shards", tiny_dataset, "--model", "sdgs", "--out", run, "--max-steps", 1,
                  "--config", config, "--set", "data.batch_size=3", "--set", "model.config.channels=[8, 16]")
    assert result.exit_code == 0, result.output
    assert "data: crop" not in result.output  # nothing was chosen
    assert "Warning: data.workers = 8 but only 4 shards per process: using 4 workers" in result.output
    data = yaml.safe_load((run / "config.yaml").read_text())["data"]
    assert (data["crop"], data["batch_size"], data["workers"]) == ([32, 32], 3, 4)


def test_auto_workers_leave_torch_its_cores_on_the_cpu(torch, monkeypatch):
    import os

    from dfd_models.runtime import AUTO_WORKERS, Process, auto_workers

    cpu, cuda = Process(0, 1, torch.device("cpu")), Process(0, 1, torch.device("cuda", 0))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert auto_workers(cpu) == AUTO_WORKERS == 2 and auto_workers(cuda) == 2
    assert auto_workers(Process(0, 4, torch.device("cpu"))) == 0  # 4 ranks x 2 threads use the 8 cores
    monkeypatch.setattr(torch, "get_num_threads", lambda: 7)
    assert auto_workers(cpu) == 1 and auto_workers(cuda) == 2
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    assert auto_workers(cpu) == 0


def test_a_slow_first_step_says_what_the_run_costs_and_how_to_make_it_cheaper(torch):
    from dfd_models.config import DataSection
    from dfd_models.train_log import SLOW_STEP_S, step_cost_note

    data = DataSection(shards="x", crop=[128, 128], batch_size=8)
    cpu = torch.device("cpu")
    assert step_cost_note(SLOW_STEP_S / 2, 1, 20, data, None, 1, cpu) is None
    note = step_cost_note(57.0, 1, 20, data, {"width": 256, "height": 256}, 1, cpu)
    assert note.startswith("step 1 took 57.0 s (batch 8 of 128x128 px crops on CPU): "
                           "the 19 steps left take about 18 min")
    assert note.endswith("cheaper steps (0.12 of the pixels): --set data.batch_size=4 --set 'data.crop=[64, 64]'")
    full = step_cost_note(3.0, 1, 5, DataSection(shards="x", crop=None, batch_size=1), {"width": 64, "height": 48},
                          16, cpu)
    assert "batch 1 of full frames" in full and full.endswith("--set 'data.crop=[16, 32]'")


def test_train_help_and_unknown_model_list_every_model(tiny_dataset, tmp_path, torch):
    from dfd_models.networks import MODELS

    result = _run("train", "--help")
    assert result.exit_code == 0, result.output
    models = result.output.split("Models (--model):")[1].split()
    assert set(MODELS) <= set(models), result.output
    assert "Siamese" in result.output  # each model's one-line description
    _check_exit_2(_run("train", "--shards", tiny_dataset, "--model", "nope", "--out", tmp_path / "run",
                       "--max-steps", 1), "model.name", "'nope'", *sorted(MODELS))
    assert not (tmp_path / "run").exists()


def test_train_bad_paths_and_models_exit_2(tiny_dataset, trained, tmp_path, torch):
    out = tmp_path / "run"
    _check_exit_2(_train(tmp_path / "nowhere", out, "--max-steps", 1), "nowhere")
    _check_exit_2(_train(tiny_dataset, out), "train.max_steps", "--max-steps")
    _check_exit_2(_run("train", "--shards", tiny_dataset, "--model", "nope", "--out", out, "--max-steps", 1),
                  "model.name", "sdgs")
    _check_exit_2(_run("train", "--shards", tiny_dataset, "--out", out, "--max-steps", 1), "model.name", "required")
    _check_exit_2(_train(tiny_dataset, out, "--config", tmp_path / "missing.yaml"), "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    _check_exit_2(_train(tiny_dataset, out, "--config", tmp_path / "list.yaml"), "mapping")
    _check_exit_2(_run("train", "--out", out, "--resume"), "no run to resume")
    assert not out.exists()

    before = {p: p.stat().st_mtime_ns for p in trained.rglob("*")}
    _check_exit_2(_train(tiny_dataset, trained, "--max-steps", 1), "holds another run", "--resume")
    (tmp_path / "lr.yaml").write_text("optim: {lr: 0.1}\n")
    _check_exit_2(_run("train", "--out", trained, "--resume", "--config", tmp_path / "lr.yaml"), "--set")
    assert {p: p.stat().st_mtime_ns for p in trained.rglob("*")} == before


def test_eval_and_predict_bad_input_exit_2(trained, tiny_dataset, frame_pngs, tmp_path, torch):
    last = trained / "ckpt" / "last.pt"
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, foreign)

    _check_exit_2(_run("eval", "--shards", tiny_dataset, "--checkpoint", foreign), "not a dfdgen checkpoint")
    _check_exit_2(_run("eval", "--shards", tiny_dataset, "--checkpoint", tmp_path / "no.pt"), "no.pt")
    _check_exit_2(_run("eval", "--shards", tiny_dataset, "--checkpoint", last), "no shards of split 'test'")


# Config


def test_config_layers_yaml_set_and_options(tmp_path):
    from dfd_models.config import TrainConfig, read_yaml, resolve_config

    path = tmp_path / "train.yaml"
    path.write_text("model: {name: sdgs, config: {channels: [8, 16]}}\n"
                    "data: {shards: /data/x, batch_size: 4}\noptim: {lr: 1.0e-3}\ntrain: {max_steps: 10}\n")
    config = resolve_config(read_yaml(path), ["optim.lr=3e-4", "data.crop=null", "train.max_steps=1e5"],
                            {"train.max_steps": 7, "train.seed": None})
    assert config.optim.lr == 3e-4 and config.data.crop is None and config.data.batch_size == 4
    assert config.train.max_steps == 7 and config.train.seed == 0 and config.model.config == {"channels": [8, 16]}
    assert resolve_config(read_yaml(path), ["train.max_steps=1e5"]).train.max_steps == 100_000
    assert TrainConfig.from_dict(yaml.safe_load(config.to_yaml())) == config


@pytest.mark.parametrize(("override", "text"), [
    ("data.batch_size=0", ">= 1"),
    ("data.batch_size=2.5", "an integer"),
    ("data.flip=1", "true or false"),
    ("data.ramp=last", "one of: random"),
    ("optim.betas=[0.9]", "[beta1, beta2]"),
    ("optim.min_lr=1", "at most optim.lr"),
    ("data.crop=[32]", "[height, width]"),
    ("data=3", "a mapping"),
    ("train.max_steps.x=1", "a section"),
    ("optim.lr=[1, 2", "a YAML value"),
])
def test_config_errors_name_key_and_allowed_values(override, text):
    from dfd_models.config import ConfigError, resolve_config

    base = {"model": {"name": "sdgs"}, "data": {"shards": "x"}, "train": {"max_steps": 1}}
    with pytest.raises(ConfigError, match=None) as info:
        resolve_config(base, [override])
    assert text in str(info.value) and isinstance(info.value, BadInput)


def test_lr_schedule_warms_up_then_follows_a_cosine():
    from dfd_models.optimisation import lr_factor

    factors = [lr_factor(s, warmup=4, total=13, final=0.1) for s in range(13)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert factors[4] == 1.0 and factors[-1] == pytest.approx(0.1)
    assert factors[8] == pytest.approx(0.1 + 0.9 * 0.5)  # half way through the cosine
    assert all(a >= b for a, b in zip(factors[3:], factors[4:]))
