"""``dfdgen inspect``: summary numbers checked against the decoded pixels, and the contact sheet."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fakes import fake_render, make_spec, tiny_recipe
from generator.core import lens as lensmod
from generator.cli import main
from generator.core.errors import CorruptShard
from generator.core.display import colorize
from generator.dataset.inspection import contact_sheet, iter_samples, summarize, verify
from generator.dataset.pixels import write_exr_bytes
from generator.dataset.sample import decode_sample, encode_sample
from generator.dataset.shards import DatasetDir


def _lens(meta) -> lensmod.Lens:
    lm = meta["lens"]
    return lensmod.Lens(lm["model"], lm["focal_length_m"], lm["f_number"], lm["sensor_width_m"])


def test_summary_matches_the_pixels(tiny_dataset):
    summary = summarize(tiny_dataset)
    decoded = [decode_sample(s) for s in iter_samples(tiny_dataset)]
    assert summary.splits == {"train": 8} and summary.failed == 0
    assert summary.frames_per_sample == {3} and summary.image_sizes == {(64, 64)}
    depth = np.concatenate([d[d > 0] for s in decoded for d in s.depth])
    assert np.float32(summary.depth_m.lo) == depth.min() and np.float32(summary.depth_m.hi) == depth.max()
    # The CoC range from metadata equals the range over every valid pixel of every frame.
    cocs = []
    for s in decoded:
        for i, frame in enumerate(s.meta["frames"]):
            d = s.depth[i if s.meta["depth"]["per_frame"] else 0]
            cocs.append(lensmod.coc_px(_lens(s.meta), d[d > 0], frame["focus_distance_m"], 64))
    cocs = np.concatenate(cocs)
    assert np.isclose(summary.coc_px.hi, cocs.max(), rtol=1e-6)
    assert summary.coc_px.lo <= cocs.min() + 1e-6
    f_mm = [s.meta["lens"]["focal_length_m"] * 1e3 for s in decoded]
    assert np.isclose(summary.focal_length_mm.lo, min(f_mm)) and np.isclose(summary.focal_length_mm.hi, max(f_mm))


def test_contact_sheet_shows_every_tile(tiny_dataset, tmp_path):
    path = contact_sheet(tiny_dataset, tmp_path / "sheet.png", samples=2, tile=64)
    sheet = np.asarray(Image.open(path).convert("RGB"))
    # 2 rows of 3 frames + depth + 2 CoC maps, 64 px tiles with 4 px padding and labels.
    assert sheet.shape[1] == 6 * 68 + 4 + 70 and sheet.shape[0] == 2 * (64 + 14 + 4) + 4
    tile = sheet[4 + 14 : 4 + 14 + 64, 70 + 4 : 70 + 4 + 64]  # first frame of the first sample
    assert tile.std() > 5, "the first frame tile is blank"


def test_colorize_maps_ends_and_invalid():
    values = np.array([[0.0, 1.0, 0.5]])
    rgb = colorize(values, 0.0, 1.0, invalid=np.array([[False, False, True]]))
    assert tuple(rgb[0, 0]) == (68, 1, 84) and tuple(rgb[0, 1]) == (253, 231, 37)
    assert tuple(rgb[0, 2]) == (0, 0, 0)


def test_cli_inspect(tiny_dataset, tmp_path):
    result = CliRunner().invoke(main, ["inspect", str(tiny_dataset), "--sheet", str(tmp_path / "s.png")])
    assert result.exit_code == 0, result.output
    assert "samples      8 (train 8)" in result.output and (tmp_path / "s.png").is_file()


def test_cli_inspect_verify_passes_on_intact_data(tiny_dataset):
    result = CliRunner().invoke(main, ["inspect", "--verify", str(tiny_dataset)])
    assert result.exit_code == 0, result.output
    assert f"verified 8 samples: every shard matches {tiny_dataset / 'manifest.json'}" in result.output


def test_cli_inspect_bad_dir(tmp_path):
    result = CliRunner().invoke(main, ["inspect", str(tmp_path)])
    assert result.exit_code == 2 and "not a dfdgen dataset" in result.output


def _fake_dataset(folder, damage: dict) -> None:
    """Scenes 0-3 (fake renders, 32 x 24 px, one depth map per frame), members replaced by ``damage``
    (scene -> {member: bytes}) before they are written, so the manifest's sha256 matches them."""
    recipe = tiny_recipe()
    out = DatasetDir(folder, recipe, max_samples=2)
    for index in range(4):
        spec = make_spec(index)
        sample = encode_sample(spec, fake_render(spec), recipe)
        for name, data in damage.get(index, {}).items():
            if data is None:
                del sample[name]
            else:
                sample[name] = data
        out.add(index, "train", sample)
    out.finish()


def test_verify_checks_every_member_against_the_metadata(tmp_path):
    nan = write_exr_bytes({"Z": np.full((24, 32), np.nan, np.float32)})
    small = write_exr_bytes({"Z": np.ones((5, 7), np.float32)})
    _fake_dataset(tmp_path / "data", {1: {"f002.png": None}, 2: {"f000.depth.exr": nan, "f003.depth.exr": small}})
    checked, problems = verify(tmp_path / "data")
    shard = tmp_path / "data"
    assert checked == 4 and problems == [
        f"corrupt shard {shard / 'small_obj-train-000000.tar'}:00000001.f002.png|exr|jpg: member missing or not a regular file",
        f"corrupt shard {shard / 'small_obj-train-000001.tar'}:00000002.f000.depth.exr: depth not finite or negative "
        "at 768 of 768 pixels",
    ]
    _fake_dataset(tmp_path / "intact", {})
    assert verify(tmp_path / "intact") == (4, [])


def test_no_sheet_of_a_corrupt_sample(tmp_path):
    _fake_dataset(tmp_path / "data", {1: {"f000.png": b"not a png"}})
    with pytest.raises(CorruptShard, match=r"00000001\.f000\.png: cannot decode"):
        contact_sheet(tmp_path / "data", tmp_path / "sheet.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    assert contact_sheet(tmp_path / "data", tmp_path / "sheet.png", samples=1).is_file()


def test_contact_sheet_rows_are_the_lowest_scenes_in_index_order(tmp_path, monkeypatch):
    """Shards sort test before train by name; the sheet still shows scenes 0, 1, 2 in that order."""
    import generator.dataset.inspection as inspect_module

    recipe = tiny_recipe()
    out = DatasetDir(tmp_path / "data", recipe, max_samples=2)
    for index, split in [(0, "train"), (1, "test"), (2, "train"), (3, "test"), (4, "train")]:
        spec = make_spec(index, split=split)
        out.add(index, split, encode_sample(spec, fake_render(spec), recipe))
    out.finish()
    drawn = []
    real_row = inspect_module._sheet_row
    monkeypatch.setattr(inspect_module, "_sheet_row", lambda sample, tile: drawn.append(sample["__key__"])
                        or real_row(sample, tile))
    labels = []
    monkeypatch.setattr(inspect_module.ImageDraw.ImageDraw, "text",
                        lambda self, xy, text, **kw: labels.append(text))
    contact_sheet(tmp_path / "data", tmp_path / "sheet.png", samples=3, tile=32)
    assert sorted(drawn) == ["00000000", "00000001", "00000002"]
    row_labels = [t for t in labels if t.startswith("scene")]
    assert row_labels == ["scene 0\ntrain", "scene 1\ntest", "scene 2\ntrain"]
