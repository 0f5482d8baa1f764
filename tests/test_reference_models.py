"""The reference predictors ``constant`` and ``dff`` (dfd_models.networks.reference): fitted, not
trained, through ``dfdgen train`` / ``dfdgen eval`` / ``dfdgen predict``; depth from focus on a
Cycles stack of planes (tests/planes_stack.py) and on synthetic stacks; the frame warp."""

from __future__ import annotations

import dataclasses
import json
import math
import tarfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from generator.cli import main
from generator.dataset.pixels import read_exr_bytes
from planes_stack import PLANE_DEPTHS_M, plane_interior, render_planes_stack

LENS = ("--lens-focal-length-mm", "50", "--f-number", "2")  # the tiny recipe's sensor width is fixed


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _train_depths(shards: Path, region: str = "all") -> np.ndarray:
    """Every valid planar depth (float64) of the reference frame (the middle of ramp 0 by focus) of every
    train-split sample, read from the shards' members directly (not through the loader); with
    ``region="objects"`` those off the wall (within 1e-4 of the metadata's ``depth.wall_m``)."""
    from dfd_models.data.batch import reference_index

    values = []
    for path in sorted(Path(shards).glob("*-train-*.tar")):
        with tarfile.open(path) as tar:
            members = {m.name: m for m in tar.getmembers()}
            for name in sorted(n for n in members if n.endswith(".json")):
                key = name[: -len(".json")]
                meta = json.loads(tar.extractfile(members[name]).read())
                ramp = sorted((f for f in meta["frames"] if f["ramp"] == 0), key=lambda f: f["focus_distance_m"])
                member = f"{key}.depth.exr" if f"{key}.depth.exr" in members else \
                    f"{key}.f{ramp[reference_index(len(ramp))]['index']:03d}.depth.exr"
                depth = read_exr_bytes(tar.extractfile(members[member]).read())["Z"]
                keep = depth > 0
                if region == "objects":
                    wall_m = float(meta["depth"]["wall_m"])  # the tiny recipe has a fronto-parallel wall
                    keep &= np.abs(depth.astype(np.float64) - wall_m) > 1e-4 * wall_m
                values.append(depth[keep].astype(np.float64))
    return np.concatenate(values)


# Through the command line, on the tiny dataset


@pytest.fixture(scope="module")
def fitted(tiny_dataset, tmp_path_factory, torch):
    """Run directories of ``dfdgen train`` for constant and dff, by model name."""
    runs = {}
    for name in ("constant", "dff"):
        run = tmp_path_factory.mktemp(name) / "run"
        result = _run("train", "--shards", tiny_dataset, "--model", name, "--out", run, "--max-steps", 5,
                      "--set", "data.workers=0")
        assert result.exit_code == 0, result.output
        assert f"{name} has no trainable parameters" in result.output, result.output
        assert "train.max_steps and train.epochs do not apply" in result.output
        assert f"fitted {name} in" in result.output
        runs[name] = run
    return runs


def test_fit_writes_a_step_0_checkpoint_without_optimizer(fitted, torch):
    from dfd_models.checkpoint import load_model

    for name, run in fitted.items():
        assert sorted(p.name for p in (run / "ckpt").iterdir()) == ["last.pt", "step_0000000.pt"]
        assert (run / "config.yaml").is_file() and not (run / "tb").exists()
        ckpt = torch.load(run / "ckpt" / "last.pt", weights_only=True)
        assert ckpt["step"] == 0 and ckpt["optimizer"] is None and ckpt["scheduler"] is None
        assert ckpt["scaler"] is None and ckpt["config"]["model"]["name"] == name
        model, _ = load_model(run / "ckpt" / "last.pt")
        assert model.name == name and not model.trainable and not list(model.parameters())
    assert set(torch.load(fitted["dff"] / "ckpt" / "last.pt", weights_only=True)["model"]) == set()


def test_constant_is_the_exact_median_of_the_training_depths(fitted, tiny_dataset, torch):
    ckpt = torch.load(fitted["constant"] / "ckpt" / "last.pt", weights_only=True)
    depths = _train_depths(tiny_dataset)
    assert int(ckpt["model"]["n_pixels"]) == depths.size
    assert float(ckpt["model"]["depth_m"]) == float(np.median(depths))


def test_eval_scores_the_fitted_references(fitted, tiny_dataset, tmp_path):
    depths = _train_depths(tiny_dataset)
    median = np.float64(np.float32(np.median(depths)))  # predict outputs float32
    for name, run in fitted.items():
        out = tmp_path / f"{name}.json"
        result = _run("eval", "--shards", tiny_dataset, "--checkpoint", run / "ckpt" / "last.pt", "--split", "train",
                      "--workers", 0, "--json", out)
        assert result.exit_code == 0, result.output
        report = json.loads(out.read_text())
        assert report["model"] == name and report["step"] == 0 and report["samples"] == 8
        metrics = report["metrics"]
        assert all(math.isfinite(v) for v in metrics.values()) and metrics["n_pixels"] == depths.size
        if name == "constant":  # independently: the metrics of one depth everywhere
            assert metrics["abs_rel"] == pytest.approx(np.mean(np.abs(median - depths) / depths), rel=1e-9)
            assert metrics["mae"] == pytest.approx(np.mean(np.abs(median - depths)), rel=1e-9)


def test_predict_and_resume_of_a_fitted_constant(fitted, tiny_dataset, tmp_path, torch):
    run = fitted["constant"]
    value = float(torch.load(run / "ckpt" / "last.pt", weights_only=True)["model"]["depth_m"])
    with tarfile.open(next(Path(tiny_dataset).glob("*-train-000000.tar"))) as tar:
        (tmp_path / "frame.png").write_bytes(tar.extractfile("00000000.f001.png").read())
    result = _run("predict", tmp_path / "frame.png", "--checkpoint", run / "ckpt" / "last.pt",
                  "--focus-distance", 0.5, *LENS, "--out", tmp_path / "pred")
    assert result.exit_code == 0, result.output
    depth = read_exr_bytes((tmp_path / "pred" / "frame.depth.exr").read_bytes())["Z"]
    assert depth.shape == (64, 64) and np.all(depth == np.float32(value))

    result = _run("train", "--out", run, "--resume")  # fits again: the same pass, the same value
    assert result.exit_code == 0, result.output
    again = torch.load(run / "ckpt" / "last.pt", weights_only=True)
    assert float(again["model"]["depth_m"]) == value and again["step"] == 0


@pytest.fixture(scope="module")
def fitted_objects(tiny_dataset, tmp_path_factory, torch):
    """Run directory of ``dfdgen train --model constant --set model.config.region=objects``."""
    run = tmp_path_factory.mktemp("constant_objects") / "run"
    result = _run("train", "--shards", tiny_dataset, "--model", "constant", "--out", run, "--max-steps", 5,
                  "--set", "model.config.region=objects", "--set", "data.workers=0")
    assert result.exit_code == 0, result.output
    assert "wall_pixels_left_out" in result.output, result.output
    return run


def test_objects_constant_is_the_median_off_the_wall(fitted, fitted_objects, tiny_dataset, tmp_path, torch):
    """region=objects: the exact median of the valid depths off the wall (computed here from the
    shards' EXRs and metadata), below the all-pixel one (the wall is the farthest surface); the
    field survives the checkpoint; eval scores that constant on the objects region."""
    from dfd_models.checkpoint import load_model

    ckpt = torch.load(fitted_objects / "ckpt" / "last.pt", weights_only=True)
    objects, every = _train_depths(tiny_dataset, "objects"), _train_depths(tiny_dataset)
    assert 0 < objects.size < every.size
    assert int(ckpt["model"]["n_pixels"]) == objects.size
    assert float(ckpt["model"]["depth_m"]) == float(np.median(objects))
    everywhere = float(torch.load(fitted["constant"] / "ckpt" / "last.pt", weights_only=True)["model"]["depth_m"])
    assert float(np.median(objects)) < everywhere == float(np.median(every))
    assert ckpt["config"]["model"]["config"] == {"region": "objects"}
    model, _ = load_model(fitted_objects / "ckpt" / "last.pt")
    assert model.config.region == "objects" and float(model.depth_m) == float(np.median(objects))
    assert load_model(fitted["constant"] / "ckpt" / "last.pt")[0].config.region == "all"

    out = tmp_path / "objects.json"
    result = _run("eval", "--shards", tiny_dataset, "--checkpoint", fitted_objects / "ckpt" / "last.pt",
                  "--split", "train", "--workers", 0, "--json", out)
    assert result.exit_code == 0, result.output
    scored = json.loads(out.read_text())["regions"]["objects"]
    median = np.float64(np.float32(np.median(objects)))
    assert scored["n_pixels"] == objects.size
    assert scored["abs_rel"] == pytest.approx(np.mean(np.abs(median - objects) / objects), rel=1e-9)


def test_constant_region_is_validated(tiny_dataset, tmp_path, torch):
    from dfd_models.config import ConfigError
    from dfd_models.networks import build_model

    result = _run("train", "--shards", tiny_dataset, "--model", "constant", "--out", tmp_path / "run",
                  "--max-steps", 5, "--set", "model.config.region=wall", "--set", "data.workers=0")
    assert result.exit_code == 2, result.output
    assert "model.config.region" in result.output and "one of: all, objects" in result.output
    assert not (tmp_path / "run" / "ckpt").exists()
    with pytest.raises(ConfigError, match="model.config.region"):
        build_model("constant", {"region": 1})
    depth = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 2, 2)
    valid = depth > 0
    with pytest.raises(ValueError, match="needs the wall mask"):  # a batch without ``wall``
        build_model("constant", {"region": "objects"}).fit(iter([{"depth": depth, "valid": valid}]))
    with pytest.raises(ValueError, match="no valid pixel off the background wall"):
        build_model("constant", {"region": "objects"}).fit(iter([{"depth": depth, "valid": valid, "wall": valid}]))
    wall = depth == 4.0  # the farthest pixel is wall: the median of 1, 2, 3
    fitted = build_model("constant", {"region": "objects"}).fit(iter([{"depth": depth, "valid": valid, "wall": wall}]))
    assert fitted == {"depth_m": 2.0, "pixels": 3.0, "wall_pixels_left_out": 1.0}
    assert build_model("constant").fit(iter([{"depth": depth, "valid": valid, "wall": wall}]))["depth_m"] == 2.5


# The models themselves


def test_reference_models_are_registered_fit_and_refuse_to_train(torch):
    from dfd_models.networks import MODELS, build_model

    assert MODELS["constant"].supervised and not MODELS["dff"].supervised
    assert not MODELS["constant"].trainable and not MODELS["dff"].trainable and MODELS["sdgs"].trainable
    frames, focus = torch.rand(2, 3, 3, 8, 12), torch.tensor([[0.4, 0.6, 1.0]] * 2)
    K = torch.tensor([[100.0, 0, 6], [0, 100.0, 4], [0, 0, 1]]).expand(2, 3, 3, 3)
    constant = build_model("constant")
    with pytest.raises(RuntimeError, match="not fitted"):
        constant.predict(frames, focus, None, K)
    depth = torch.tensor([1.0, 2.0, 3.0, 4.0, 0.0, 9.0]).reshape(1, 1, 2, 3)
    valid = torch.tensor([True, True, True, True, False, False]).reshape(1, 1, 2, 3)
    assert constant.fit(iter([{"depth": depth, "valid": valid}])) == {"depth_m": 2.5, "pixels": 4.0}
    rebuilt = build_model("constant")
    rebuilt.load_state_dict(constant.state_dict())
    out = rebuilt.predict(frames, focus, None, K)
    assert out.shape == (2, 1, 8, 12) and out.dtype == torch.float32 and torch.all(out == 2.5)
    with pytest.raises(ValueError, match="no valid pixel"):
        build_model("constant").fit(iter([{"depth": depth, "valid": torch.zeros_like(valid)}]))
    with pytest.raises(NotImplementedError, match="reference predictor"):
        constant.losses({}, {})

    dff = build_model("dff")
    assert dff.fit(iter(())) == {}
    d = dff.predict(frames, focus, None, K)
    assert d.shape == (2, 1, 8, 12) and torch.all((d >= 0.4 - 1e-6) & (d <= 1.0 + 1e-6))
    one = dff.predict(frames[:, :1], focus[:, :1], None, K[:, :1])  # one frame: its focus distance
    assert torch.allclose(one, torch.full_like(one, 0.4))

    from dfd_models.lens import LensParams

    sweep = build_model("dfd_sweep")
    assert not sweep.trainable and not sweep.supervised and sweep.fit(iter(())) == {}
    lens = LensParams("blender", torch.tensor(0.05), torch.tensor(2.0), torch.tensor(0.036))
    d = sweep.predict(frames, focus, lens, K)
    assert d.shape == (2, 1, 8, 12) and torch.all((d >= 0.1 - 1e-5) & (d <= 3.0 + 1e-4))
    with pytest.raises(ValueError):
        sweep.predict(frames[:, :1], focus[:, :1], lens, K[:, :1])  # one frame has no defocus to compare


# Depth from focus on Cycles renders


@pytest.mark.parametrize("model", ["thin_lens", "blender"])
def test_dff_recovers_the_depth_of_rendered_planes(bpy, torch, model):
    from dfd_models.data.batch import reference_index
    from dfd_models.networks import build_model, lens_from_batch

    batch = render_planes_stack(model=model)
    assert batch["frames"].shape == (1, 7, 3, 64, 64) and reference_index(batch["frames"].shape[1]) == 3
    inside = plane_interior(batch, margin=6)
    for i in range(len(PLANE_DEPTHS_M)):  # every plane is seen, with an interior to score
        assert (inside & (batch["planes"] == i + 1)).sum() >= 150, i
    with torch.no_grad():
        depth = build_model("dff").predict(batch["frames"], batch["focus_m"], lens_from_batch(batch), batch["K"])
    rel = (depth - batch["depth"]).abs() / batch["depth"]
    per_plane = [float(rel[inside & (batch["planes"] == i + 1)].mean()) for i in range(len(PLANE_DEPTHS_M))]
    abs_rel = float(rel[inside].mean())
    print(f"\ndff on Cycles planes ({model}): AbsRel {abs_rel:.4f}; per plane "
          + ", ".join(f"{z} m {e:.4f}" for z, e in zip(PLANE_DEPTHS_M, per_plane)))
    assert abs_rel < 0.10, (abs_rel, per_plane)
    assert max(per_plane) < 0.10, per_plane


@pytest.mark.parametrize("model", ["thin_lens", "blender"])
def test_defocus_sweep_recovers_the_depth_of_rendered_planes(bpy, torch, model):
    """The re-rendering sweep (sdgs' training-time teacher) on the Cycles planes: AbsRel < 10 % on
    every plane's interior, and confident there (textured planes)."""
    from dfd_models.data.batch import reference_index
    from dfd_models.focus import defocus_sweep
    from dfd_models.networks import lens_from_batch

    batch = render_planes_stack(model=model)
    inside = plane_interior(batch, margin=6)
    depth, confidence = defocus_sweep(batch["frames"], batch["focus_m"], batch["K"], lens_from_batch(batch),
                                      reference_index(batch["frames"].shape[1]), min_depth_m=0.1, max_depth_m=3.0)
    rel = (depth - batch["depth"]).abs() / batch["depth"]
    per_plane = [float(rel[inside & (batch["planes"] == i + 1)].mean()) for i in range(len(PLANE_DEPTHS_M))]
    print(f"\ndefocus sweep on Cycles planes ({model}): AbsRel {float(rel[inside].mean()):.4f}; per plane "
          + ", ".join(f"{z} m {e:.4f}" for z, e in zip(PLANE_DEPTHS_M, per_plane))
          + f"; confidence {float(confidence[inside].mean()):.2f}")
    assert float(rel[inside].mean()) < 0.10 and max(per_plane) < 0.10, per_plane
    assert float(confidence[inside].mean()) > 0.2


# Depth from focus and the warp on synthetic stacks


def test_dff_finds_the_frame_where_the_blur_vanishes(torch):
    from dfd_models.data.batch import reference_index
    from dfd_models.focus import dff_depth, gaussian_blur, sharp_composite

    h, w, t = 48, 64, 7
    texture = gaussian_blur(torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)), 1.5)  # no white noise
    diopters = torch.linspace(3.0, 0.5, t, dtype=torch.float64)  # focus 0.33 .. 2 m
    focus = (1 / diopters).float()
    step = float(diopters[0] - diopters[1])
    # Left half: in focus exactly at frame 2; right half: 30 % of the way from frame 4 to frame 5.
    truth = {"left": float(diopters[2]), "right": float(diopters[4]) - 0.3 * step}
    px_per_diopter = 2.5  # blur sigma per dioptre of defocus
    frames = torch.empty(1, t, 3, h, w)
    for k in range(t):
        for side, cols in (("left", slice(0, w // 2)), ("right", slice(w // 2, w))):
            sigma = px_per_diopter * abs(truth[side] - float(diopters[k]))
            frames[0, k, :, :, cols] = gaussian_blur(texture, sigma)[0, :, :, cols]
    K = torch.tensor([[80.0, 0, w / 2], [0, 80.0, h / 2], [0, 0, 1]]).expand(1, t, 3, 3)
    depth = dff_depth(frames, focus[None], K, ref=reference_index(t))[0, 0]  # [H, W]
    # away from the seam by more than the measure's reach (9 px window, 1 px smoothing: 7 px)
    left, right = depth[8:-8, 8 : w // 2 - 8], depth[8:-8, w // 2 + 8 : -8]
    # Frames 1 and 3 are equally blurred: the parabola's vertex is frame 2 itself.
    assert torch.allclose(left, torch.full_like(left, float(focus[2])), rtol=1e-4)
    # Sharpest at frame 4, refined towards frame 5 (the parabola through a peaked measure curve
    # is biased to the sharpest frame: measured 0.15 of a step here, for the true 0.3).
    toward_5 = (float(diopters[4]) - 1 / right.double()) / step
    assert torch.all((toward_5 > 0.05) & (toward_5 < 0.5)), (float(toward_5.min()), float(toward_5.max()))
    # The composite takes each pixel from its sharpest frame: frame 2 on the left (unblurred there; resampled
    # at its own pixel centres, so equal up to rounding).
    composite = sharp_composite(frames, K, ref=reference_index(t))
    assert torch.allclose(composite[0, :, 8:-8, 8 : w // 2 - 8], frames[0, 2, :, 8:-8, 8 : w // 2 - 8], atol=1e-6)


def _blurred_planes_stack(torch, depths_m, lens, t=5, size=48):
    """A stack of textured fronto-parallel strips (one per depth, side by side) focused from 0.3 to
    1.2 m in uniform diopter steps, each frame the texture blurred by the project's lens: a Gaussian
    of std c / 4 (c = :func:`dfd_models.lens.coc_px`, a disc's std). Returns frames, focus_m, K."""
    from dfd_models.focus import gaussian_blur
    from dfd_models.lens import coc_px

    texture = gaussian_blur(torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)), 1.0)
    focus = (1 / torch.linspace(1 / 0.3, 1 / 1.2, t, dtype=torch.float64)).float()
    width = size // len(depths_m)
    frames = torch.empty(1, t, 3, size, size)
    for i, z in enumerate(depths_m):
        for k in range(t):
            blur = float(coc_px(lens, torch.tensor([z]), focus[k : k + 1], size)[0]) / 4
            frames[0, k, :, :, i * width : (i + 1) * width] = gaussian_blur(texture, blur)[0, :, :, i * width :
                                                                                                (i + 1) * width]
    K = torch.tensor([[80.0, 0, size / 2], [0, 80.0, size / 2], [0, 0, 1]]).expand(1, t, 3, 3)
    return frames, focus[None], K, width


def test_dff_extrapolates_beyond_the_far_focus_with_low_confidence(torch):
    """A plane behind the stack's far focus (1.2 m): ``clamp`` puts it at 1.2 m; ``extrapolate`` puts it
    beyond, nearer the truth, and both give it a lower confidence than a plane inside the range,
    whose depth the two variants agree on."""
    from dfd_models.lens import LensParams
    from dfd_models.networks import build_model

    lens = LensParams("blender", torch.tensor([0.05]), torch.tensor([2.0]), torch.tensor([0.036]))
    truth = (0.6, 1.7)  # inside the range; beyond it (as small_obj's wall, 1.5-2 m)
    frames, focus, K, width = _blurred_planes_stack(torch, truth, lens)
    clamp, extrapolate = build_model("dff"), build_model("dff", {"beyond_range": "extrapolate"})
    (d_c, c_c), (d_e, c_e) = (m.predict_with_confidence(frames, focus, lens, K) for m in (clamp, extrapolate))
    assert d_c.shape == c_c.shape == (1, 1, 48, 48) and bool(((c_e >= 0) & (c_e <= 1)).all())
    inner = [(slice(8, -8), slice(i * width + 8, (i + 1) * width - 8)) for i in range(len(truth))]
    near, far = ([float(m[0, 0][r].median()) for r in inner] for m in (d_c, d_e))
    assert abs(near[0] - truth[0]) < 0.1 * truth[0] and far[0] == pytest.approx(near[0], rel=1e-6)
    assert near[1] == pytest.approx(1.2, rel=1e-6)  # clamped to the far focus
    assert 1.3 < far[1] and abs(far[1] - truth[1]) < 0.5 * abs(near[1] - truth[1]), far[1]
    for conf in (c_c, c_e):
        assert float(conf[0, 0][inner[1]].mean()) < 0.6 * float(conf[0, 0][inner[0]].mean())
    # extrapolated depths stay within the declared bounds, and without a lens there is nothing to extrapolate
    bounded = build_model("dff", {"beyond_range": "extrapolate", "max_depth_m": 1.4}).predict(frames, focus, lens, K)
    assert float(bounded.max()) <= 1.4 + 1e-5 and float(bounded[0, 0][inner[1]].median()) > 1.3
    with pytest.raises(ValueError, match="needs the lens"):
        extrapolate.predict(frames, focus, None, K)


def test_dff_config_is_validated_and_kept(torch, tmp_path):
    from dfd_models.config import ConfigError
    from dfd_models.networks import build_model

    assert dataclasses.asdict(build_model("dff").config) == {"min_depth_m": 0.1, "max_depth_m": 3.0,
                                                             "beyond_range": "clamp"}
    with pytest.raises(ConfigError, match="beyond_range"):
        build_model("dff", {"beyond_range": "guess"})
    with pytest.raises(ConfigError, match="max_depth_m"):
        build_model("dff", {"min_depth_m": 2.0, "max_depth_m": 1.0})
    with pytest.raises(ConfigError, match="min_depth_m"):
        build_model("dff", {"min_depth_m": 0})
    model = build_model("dff", {"beyond_range": "extrapolate", "max_depth_m": 2.5})
    assert build_model("dff", model.config).config == model.config


def test_warp_is_exact_for_a_pure_k_scaling(torch):
    """An image linear in the ray direction, seen by frames whose K differ by their focal length, is
    resampled onto the reference grid exactly (bilinear interpolation is exact for linear images)."""
    from dfd_models.focus import warp_to_frame

    h, w, ref = 40, 48, 1
    scales = (0.9, 1.0, 0.95, 1.12)  # focal length / the reference's
    K = torch.zeros(1, len(scales), 3, 3, dtype=torch.float64)
    for k, s in enumerate(scales):
        K[0, k] = torch.tensor([[100.0 * s, 0, w / 2], [0, 100.0 * s, h / 2], [0, 0, 1]], dtype=torch.float64)
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float64) + 0.5, torch.arange(w, dtype=torch.float64) + 0.5,
                          indexing="ij")
    coeffs = torch.tensor([[0.2, 1.5, -0.7], [0.5, -0.4, 2.0], [0.9, 0.3, 0.3]], dtype=torch.float64)  # a + bX + cY

    def image(k):  # what frame k sees: a function of the ray (X, Y, 1) = K_k^-1 (u, v, 1)
        x, y = (u - K[0, k, 0, 2]) / K[0, k, 0, 0], (v - K[0, k, 1, 2]) / K[0, k, 1, 1]
        return torch.stack([a + b * x + c * y for a, b, c in coeffs])  # [3, H, W]

    frames = torch.stack([image(k) for k in range(len(scales))])[None]  # [1, T, 3, H, W]
    warped = warp_to_frame(frames, K, ref)
    for k, s in enumerate(scales):
        if s <= 1:  # a wider view: the whole reference grid lies inside frame k
            assert torch.allclose(warped[0, k], frames[0, ref], atol=1e-9), k
        else:  # a narrower view: exact where frame k sees the reference pixel
            inside = ((u - w / 2).abs() * s <= w / 2 - 0.5) & ((v - h / 2).abs() * s <= h / 2 - 0.5)
            assert inside.sum() > 0.7 * h * w
            assert torch.allclose(warped[0, k][:, inside], frames[0, ref][:, inside], atol=1e-9), k
    assert torch.allclose(warp_to_frame(frames, K[:, ref : ref + 1].expand_as(K), ref), frames, atol=1e-9)
