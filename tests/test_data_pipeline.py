"""Training data pipeline (dfd_models.data): shards written by the generator's
own writer (generator.dataset.sample + generator.dataset.shards), read by the training loader."""

from __future__ import annotations

import dataclasses
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest

from fakes import FakeRendered, fake_render, make_spec
from generator.core.errors import BadInput, CorruptShard
from generator.recipe.recipe import load_recipe
from generator.core.display import linear_to_srgb, srgb_to_linear
from generator.dataset.sample import decode_sample, encode_sample
from generator.dataset.shards import DatasetDir
from generator.scene.spec import FrameSpec

H, W = 24, 32  # fake render size (make_spec)
RECIPE = load_recipe("small_obj")


@pytest.fixture
def data(torch):
    """dfd_models.data (imports torch: skipped locally without it, a failure in CI)."""
    import dfd_models.data
    import dfd_models.data.stages  # noqa: F401  (attribute access below)

    return dfd_models.data


def write_dataset(out, specs, renders=None, *, max_samples=2, edit=None):
    """Write ``specs`` with the generator's encoder and shard writer; ``edit(sample)`` may damage one."""
    recipe = load_recipe("small_obj", [f"count={len(specs)}", f"shards.max_samples={max_samples}"])
    dataset = DatasetDir(out, recipe, max_samples=max_samples)
    for i, spec in enumerate(specs):
        sample = encode_sample(spec, renders[i] if renders else fake_render(spec), recipe)
        dataset.add(spec.index, spec.split, edit(sample) if edit else sample)
    dataset.finish()
    return out


def keys_of(batches):
    return [k for batch in batches for k in batch["key"]]


@pytest.fixture
def eight(tmp_path):
    """8 train scenes in 4 shards of 2, plus 2 val scenes in 1 shard."""
    specs = [make_spec(i) for i in range(8)] + [make_spec(i, split="val") for i in (8, 9)]
    return write_dataset(tmp_path / "ds", specs)


# Sources


def test_resolve_shards_directory_manifest_split_braces_list(eight, data):
    train = data.resolve_shards(eight, split="train")
    assert [p.rsplit("/", 1)[1] for p in train] == [f"small_obj-train-{i:06d}.tar" for i in range(4)]
    assert len(data.resolve_shards(eight)) == 5
    assert data.resolve_shards(f"{eight}/small_obj-train-{{000001..000002}}.tar") == train[1:3]
    assert data.resolve_shards([train[3], train[0]]) == [train[3], train[0]]
    other = write_dataset(eight.parent / "other", [make_spec(i, split="val") for i in (20, 21)])
    both = data.resolve_shards(f"{eight}::{other}")  # two datasets trained on together
    assert both == data.resolve_shards(eight) + data.resolve_shards(other) and len(both) == 6
    (eight / "manifest.json").unlink()  # without a manifest: the directory's *.tar
    assert data.resolve_shards(eight, split="train") == train
    with pytest.raises(BadInput, match="no shards of split 'test'"):
        data.resolve_shards(eight, split="test")


def test_shard_pass_partitions_over_ranks_and_workers():
    from dfd_models.data.sources import shard_pass

    urls = [f"s{i}" for i in range(10)]

    def parts(pass_index):
        return [shard_pass(urls, seed=1, epoch=0, pass_index=pass_index, shuffle=True, rank=r, world_size=2,
                           worker=w, num_workers=2) for r in range(2) for w in range(2)]

    assert sorted(u for p in parts(0) for u in p) == urls
    assert all(len(p) in (2, 3) for p in parts(0))
    assert parts(0) != parts(1)  # each pass reshuffles


# Samples


def test_sample_shapes_dtypes_and_focus_order(tmp_path, data, torch):
    # frames stored out of focus order within each ramp; a thin lens: depth per frame
    spec = dataclasses.replace(make_spec(0, aif=True, coc=True), frames=tuple(
        FrameSpec(index=i, ramp=i // 3, time_s=0.0, focus_distance_m=f)
        for i, f in enumerate((2.0, 0.5, 1.0, 3.0, 0.6, 0.8))
    ))
    rendered = fake_render(spec)
    write_dataset(tmp_path / "ds", [spec], [rendered])
    decoded = decode_sample(encode_sample(spec, rendered, RECIPE))

    for ramp, order in ((0, [1, 2, 0]), (1, [4, 5, 3])):
        ds = data.FocalStackDataset(data.DataSection(shards=tmp_path / "ds", split=None, crop=None, ramp=ramp, flip=False,
                                                    shuffle=0), batched=False)
        (s,) = list(ds)
        assert s["key"] == "00000000"
        assert s["frames"].shape == (3, 3, H, W) and s["frames"].dtype == torch.float32
        assert 0 <= s["frames"].min() and s["frames"].max() <= 1
        for t, index in enumerate(order):  # sorted by focus, each the frame the generator decodes
            np.testing.assert_array_equal(s["frames"][t].numpy(), decoded.frames[index].transpose(2, 0, 1))
            np.testing.assert_allclose(s["K"][t].numpy(), decoded.meta["frames"][index]["K"], rtol=1e-6)
        np.testing.assert_allclose(s["focus_m"].numpy(), [spec.frames[i].focus_distance_m for i in order])
        assert data.reference_index(s["frames"].shape[0]) == 1  # the middle frame: its own depth map
        assert s["depth"].shape == (1, H, W) and s["depth"].dtype == torch.float32
        np.testing.assert_array_equal(s["depth"][0].numpy(), rendered.depth[order[1]])
        assert s["valid"].dtype == torch.bool and torch.equal(s["valid"], s["depth"] > 0)
        assert not s["valid"][0, :3, :3].any() and s["valid"][0, 3:, 3:].all()
        assert s["aif"].shape == (3, H, W) and s["coc"].shape == (3, 1, H, W)
        np.testing.assert_array_equal(s["coc"][1, 0].numpy(), decoded.coc[order[1]])
        assert s["lens_model"].item() == 0 and s["f_number"].item() == 2.0
        assert s["focal_length_m"].item() == pytest.approx(0.05) and s["pixel_pitch_m"].item() == pytest.approx(
            0.036 / W)


def _check_against_batch_type(item, sizes, *, batched):
    """``item`` (a batch, or one sample when not ``batched``) holds exactly the keys of
    :class:`dfd_models.data.batch.Batch` (the optional ones when ``sizes`` has them), each with
    the shape and dtype its :class:`~dfd_models.data.batch.Field` declares; the named axes
    take ``sizes``."""
    import typing

    from dfd_models.data.batch import Batch, Field

    optional = {"aif", "coc"} & set(sizes.pop("optional"))
    assert set(item) == set(Batch.__required_keys__) | optional
    for name, hint in typing.get_type_hints(Batch, include_extras=True).items():
        if name not in item:
            continue
        if typing.get_origin(hint) is typing.NotRequired:
            (hint,) = typing.get_args(hint)
        if name == "key":
            assert item[name] == sizes["keys"] if batched else item[name] in sizes["keys"], name
            continue
        (field,) = [m for m in hint.__metadata__ if isinstance(m, Field)]
        shape = tuple(sizes.get(axis, axis) for axis in field.shape)
        assert tuple(item[name].shape) == (shape if batched else shape[1:]), name
        assert item[name].dtype == field.dtype, name


def test_the_loader_yields_the_documented_batch(tmp_path, data, torch):
    """Every batch (and, unbatched, every sample) has exactly the keys of the batch type, with its
    shapes and dtypes: with and without the optional all-in-focus image and CoC maps."""
    for optional, extra in (((), {}), (("aif", "coc"), {"aif": True, "coc": True})):
        out = tmp_path / f"ds-{len(optional)}"
        write_dataset(out, [make_spec(i, **extra) for i in range(3)], max_samples=3)
        section = data.DataSection(shards=out, split=None, batch_size=2, crop=[16, 20], workers=0, shuffle=0)
        batches = list(data.make_loader(section))
        assert [len(b["key"]) for b in batches] == [2, 1]
        keys = ["00000000", "00000001", "00000002"]
        for batch, chunk in zip(batches, (keys[:2], keys[2:])):
            _check_against_batch_type(batch, {"B": len(chunk), "T": 2, "H": 16, "W": 20, "keys": chunk,
                                              "optional": optional}, batched=True)
        for sample in data.FocalStackDataset(section, batched=False):
            _check_against_batch_type(sample, {"T": 2, "H": 16, "W": 20, "keys": keys, "optional": optional},
                                      batched=False)


def test_static_scene_single_depth_and_batching(tmp_path, data, torch):
    write_dataset(tmp_path / "ds", [make_spec(i, model="blender") for i in range(3)], max_samples=3)
    (batch,) = list(data.make_loader(data.DataSection(shards=tmp_path / "ds", split=None, batch_size=4, crop=[16, 20],
                                                     workers=0)))
    assert batch["frames"].shape == (3, 2, 3, 16, 20)
    assert batch["focus_m"].shape == (3, 2) and batch["K"].shape == (3, 2, 3, 3)
    assert batch["depth"].shape == batch["valid"].shape == (3, 1, 16, 20)
    assert batch["f_number"].shape == batch["lens_model"].shape == (3,)
    assert (batch["lens_model"] == 1).all() and sorted(batch["key"]) == ["00000000", "00000001", "00000002"]
    assert (batch["focus_m"][:, 1] > batch["focus_m"][:, 0]).all()


# Crop and flip


def _coded_render(spec):
    """Frames whose stored 8-bit sRGB pixel is (column, row, 10 * frame); depth unique per pixel, sky top-left."""
    rows, cols = np.mgrid[0:H, 0:W]
    frames = []
    for t in range(len(spec.frames)):
        srgb = np.stack([cols, rows, np.full_like(cols, 10 * t)], axis=-1) / 255.0
        frames.append(srgb_to_linear(srgb).astype(np.float32))
    depth = [(1.0 + 0.25 * cols + 0.5 * rows + 0.125 * t).astype(np.float32) for t in range(len(spec.frames))]
    for d in depth:
        d[:2, :2] = 0.0
    return FakeRendered(frames, depth)


def test_crop_and_flip_move_colour_depth_and_K_together(tmp_path, data):
    spec = make_spec(0)  # thin lens: K and depth differ per frame
    rendered = _coded_render(spec)
    write_dataset(tmp_path / "ds", [spec], [rendered])
    meta = decode_sample(encode_sample(spec, rendered, RECIPE)).meta
    seen_flip = set()
    for seed in range(8):
        ds = data.FocalStackDataset(data.DataSection(shards=tmp_path / "ds", split=None, crop=[16, 20], ramp=0, shuffle=0),
                                    batched=False, seed=seed)
        (s,) = list(ds)
        code = np.rint(linear_to_srgb(s["frames"].numpy().transpose(0, 2, 3, 1)) * 255).astype(int)  # [T,h,w,3]
        col, row = code[0, ..., 0], code[0, ..., 1]
        for t in range(2):  # every frame moved the same way, frames in focus order
            np.testing.assert_array_equal(code[t, ..., :2], code[0, ..., :2])
            assert (code[t, ..., 2] == 10 * t).all()
        flipped = col[0, 0] > col[0, -1]
        seen_flip.add(bool(flipped))
        assert np.all(np.abs(np.diff(col, axis=1)) == 1) and np.all(np.diff(row, axis=0) == 1)
        ref = data.reference_index(s["frames"].shape[0])
        z0 = rendered.depth[ref][row, col]  # original depth at each pixel's source
        np.testing.assert_array_equal(s["depth"][0].numpy(), z0)
        np.testing.assert_array_equal(s["valid"][0].numpy(), z0 > 0)
        # unproject every source pixel centre with its original K and depth, mirror if flipped,
        # project with the new K: it must land on the centre of the pixel that now shows it
        for t in range(2):
            k0 = np.array(meta["frames"][t]["K"])
            pts = np.linalg.solve(k0, np.stack([col + 0.5, row + 0.5, np.ones_like(col)], 0).reshape(3, -1))
            pts *= z0.reshape(1, -1)
            if flipped:
                pts[0] *= -1
            valid = z0.reshape(-1) > 0
            uvw = s["K"][t].numpy().astype(np.float64) @ pts[:, valid]
            ys, xs = np.mgrid[0:16, 0:20]
            np.testing.assert_allclose(uvw[0] / uvw[2], (xs + 0.5).reshape(-1)[valid], atol=1e-3)
            np.testing.assert_allclose(uvw[1] / uvw[2], (ys + 0.5).reshape(-1)[valid], atol=1e-3)
    assert seen_flip == {True, False}


def test_same_seed_and_epoch_reproduce_the_batches(eight, data, torch):
    def run(seed, epoch):
        loader = data.make_loader(data.DataSection(shards=eight, batch_size=2, crop=[8, 8], workers=2), seed=seed)
        loader.set_epoch(epoch)
        return list(loader)

    a, b, c = run(3, 1), run(3, 1), run(3, 2)
    assert keys_of(a) == keys_of(b)
    assert all(torch.equal(x["frames"], y["frames"]) and torch.equal(x["K"], y["K"]) for x, y in zip(a, b))
    assert keys_of(a) != keys_of(c) or not all(torch.equal(x["K"], y["K"]) for x, y in zip(a, c))


# Workers, ranks, epochs


def test_two_workers_yield_every_sample_once_per_epoch(eight, data):
    loader = data.make_loader(data.DataSection(shards=eight, batch_size=3, crop=None, workers=2), seed=5)
    want = [f"{i:08d}" for i in range(8)]
    for _ in range(2):
        assert sorted(keys_of(loader)) == want
    assert loader.epoch == 2


def test_workers_never_exceed_the_shards_per_rank(eight, data):
    """``auto`` starts at most one worker per shard of the rank, silently; more workers asked
    for are cut to that with a warning; every sample of the rank is read once either way."""
    import warnings

    section = data.DataSection(shards=eight, batch_size=2, crop=None, shuffle=0)  # 4 train shards
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message="This DataLoader will create")  # torch's, about the cores
        assert data.make_loader(section).workers == 2
        assert data.make_loader(section, auto_workers=8).workers == 4
        rank = data.make_loader(section, rank=1, world_size=2, auto_workers=8)
        val = data.make_loader(dataclasses.replace(section, split="val"), auto_workers=8)
        assert (rank.workers, val.workers) == (2, 1)
        assert data.make_loader(section, auto_workers=0).workers == 0
        assert data.make_loader(dataclasses.replace(section, workers=3)).workers == 3
    with pytest.warns(UserWarning, match="data.workers = 3 but only 2 shards per process: using 2 workers"):
        asked = data.make_loader(dataclasses.replace(section, workers=3), rank=1, world_size=2)
    assert asked.workers == 2
    assert sorted(keys_of(asked)) == sorted(keys_of(rank))
    assert len(keys_of(rank)) == 4


def test_ranks_partition_the_shards(eight, data):
    per_rank = [
        {s["key"] for s in data.FocalStackDataset(data.DataSection(shards=eight, crop=None), batched=False, rank=r,
                                                  world_size=2, seed=9)}
        for r in range(2)
    ]
    assert len(per_rank[0]) == len(per_rank[1]) == 4
    assert per_rank[0] | per_rank[1] == {f"{i:08d}" for i in range(8)}
    with pytest.raises(ValueError, match="cannot be split across 8 ranks"):
        data.FocalStackDataset(data.DataSection(shards=eight, split="val"), rank=0, world_size=8)


@pytest.mark.parametrize("epoch_len, workers", [(6, 2), (21, 0)])
def test_epoch_length_is_honoured(eight, data, epoch_len, workers):
    loader = data.make_loader(data.DataSection(shards=eight, batch_size=2, crop=None, workers=workers,
                                               epoch_len=epoch_len, shuffle=0))
    assert len(loader) == epoch_len // 2
    for _ in range(2):
        batches = list(loader)
        assert len(batches) == epoch_len // 2 and all(len(b["key"]) == 2 for b in batches)
    if epoch_len > 8:  # longer than the data: the shards are cycled
        assert set(keys_of(batches)) == {f"{i:08d}" for i in range(8)}


# Corrupt shards


def _member_offsets(path):
    with tarfile.open(path) as tar:
        return [(m.name, m.offset, m.offset_data + m.size) for m in tar.getmembers()]


def _iterate(data, path, **fields):
    section = data.DataSection(**{"shards": path, "crop": None, "shuffle": 0, "flip": False, **fields})
    return [s["key"] for s in data.FocalStackDataset(section, batched=False)]


@pytest.mark.parametrize("cut", ["inside a member", "between samples"])
def test_truncated_shard_is_named_or_skipped(eight, data, cut):
    shard = eight / "small_obj-train-000001.tar"  # scenes 2 and 3, 9 members each
    members = _member_offsets(shard)
    if cut == "inside a member":  # in scene 3's second member
        named, (_, start, end) = members[10][0], members[10]
        size, lost = (start + end) // 2, {3}
    else:  # after scene 2's last member, dropping scene 3 and the end-of-archive blocks
        named, size = members[8][0], (members[8][2] + 511) // 512 * 512
        lost = {2, 3}  # the sample being read when the tar breaks may be incomplete: dropped too
    shard.write_bytes(shard.read_bytes()[:size])

    with pytest.raises(CorruptShard, match="tar unreadable") as info:
        _iterate(data, eight)
    assert (info.value.shard, info.value.member) == (str(shard), named)

    with pytest.warns(RuntimeWarning, match=re.escape(f"corrupt shard {shard}:{named}")):
        keys = _iterate(data, eight, skip_corrupt=True)
    assert sorted(keys) == [f"{i:08d}" for i in range(8) if i not in lost]


@pytest.mark.parametrize("member, model", [("f000.png", "thin_lens"), ("depth.exr", "blender")])
def test_garbage_member_is_named_or_skipped(tmp_path, data, member, model):
    def damage(sample):
        if sample["__key__"] == "00000002":
            sample[member] = b"\x89PNG\r\n\x1a\n garbage" if member.endswith("png") else b"v/1\x01garbage"
        return sample

    write_dataset(tmp_path / "ds", [make_spec(i, model=model) for i in range(4)], edit=damage)
    shard = tmp_path / "ds" / "small_obj-train-000001.tar"
    with pytest.raises(CorruptShard, match="cannot decode") as info:
        _iterate(data, tmp_path / "ds", ramp=0)
    assert (info.value.shard, info.value.member) == (str(shard), f"00000002.{member}")

    with pytest.warns(RuntimeWarning, match=re.escape(f"{shard}:00000002.{member}")):
        assert _iterate(data, tmp_path / "ds", ramp=0, skip_corrupt=True) == ["00000000", "00000001", "00000003"]


def test_missing_member_and_bad_json_are_corrupt(tmp_path, data):
    def damage(sample):
        if sample["__key__"] == "00000001":
            del sample["f001.png"]
        if sample["__key__"] == "00000002":
            sample["json"] = b"{not json"
        return sample

    write_dataset(tmp_path / "ds", [make_spec(i) for i in range(3)], edit=damage, max_samples=3)
    with pytest.warns(RuntimeWarning) as caught:
        assert _iterate(data, tmp_path / "ds", ramp=0, skip_corrupt=True) == ["00000000"]
    messages = sorted(str(w.message) for w in caught)
    assert "00000001.f001.png|exr|jpg: member missing" in messages[0]
    assert "00000002.json: bad metadata" in messages[1]


def test_an_endless_epoch_of_only_corrupt_shards_ends(eight, data):
    for shard in data.resolve_shards(eight, split="train"):
        Path(shard).write_bytes(b"\0garbage" * 100)
    loader = data.make_loader(data.DataSection(shards=eight, batch_size=2, crop=None, workers=0, epoch_len=8,
                                               skip_corrupt=True))
    with pytest.warns(RuntimeWarning, match="tar unreadable from its start"):
        assert list(loader) == []


def test_skip_corrupt_does_not_hide_configuration_errors(eight, data):
    with pytest.raises(ValueError, match="crop"):
        _iterate(data, eight, crop=[64, 64], skip_corrupt=True)


# Real renders


def test_auto_crop_and_batch_are_sized_from_the_manifest(tiny_dataset, data, torch):
    """A library user's ``auto`` crop and batch size: :func:`dfd_models.sizing.auto_data` with the
    manifest's image size (64 px) and this machine's device, as training sizes them."""
    from dfd_models.sizing import AUTO_SIZE

    side, batch_size = AUTO_SIZE["cuda" if torch.cuda.is_available() else "cpu"]
    loader = data.make_loader(data.DataSection(shards=tiny_dataset, workers=0, shuffle=0))
    batch = next(iter(loader))
    assert batch["frames"].shape == (batch_size, 3, 3, min(side, 64), min(side, 64))


def test_rendered_dataset_round_trip(tiny_dataset, data, torch):
    """Cycles renders written by ``dfdgen render``'s pipeline, read by the training loader."""
    loader = data.make_loader(data.DataSection(shards=tiny_dataset, batch_size=3, crop=None, workers=2, flip=False,
                                               shuffle=0))
    batches = list(loader)
    assert sorted(keys_of(batches)) == [f"{i:08d}" for i in range(8)]
    for batch in batches:
        b = len(batch["key"])
        assert batch["frames"].shape == (b, 3, 3, 64, 64) and batch["aif"].shape == (b, 3, 64, 64)
        assert (batch["focus_m"].diff(dim=1) > 0).all()
        assert batch["valid"].float().mean() > 0.5 and (batch["depth"][batch["valid"]] > 0).all()
        # thin lens: K's focal length is v / p with v = f F / (F - f) (breathing), principal point centred
        f, p, focus = batch["focal_length_m"][:, None], batch["pixel_pitch_m"][:, None], batch["focus_m"]
        torch.testing.assert_close(batch["K"][..., 0, 0], f * focus / (focus - f) / p, rtol=1e-4, atol=0)
        assert (batch["K"][..., 0, 2] == 32).all() and (batch["K"][..., 1, 2] == 32).all()
