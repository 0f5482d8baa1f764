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
from PIL import Image

from generator.cli import main
from generator.errors import BadInput
from generator.codec import read_exr_bytes

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


# --- training ----------------------------------------------------------------------------


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


# --- eval and predict ----------------------------------------------------------------------


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


def test_predict_writes_depth_exr_and_png(trained, frame_pngs, tmp_path):
    out = tmp_path / "pred"
    result = _run("predict", *frame_pngs, "--checkpoint", trained / "ckpt" / "last.pt",
                  "--focus-distance", 0.4, "--focus-distance", 0.9, *LENS, "--out", out)
    assert result.exit_code == 0, result.output
    model_config = yaml.safe_load((trained / "config.yaml").read_text())["model"]["config"]
    for image in frame_pngs:
        depth = read_exr_bytes((out / f"{image.stem}.depth.exr").read_bytes())
        assert list(depth) == ["Z"] and depth["Z"].shape == (64, 64) and depth["Z"].dtype == np.float32
        assert np.all((depth["Z"] >= model_config["min_depth_m"]) & (depth["Z"] <= model_config["max_depth_m"]))
        with Image.open(out / f"{image.stem}.depth.png") as png:
            assert png.size == (64, 64) and png.mode == "RGB"

    odd = tmp_path / "odd.png"  # a size the model cannot take as it is: padded, cropped back
    with Image.open(frame_pngs[0]) as png:
        png.crop((0, 0, 61, 63)).save(odd)
    result = _run("predict", odd, "--checkpoint", trained / "ckpt" / "last.pt", "--focus-distance", 0.4, *LENS,
                  "--out", out)
    assert result.exit_code == 0, result.output
    assert read_exr_bytes((out / "odd.depth.exr").read_bytes())["Z"].shape == (63, 61)

    one_for_all = _run("predict", frame_pngs[0], "--checkpoint", trained / "ckpt" / "last.pt", "--focus-distance",
                       0.4, *LENS, "--lens-model", "thin_lens", "--out", tmp_path / "again")
    assert one_for_all.exit_code == 0, one_for_all.output
    again = read_exr_bytes((tmp_path / "again" / f"{frame_pngs[0].stem}.depth.exr").read_bytes())["Z"]
    first = read_exr_bytes((out / f"{frame_pngs[0].stem}.depth.exr").read_bytes())["Z"]
    assert np.array_equal(again, first)


# --- bad input -------------------------------------------------------------------------------


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
    """The default crop (128 x 128) on 64 px shards: refused before any step, nothing written."""
    out = tmp_path / "run"
    result = _run("train", "--shards", tiny_dataset, "--model", "sdgs", "--out", out, "--max-steps", 3)
    _check_exit_2(result, "data.crop", "[128, 128]", "64 x 64")
    assert "Traceback" not in result.output and not out.exists()


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
    out = tmp_path / "pred"

    _check_exit_2(_run("eval", "--shards", tiny_dataset, "--checkpoint", foreign), "not a dfdgen checkpoint")
    _check_exit_2(_run("eval", "--shards", tiny_dataset, "--checkpoint", tmp_path / "no.pt"), "no.pt")
    _check_exit_2(_run("eval", "--shards", tiny_dataset, "--checkpoint", last), "no shards of split 'test'")

    def predict(*args):
        return _run("predict", "--checkpoint", last, "--out", out, *args)

    _check_exit_2(predict(tmp_path / "missing.png", "--focus-distance", 1, *LENS), "missing.png")
    _check_exit_2(predict(*frame_pngs, "--focus-distance", 1, "--focus-distance", 2, "--focus-distance", 3, *LENS),
                  "2 images, 3 focus distances")
    _check_exit_2(predict(frame_pngs[0], "--focus-distance", 0.04, *LENS), "focal length")
    _check_exit_2(predict(frame_pngs[0], "--focus-distance", 1), "--lens-focal-length-mm", "[25.0, 50.0]")
    _check_exit_2(predict(frame_pngs[0], "--focus-distance", 1, "--checkpoint", foreign, *LENS),
                  "not a dfdgen checkpoint")
    text = tmp_path / "notes.txt"
    text.write_text("x")
    _check_exit_2(predict(text, "--focus-distance", 1, *LENS), "not a PNG or EXR")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n")
    _check_exit_2(predict(broken, "--focus-distance", 1, *LENS), "cannot read the image")
    assert not out.exists() or not any(out.iterdir())


# --- config ---------------------------------------------------------------------------------


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
    from dfd_models.train import lr_factor

    factors = [lr_factor(s, warmup=4, total=13, final=0.1) for s in range(13)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert factors[4] == 1.0 and factors[-1] == pytest.approx(0.1)
    assert factors[8] == pytest.approx(0.1 + 0.9 * 0.5)  # half way through the cosine
    assert all(a >= b for a, b in zip(factors[3:], factors[4:]))
