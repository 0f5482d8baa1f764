"""Wall marking (issue 6): ``depth.wall_m`` in the metadata and the loader's ``wall`` mask.

The wall is a fronto-parallel plane, so its pixels are the valid ones whose planar
depth equals ``wall_m`` (within ``WALL_RTOL``); a Cycles render with the wall
removed shows sky (depth 0) exactly there.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from fakes import fake_render, make_spec
from generator.recipe.recipe import load_recipe
from generator.dataset.metadata import wall_depth_m
from generator.dataset.sample import decode_sample, encode_sample
from generator.scene.spec import MaterialSpec, ObjectSpec
from test_baselines_ddff import _fit, one_thread  # noqa: F401  (one_thread: a fixture)
from test_data_pipeline import write_dataset

RECIPE = load_recipe("small_obj")
WALL_M = 3.0  # metres in front of make_spec's camera (at the origin, looking along world +Y)


@pytest.fixture
def data(torch):
    """dfd_models.data (imports torch)."""
    import dfd_models.data.batch  # noqa: F401  (attribute access below)

    return dfd_models.data


def _with_wall(spec, rotation=(math.pi / 2, 0.0, 0.0), **deform):
    wall = ObjectSpec("wall", "plane", (0.0, WALL_M, 0.0), rotation, (5.0, 5.0, 1.0), MaterialSpec("noise"), **deform)
    return dataclasses.replace(spec, objects=(wall, *spec.objects))


def test_wall_depth_in_metadata():
    spec = _with_wall(make_spec(0))
    meta = decode_sample(encode_sample(spec, fake_render(spec), RECIPE)).meta
    assert meta["depth"]["wall_m"] == pytest.approx(WALL_M, rel=1e-12)
    no_wall = make_spec(0)
    assert decode_sample(encode_sample(no_wall, fake_render(no_wall), RECIPE)).meta["depth"]["wall_m"] is None


@pytest.mark.parametrize("change", [{"rotation": (math.pi / 2 + 0.1, 0.0, 0.0)}, {"displace": 0.1}, {"twist": 0.2}])
def test_tilted_or_deformed_wall_has_no_single_depth(change):
    assert wall_depth_m(_with_wall(make_spec(0), **change)) is None


def _render_with_wall(spec):
    """fake_render, with the left 12 columns on the wall (one just inside the tolerance)
    and one pixel just outside it."""
    rendered = fake_render(spec)
    for d in rendered.depth:
        d[:, :12] = WALL_M
        d[5, 3] = WALL_M * (1 + 5e-5)
        d[6, 20] = WALL_M * (1 + 2e-4)
        d[:3, :3] = 0.0  # no surface: never wall
    return rendered


def test_loader_wall_mask_follows_crop_and_flip(tmp_path, data):
    spec = _with_wall(make_spec(0))
    write_dataset(tmp_path / "ds", [spec], [_render_with_wall(spec)])
    flips = set()
    for seed in range(8):
        (s,) = list(data.FocalStackDataset(data.DataSection(shards=tmp_path / "ds", split=None, crop=[16, 20], ramp=0,
                                                            shuffle=0), batched=False, seed=seed))
        depth, wall = s["depth"][0].numpy(), s["wall"][0].numpy()
        assert s["wall"].dtype == s["valid"].dtype and s["wall"].shape == s["valid"].shape
        np.testing.assert_array_equal(wall, (depth == np.float32(WALL_M)) | (depth == np.float32(WALL_M * (1 + 5e-5))))
        assert not (wall & ~s["valid"][0].numpy()).any()
        flips.add(bool(wall[:, -1].any() and not wall[:, 0].any()))  # the wall strip moved to the right
    assert flips == {True, False}


def test_samples_without_wall_m_have_an_all_false_mask(tmp_path, data, torch):
    specs = [_with_wall(make_spec(i)) for i in range(2)]

    def drop_wall_m(sample):
        meta = json.loads(sample["json"])
        if meta["scene_index"] == 1:
            del meta["depth"]["wall_m"]
            sample["json"] = json.dumps(meta).encode()
        return sample

    write_dataset(tmp_path / "ds", specs, [_render_with_wall(s) for s in specs], edit=drop_wall_m)
    (batch,) = list(data.make_loader(data.DataSection(shards=tmp_path / "ds", batch_size=2, crop=None, workers=0,
                                                     flip=False, shuffle=0)))
    by_key = dict(zip(batch["key"], batch["wall"]))
    assert by_key["00000000"].any() and not by_key["00000001"].any()


def test_cycles_wall_mask_is_where_objects_are_not(bpy, data):
    """Render a small_obj scene, then the same scene without its wall: the mask is
    exactly where the second render sees nothing, in every frame's depth map."""
    from generator.render.blender.render import render_scene
    from generator.draw.scene import draw_scene

    recipe = load_recipe("small_obj", ["image.width=32", "image.height=32", "image.samples=1",
                                       "focus.ramps=1", "focus.frames_per_ramp=2", "scene.objects.count=[3, 3]"])
    spec = draw_scene(recipe, 0)
    wall_m = wall_depth_m(spec)
    assert wall_m is not None
    with_wall = render_scene(spec, threads=2).depth
    without = render_scene(dataclasses.replace(spec, objects=spec.objects[1:]), threads=2).depth
    assert len(with_wall) == len(spec.frames) == 2  # thin lens: one depth map per frame
    for full, bare in zip(with_wall, without):
        assert (full > 0).all()  # the wall fills the view
        mask = data.batch.wall_mask(full[..., None], wall_m)[..., 0]
        np.testing.assert_array_equal(mask, bare == 0)
        assert 0.2 < mask.mean() < 1.0  # objects and wall both seen
        assert np.abs(full[mask] - wall_m).max() <= 1e-6 * wall_m  # float32 render error, far inside WALL_RTOL


# The supervised losses' regions (issue 30): objects, wall, or both balanced


SMALL_DDFF = {"channels": [8, 16, 16]}


def _walled_batch(torch, b=2, t=3, h=16, w=16, seed=0, object_px=5):
    """A loader-like batch (test_baselines_ddff's) whose depth is a wall at 2 m with one
    ``object_px``-square object at 0.5 m per image (25 / 256 ~ 10 % of the pixels at 5, 16 x 16),
    the object's frames redder than the wall's (a cue a network can learn), row 0 invalid."""
    from test_baselines_ddff import _batch

    batch = _batch(torch, b=b, t=t, h=h, w=w, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    obj = torch.zeros(b, 1, h, w, dtype=torch.bool)
    for i in range(b):
        y, x = torch.randint(1, h - object_px, (2,), generator=gen)
        obj[i, 0, y:y + object_px, x:x + object_px] = True
    depth = torch.where(obj, torch.tensor(0.5), torch.tensor(2.0))
    depth[..., 0, :] = 0
    frames = 0.2 * batch["frames"]
    frames[:, :, 0] += 0.8 * obj[:, None, 0]
    return dict(batch, frames=frames, depth=depth, valid=depth > 0, wall=~obj & (depth > 0))


def _region_errors(torch, model, batch, outputs):
    """Per-pixel depth and CoC errors of the module docstring, computed here from scratch.

    Returns:
        (depth error [B, 1, H, W], CoC error [B, T, 1, H, W])."""
    cfg = model.config
    pred, true = outputs["depth"], batch["depth"]
    if cfg.depth_space == "log":
        depth = (pred.clamp_min(cfg.min_depth_m).log() - true.clamp_min(cfg.min_depth_m).log()).abs()
    else:
        depth = ((pred - true) / cfg.max_depth_m) ** 2
    coc = ((outputs["coc"] - model.coc_target(batch)) / cfg.coc_scale_px).abs()
    return depth, coc


@pytest.mark.parametrize("depth_space", ["log", "linear"])
@pytest.mark.parametrize("wall_weight", [1.0, 0.25])
def test_balanced_loss_is_the_weighted_mean_of_the_region_means(torch, depth_space, wall_weight):
    from dfd_models.networks import build_model

    model = build_model("ddff", {**SMALL_DDFF, "coc_head": True, "depth_space": depth_space,
                                 "regions": "balanced", "wall_weight": wall_weight})
    batch = _walled_batch(torch)
    with torch.no_grad():
        out = model(batch)
        out["depth"] = out["depth"] * (1 + 0.5 * torch.rand_like(out["depth"]))  # errors differ per pixel
        terms = model.losses(batch, out)
    depth_err, coc_err = _region_errors(torch, model, batch, out)
    valid, wall = batch["valid"], batch["wall"]
    objects, walls = valid & ~wall, valid & wall
    assert 0.05 < objects.float().mean() < 0.15 and walls.float().mean() > 0.8
    frames = coc_err.shape[1]
    for term, err, pick in (("depth", depth_err, lambda m: m),
                            ("coc", coc_err, lambda m: m.unsqueeze(1).expand(-1, frames, -1, -1, -1))):
        expected = (err[pick(objects)].mean() + wall_weight * err[pick(walls)].mean()) / (1 + wall_weight)
        assert float(terms[term]) == pytest.approx(float(expected), rel=1e-5), term
        assert float(terms[term]) != pytest.approx(float(err[pick(valid)].mean()), rel=1e-3)  # not the plain mean
    no_wall = {k: v for k, v in batch.items() if k != "wall"}  # falls back to all valid pixels
    assert float(model.losses(no_wall, out)["depth"]) == pytest.approx(float(depth_err[valid].mean()), rel=1e-5)
    plain = build_model("ddff", {**SMALL_DDFF, "coc_head": True, "depth_space": depth_space, "regions": "all"})
    assert float(plain.losses(batch, out)["depth"]) == pytest.approx(float(depth_err[valid].mean()), rel=1e-5)


@pytest.mark.parametrize("empty", ["objects", "wall", "both"])
def test_an_empty_region_contributes_nothing(torch, empty):
    """A batch all wall, all objects, or all invalid: finite loss and gradients; the
    balanced loss is then the other region's mean (0 with none)."""
    from dfd_models.networks import build_model

    model = build_model("ddff", {**SMALL_DDFF, "coc_head": True, "depth_space": "log", "regions": "balanced"})
    batch = _walled_batch(torch)
    valid = batch["valid"] & (empty != "both")
    wall = valid if empty == "objects" else torch.zeros_like(valid)
    batch = dict(batch, valid=valid, wall=wall)
    out = model(batch)
    terms = model.losses(batch, out)
    terms["total"].backward()
    assert all(torch.isfinite(v) for v in terms.values())
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    depth_err, _ = _region_errors(torch, model, batch, {k: v.detach() for k, v in out.items()})
    expected = float(depth_err[valid].mean()) if valid.any() else 0.0
    assert terms["depth"].item() == pytest.approx(expected, rel=1e-5, abs=1e-12)


def test_objects_regions_ignore_the_wall_predictions(torch):
    from dfd_models.networks import build_model

    batch = _walled_batch(torch)
    losses = {}
    for regions in ("objects", "balanced", "all"):
        model = build_model("ddff", {**SMALL_DDFF, "coc_head": True, "regions": regions})
        with torch.no_grad():
            out = model(batch)
            moved = {k: torch.where(batch["wall"] if k == "depth" else batch["wall"][:, None], 3 * v, v)
                     for k, v in out.items()}  # other depth and CoC on the wall only
            losses[regions] = [model.losses(batch, o) for o in (out, moved)]
    before, after = losses["objects"]
    for term in ("depth", "coc", "total"):
        assert float(after[term]) == float(before[term]), term
    for regions in ("balanced", "all"):
        before, after = losses[regions]
        assert float(after["depth"]) != pytest.approx(float(before["depth"]), rel=1e-3), regions


def test_mask_wall_is_a_deprecated_alias_of_regions(torch, tmp_path):
    """Configs and checkpoints written before ``regions`` carry ``mask_wall``: true is
    "objects", false "all"; a contradicting ``regions`` beside it is refused."""
    from dfd_models.checkpoint import load_model, save_checkpoint
    from dfd_models.config import ConfigError, TrainConfig
    from dfd_models.networks import build_model
    from dfd_models.run_dir import complete_model_config

    for mask_wall, regions in ((True, "objects"), (False, "all")):
        with pytest.warns(DeprecationWarning, match="mask_wall"):
            model = build_model("defocusnet", {"mask_wall": mask_wall})
        assert model.config.regions == regions and not hasattr(model.config, "mask_wall")
        assert build_model("defocusnet", model.config).config == model.config  # the config rebuilds it
        assert build_model("defocusnet", dataclasses.asdict(model.config)).config == model.config  # as saved
    with pytest.warns(DeprecationWarning):
        assert build_model("ddff", {"mask_wall": True, "regions": "objects"}).config.regions == "objects"
    with pytest.raises(ConfigError, match="'objects', as the deprecated mask_wall true"):
        build_model("ddff", {"mask_wall": True, "regions": "balanced"})
    with pytest.raises(ConfigError, match="model.config.mask_wall"):
        build_model("ddff", {"mask_wall": "yes"})
    for bad, match in (({"regions": "wall"}, "'model.config.regions': got 'wall'; one of: balanced, objects"),
                       ({"wall_weight": 0}, "'model.config.wall_weight': got 0; a number > 0")):
        with pytest.raises(ConfigError, match=match):
            build_model("ddff", {**SMALL_DDFF, **bad})
    old_run = TrainConfig.from_dict({"model": {"name": "ddff", "config": {"mask_wall": True}}})
    with pytest.warns(DeprecationWarning):  # a run's completed config (--set model.config.mask_wall=true) names regions
        completed = complete_model_config(old_run)
    assert completed.model.config["regions"] == "objects" and "mask_wall" not in completed.model.config
    assert build_model("ddff", completed.model.config).config.regions == "objects"

    old = build_model("ddff", SMALL_DDFF)
    config = {**SMALL_DDFF, **{k: v for k, v in dataclasses.asdict(old.config).items()
                               if k not in ("regions", "wall_weight")},
              "mask_wall": True}  # an old checkpoint's config: mask_wall, no regions
    save_checkpoint({"config": {"model": {"name": "ddff", "config": config}}, "data": {}, "step": 1,
                     "model": old.state_dict()}, [tmp_path / "old.pt"])
    with pytest.warns(DeprecationWarning):
        loaded, _ = load_model(tmp_path / "old.pt")
    assert loaded.config.regions == "objects"


def _fit_errors(torch, regions, steps=40, lr=3e-3, seed=0):
    """Mean |log z_pred - log z_true| on the objects and on the wall of a :func:`_walled_batch`
    (wall ~90 % of the pixels) after ``steps`` Adam steps of a small ddff on it."""
    from dfd_models.networks import build_model

    torch.manual_seed(seed)
    model = build_model("ddff", {**SMALL_DDFF, "depth_space": "log", "regions": regions})
    batch = _walled_batch(torch, b=4)
    _fit(torch, model, batch, steps, lr)
    with torch.no_grad():
        err = (model(batch)["depth"].log() - batch["depth"].clamp_min(0.1).log()).abs()
    objects, wall = batch["valid"] & ~batch["wall"], batch["wall"]
    return float(err[objects].mean()), float(err[wall].mean())


def test_balanced_regions_learn_objects_and_wall(torch, one_thread):
    """Measured (ddff, 40 steps at lr 3e-3, seeds 0-3): "balanced" ends with log errors of
    0.04-0.10 on the objects and 0.13-0.21 on the wall; "all" learns the wall (0.07-0.10) but
    leaves the objects at 1.3-1.4 (ln 4 = 1.39: predicted at the wall's depth)."""
    balanced = _fit_errors(torch, "balanced")
    plain = _fit_errors(torch, "all")
    print(f"objects / wall log error: balanced {balanced}, all {plain}")
    assert max(balanced) < 0.3, balanced
    assert plain[0] > 0.6 and plain[1] < 0.3, plain


def test_split_regions_switch_to_the_wall_head_and_score_each_part_on_its_region(torch):
    """regions "split": depth is the wall head's where its logit > 0, the network's elsewhere; the
    network's depth is scored on the objects, the wall head's depth on the wall, its mask by a
    cross-entropy whose two regions weigh the same."""
    import torch.nn.functional as F

    from dfd_models.networks import build_model

    torch.manual_seed(0)
    model = build_model("ddff", {**SMALL_DDFF, "depth_space": "log", "regions": "split"})
    batch = _walled_batch(torch)
    with torch.no_grad():
        for p in model.wall_head.mask.parameters():  # a mask head that is not all zeros
            p.add_(0.1 * torch.randn_like(p))
        outputs = model(batch)
        terms = model.losses(batch, outputs)
    wall_seen = outputs["wall_logit"] > 0
    assert 0 < wall_seen.float().mean() < 1
    assert torch.equal(outputs["depth"], torch.where(wall_seen, outputs["wall_depth"], outputs["object_depth"]))
    valid, wall = batch["valid"], batch["wall"]
    objects = valid & ~wall

    def log_error(pred):
        return (pred.log() - batch["depth"].clamp_min(0.1).log()).abs()

    assert torch.allclose(terms["depth"], log_error(outputs["object_depth"])[objects].mean())
    assert torch.allclose(terms["wall_depth"], log_error(outputs["wall_depth"])[wall].mean())
    bce = F.binary_cross_entropy_with_logits(outputs["wall_logit"], wall.float(), reduction="none")
    assert torch.allclose(terms["wall_mask"], (bce[objects].mean() + bce[wall].mean()) / 2)
    assert torch.allclose(terms["total"], terms["depth"] + terms["wall_depth"] + terms["wall_mask"])


def test_split_regions_learn_where_the_wall_is(torch, one_thread):
    """A small ddff with a wall head, 60 Adam steps (lr 1e-3) on a batch whose objects are redder than
    the wall: the mask head must find the wall and its depth (at lr 3e-3 the wall's depth overshoots
    onto the 3 m bound, where the sigmoid has no slope left)."""
    from dfd_models.networks import build_model

    torch.manual_seed(0)
    model = build_model("ddff", {**SMALL_DDFF, "depth_space": "log", "regions": "split"})
    batch = _walled_batch(torch, b=4)
    _fit(torch, model, batch, 60, 1e-3)
    with torch.no_grad():
        outputs = model(batch)
    valid, wall = batch["valid"], batch["wall"]
    right = (outputs["wall_logit"] > 0) == wall
    assert right[valid].float().mean() > 0.9
    err = (outputs["depth"].log() - batch["depth"].clamp_min(0.1).log()).abs()
    assert err[wall].mean() < 0.3


def test_depth_init_sets_the_untrained_output_and_keeps_the_focus_prior(torch):
    """depth_init_m: an untrained defocusnet outputs that depth everywhere; ddff's focus-weighted
    logit still turns a frame's focus distance into itself (depth_logit inverts the shifted map)."""
    from dfd_models.config import ConfigError
    from dfd_models.networks import build_model
    from test_baselines_ddff import _batch

    batch = _batch(torch, b=2, t=3, h=16, w=16)
    for space in ("log", "linear"):
        model = build_model("defocusnet", {"depth_space": space, "depth_init_m": 1.75})
        with torch.no_grad():
            depth = model(batch)["depth"]
        assert torch.allclose(depth, torch.full_like(depth, 1.75), rtol=1e-4), space
        ddff = build_model("ddff", {**SMALL_DDFF, "depth_space": space, "depth_init_m": 1.75})
        focus = torch.tensor([0.3, 0.8, 1.2])
        assert torch.allclose(ddff.depth_from_logit(ddff.depth_logit(focus)), focus, rtol=1e-4), space
    plain = build_model("defocusnet", {"depth_space": "log"})
    with torch.no_grad():
        assert not torch.allclose(plain(batch)["depth"], torch.tensor(1.75))
    with pytest.raises(ConfigError,
                       match=r"'model.config.depth_init_m': got 5.0; null or a depth inside \(0.1, 3.0\) m"):
        build_model("defocusnet", {"depth_init_m": 5.0})
