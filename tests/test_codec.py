"""Sample encoding (DESIGN.md section 5): metadata, codecs, determinism. No Blender needed."""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import re
import resource
import struct
import zlib
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import OpenEXR
import pytest
from PIL import Image

from fakes import fake_render, make_spec, tiny_recipe
from generator.core.precision import float32
from generator.core import lens as lensmod
from generator.core.display import linear_to_srgb, srgb_to_linear
from generator.dataset.pixels import decode_rgb, read_exr_bytes, write_exr_bytes
from generator.dataset.sample import decode_sample, encode_sample, read_metadata
from generator.core.errors import CorruptShard
from generator.core.limits import MAX_IMAGE_PIXELS
from generator.core.limits import MAX_FRAMES, MAX_SCENE_PIXELS
from generator.scene.spec import world_to_camera


def _encode(**kw):
    spec = make_spec(**kw)
    rendered = fake_render(spec)
    return spec, rendered, encode_sample(spec, rendered, tiny_recipe())


def _digest(sample: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(sample):
        h.update(name.encode() + b"\0" + (sample[name] if isinstance(sample[name], bytes) else sample[name].encode()))
    return h.hexdigest()


def _digest_in_child(kw: dict) -> str:
    return _digest(_encode(**kw)[2])


def test_metadata_fields_and_lens_consistency():
    spec, rendered, sample = _encode(aif=True, coc=True)
    meta = json.loads(sample["json"])
    assert sample["__key__"] == "00000003"
    assert set(meta) >= {"format_version", "generator", "recipe", "scene_index", "seed", "split",
                         "image", "lens", "depth", "frames", "scene"}
    assert meta["generator"]["name"] == "dfdgen"
    recipe = tiny_recipe()
    assert meta["recipe"] == {"name": "small_obj", "sha256": recipe.sha256, "seed": recipe.seed}
    assert (meta["scene_index"], meta["seed"], meta["split"]) == (3, 1003, "train")
    assert meta["image"] == {"width": 32, "height": 24, "samples": 4}
    assert meta["lens"]["pixel_pitch_m"] == pytest.approx(0.036 / 32)
    valid = np.concatenate([d[d > 0] for d in rendered.depth])
    assert meta["depth"] == float32({"per_frame": True, "kind": "planar", "units": "m", "invalid": 0,
                                     "min_m": float(valid.min()), "max_m": float(valid.max()), "wall_m": None})  # make_spec has no wall
    assert meta["scene"] == float32(spec.to_dict())  # the metadata's precision (core/precision.py)
    assert len(meta["frames"]) == 4
    for fm, fs in zip(meta["frames"], spec.frames):
        assert (fm["index"], fm["ramp"], fm["focus_distance_m"]) == (fs.index, fs.ramp, float32(fs.focus_distance_m))
        np.testing.assert_array_equal(fm["K"], float32(lensmod.intrinsics(spec.lens, fs.focus_distance_m, 32, 24).tolist()))
        np.testing.assert_array_equal(fm["world_to_camera"], float32(world_to_camera(spec.camera).tolist()))
        cam = lensmod.blender_camera(spec.lens, fs.focus_distance_m)
        assert fm["blender_camera"] == float32({"lens_mm": cam.lens_mm, "fstop": cam.fstop,
                                                "focus_distance_m": cam.focus_distance_m,
                                                "sensor_width_mm": cam.sensor_width_mm})
    # thin lens breathes: K's focal length changes with the focus
    assert meta["frames"][0]["K"][0][0] != meta["frames"][1]["K"][0][0]
    assert sample["json"].decode() == json.dumps(meta, sort_keys=True, indent=1)


def test_members_and_codecs():
    spec, rendered, sample = _encode(aif=True, coc=True)
    assert sorted(k for k in sample if k != "__key__") == sorted(
        ["json", "aif.png"] + [f"f{i:03d}.{m}" for i in range(4) for m in ("png", "depth.exr", "coc.exr")]
    )
    image = Image.open(io.BytesIO(sample["f000.png"]))
    assert (image.format, image.mode, image.size) == ("PNG", "RGB", (32, 24))
    expected = np.floor(linear_to_srgb(rendered.frames[0]) * 255 + 0.5)
    np.testing.assert_array_equal(np.asarray(image), expected)

    exr = OpenEXR.File(io.BytesIO(sample["f002.depth.exr"]), separate_channels=True)
    assert list(exr.channels()) == ["Z"]
    z = exr.channels()["Z"].pixels
    assert z.dtype == np.float32 and z.shape == (24, 32)
    np.testing.assert_array_equal(z, rendered.depth[2])
    assert exr.header()["compression"] == OpenEXR.ZIP_COMPRESSION

    coc = read_exr_bytes(sample["f001.coc.exr"])["Y"]
    np.testing.assert_allclose(coc, lensmod.coc_map_px(spec.lens, rendered.depth[1], 2.0, 32))
    assert coc[0, 0] == 0.0  # sky


def test_static_blender_lens_has_one_depth_map():
    _, rendered, sample = _encode(model="blender")
    assert "depth.exr" in sample and "f000.depth.exr" not in sample
    decoded = decode_sample(sample)
    assert decoded.meta["depth"]["per_frame"] is False
    np.testing.assert_array_equal(decoded.depth[0], rendered.depth[0])


@pytest.mark.parametrize("rgb, tol", [("png8", 0.5 / 255), ("png16", 0.5 / 65535), ("exr", 0.0)])
def test_decode_round_trip(rgb, tol):
    _, rendered, sample = _encode(rgb=rgb, aif=True)
    decoded = decode_sample(sample)
    assert len(decoded.frames) == 4 and decoded.coc is None
    for got, want in zip([*decoded.frames, decoded.aif], [*rendered.frames, rendered.aif]):
        assert got.shape == (24, 32, 3) and got.dtype == np.float32
        if rgb == "exr":
            np.testing.assert_array_equal(got, want)
        else:  # compare in the stored (sRGB) domain, within half a code value
            np.testing.assert_allclose(linear_to_srgb(got), linear_to_srgb(want), atol=tol + 1e-6)
    assert ("f000.exr" in sample) == (rgb == "exr")


def test_srgb_inverse():
    x = np.linspace(0, 1, 101)
    np.testing.assert_allclose(srgb_to_linear(linear_to_srgb(x)), x, atol=1e-12)


def test_bytes_identical_twice_and_across_processes():
    kw = {"aif": True, "coc": True, "rgb": "png16"}
    first, second = _encode(**kw)[2], _encode(**kw)[2]
    assert first == second
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert pool.submit(_digest_in_child, kw).result() == _digest(first)


def test_shape_mismatch_is_an_error():
    spec = make_spec()
    rendered = fake_render(spec)
    rendered.depth = rendered.depth[:1]
    with pytest.raises(ValueError, match="depth maps"):
        encode_sample(spec, rendered, tiny_recipe())


# Decoding what a stranger wrote: every member checked against the metadata and the limits


def _png16_header(width: int, height: int, idat: bytes) -> bytes:
    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def _with_meta(sample: dict, change) -> dict:
    meta = json.loads(sample["json"])
    change(meta)
    return {**sample, "json": json.dumps(meta).encode()}


@pytest.mark.parametrize("change, reason", [
    (lambda m: m["image"].update(width=10**9), "image.width 1000000000 is not an integer in 8..8192"),
    (lambda m: m["image"].update(height=True), "image.height True is not an integer"),
    (lambda m: m.update(frames=[{**m["frames"][0], "index": i} for i in range(MAX_FRAMES + 1)]),
     f"frames is not a list of 1 to {MAX_FRAMES} frames"),
    (lambda m: m.update(frames=[]), "frames is not a list"),
    (lambda m: m["frames"][1].update(index=0), "frame indices are not distinct"),
    (lambda m: (m["image"].update(width=8192, height=8192),
                m.update(frames=[{**m["frames"][0], "index": i} for i in range(5)])),
     f"5 frames of 8192x8192 px, more than the {MAX_SCENE_PIXELS} pixels"),
    (lambda m: m["depth"].update(per_frame="yes"), "depth.per_frame is not true or false"),
    (lambda m: m.pop("image"), "KeyError('image')"),
])
def test_metadata_out_of_bounds_is_corrupt(change, reason):
    sample = {**_with_meta(_encode()[2], change), "__url__": "shard.tar"}
    with pytest.raises(CorruptShard, match=re.escape(f"shard.tar:00000003.json: bad metadata ({reason}")):
        decode_sample(sample)


def test_deep_or_missing_metadata_is_corrupt():
    sample = _encode()[2]
    with pytest.raises(CorruptShard, match=r"00000003\.json: bad metadata \(JSON nested deeper than 64 levels\)"):
        read_metadata({**sample, "json": b"[" * 10**6 + b"]" * 10**6})
    with pytest.raises(CorruptShard, match=r"\(sample in memory\):00000003\.json: bad metadata \(member missing"):
        read_metadata({k: v for k, v in sample.items() if k != "json"})


@pytest.mark.parametrize("fill", [np.nan, np.inf, -np.inf, -1.0])
def test_depth_must_be_finite_and_not_negative(fill):
    _, rendered, sample = _encode()
    depth = rendered.depth[2].copy()
    depth[5, 7] = fill
    sample["f002.depth.exr"] = write_exr_bytes({"Z": depth})
    with pytest.raises(CorruptShard, match=r"00000003\.f002\.depth\.exr: depth not finite or negative at 1 of 768"):
        decode_sample(sample)
    depth[5, 7] = 0.0  # 0 is "no surface": valid data
    sample["f002.depth.exr"] = write_exr_bytes({"Z": depth})
    assert decode_sample(sample).depth[2][5, 7] == 0.0


@pytest.mark.parametrize("member, data, reason", [
    ("f001.depth.exr", write_exr_bytes({"Z": np.ones((5, 7), np.float32)}), "7x5 px; the metadata says 32x24"),
    ("f001.png", _encode(width=24, height=32)[2]["f001.png"], "24x32 px; the metadata says 32x24"),
    ("f001.png", b"\x89PNG\r\n\x1a\n garbage", "cannot decode (ValueError('not a PNG"),
    ("f001.depth.exr", b"garbage", "cannot decode (RuntimeError("),
    ("f001.depth.exr", write_exr_bytes({"Y": np.ones((24, 32), np.float32)}), "cannot decode (KeyError('Z'))"),
])
def test_member_of_another_size_or_garbage_is_corrupt(member, data, reason):
    sample = {**_encode()[2], member: data}
    with pytest.raises(CorruptShard, match=re.escape(f"00000003.{member}: {reason}")):
        decode_sample(sample)


@pytest.mark.parametrize("missing", ["f002.png", "f000.depth.exr", "f003.coc.exr"])
def test_missing_member_is_corrupt(missing):
    sample = _encode(coc=True)[2]
    del sample[missing]
    name = "f002.png|exr|jpg" if missing == "f002.png" else missing
    with pytest.raises(CorruptShard, match=re.escape(f"00000003.{name}: member missing or not a regular file")):
        decode_sample(sample)


def test_png16_header_past_the_limits_is_refused_before_inflating():
    bomb = _png16_header(100_000, 100_000, zlib.compress(bytes(1 << 20)))
    with pytest.raises(ValueError, match=f"PNG of 100000x100000 px, more than the {MAX_IMAGE_PIXELS} pixels"):
        decode_rgb(bomb, "png")


def test_png16_inflates_at_most_what_its_header_declares():
    deflate, zeros = zlib.compressobj(9), bytes(16 << 20)
    stream = b"".join(deflate.compress(zeros) for _ in range(16)) + deflate.flush()  # 256 MiB of zeros in 250 KB
    del zeros
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB, the peak so far
    with pytest.raises(ValueError, match="16-bit PNG data inflates past the 32x24 px its IHDR declares"):
        decode_rgb(_png16_header(32, 24, stream), "png")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 << 10  # far less than 256 MiB
    with pytest.raises(ValueError, match="16-bit PNG data ends after 100 of the 4632 bytes"):
        decode_rgb(_png16_header(32, 24, zlib.compress(bytes(100))), "png")


def test_exr_header_past_the_limits_is_refused_before_reading_pixels():
    data = bytearray(write_exr_bytes({"Z": np.ones((24, 32), np.float32)}))
    at = data.index(b"dataWindow\0box2i\0") + len(b"dataWindow\0box2i\0") + 4  # after the attribute's size
    data[at + 8 : at + 16] = struct.pack("<ii", 99_999, 99_999)  # max corner: 100000 x 100000 px
    with pytest.raises(ValueError, match="EXR of 100000x100000 px, more than the"):
        read_exr_bytes(bytes(data))
