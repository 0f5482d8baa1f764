"""``dfdgen export``: the published FoD500 layout, read back with OpenEXR's classic InputFile API
and a loader written to that layout, and ``stacks``, the folders predict reads; bad input exits 2
and writes nothing."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import Imath
import numpy as np
import OpenEXR
import pytest
from click.testing import CliRunner
from PIL import Image

from fakes import fake_render, make_spec, tiny_recipe
from generator.cli import main
from generator.dataset.export import INDEX_FILE
from generator.dataset.pixels import srgb8
from generator.dataset.sample import decode_sample, encode_sample
from generator.dataset.shards import DatasetDir
from generator.scene.spec import FrameSpec

# Capture order is not focus order: the export must sort the frames.
FOCUS = (0.7, 0.1, 1.5, 0.3, 0.15)
#: FoD500's camera (recipes/fod500.yaml), which the loaders assume.
FOD500_LENS = {"focal_length_m": 2.9e-3, "f_number": 1.0, "sensor_width_m": 3.1e-3}


def _spec(index: int, *, size: int = 256, frames: int = 5, model: str = "blender", split: str = "train",
          lens=FOD500_LENS, **changes):
    spec = make_spec(index, model=model, width=size, height=size, split=split)
    spec = dataclasses.replace(spec, lens=dataclasses.replace(spec.lens, **lens))
    focus = FOCUS[:frames] if frames <= 5 else np.geomspace(0.1, 1.5, frames)
    ramp = tuple(FrameSpec(index=k, ramp=0, time_s=0.0, focus_distance_m=float(f)) for k, f in enumerate(focus))
    second = tuple(dataclasses.replace(f, index=f.index + len(ramp), ramp=1) for f in ramp)  # a second ramp, not exported
    return dataclasses.replace(spec, frames=ramp + second, **changes)


def _dataset(folder: Path, specs) -> dict[int, dict]:
    """Shards of fake renders of ``specs``; returns each scene's sample."""
    recipe = tiny_recipe()
    out = DatasetDir(folder, recipe, max_samples=2, max_bytes=10**9)
    samples = {}
    for spec in specs:
        samples[spec.index] = encode_sample(spec, fake_render(spec), recipe)
        out.add(spec.index, spec.split, samples[spec.index])
    out.finish()
    return samples


def _export(*args):
    return CliRunner().invoke(main, ["export", *map(str, args)])


def load_fod500(folder: Path, n_stack: int = 5):
    """A loader written to the published FoD500 layout, as the DefocusNet / DFV loaders read it:
    sorted globs of ``*All.tif`` and ``*Dpt.exr``, ``n_stack`` frames per depth map, depth from
    channel R as HALF through OpenEXR's classic InputFile API."""
    frames = sorted(folder.glob("*All.tif"))
    depths = sorted(folder.glob("*Dpt.exr"))
    assert len(frames) == n_stack * len(depths)
    for i, depth_path in enumerate(depths):
        exr = OpenEXR.InputFile(str(depth_path))
        window = exr.header()["dataWindow"]
        size = (window.max.y - window.min.y + 1, window.max.x - window.min.x + 1)
        depth = np.frombuffer(exr.channel("R", Imath.PixelType(Imath.PixelType.HALF)), dtype=np.float16).reshape(size)
        stack = np.stack([np.asarray(Image.open(p)) for p in frames[i * n_stack:(i + 1) * n_stack]])
        yield depth_path.name[:6], stack.astype(np.float32) / 255.0, depth.astype(np.float32)


def test_fod500_export_layout_and_contents(tmp_path):
    samples = _dataset(tmp_path / "data", [_spec(0), _spec(1), _spec(4, model="thin_lens")])  # scene 2, 3 failed
    result = _export(tmp_path / "data", "--format", "fod500", "--out", tmp_path / "fod")
    assert result.exit_code == 0, result.output
    assert "exported 3 scenes" in result.output and "train 000000-000002" in result.output
    names = sorted(p.name for p in (tmp_path / "fod").iterdir() if p.name != INDEX_FILE)
    assert names == sorted([f"{s:06d}_{k:02d}All.tif" for s in range(3) for k in range(5)]
                           + [f"{s:06d}Dpt.exr" for s in range(3)])
    for name in names:
        assert re.fullmatch(r"\d{6}(_\d{2}All\.tif|Dpt\.exr)", name)
    index = json.loads((tmp_path / "fod" / INDEX_FILE).read_text())
    assert index["scenes"] == [0, 1, 4] and index["splits"] == {"train": [0, 2]}

    loaded = list(load_fod500(tmp_path / "fod"))
    assert [key for key, _, _ in loaded] == ["000000", "000001", "000002"]
    for key, stack, depth in loaded:
        decoded = decode_sample(samples[index["scenes"][int(key)]])
        exr = OpenEXR.InputFile(str(tmp_path / "fod" / f"{key}Dpt.exr"))
        channels = exr.header()["channels"]
        assert sorted(channels) == ["B", "G", "R"]
        assert all(str(c.type) == "HALF" for c in channels.values())
        half = Imath.PixelType(Imath.PixelType.HALF)
        assert exr.channel("G", half) == exr.channel("B", half) == exr.channel("R", half)
        assert stack.shape == (5, 256, 256, 3) and depth.shape == (256, 256)
        # Frames in increasing focus distance: the k-th file is the k-th nearest focus of ramp 0.
        ramp0 = [i for i, f in enumerate(decoded.meta["frames"]) if f["ramp"] == 0]
        by_focus = sorted(ramp0, key=lambda i: decoded.meta["frames"][i]["focus_distance_m"])
        assert [decoded.meta["frames"][i]["focus_distance_m"] for i in by_focus] == sorted(FOCUS)
        for k, i in enumerate(by_focus):
            np.testing.assert_array_equal(stack[k], srgb8(decoded.frames[i]) / np.float32(255.0))
        # Depth: the only map (blender lens), or the nearest-focused frame's (thin-lens breathing).
        expected = decoded.depth[by_focus[0]] if decoded.meta["depth"]["per_frame"] else decoded.depth[0]
        np.testing.assert_array_equal(depth, expected.astype(np.float16).astype(np.float32))
        assert (depth == 0).any() and depth.max() > 1.0  # fake depth has a sky corner and metres


def test_export_into_an_existing_empty_folder(tmp_path):
    _dataset(tmp_path / "data", [_spec(0)])
    (tmp_path / "fod").mkdir()
    assert _export(tmp_path / "data", "--format", "fod500", "--out", tmp_path / "fod").exit_code == 0
    assert len(list((tmp_path / "fod").iterdir())) == 7  # 5 frames, depth, the index file


def dfv_fod500_split(folder: Path) -> tuple[set[int], set[int]]:
    """The scene numbers the DFV loader trains and validates on, by its rule: fuy34/DFV
    ``dataloader/FoD500.py``, ``FoD500Loader`` keeps ``int(f[:6]) < 400`` of FoD500's 500
    scenes for training, i.e. the first 80 % of the indices (DefocusNet's loader also trains on
    its first 80 %), scaled here to the exported dataset's size."""
    numbers = sorted({int(p.name[:6]) for p in folder.glob("*Dpt.exr")})
    first_test = round(0.8 * len(numbers))
    return set(numbers[:first_test]), set(numbers[first_test:])


def test_dfv_index_split_of_an_export_puts_no_test_scene_in_training(tmp_path):
    """10 scenes whose dfdgen splits interleave (test scenes 1 and 6): the export numbers
    train first, so the loader's index rule trains on train scenes only."""
    splits = ["train", "test", "train", "val", "train", "train", "test", "train", "train", "train"]
    _dataset(tmp_path / "data", [_spec(i, split=s) for i, s in enumerate(splits)])
    result = _export(tmp_path / "data", "--format", "fod500", "--out", tmp_path / "fod")
    assert result.exit_code == 0, result.output
    assert "train 000000-000006, val 000007-000007, test 000008-000009" in result.output
    index = json.loads((tmp_path / "fod" / INDEX_FILE).read_text())
    train, held_out = dfv_fod500_split(tmp_path / "fod")
    assert "test" not in {splits[index["scenes"][n]] for n in train}
    assert {splits[index["scenes"][n]] for n in held_out} == {"test"}
    # numbered by scene instead (the old export), test scene 6 would have been trained on
    assert splits[6] == "test" and 6 < round(0.8 * len(splits))


def test_fod500_recipe_splits_by_contiguous_ranges():
    from generator.recipe.recipe import load_recipe
    from generator.draw.scene import scene_split

    recipe = load_recipe("fod500")
    assert [scene_split(recipe, i) for i in (0, 399, 400, 499)] == ["train", "train", "test", "test"]


@pytest.mark.parametrize("lens, frames_focus, message", [
    ({"focal_length_m": 0.05}, None, "focal length 50mm"),
    ({"f_number": 2.0}, None, "f-number 2"),
    ({}, (0.2, 0.3, 0.5, 0.8, 1.2), "focused at [0.2, 0.3, 0.5, 0.8, 1.2] m"),
])
def test_export_refuses_another_camera_unless_forced(tmp_path, lens, frames_focus, message):
    spec = _spec(0, lens={**FOD500_LENS, **lens})
    if frames_focus:
        spec = dataclasses.replace(spec, frames=tuple(
            dataclasses.replace(f, focus_distance_m=frames_focus[f.index % 5]) for f in spec.frames))
    _dataset(tmp_path / "data", [spec])
    result = _export(tmp_path / "data", "--format", "fod500", "--out", tmp_path / "fod")
    assert result.exit_code == 2 and message in result.output and "--force" in result.output, result.output
    assert not (tmp_path / "fod").exists() and not (tmp_path / "fod.partial").exists()
    forced = _export(tmp_path / "data", "--format", "fod500", "--out", tmp_path / "fod", "--force")
    assert forced.exit_code == 0, forced.output


def test_export_never_removes_a_partial_folder_it_did_not_make(tmp_path):
    _dataset(tmp_path / "data", [_spec(0)])
    (tmp_path / "fod.partial").mkdir()
    (tmp_path / "fod.partial" / "mine.txt").write_text("mine")
    result = _export(tmp_path / "data", "--format", "fod500", "--out", tmp_path / "fod")
    assert result.exit_code == 2 and "fod.partial exists" in result.output, result.output
    assert (tmp_path / "fod.partial" / "mine.txt").read_text() == "mine" and not (tmp_path / "fod").exists()


@pytest.mark.parametrize("problem", [
    "not a dataset", "out not empty", "out is a file", "wrong format", "wrong size", "three frames per ramp",
    "dynamic", "fails on the last scene",
])
def test_bad_export_exits_2_and_writes_nothing(tmp_path, problem):
    data, out = tmp_path / "data", tmp_path / "fod"
    specs = {
        "wrong size": [_spec(0, size=64)],
        "three frames per ramp": [_spec(0, frames=3)],
        "dynamic": [dataclasses.replace(_spec(0), frames=tuple(
            dataclasses.replace(f, time_s=f.index / 25) for f in _spec(0).frames))],
        "fails on the last scene": [_spec(0), _spec(1), _spec(2, size=128)],
    }.get(problem, [_spec(0)])
    if problem == "not a dataset":
        data.mkdir()
        (data / "something.tar").write_bytes(b"not ours")
    else:
        _dataset(data, specs)
    if problem == "out not empty":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    if problem == "out is a file":
        out.write_text("a file")
    fmt = "fod5000" if problem == "wrong format" else "fod500"
    result = _export(data, "--format", fmt, "--out", out)
    assert result.exit_code == 2, result.output
    expected = {"not a dataset": "not a dfdgen dataset", "out not empty": "not an empty folder",
                "out is a file": "not an empty folder", "wrong format": "fod5000", "wrong size": "64x64",
                "three frames per ramp": "3 frames per ramp",
                "dynamic": "dynamic", "fails on the last scene": "128x128"}[problem]
    assert expected in result.output, result.output
    if problem == "out not empty":
        assert [p.name for p in out.iterdir()] == ["keep.txt"]
    elif problem == "out is a file":
        assert out.read_text() == "a file"
    else:
        assert not out.exists()
    assert not (tmp_path / "fod.partial").exists()


def _damaged_dataset(folder: Path) -> dict[int, dict]:
    """Scenes 0, 1 (train) and 4 (test) at 32 px; scene 1's third frame is garbage."""
    samples = {i: encode_sample(s, fake_render(s), tiny_recipe())
               for i, s in ((0, _spec(0, size=32)), (1, _spec(1, size=32)), (4, _spec(4, size=32, split="test")))}
    samples[1]["f002.png"] = b"\x89PNG\r\n\x1a\n garbage"
    out = DatasetDir(folder, tiny_recipe(), max_samples=2, max_bytes=10**9)
    for index, sample in samples.items():
        out.add(index, "test" if index == 4 else "train", sample)
    out.finish()
    return samples


def test_a_corrupt_sample_stops_the_export_and_leaves_nothing(tmp_path):
    _damaged_dataset(tmp_path / "data")
    result = _export(tmp_path / "data", "--format", "fod500", "--out", tmp_path / "fod", "--force")
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert "00000001.f002.png: cannot decode" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_skip_corrupt_leaves_a_sample_out_and_numbers_on_without_a_gap(tmp_path):
    samples = _damaged_dataset(tmp_path / "data")
    result = _export(tmp_path / "data", "--format", "fod500", "--out", tmp_path / "fod", "--force", "--skip-corrupt")
    assert result.exit_code == 0, result.output
    assert "Warning: skipping: corrupt shard" in result.output and "00000001.f002.png" in result.output
    assert "exported 2 scenes" in result.output and "train 000000-000000, test 000001-000001" in result.output
    index = json.loads((tmp_path / "fod" / INDEX_FILE).read_text())
    assert index["scenes"] == [0, 4] and index["splits"] == {"train": [0, 0], "test": [1, 1]}
    loaded = dict((key, stack) for key, stack, _ in load_fod500(tmp_path / "fod"))
    assert sorted(loaded) == ["000000", "000001"]
    scene4 = decode_sample(samples[4])
    nearest = min(range(5), key=lambda i: scene4.meta["frames"][i]["focus_distance_m"])
    np.testing.assert_array_equal(loaded["000001"][0], srgb8(scene4.frames[nearest]) / np.float32(255.0))


def test_stacks_export_writes_the_folders_predict_reads(tmp_path):
    """``--format stacks``: per scene SPLIT/KEY/ with the first ramp's frames in increasing focus, the
    sample's own bytes under camera-style names, their focus distances by name, and the lens."""
    import yaml

    from dfd_models.predict.inputs import gather_stacks

    specs = [_spec(0, size=32, split="train"), _spec(1, size=32, split="test", lens={"f_number": 2.0})]
    samples = _dataset(tmp_path / "data", specs)
    result = _export(tmp_path / "data", "--format", "stacks", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    for spec in specs:
        folder = tmp_path / "out" / spec.split / f"{spec.index:08d}"
        order = sorted(range(5), key=lambda k: FOCUS[k])  # capture order is not focus order
        names = [f"IMG_{n:04d}.png" for n in range(1, 6)]
        assert sorted(p.name for p in folder.iterdir()) == sorted(names + ["camera.yaml", "focus.yaml"])
        assert [(folder / name).read_bytes() for name in names] == [samples[spec.index][f"f{k:03d}.png"] for k in order]
        assert yaml.safe_load((folder / "focus.yaml").read_text()) == {n: FOCUS[k] for n, k in zip(names, order)}
        camera = yaml.safe_load((folder / "camera.yaml").read_text())
        assert camera == {"focal_length_mm": pytest.approx(spec.lens.focal_length_m * 1e3), "f_number": spec.lens.f_number,
                          "sensor_width_mm": pytest.approx(spec.lens.sensor_width_m * 1e3), "model": spec.lens.model}
        (stack,) = gather_stacks([folder], [])  # what dfdgen predict makes of it
        assert stack.focus_m == tuple(sorted(FOCUS))


def test_stacks_export_names_folders_from_known_splits_only(tmp_path):
    """A manifest whose split names a path (a stranger's dataset): nothing is written outside OUT, and
    the export exits non-zero naming the sample."""
    _dataset(tmp_path / "data", [_spec(0, size=32, split="train")])
    manifest = tmp_path / "data" / "manifest.json"
    data = json.loads(manifest.read_text())
    for shard in data["shards"]:
        shard["split"] = "../../escaped"
    manifest.write_text(json.dumps(data))
    result = _export(tmp_path / "data", "--format", "stacks", "--out", tmp_path / "a" / "b" / "out")
    assert result.exit_code != 0, result.output
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "a" / "escaped").exists()
    assert not (tmp_path / "a" / "b" / "out").exists()
