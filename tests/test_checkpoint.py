"""Checkpoints (dfd_models.checkpoint): weights-only files, atomic writes, strict loads, RNG states."""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest

from generator.core.errors import BadInput

SMALL_SDGS = {"channels": [4, 8]}


@pytest.fixture
def ckpt(torch):
    """dfd_models.checkpoint (imports torch: skipped locally without it, a failure in CI)."""
    import dfd_models.checkpoint

    return dfd_models.checkpoint


def _payload(torch, model):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(_batch(torch))["depth"].mean().backward()
    optimizer.step()
    return {
        "config": {"model": {"name": model.name, "config": model.config}},
        "data": {"lens": {"model": "thin_lens", "focal_length_mm": 50.0}},
        "step": 1, "epoch": 0, "batch_in_epoch": 1,
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": None,
    }


def _batch(torch, b=1, t=2, h=16, w=16):
    """A synthetic loader batch (a dfd_models.data.batch.Batch)."""
    focus = torch.tensor([[0.5, 1.0]] * b)[:, :t]
    k = torch.tensor([[20.0, 0, w / 2], [0, 20.0, h / 2], [0, 0, 1]]).expand(b, t, 3, 3)
    depth = torch.full((b, 1, h, w), 0.8)
    return {"frames": torch.rand(b, t, 3, h, w), "focus_m": focus, "K": k, "depth": depth, "valid": depth > 0,
            "lens_model": torch.zeros(b, dtype=torch.long),
            "focal_length_m": torch.full((b,), 0.05), "f_number": torch.full((b,), 2.0),
            "pixel_pitch_m": torch.full((b,), 0.036 / w)}


def test_save_writes_every_path_atomically_and_loads_weights_only(torch, ckpt, tmp_path):
    from dfd_models.networks import build_model

    model = build_model("sdgs", SMALL_SDGS)
    payload = _payload(torch, model)
    paths = [tmp_path / "step_0000001.pt", tmp_path / "last.pt"]
    ckpt.save_checkpoint({**payload, "rng": ckpt.rng_state()}, paths)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "step_0000001.pt"]  # no temporary left
    assert paths[0].read_bytes() == paths[1].read_bytes()
    raw = torch.load(paths[1], weights_only=True)  # plain types and tensors only
    assert raw["format"] == ckpt.FORMAT and raw["format_version"] == ckpt.FORMAT_VERSION
    loaded = ckpt.load_checkpoint(paths[1])
    assert loaded["step"] == 1 and loaded["config"] == payload["config"]
    assert all(torch.equal(loaded["model"][k], v) for k, v in model.state_dict().items())

    rebuilt, checkpoint = ckpt.load_model(paths[1])
    assert not rebuilt.training and checkpoint["data"] == payload["data"]
    assert all(torch.equal(rebuilt.state_dict()[k], v) for k, v in model.state_dict().items())


def test_files_that_are_not_our_checkpoints_are_bad_input(torch, ckpt, tmp_path):
    with pytest.raises(BadInput, match="not found"):
        ckpt.load_checkpoint(tmp_path / "missing.pt")
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(BadInput, match="not a dfdgen checkpoint"):
        ckpt.load_checkpoint(text)
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": ckpt.FORMAT, "thing": tmp_path}, pickled)  # a pickled class (a Path)
    with pytest.raises(BadInput, match="weights only"):
        ckpt.load_checkpoint(pickled)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    with pytest.raises(BadInput, match="no format"):
        ckpt.load_checkpoint(foreign)
    newer = tmp_path / "newer.pt"
    torch.save({"format": ckpt.FORMAT, "format_version": ckpt.FORMAT_VERSION + 1}, newer)
    with pytest.raises(BadInput, match="update dfdgen"):
        ckpt.load_checkpoint(newer)


def test_strict_load_names_the_mismatch(torch, ckpt, tmp_path):
    from dfd_models.networks import build_model

    model = build_model("sdgs", SMALL_SDGS)
    state = model.state_dict()
    first = next(iter(state))
    missing = {k: v for k, v in state.items() if k != first}
    with pytest.raises(BadInput, match=f"(?s)model sdgs.*{first}"):
        ckpt.load_strict(model, missing, "model sdgs", "x.pt")
    with pytest.raises(BadInput, match="extra.weight"):
        ckpt.load_strict(model, {**state, "extra.weight": torch.zeros(1)}, "model sdgs", "x.pt")
    with pytest.raises(BadInput, match="size mismatch"):
        ckpt.load_strict(model, {**state, first: torch.zeros(1)}, "model sdgs", "x.pt")

    # A checkpoint whose weights do not fit its own config: load_model refuses it.
    payload = _payload(torch, model)
    payload["config"]["model"]["config"] = {"channels": [4, 16]}
    path = tmp_path / "bad.pt"
    ckpt.save_checkpoint(payload, [path])
    with pytest.raises(BadInput, match="does not match"):
        ckpt.load_model(path)


def test_rng_state_round_trip(torch, ckpt):
    state = ckpt.rng_state()
    first = (random.random(), np.random.rand(), np.random.randn(), torch.rand(3))
    ckpt.set_rng_state(state)
    again = (random.random(), np.random.rand(), np.random.randn(), torch.rand(3))
    assert first[:3] == again[:3] and torch.equal(first[3], again[3])


def test_dataset_info_reads_the_manifest_recipe(ckpt, tmp_path):
    assert ckpt.dataset_info(tmp_path) == {}
    lens = {"model": "blender", "focal_length_mm": 50.0, "f_number": [1.4, 2.8], "sensor_width_mm": 36.0}
    recipe = {"name": "r", "sha256": "ab", "config": {"lens": lens, "scene": {"wall": {"distance_m": [1.5, 2.5]}}}}
    (tmp_path / "manifest.json").write_text(json.dumps({"generator": {"name": "dfdgen"}, "shards": [], "recipe": recipe}))
    assert ckpt.dataset_info(tmp_path) == {"recipe": {"name": "r", "sha256": "ab"}, "lens": lens, "max_depth_m": 2.5}
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(BadInput, match="manifest.json"):
        ckpt.dataset_info(tmp_path)


@pytest.mark.parametrize("change, message", [
    (lambda c: c.pop("config"), "no config in it"),
    (lambda c: c.update(config="model: sdgs"), "config key 'config': got 'model: sdgs'; a mapping of sections"),
    (lambda c: c["config"].update(model={"config": {}}), "its config names no model"),
    (lambda c: c["config"].update(optim={"lr": "fast"}), "config key 'optim.lr'"),
    (lambda c: c.update(model=[1, 2]), "its model is list, not dict"),
    (lambda c: c.pop("step"), "its step is missing, not int"),
])
def test_a_checkpoint_whose_fields_are_not_ours_is_bad_input(torch, ckpt, tmp_path, change, message):
    from dfd_models.networks import build_model

    payload = _payload(torch, build_model("sdgs", SMALL_SDGS))
    change(payload)
    path = tmp_path / "odd.pt"
    ckpt.save_checkpoint(payload, [path])
    with pytest.raises(BadInput, match=f"odd.pt is not a valid dfdgen checkpoint: {re.escape(message)}"):
        ckpt.load_model(path)


@pytest.mark.parametrize("config, message", [
    ({"channels": [100_000, 8]}, "'model.config.channels[0]': got 100000; an integer >= 1 and <= 1024"),
    ({"channels": [4] * 11}, "'model.config.channels': got [4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4]; a list of at most 10 items"),
    ({"blur_scales_px": [1.0] * 11}, "'model.config.blur_scales_px'"),
])
def test_a_checkpoint_asking_for_absurd_layers_is_refused_before_any_is_built(torch, ckpt, tmp_path, config, message):
    """10^5 channels would be 360 GB of weights: the model config's bounds refuse it first."""
    from dfd_models.networks import build_model

    payload = _payload(torch, build_model("sdgs", SMALL_SDGS))
    payload["config"]["model"]["config"] = config
    path = tmp_path / "wide.pt"
    ckpt.save_checkpoint(payload, [path])
    with pytest.raises(BadInput, match=f"wide.pt: cannot build its model: config key {re.escape(message)}"):
        ckpt.load_model(path)
