"""``dfdgen predict`` on real focal stacks: a folder of JPEG frames with a focus file (or frame files with
``--focus-distance``) is one input to the model and gives one depth map; the lens from options, a camera
file, EXIF or the checkpoint, every missing value named at once; bad stacks refused with one line and
nothing written.

The stack is the Cycles planes scene of ``tests/planes_stack.py`` (three textured planes at 0.35, 0.55 and
0.9 m before a wall at 1.6 m; 7 frames focused 0.3-1.6 m; 50 mm f/1.4 on a 36 mm sensor, 64 x 64 px).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import ExifTags, Image

from generator.cli import main
from generator.dataset.pixels import read_exr_bytes, srgb8

#: The planes scene's lens as a camera file.
CAMERA = "focal_length_mm: 50\nf_number: 1.4\nsensor_width_mm: 36\nmodel: thin_lens\n"
#: The tiny dataset's lens is a range of focal lengths and f-numbers (its sensor width is fixed).
LENS = ("--lens-focal-length-mm", "50", "--f-number", "1.4")


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _train(shards, model, out, *args):
    result = _run("train", "--shards", shards, "--model", model, "--out", out, "--max-steps", 1, *args)
    assert result.exit_code == 0, result.output
    return out / "ckpt" / "last.pt"


def _depth(path: Path) -> np.ndarray:
    channels = read_exr_bytes(path.read_bytes())
    assert list(channels) == ["Z"] and channels["Z"].dtype == np.float32
    return channels["Z"]


def _check_exit_2(result, *texts):
    """Exit status 2 and one line of output holding every text."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for text in texts:
        assert text in lines[0], result.output


def _exif(**tags) -> Image.Exif:
    exif = Image.Exif()
    ifd = exif.get_ifd(ExifTags.IFD.Exif)
    for name, value in tags.items():
        ifd[getattr(ExifTags.Base, name)] = value
    return exif


@pytest.fixture(scope="module")
def planes(bpy, torch):
    """The planes stack: 8-bit sRGB frames [H, W, 3] (sorted by focus), focus distances, true depth of the reference frame."""
    from planes_stack import render_planes_stack

    batch = render_planes_stack()
    return {
        "frames": [srgb8(frame.permute(1, 2, 0).numpy()) for frame in batch["frames"][0]],
        "focus": [float(f) for f in batch["focus_m"][0]],
        "depth": batch["depth"][0, 0].numpy(),
    }


def _stack_folder(folder: Path, planes: dict, *, names=None, focus_file="focus.yaml", exif=None) -> list[Path]:
    """Write the planes frames as JPEGs in ``folder`` with a focus file; names in reverse focus order by default."""
    folder.mkdir(parents=True)
    t = len(planes["frames"])
    names = names or [f"frame{3 * (t - i)}.jpg" for i in range(t)]  # frame21 ... frame3: name order = far to near
    paths = [folder / name for name in names]
    for path, rgb in zip(paths, planes["frames"]):
        Image.fromarray(rgb).save(path, quality=95, **({"exif": exif} if exif is not None else {}))
    by_name = sorted(zip(names, planes["focus"]), key=lambda nf: int(nf[0][5:-4]))
    if focus_file == "focus.yaml":
        (folder / focus_file).write_text("[" + ", ".join(repr(f) for _, f in by_name) + "]\n")
    elif focus_file == "focus.txt":
        (folder / focus_file).write_text("# metres, in name order\n" + "".join(f"{f!r}\n" for _, f in by_name))
    return paths


@pytest.fixture(scope="module")
def dff_ckpt(tiny_dataset, tmp_path_factory):
    """Classical depth from focus (a stack model, fitted), trained on lens ranges (focal length, f-number)."""
    return _train(tiny_dataset, "dff", tmp_path_factory.mktemp("dff") / "run")


# A stack in, one depth map out


def test_predict_stack_folders_of_jpegs_give_one_depth_map_each(planes, dff_ckpt, tmp_path):
    """Two folders of the same 7 JPEG frames, named in different orders (a list in focus.yaml, a focus.txt):
    one depth map per folder, the same for both (frames sorted by focus), following the true depth."""
    from generator.core.display import colorize
    from dfd_models.predict.depth_png import scale_bar_labels

    _stack_folder(tmp_path / "far_first", planes)
    t = len(planes["frames"])
    _stack_folder(tmp_path / "shuffled", planes, names=[f"frame{(5 * i) % t + 1}.jpg" for i in range(t)],
                  focus_file="focus.txt")
    (tmp_path / "camera.yaml").write_text(CAMERA)
    out = tmp_path / "pred" / "new"  # created, parents too
    result = _run("predict", tmp_path / "far_first", tmp_path / "shuffled", "--checkpoint", dff_ckpt,
                  "--camera", tmp_path / "camera.yaml", "--out", out)
    assert result.exit_code == 0, result.output
    assert "far_first: 7 frame(s) focused at 0.3-1.6 m" in result.output
    assert "f 50 mm (camera file), f/1.4 (camera file), sensor 36 mm (camera file)" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["far_first.confidence.exr", "far_first.depth.exr",
                                                    "far_first.depth.png", "shuffled.confidence.exr",
                                                    "shuffled.depth.exr", "shuffled.depth.png"]
    depth = _depth(out / "far_first.depth.exr")
    assert depth.shape == (64, 64) and np.isfinite(depth).all()
    assert np.array_equal(depth, _depth(out / "shuffled.depth.exr"))

    true = planes["depth"]
    assert 0.3 - 1e-6 <= depth.min() and depth.max() <= 1.6 + 1e-6  # dff: within the focus range
    abs_rel, constant = np.mean(np.abs(depth - true) / true), np.mean(np.abs(np.median(true) - true) / true)
    assert abs_rel < 0.4 * constant, (abs_rel, constant)  # measured 0.10 against 0.64
    assert np.corrcoef(depth.ravel(), true.ravel())[0, 1] > 0.6  # measured 0.75

    with Image.open(out / "far_first.depth.png") as png:  # the map, then a colour bar labelled in metres
        image = np.asarray(png.convert("RGB"))
    near, far = float(depth.min()), float(depth.max())
    assert np.array_equal(image[:64, :64], colorize(depth, near, far))
    bar = image[64:].astype(int)
    row = bar[np.argmax((np.abs(bar - 255).sum(-1) > 0).any(1))]  # the bar's first row
    coloured = np.flatnonzero(np.abs(row - 255).sum(-1) > 0)
    assert np.abs(row[coloured[0]] - colorize(np.array([near]), near, far)[0]).max() <= 3
    assert np.abs(row[coloured[-1]] - colorize(np.array([far]), near, far)[0]).max() <= 3
    assert (bar.sum(-1) < 150).sum() > 20  # dark text: the labels
    assert scale_bar_labels(near, far) == (f"{near:.3g} m", f"{far:.3g} m")


def test_predict_reads_the_lens_from_the_checkpoint(planes, bpy, torch, tmp_path):
    """Training data with one lens: no lens option needed; the depth is the model's with that lens."""
    from generator.render.pipeline import render_dataset
    from generator.recipe.recipe import load_recipe
    from generator.core.lens import Lens
    from dfd_models.checkpoint import load_model
    from dfd_models.lens import LensParams, intrinsics
    from dfd_models.predict.images import read_image

    data = tmp_path / "fixed"
    render_dataset(load_recipe("small_obj", (
        "name=fixed32", "count=1", "image.width=32", "image.height=32", "image.samples=2", "focus.ramps=1",
        "focus.frames_per_ramp=2", "lens.focal_length_mm=25", "lens.f_number=2", "scene.objects.count=[1, 1]",
        "splits={train: 1.0, val: 0.0, test: 0.0}")), data, workers=1, progress=False)
    ckpt = _train(data, "dff", tmp_path / "run")

    frames = []
    for i in (4, 1, 2):  # three frames given out of focus order, as PNGs
        frames.append(tmp_path / f"img{i}.png")
        Image.fromarray(planes["frames"][i]).save(frames[-1])
    focus = [planes["focus"][i] for i in (4, 1, 2)]
    out = tmp_path / "pred"
    result = _run("predict", *frames, *[a for f in focus for a in ("--focus-distance", f)], "--checkpoint", ckpt,
                  "--out", out)
    assert result.exit_code == 0, result.output
    assert ("lens thin_lens (checkpoint), f 25 mm (checkpoint), f/2 (checkpoint), sensor 36 mm (checkpoint)"
            in result.output)
    assert sorted(p.name for p in out.iterdir()) == ["img1.confidence.exr", "img1.depth.exr",
                                                    "img1.depth.png"]  # nearest-focused frame

    model, _ = load_model(ckpt)
    lens = LensParams.from_lens(Lens("thin_lens", 0.025, 2.0, 0.036))
    order = sorted(range(3), key=lambda i: focus[i])
    stack = torch.stack([torch.from_numpy(read_image(frames[i])).permute(2, 0, 1) for i in order])[None]
    focus_t = torch.tensor([[focus[i] for i in order]])
    with torch.no_grad():
        expected = model.predict(stack, focus_t, lens, intrinsics(lens, focus_t[0], 64, 64)[None])[0, 0].numpy()
    assert np.array_equal(_depth(out / "img1.depth.exr"), expected)


def test_predict_network_takes_the_whole_stack_and_any_size(tiny_dataset, planes, torch, tmp_path):
    """A trained stack network (ddff, 1 step: its depth is a softmax over the frames of their focus distances):
    its depth of the stack is model.predict of all frames at once (not of each frame); an odd size is padded
    and cropped back; one frame with one focus works."""
    from dfd_models.checkpoint import load_model
    from dfd_models.evaluate import predict_depth
    from generator.core.lens import Lens
    from dfd_models.lens import LensParams, intrinsics
    from dfd_models.predict.images import read_image

    ckpt = _train(tiny_dataset, "ddff", tmp_path / "run", "--set", "data.crop=[32, 32]", "--set", "data.batch_size=1",
                  "--set", "data.workers=0", "--set", "model.config.channels=[4, 8]")
    frames = []
    for i in (0, 3, 6):
        frames.append(tmp_path / f"f{i}.png")
        Image.fromarray(planes["frames"][i]).save(frames[-1])
    focus = [planes["focus"][i] for i in (0, 3, 6)]
    focus_args = [a for f in focus for a in ("--focus-distance", f)]
    result = _run("predict", *frames, *focus_args, "--checkpoint", ckpt, *LENS, "--out", tmp_path / "pred")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["f0.depth.exr", "f0.depth.png"]

    model, _ = load_model(ckpt)
    lens = LensParams.from_lens(Lens("thin_lens", 0.05, 1.4, 0.036))
    stack = torch.stack([torch.from_numpy(read_image(p)).permute(2, 0, 1) for p in frames])[None]
    focus_t = torch.tensor([focus])
    with torch.no_grad():
        whole = predict_depth(model, stack, focus_t, lens, intrinsics(lens, focus_t[0], 64, 64)[None])[0, 0]
        k_one = intrinsics(lens, focus_t[0, 1:2], 64, 64)[None]
        alone = predict_depth(model, stack[:, 1:2], focus_t[:, 1:2], lens, k_one)
    depth = _depth(tmp_path / "pred" / "f0.depth.exr")
    assert np.allclose(depth, whole.numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(depth, alone[0, 0].numpy(), rtol=1e-3)

    odd = [tmp_path / f"odd{i}.png" for i in range(3)]  # 61 x 63 px: not a multiple of 2
    for path, frame in zip(odd, frames):
        with Image.open(frame) as png:
            png.crop((0, 0, 61, 63)).save(path)
    result = _run("predict", *odd, *focus_args, "--checkpoint", ckpt, *LENS, "--out", tmp_path / "odd")
    assert result.exit_code == 0, result.output
    depth = _depth(tmp_path / "odd" / "odd0.depth.exr")
    assert depth.shape == (63, 61) and np.isfinite(depth).all()

    result = _run("predict", frames[1], "--focus-distance", focus[1], "--checkpoint", ckpt, *LENS,
                  "--out", tmp_path / "one")
    assert result.exit_code == 0, result.output
    assert np.allclose(_depth(tmp_path / "one" / "f3.depth.exr"), alone[0, 0].numpy(), rtol=1e-5, atol=1e-6)


# The lens


def test_predict_names_every_missing_lens_value_in_one_message(tiny_dataset, planes, dff_ckpt, tmp_path):
    frame = tmp_path / "frame.png"
    Image.fromarray(planes["frames"][3]).save(frame)
    out = tmp_path / "pred"
    # trained on shard files without a manifest: nothing of the lens recorded
    bare = _train(str(tiny_dataset / "tiny64-train-{000000..000003}.tar"), "dff", tmp_path / "bare")
    result = _run("predict", frame, "--focus-distance", 0.5, "--checkpoint", bare, "--out", out)
    _check_exit_2(result, "focal length", "--lens-focal-length-mm", "EXIF FocalLength", "f-number", "--f-number",
                  "EXIF FNumber", "sensor width", "--sensor-width-mm", "FocalLengthIn35mmFilm", "--camera",
                  "not recorded in the checkpoint")
    # trained on lens ranges: the two values that varied, with their ranges; the fixed sensor width is known
    result = _run("predict", frame, "--focus-distance", 0.5, "--checkpoint", dff_ckpt, "--out", out)
    _check_exit_2(result, "focal length", "[25.0, 50.0]", "f-number", "[1.4, 2.8]")
    assert "sensor width" not in result.output
    result = _run("predict", frame, "--focus-distance", 0.5, "--checkpoint", dff_ckpt, "--f-number", 2, "--out", out)
    _check_exit_2(result, "focal length")
    assert "f-number" not in result.output
    assert not out.exists()


def test_predict_reads_exif_and_a_camera_file_options_first(planes, dff_ckpt, tmp_path):
    """EXIF FocalLength and FNumber of JPEG frames; the camera file overrides EXIF, options override both."""
    from dfd_models.predict.images import exif_lens

    _stack_folder(tmp_path / "phone", planes, exif=_exif(FocalLength=50.0, FNumber=1.4))
    out = tmp_path / "pred"

    def predict(*args):
        return _run("predict", tmp_path / "phone", "--checkpoint", dff_ckpt, "--out", out, *args)

    result = predict()
    assert result.exit_code == 0, result.output
    assert "f 50 mm (EXIF), f/1.4 (EXIF), sensor 36 mm (checkpoint)" in result.output
    (tmp_path / "camera.yaml").write_text("f_number: 2.8\nsensor_width_mm: 24\n")
    result = predict("--camera", tmp_path / "camera.yaml")
    assert result.exit_code == 0, result.output
    assert "f 50 mm (EXIF), f/2.8 (camera file), sensor 24 mm (camera file)" in result.output
    result = predict("--camera", tmp_path / "camera.yaml", "--f-number", 2, "--lens-model", "blender")
    assert result.exit_code == 0, result.output
    assert "lens blender (option), f 50 mm (EXIF), f/2 (option), sensor 24 mm (camera file)" in result.output

    # the sensor width: from the focal plane resolution (3.6 cm over 96 px), else the 35 mm equivalent
    path = tmp_path / "wide.jpg"
    Image.new("RGB", (96, 64)).save(path, exif=_exif(FocalLength=25.0, FNumber=2.0, FocalPlaneXResolution=96 / 3.6,
                                                     FocalPlaneResolutionUnit=3))
    assert exif_lens(path) == pytest.approx({"focal_length_mm": 25.0, "f_number": 2.0, "sensor_width_mm": 36.0})
    Image.new("RGB", (96, 64)).save(path, exif=_exif(FocalLength=25.0, FocalLengthIn35mmFilm=50))
    assert exif_lens(path) == pytest.approx({"focal_length_mm": 25.0, "sensor_width_mm": 18.0})  # 36 mm x 25 / 50
    Image.new("RGB", (96, 64)).save(path)
    assert exif_lens(path) == {}

    # frames that disagree
    bad = _stack_folder(tmp_path / "zoomed", planes, exif=_exif(FocalLength=50.0, FNumber=1.4))
    Image.fromarray(planes["frames"][0]).save(bad[0], quality=95, exif=_exif(FocalLength=35.0))
    _check_exit_2(_run("predict", tmp_path / "zoomed", "--checkpoint", dff_ckpt, "--out", tmp_path / "no"),
                  "disagree on the focal_length_mm")
    result = _run("predict", tmp_path / "zoomed", "--checkpoint", dff_ckpt, "--out", tmp_path / "yes",
                  "--lens-focal-length-mm", 50)
    assert result.exit_code == 0, result.output


# Bad stacks


def test_predict_refuses_bad_stacks_with_one_line_and_writes_nothing(planes, dff_ckpt, tiny_dataset, torch,
                                                                      tmp_path):
    (tmp_path / "camera.yaml").write_text(CAMERA)
    out = tmp_path / "pred"
    good = tmp_path / "good"
    _stack_folder(good, planes)

    def predict(*args, checkpoint=dff_ckpt):
        return _run("predict", "--checkpoint", checkpoint, "--camera", tmp_path / "camera.yaml", "--out", out, *args)

    def folder(name, edit):
        path = tmp_path / name
        frames = _stack_folder(path, planes)
        edit(path, frames)
        return path

    def focus_yaml(text):
        return lambda path, frames: (path / "focus.yaml").write_text(text)

    sizes = folder("sizes", lambda p, f: Image.fromarray(planes["frames"][2][:, :60]).save(f[2], quality=95))
    _check_exit_2(predict(good, sizes), "stack sizes: the frames differ in size", "64 x 64 px", "60 x 64 px")
    _check_exit_2(predict(folder("count", focus_yaml("[0.3, 0.4, 0.5, 0.6, 0.7, 0.8]\n"))),
                  "has 6 focus distances for the 7 frames")
    _check_exit_2(predict(folder("twice", focus_yaml("[0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.5]\n"))),
                  "same focus distance 0.5 m")
    _check_exit_2(predict(folder("names", focus_yaml("frame3.jpg: 0.3\nframe4.jpg: 0.4\n"))), "frame4.jpg")
    _check_exit_2(predict(folder("negative", focus_yaml("[0.3, 0.4, 0.5, 0.6, 0.7, 0.8, -1]\n"))),
                  "positive finite number, got -1")
    _check_exit_2(predict(folder("none", lambda p, f: (p / "focus.yaml").unlink())), "no focus file", "focus.yaml")
    _check_exit_2(predict(folder("text", lambda p, f: [(p / "focus.yaml").unlink(),
                                                       (p / "focus.txt").write_text("0.3\nnear\n")])),
                  "line 2", "'near'")
    _check_exit_2(predict(folder("nan", lambda p, f: [(p / "focus.yaml").unlink(),
                                                      (p / "focus.txt").write_text("nan\n" * 7)])),
                  "positive finite number")
    _check_exit_2(predict(folder("notjpeg", lambda p, f: Image.fromarray(planes["frames"][0]).save(f[0], "PNG"))),
                  "not a JPEG")
    _check_exit_2(predict(good, "--focus-distance", 1), "--focus-distance is for frame files")

    frames = sorted(good.glob("*.jpg"))
    _check_exit_2(predict(good, frames[0]), "not both")
    _check_exit_2(predict(*frames[:2], "--focus-distance", 0.5, "--focus-distance", 0.5), "same focus distance")
    _check_exit_2(predict(*frames[:2], "--focus-distance", 0.5), "2 frames, 1 focus distances")
    _check_exit_2(predict(frames[0], "--focus-distance", 0.04), "within the focal length 50 mm")
    _check_exit_2(predict(frames[0], "--focus-distance", "inf"), "positive finite number")
    sweep = _train(tiny_dataset, "dfd_sweep", tmp_path / "sweep")
    _check_exit_2(predict(frames[0], "--focus-distance", 0.5, checkpoint=sweep), "1 frame(s)", "'dfd_sweep'",
                  "at least 2 frames")
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    _check_exit_2(predict(notes, "--focus-distance", 1), "not a PNG, JPEG or EXR")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n")
    _check_exit_2(predict(broken, "--focus-distance", 1), "cannot read the image")
    _check_exit_2(predict(tmp_path / "missing.png", "--focus-distance", 1), "missing.png")
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, foreign)
    _check_exit_2(predict(frames[0], "--focus-distance", 1, checkpoint=foreign), "not a dfdgen checkpoint")
    (tmp_path / "camera.yaml").write_text("focal_length: 50\n")
    _check_exit_2(predict(good), "unknown key(s) focal_length", "focal_length_mm")
    assert not out.exists()


def test_predict_writes_the_sweeps_confidence_beside_its_depth(planes, tiny_dataset, tmp_path):
    """``dfd_sweep`` has a confidence: NAME.confidence.exr, in [0, 1], varying over the frame (``dff``
    has one too since issue 30: the first test's listing)."""
    _stack_folder(tmp_path / "stack", planes)
    (tmp_path / "camera.yaml").write_text(CAMERA)
    sweep = _train(tiny_dataset, "dfd_sweep", tmp_path / "sweep")
    result = _run("predict", tmp_path / "stack", "--checkpoint", sweep, "--camera", tmp_path / "camera.yaml",
                  "--out", tmp_path / "pred")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == [
        "stack.confidence.exr", "stack.depth.exr", "stack.depth.png"]
    confidence = read_exr_bytes((tmp_path / "pred" / "stack.confidence.exr").read_bytes())["Y"]
    assert confidence.shape == (64, 64) and confidence.min() >= 0 and confidence.max() <= 1
    assert confidence.std() > 0.01
