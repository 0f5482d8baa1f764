"""``recipes/phone.yaml`` through the README's workflow (issue 29, part 5): it renders, a model trains on it
through ``dfdgen train``, and ``dfdgen predict`` reads its test stacks written as a phone's photo folders
(the camera's JPEGs, a focus.yaml by file name, a camera file) and writes a depth map per folder; a folder
with a frame missing, cut short, not a JPEG or of another size is refused in one line, nothing written.

Tiny: 64 x 48 px, 2 samples per pixel, 3 scenes, 2 training steps (the workflow, not the accuracy: that is
``benchmarks/phone_predict.py``).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from generator.cli import main
from generator.dataset.pixels import read_exr_bytes

pytestmark = pytest.mark.slow


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def photo_folders(bpy, torch, tmp_path_factory):
    """(checkpoint trained on tiny phone renders, the test split's photo folders)."""
    root = tmp_path_factory.mktemp("phone")
    data = root / "data"
    result = _run("render", "--recipe", "phone", "--out", data, "--threads", 1,
                  *[a for o in ("count=3", "image.width=64", "image.height=48", "image.samples=2",
                                "splits.order=contiguous", "splits.train=0.67", "splits.val=0", "splits.test=0.33")
                    for a in ("--set", o)])
    assert result.exit_code == 0, result.output
    result = _run("train", "--shards", data, "--model", "defocusnet", "--out", root / "run", "--max-steps", 2,
                  "--set", "data.workers=0")
    assert result.exit_code == 0, result.output
    result = _run("export", data, "--format", "stacks", "--out", root / "photos")
    assert result.exit_code == 0, result.output
    return root / "run" / "ckpt" / "last.pt", sorted((root / "photos" / "test").iterdir())


def test_phone_recipe_trains_and_predicts_on_photo_folders(photo_folders, tmp_path):
    checkpoint, folders = photo_folders
    assert len(folders) == 1
    folder = folders[0]
    frames = sorted(folder.glob("IMG_*.jpg"))
    assert len(frames) == 5 and all(Image.open(f).format == "JPEG" for f in frames)
    out = tmp_path / "pred"
    result = _run("predict", "--checkpoint", checkpoint, folder, "--camera", folder / "camera.yaml", "--out", out)
    assert result.exit_code == 0, result.output
    depth = read_exr_bytes((out / f"{folder.name}.depth.exr").read_bytes())["Z"]
    assert depth.shape == (48, 64) and np.isfinite(depth).all() and (depth > 0).all()
    assert (out / f"{folder.name}.depth.png").stat().st_size > 0


def test_a_broken_photo_folder_is_refused_in_one_line(photo_folders, tmp_path):
    checkpoint, (good,) = photo_folders
    out = tmp_path / "pred"

    def broken(name, edit, *texts):
        folder = tmp_path / name
        shutil.copytree(good, folder)
        edit(folder)
        result = _run("predict", "--checkpoint", checkpoint, folder, "--camera", good / "camera.yaml", "--out", out)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("Error: "), result.output
        assert all(text in lines[0] for text in texts), result.output
        assert not out.exists()

    def cut(folder):
        frame = folder / "IMG_0003.jpg"
        frame.write_bytes(frame.read_bytes()[:200])

    def resized(folder):
        with Image.open(folder / "IMG_0002.jpg") as img:
            img.resize((60, 48)).save(folder / "IMG_0002.jpg", quality=90)

    broken("missing", lambda f: (f / "IMG_0004.jpg").unlink(), "IMG_0004.jpg")
    broken("extra", lambda f: shutil.copy(f / "IMG_0001.jpg", f / "IMG_0006.jpg"), "IMG_0006.jpg")
    broken("cut", cut, "IMG_0003.jpg", "cannot read the image")
    broken("empty", lambda f: (f / "IMG_0005.jpg").write_bytes(b""), "IMG_0005.jpg", "cannot read the image")
    broken("text", lambda f: (f / "IMG_0005.jpg").write_text("not a photo"), "IMG_0005.jpg")
    broken("sizes", resized, "differ in size", "60 x 48 px")
    broken("nofocus", lambda f: (f / "focus.yaml").unlink(), "no focus file")
    broken("noframes", lambda f: [p.unlink() for p in f.glob("*.jpg")], "holds no frames")
