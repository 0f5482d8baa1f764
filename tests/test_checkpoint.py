"""Checkpoints (dfd_models.checkpoint): weights-only files, atomic writes, strict loads, RNG states."""

from __future__ import annotations

import dataclasses
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
        "config": {"model": {"name": model.name, "config": dataclasses.asdict(model.config)}},
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


def test_an_sdgs_stack_checkpoint_from_before_its_views_loads_as_the_model_it_was(torch, ckpt, tmp_path):
    """An ``sdgs_stack`` saved before ``depth_views`` and ``sweep_space`` (its config complete
    without them, its DepthNet the two-view one) is rebuilt as that model (``ends``, ``inverse``),
    not with today's defaults, whose DepthNet would not take its weights; a fresh config still
    gets the defaults."""
    from dfd_models.networks import build_model

    old = dataclasses.asdict(build_model("sdgs_stack", {**SMALL_SDGS, "depth_views": "ends"}).config)
    state = build_model("sdgs_stack", old).state_dict()
    del old["depth_views"], old["sweep_space"]
    _save_model_config(ckpt, tmp_path / "old.pt", "sdgs_stack", old, state)
    loaded, _ = ckpt.load_model(tmp_path / "old.pt")
    assert (loaded.config.depth_views, loaded.config.sweep_space) == ("ends", "inverse")
    assert build_model("sdgs_stack", SMALL_SDGS).config.depth_views == "all"
    now = build_model("sdgs_stack", SMALL_SDGS)
    _save_model_config(ckpt, tmp_path / "new.pt", "sdgs_stack", dataclasses.asdict(now.config), now.state_dict())
    assert ckpt.load_model(tmp_path / "new.pt")[0].config == now.config


def test_resuming_an_sdgs_stack_run_from_before_its_views_keeps_its_model(torch, tmp_path):
    """A run's saved config.yaml (complete when written) without ``depth_views`` and ``sweep_space``
    resumes as the model it trained (``ends``, ``inverse``); a run saved with them keeps its values."""
    import yaml

    from dfd_models.networks import build_model
    from dfd_models.run_dir import run_config

    for saved, expected in ((None, ("ends", "inverse")), ({"depth_views": "all", "sweep_space": "log"}, ("all", "log"))):
        config = dataclasses.asdict(build_model("sdgs_stack", SMALL_SDGS).config)
        del config["depth_views"], config["sweep_space"]
        config.update(saved or {})
        run = tmp_path / str(len(config))
        run.mkdir()
        (run / "config.yaml").write_text(yaml.safe_dump({"data": {"shards": str(tmp_path)}, "train": {"max_steps": 2},
                                                         "model": {"name": "sdgs_stack", "config": config}}))
        resumed = run_config(run, None, [], {}, resume=True).model.config
        assert (resumed["depth_views"], resumed["sweep_space"]) == expected


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
    ({"channels": [4] * 11}, "'model.config.channels': got [4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4]; a list of 1 to 10 items"),
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


@pytest.mark.parametrize("name, config", [
    ("sdgs", {**SMALL_SDGS, "w_sweep": 0.5, "input_frame": "middle", "defocus_init_px": 0.5, "blur_scales_px": []}),
    ("sdgs_stack", {**SMALL_SDGS, "depth_blur_features": False}),
    ("ddff", {"channels": [4, 8], "depth_space": "log", "regions": "balanced", "wall_weight": 2.0,
              "depth_init_m": 1.5}),
    ("lstm_ddff", {"channels": [4, 8], "lstm_grid": 1, "lstm_hidden": 8}),
    ("recurrent_ae", {"channels": [4, 8], "coc_head": False}),
    ("defocusnet", {"coc_channels": [4, 4], "depth_channels": [4, 4], "blur_scales_px": [1.0]}),
    ("constant", {"region": "objects"}),
    ("dff", {"beyond_range": "extrapolate", "max_depth_m": 2.5}),
    ("dfd_sweep", {}),
])
def test_a_model_config_round_trips_through_a_checkpoint_as_plain_data(torch, ckpt, tmp_path, name, config):
    """The checkpoint holds the model's config as plain data (weights-only safe), and the model
    rebuilt from it has the same config, the values set and every default."""
    from dfd_models.networks import build_model

    model = build_model(name, config)
    plain = dataclasses.asdict(model.config)
    path = tmp_path / f"{name}.pt"
    ckpt.save_checkpoint({"config": {"model": {"name": name, "config": plain}}, "data": {}, "step": 0,
                          "model": model.state_dict()}, [path])
    saved = torch.load(path, weights_only=True)["config"]["model"]["config"]
    assert saved == plain and all(isinstance(v, (bool, int, float, str, list, type(None))) for v in saved.values())
    loaded, _ = ckpt.load_model(path)
    assert type(loaded.config) is type(model.config) and loaded.config == model.config
    assert {key: getattr(loaded.config, key) for key in config} == config  # what was set, not a default


#: Model configs as checkpoints of dfdgen wrote them when a model's config was a dict: every key
#: of the model's default_config() (small widths), supervised ones with the deprecated
#: ``mask_wall`` (null: unset).
OLD_CONFIGS = {
    "sdgs": {"min_depth_m": 0.1, "max_depth_m": 3.0, "depth_init_m": 2.0, "channels": [4, 8], "coc_scale_px": 8.0,
             "input_frame": "nearest", "radiance": "stack", "render_frames": "all",
             "gaussian_scale_px": 0.3989422804014327, "splat_eps2d": 0.0, "splat_alpha_min": 0.0001,
             "splat_backend": "auto", "ssim_alpha": 0.85, "photometric_gamma": 0.45454545454545453,
             "photometric_pool": 4, "photometric_renderer": "splats", "w_photometric": 1.0, "w_coc": 0.05,
             "w_smoothness": 0.001, "w_sweep": 1.0, "depth_from_defocus": True, "blur_scales_px": [0.5, 1.0, 2.0, 4.0],
             "depth_blur_features": False, "balance_bins": 8, "balance_space": "inverse", "sweep_hypotheses": 32,
             "sweep_footprint": "blur", "sweep_ratio": 0.0, "defocus_init_px": None},
    "ddff": {"min_depth_m": 0.1, "max_depth_m": 3.0, "depth_space": "linear", "coc_head": False, "coc_scale_px": 8.0,
             "coc_loss": "l1", "w_coc": 1.0, "regions": "objects", "wall_weight": 1.0, "depth_init_m": None,
             "mask_wall": None, "blur_scales_px": [], "channels": [4, 8]},
    "dff": {"beyond_range": "clamp", "min_depth_m": 0.1, "max_depth_m": 3.0},
}


def _save_model_config(ckpt, path, name, config, state):
    ckpt.save_checkpoint({"config": {"model": {"name": name, "config": config}}, "data": {}, "step": 1,
                          "model": state}, [path])


@pytest.mark.parametrize("name", OLD_CONFIGS)
def test_a_checkpoint_with_a_dict_model_config_of_an_earlier_dfdgen_loads(torch, ckpt, tmp_path, name):
    from dfd_models.networks import build_model

    old = OLD_CONFIGS[name]
    current = {key: value for key, value in old.items() if key != "mask_wall"}  # an unset alias: nothing
    _save_model_config(ckpt, tmp_path / "old.pt", name, old, build_model(name, current).state_dict())
    loaded, _ = ckpt.load_model(tmp_path / "old.pt")
    defaults = dataclasses.asdict(build_model(name).config)  # keys added since take their defaults
    assert dataclasses.asdict(loaded.config) == {**defaults, **current}


@pytest.mark.parametrize("change, message", [
    ({"splat_tile_px": 8}, "config key 'model.config.splat_tile_px': got 8; unknown key; known keys: min_depth_m, "),
    ({"mask_wall": "yes"}, "config key 'model.config.mask_wall': got 'yes'; true or false (deprecated: use regions)"),
    ({"mask_wall": True, "regions": "all"}, "config key 'model.config.regions': got 'all'; 'objects', as the "
                                            "deprecated mask_wall true beside it says: set regions alone"),
    ({"coc_loss": "huber"}, "config key 'model.config.coc_loss': got 'huber'; one of: l1, mse"),
    ({"min_depth_m": 3.0}, "config key 'model.config.max_depth_m': got 3.0; a depth above min_depth_m = 3.0 m"),
])
def test_a_checkpoint_whose_model_config_this_dfdgen_cannot_take_is_refused_by_name(torch, ckpt, tmp_path, change,
                                                                                    message):
    from dfd_models.networks import build_model

    path = tmp_path / "old.pt"
    _save_model_config(ckpt, path, "ddff", {**OLD_CONFIGS["ddff"], **change}, build_model("ddff", {"channels": [4, 8]})
                       .state_dict())
    with pytest.raises(BadInput) as info:
        ckpt.load_model(path)
    assert str(info.value).startswith(f"{path}: cannot build its model: {message}"), str(info.value)
