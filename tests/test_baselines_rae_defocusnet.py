"""The supervised baselines ``recurrent_ae`` and ``defocusnet``.

(Their shapes on synthetic stacks are tested with every baseline in
test_baselines_ddff.py.) The CoC head options, the loss's masks, and on the
tiny Cycles-rendered dataset: a few steps lower the loss, four scenes are
overfitted (the commands run them in test_baselines_ddff.py).
"""

from __future__ import annotations

import pytest

from dfd_models.config import ConfigError
from test_baselines_ddff import SMALL, _batch, _fit, four_scenes, one_thread  # noqa: F401  (fixtures)

MODELS = ("recurrent_ae", "defocusnet")


def test_coc_head_is_optional_for_recurrent_ae_and_always_on_for_defocusnet(torch):
    from dfd_models.networks import build_model

    assert build_model("recurrent_ae").config.coc_head is True
    plain = build_model("recurrent_ae", {**SMALL["recurrent_ae"], "coc_head": False})
    batch = _batch(torch)
    assert "coc" not in plain(batch) and set(plain.losses(batch, plain(batch))) == {"depth", "total"}
    assert build_model("defocusnet").config.coc_head is True
    with pytest.raises(ConfigError, match="'model.config.coc_head': got False; true: the CoC head is defocusnet's"):
        build_model("defocusnet", {"coc_head": False})


def test_defocusnet_blur_features_reach_the_coc_stage(torch):
    """``blur_scales_px`` widens the CoC stage's input by one channel per feature (RGB 3 + focus
    plane 1 + the features), and the model runs on a stack with them."""
    from dfd_models.networks import build_model

    widths = {}
    for scales in ([], [0.5, 1.0, 2.0]):
        model = build_model("defocusnet", {**SMALL["defocusnet"], "blur_scales_px": scales})
        widths[len(scales)] = next(model.coc_net.parameters()).shape[1]  # the first convolution's input
        batch = _batch(torch)
        out = model.stages(batch["frames"], batch["focus_m"])
        assert out["coc"].shape[:2] == batch["frames"].shape[:2] and torch.isfinite(out["depth"]).all()
    assert widths == {0: 4, 3: 4 + 3}  # 4 + the blur features (log energy + 2 ratios)


@pytest.mark.parametrize("name", MODELS)
def test_losses_ignore_invalid_pixels(torch, name):
    from dfd_models.networks import build_model

    model = build_model(name, {**SMALL[name], "coc_head": True})
    batch = _batch(torch)
    out = {k: v.detach() for k, v in model(batch).items()}
    base = model.losses(batch, out)
    spoiled = dict(batch, depth=batch["depth"].clone())
    spoiled["depth"][~batch["valid"]] = 123.0
    terms = model.losses(spoiled, out)
    assert terms["depth"] == pytest.approx(float(base["depth"]))
    assert terms["coc"] == pytest.approx(float(base["coc"]))


# The tiny rendered dataset


@pytest.mark.parametrize("name", MODELS)
def test_overfits_four_scenes(torch, four_scenes, one_thread, name):  # noqa: F811
    """Supervised training wires model and loss right: the loss falls, and delta1 >= 0.9 on the
    scenes it saw (all valid pixels, wall included; 700 Adam steps, CoC on), in eval mode."""
    from dfd_models.metrics import depth_metrics
    from dfd_models.networks import build_model

    model = build_model(name, {**SMALL[name], "regions": "all", "coc_head": True})
    with torch.no_grad():
        before = float(model.losses(four_scenes, model(four_scenes))["total"])
    _fit(torch, model, four_scenes, steps=700, lr=1e-2 if name == "recurrent_ae" else 3e-3)
    model.eval()
    with torch.no_grad():
        out = model(four_scenes)
        after = float(model.losses(four_scenes, out)["total"])
    assert after < 0.5 * before, (before, after)
    delta1 = depth_metrics(out["depth"], four_scenes["depth"], four_scenes["valid"])["delta1"]
    print(f"{name}: delta1 {delta1:.3f} after 700 steps")
    assert delta1 >= 0.9, delta1
