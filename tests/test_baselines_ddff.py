"""The supervised baselines ``ddff`` and ``lstm_ddff`` (and their shared base, dfd_models.networks.supervised).

Shapes on synthetic stacks (T = 1, 3, 5; the CoC head), the loss's masks, and on
the tiny Cycles-rendered dataset: a few steps lower the loss, four scenes are
overfitted to delta1 >= 0.9, and ``dfdgen train/eval/predict`` run every baseline.
"""

from __future__ import annotations

import json
import re

import pytest

import numpy as np

from dfd_models.config import ConfigError
from generator.dataset.pixels import read_exr_bytes
from test_train_cli import LENS, _run, checkpoint_loss, frame_pngs  # noqa: F401  (frame_pngs is a fixture)

MODELS = ("ddff", "lstm_ddff")
H = W = 16


#: Every supervised baseline (the shape test below covers them all).
SUPERVISED = ("ddff", "lstm_ddff", "recurrent_ae", "defocusnet")

#: Config overrides that keep each baseline fast on 2 CPU cores (H, W multiples of 4).
SMALL = {
    "ddff": {"channels": [8, 16, 16]},
    "lstm_ddff": {"channels": [8, 16, 16], "lstm_hidden": 16},
    "recurrent_ae": {"channels": [8, 16, 16]},
    "defocusnet": {"coc_channels": [8, 16, 16], "depth_channels": [8, 16, 16], "w_coc": 0.1},
}


def _small(name, **config):
    """:data:`SMALL` config of ``name`` plus ``config``."""
    return {**SMALL[name], **config}


def _batch(torch, b=2, t=3, h=H, w=W, seed=0):
    """A loader-like batch: random frames, thin lens with breathing K, random depth (top rows invalid)."""
    from dfd_models.lens import LensParams, intrinsics

    gen = torch.Generator().manual_seed(seed)
    lens = LensParams("thin_lens", torch.full((b,), 0.05), torch.full((b,), 2.0), torch.full((b,), 0.036 / 256 * w))
    focus = torch.linspace(0.4, 1.2, t).expand(b, t).contiguous()  # [B, T]
    depth = 0.3 + 1.5 * torch.rand(b, 1, h, w, generator=gen)
    depth[..., :2, :] = 0
    return {
        "frames": torch.rand(b, t, 3, h, w, generator=gen),
        "focus_m": focus,
        "K": torch.stack([intrinsics(lens, focus[:, i], w, h) for i in range(t)], 1),
        "depth": depth,
        "valid": depth > 0,
        "lens_model": torch.zeros(b, dtype=torch.long),
        "focal_length_m": lens.focal_length_m,
        "f_number": lens.f_number,
        "pixel_pitch_m": lens.sensor_width_m / w,
    }


@pytest.fixture
def one_thread(torch):
    """Run a training loop on one thread (two threads on two shared cores are several times slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", SUPERVISED)
@pytest.mark.parametrize("t,depth_space", [(1, "linear"), (3, "log"), (5, "linear")])
def test_shapes_any_stack_length_and_size(torch, one_thread, name, t, depth_space):
    from dfd_models.networks import MODELS as REGISTRY
    from dfd_models.networks import build_model

    assert REGISTRY[name].supervised is True
    model = build_model(name, _small(name, coc_head=True, depth_space=depth_space))
    m = model.size_multiple
    assert m == 4
    batch = _batch(torch, b=2, t=t, h=3 * m, w=5 * m)
    out = model(batch)
    assert out["depth"].shape == (2, 1, 3 * m, 5 * m) and out["coc"].shape == (2, t, 1, 3 * m, 5 * m)
    cfg = model.config
    assert torch.all((out["depth"] >= cfg.min_depth_m) & (out["depth"] <= cfg.max_depth_m))
    assert torch.all(out["coc"] >= 0)
    terms = model.losses(batch, out)
    assert set(terms) == {"depth", "coc", "total"}
    assert torch.allclose(terms["total"], terms["depth"] + cfg.w_coc * terms["coc"])
    terms["total"].backward()

    if name != "defocusnet":  # its CoC stage is not optional (tested beside the model)
        plain = build_model(name, _small(name, coc_head=False))
        assert "coc" not in plain(batch) and set(plain.losses(batch, plain(batch))) == {"depth", "total"}
    model.eval()
    with torch.no_grad():  # predict on images alone, one frame (dfdgen predict's stack)
        depth = model.predict(batch["frames"][:, :1], batch["focus_m"][:, :1], _lens(torch), batch["K"][:, :1])
        assert depth.shape == (2, 1, 3 * m, 5 * m)
    with pytest.raises(ValueError, match="divisible by 4"):
        model(_batch(torch, h=6, w=8))


@pytest.mark.parametrize("name", SUPERVISED)
def test_blur_features_are_extra_input_channels_of_every_baseline(torch, name):
    """Config ``blur_scales_px`` adds one input channel per scale to every frame: each frame's
    own :func:`blur_features` (sdgs's single-image cue), in the first convolution's input."""
    from dfd_models.focus import blur_features
    from dfd_models.networks import build_model

    scales = [0.5, 1.0, 2.0]
    model = build_model(name, _small(name, blur_scales_px=scales))
    batch = _batch(torch, b=1, t=3)
    cues = model.blur_cues(batch["frames"])[0]
    assert cues.shape == (1, 3, len(scales), H, W)
    torch.testing.assert_close(cues[0, 1], blur_features(batch["frames"][0, 1:2], scales)[0])
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 3 + 1 + len(scales)
    assert model(batch)["depth"].shape == (1, 1, H, W)
    assert build_model(name, _small(name)).blur_cues(batch["frames"]) == []


def _lens(torch):
    from dfd_models.lens import LensParams

    return LensParams("thin_lens", torch.tensor(0.05), torch.tensor(2.0), torch.tensor(0.036 / 256 * W))


@pytest.mark.parametrize("name", ["recurrent_ae", "defocusnet"])
def test_untrained_single_head_baselines_start_in_the_middle_of_the_depth_range(torch, name):
    """A depth head with no focus prior starts at (min + max) / 2 everywhere, not near one end
    (a recurrent AE starting at 0.55 m never reached small_obj's 1.5-2 m wall at lr 2e-4)."""
    from dfd_models.networks import build_model

    model = build_model(name, _small(name, coc_head=True)).eval()
    with torch.no_grad():
        depth = model(_batch(torch, b=2, t=3))["depth"]
    cfg = model.config
    middle = torch.full_like(depth, (cfg.min_depth_m + cfg.max_depth_m) / 2)
    torch.testing.assert_close(depth, middle)


def test_losses_ignore_invalid_and_wall_pixels(torch):
    from dfd_models.networks import build_model

    model = build_model("ddff", _small("ddff", coc_head=True, regions="objects"))
    batch = _batch(torch)
    out = {k: v.detach() for k, v in model(batch).items()}
    wall = torch.zeros_like(batch["valid"])
    wall[..., -3:, :] = True
    base = model.losses(batch, out)

    spoiled = dict(batch, depth=batch["depth"].clone())
    spoiled["depth"][~batch["valid"]] = 123.0  # invalid pixels may hold anything: valid says they don't count
    assert model.losses(spoiled, out)["depth"] == pytest.approx(float(base["depth"]))

    walled = dict(batch, wall=wall)
    masked = model.losses(walled, out)
    walled_far = dict(walled, depth=torch.where(wall, torch.tensor(2.9), batch["depth"]))
    assert model.losses(walled_far, out)["depth"] == pytest.approx(float(masked["depth"]))
    assert model.losses(walled_far, out)["coc"] == pytest.approx(float(masked["coc"]))
    unmasked = build_model("ddff", _small("ddff", coc_head=True, regions="all"))
    unmasked.load_state_dict(model.state_dict())
    assert float(unmasked.losses(walled_far, out)["depth"]) > float(masked["depth"])


def test_log_depth_space_maps_logits_geometrically_and_scores_relative_error(torch):
    """``depth_space: log``: the focus prior's logits are evenly spaced in log depth, the map
    inverts, and the depth loss is the mean |log(p / g)| over the loss mask (hand-made values)."""
    from dfd_models.networks import build_model

    model = build_model("ddff", _small("ddff", depth_space="log", min_depth_m=0.1, max_depth_m=10.0))
    z = torch.tensor([0.1, 1.0, 10.0, 0.5])
    torch.testing.assert_close(model.depth_from_logit(torch.zeros(1)), torch.tensor([1.0]))  # geometric middle
    torch.testing.assert_close(model.depth_from_logit(model.depth_logit(z[1:2])), z[1:2])
    torch.testing.assert_close(model.depth_logit(z[:3]), -model.depth_logit(z[:3]).flip(0))  # symmetric in log z

    batch = _batch(torch, b=1, t=3, h=4, w=4)
    true = torch.full((1, 1, 4, 4), 1.0)
    true[..., 0, :] = 0  # invalid: not scored
    pred = torch.full((1, 1, 4, 4), 2.0)
    pred[..., 1, :] = 0.5
    batch = dict(batch, depth=true, valid=true > 0)
    loss = model.losses(batch, {"depth": pred})["depth"]
    assert float(loss) == pytest.approx(np.log(2.0))  # |log 2| and |log 0.5| alike: relative, not absolute
    linear = build_model("ddff", _small("ddff", min_depth_m=0.1, max_depth_m=10.0))
    assert float(linear.losses(batch, {"depth": pred})["depth"]) == pytest.approx((4 * 0.25 + 8 * 1.0) / 12 / 100)
    with pytest.raises(ConfigError, match="'model.config.depth_space': got 'inverse'; one of: linear, log"):
        build_model("ddff", _small("ddff", depth_space="inverse"))
    for bad, item in (([1.0, -1.0], 1), (["1"], 0), ([0], 0), (1.0, None)):  # Gaussian stds > 0, in a list
        with pytest.raises(ConfigError, match=re.escape("'model.config.blur_scales_px" + (f"[{item}]'" if item
                                                                                          is not None else "'"))):
            build_model("ddff", _small("ddff", blur_scales_px=bad))


def test_coc_target_is_the_lens_coc_or_the_rendered_one(torch):
    from dfd_models.lens import coc_px
    from dfd_models.networks import build_model, lens_from_batch

    model = build_model("ddff", _small("ddff", coc_head=True))
    batch = _batch(torch, t=3)
    target = model.coc_target(batch)  # [B, T, 1, H, W]
    lens = lens_from_batch(batch)
    expected = coc_px(lens, batch["depth"][:, 0].clamp_min(0.1), batch["focus_m"][:, 1], W)
    assert torch.allclose(target[:, 1, 0][batch["valid"][:, 0]], expected[batch["valid"][:, 0]])
    assert torch.all(target[:, :, 0][~batch["valid"][:, 0].unsqueeze(1).expand_as(target[:, :, 0])] == 0)
    rendered = torch.rand(2, 3, 1, H, W)
    assert torch.equal(model.coc_target(dict(batch, coc=rendered)), rendered)


# The tiny rendered dataset


@pytest.fixture(scope="module")
def four_scenes(tiny_dataset, torch):
    """The first four scenes of the tiny dataset, ramp 0, fixed 16 x 16 crops (no flips)."""
    from dfd_models.data import DataSection, make_loader

    torch.manual_seed(0)
    return next(iter(make_loader(DataSection(shards=tiny_dataset, batch_size=4, crop=[H, W], workers=0, ramp=0,
                                             flip=False, shuffle=0))))


def _fit(torch, model, batch, steps, lr):
    torch.manual_seed(0)
    optim = torch.optim.Adam(model.parameters(), lr)
    for _ in range(steps):
        loss = model.losses(batch, model(batch))["total"]
        optim.zero_grad()
        loss.backward()
        optim.step()


@pytest.mark.parametrize("name", MODELS)
def test_overfits_four_scenes(torch, four_scenes, one_thread, name):
    """Supervised training wires model and loss right: delta1 >= 0.9 on the scenes it saw
    (all valid pixels, wall included; 220 Adam steps at lr 2e-3, CoC head on)."""
    from dfd_models.metrics import depth_metrics
    from dfd_models.networks import build_model

    model = build_model(name, _small(name, regions="all", coc_head=True))
    with torch.no_grad():
        before = float(model.losses(four_scenes, model(four_scenes))["total"])
    _fit(torch, model, four_scenes, steps=220, lr=2e-3)
    with torch.no_grad():
        out = model(four_scenes)
        after = float(model.losses(four_scenes, out)["total"])
    assert after < 0.5 * before, (before, after)
    delta1 = depth_metrics(out["depth"], four_scenes["depth"], four_scenes["valid"])["delta1"]
    print(f"{name}: delta1 {delta1:.3f} after 220 steps")
    assert delta1 >= 0.9, delta1


@pytest.mark.parametrize("name", SUPERVISED)
def test_cli_train_eval_predict(tiny_dataset, frame_pngs, tmp_path, torch, name):  # noqa: F811
    """Each baseline through the same commands as sdgs: the loss of a fixed batch falls, the
    checkpoint carries the CoC decoder --coc-head asked for, eval and predict load it."""
    run = tmp_path / "run"
    config = [f"model.config.{key}={json.dumps(value)}" for key, value in SMALL[name].items()]
    result = _run("train", "--shards", tiny_dataset, "--model", name, "--out", run, "--max-steps", 12,
                  "--set", "data.crop=[32, 32]", "--set", "data.batch_size=2", "--set", "data.workers=0",
                  "--set", "optim.lr=1e-3", "--set", "optim.warmup_steps=0", "--set", "train.ckpt_every=1",
                  "--coc-head", *(arg for kv in config for arg in ("--set", kv)))
    assert result.exit_code == 0, result.output
    assert f"trained {name} to step 12" in result.output
    ckpt = run / "ckpt" / "last.pt"
    # lr 1e-3: at 3e-3 defocusnet's depth saturates within a few steps on this tiny set.
    early, late = checkpoint_loss(tiny_dataset, run / "ckpt" / "step_0000001.pt"), checkpoint_loss(tiny_dataset, ckpt)
    assert late < early, (early, late)
    state = torch.load(ckpt, weights_only=True)
    assert state["config"]["model"]["config"]["coc_head"] is True
    assert any("coc" in key for key in state["model"]), "--coc-head did not add a CoC decoder"

    report = tmp_path / "metrics.json"
    result = _run("eval", "--shards", tiny_dataset, "--checkpoint", ckpt, "--split", "train", "--json", report)
    assert result.exit_code == 0, result.output
    metrics = json.loads(report.read_text())
    assert metrics["model"] == name and 0 <= metrics["metrics"]["delta1"] <= 1

    result = _run("predict", *frame_pngs, "--checkpoint", ckpt, "--focus-distance", 0.4, "--focus-distance", 0.9,
                  *LENS, "--out", tmp_path / "pred")
    assert result.exit_code == 0, result.output
    # the frames are one stack: one map, named after its nearest-focused frame (focus 0.4 m)
    written = sorted(p.name for p in (tmp_path / "pred").glob("*.depth.exr"))
    assert written == [f"{frame_pngs[0].stem}.depth.exr"], written
    depth = read_exr_bytes((tmp_path / "pred" / written[0]).read_bytes())["Z"]
    assert depth.shape == (64, 64) and np.isfinite(depth).all() and (depth > 0).all()


def test_cli_coc_head_on_a_model_without_one_is_bad_input(tiny_dataset, tmp_path, torch):  # noqa: F811
    result = _run("train", "--shards", tiny_dataset, "--model", "sdgs", "--out", tmp_path / "run",
                  "--max-steps", 1, "--coc-head")
    assert result.exit_code == 2, result.output
    assert "coc_head" in result.output
    assert not (tmp_path / "run" / "ckpt").exists()

