"""Hostile-case helpers for damaged members that `inspect --verify`, export, train and eval must catch (tests/hostile/cases_verify.yaml):
``DAMAGE`` (name -> function(data folder)), ``ASSETS`` (name -> mesh bytes, written as meshes/mesh.SUFFIX)
and ``SETUP`` (name -> function(work folder)), merged into :mod:`test_hostile`'s.

Every damage re-signs the manifest (each rewritten shard's size and sha256), as someone who
crafts a shard would: the members themselves must be caught, not the checksum.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np

from fakes import fake_render, make_spec, tiny_recipe
from generator.dataset.pixels import write_exr_bytes
from generator.dataset.sample import encode_sample
from generator.dataset.shards import DatasetDir
from generator.scene.spec import FrameSpec

TRAIN0, TEST0 = "small_obj-train-000000.tar", "small_obj-test-000000.tar"
#: The fake dataset's images (tests/fakes.make_spec): width, height in pixels.
WIDTH, HEIGHT = 32, 24


def _rewrite(data: Path, shard: str, changes: dict) -> None:
    """Rewrite members of ``shard``: ``changes`` maps a member name to new bytes, to ``None``
    (drop it) or to ``"link"`` (a symbolic link to the shard's first member in its place);
    then re-sign the manifest."""
    path = data / shard
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(path, "w") as tar:
        for info, content in members:
            change = changes.get(info.name, content)
            if change is None:
                continue
            if change == "link":
                info.type, info.linkname, info.size, change = tarfile.SYMTYPE, members[0][0].name, 0, b""
            info.size = len(change)
            tar.addfile(info, None if info.issym() else io.BytesIO(change))
    manifest_path = data / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for entry in manifest["shards"]:
        if entry["name"] == shard:
            entry["bytes"], entry["sha256"] = path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest, indent=1))


def _member(data: Path, shard: str, member: str) -> bytes:
    with tarfile.open(data / shard) as tar:
        return tar.extractfile(member).read()


def _depth(fill: float, shape=(HEIGHT, WIDTH)) -> bytes:
    return write_exr_bytes({"Z": np.full(shape, fill, dtype=np.float32)})


def _metadata(data: Path, shard: str, key: str, **changes) -> bytes:
    """Sample ``key``'s metadata with ``image`` fields changed and its frame list repeated to ``frames``."""
    meta = json.loads(_member(data, shard, f"{key}.json"))
    frames = changes.pop("frames", len(meta["frames"]))
    meta["image"].update(changes)
    meta["frames"] = [{**meta["frames"][i % len(meta["frames"])], "index": i} for i in range(frames)]
    return json.dumps(meta).encode()


def _deep_json(data: Path) -> None:
    """The first sample of every shard gets metadata nested 10^6 deep."""
    deep = b"[" * 10**6 + b"]" * 10**6
    for path in sorted(data.glob("*.tar")):
        with tarfile.open(path) as tar:
            first = tar.getmembers()[0].name.split(".")[0]
        _rewrite(data, path.name, {f"{first}.json": deep})


@functools.cache
def _zeros_deflate(gib: int) -> bytes:
    """A zlib stream of ``gib`` GiB of zeros, about 1 MB per GiB: one 16 MiB block compressed
    once after a full flush (so it does not refer back), repeated, then the end and the checksum."""
    chunk = bytes(16 << 20)
    compressor = zlib.compressobj(9)
    first = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    n = (gib << 30) // len(chunk)
    adler = (((n * len(chunk)) % 65521) << 16) | 1  # adler32 of n * len(chunk) zero bytes
    return first + block * (n - 1) + b"\x03\x00" + struct.pack(">I", adler)  # 03 00: an empty final block


def _png16_bomb(width: int, height: int) -> bytes:
    """A 16-bit RGB PNG whose IHDR says ``width`` x ``height`` and whose IDAT inflates to 3 GiB."""
    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", _zeros_deflate(3))
            + chunk(b"IEND", b""))


_GARBAGE_PNG = b"\x89PNG\r\n\x1a\n" + b"\x1b[31m garbage " * 100


def _fod_dataset(work: Path) -> None:
    """data/: two FoD500-shaped scenes (one ramp of 5 frames, one depth map; 32 x 32 px, so
    export needs --force), both train, in small_obj-train-000000.tar."""
    recipe = tiny_recipe()
    out = DatasetDir(work / "data", recipe, max_samples=2)
    for index in range(2):
        spec = make_spec(index, model="blender", width=32, height=32)
        frames = tuple(FrameSpec(index=k, ramp=0, time_s=0.0, focus_distance_m=f)
                       for k, f in enumerate((0.7, 0.1, 1.5, 0.3, 0.15)))
        spec = dataclasses.replace(spec, frames=frames)
        out.add(index, "train", encode_sample(spec, fake_render(spec), recipe))
    out.finish()


DAMAGE: dict = {
    # the fake dataset (thin_lens: one depth map per frame, 32 x 24 px)
    "missing_frame": lambda d: _rewrite(d, TRAIN0, {"00000001.f002.png": None}),
    "link_frame": lambda d: _rewrite(d, TRAIN0, {"00000001.f002.png": "link"}),
    "garbage_frame": lambda d: _rewrite(d, TRAIN0, {"00000001.f000.png": _GARBAGE_PNG}),
    "nan_depth": lambda d: _rewrite(d, TRAIN0, {"00000001.f000.depth.exr": _depth(np.nan)}),
    # frame 1 is the depth eval reads: the reference (middle) frame of ramp 0
    "inf_depth": lambda d: _rewrite(d, TEST0, {"00000004.f001.depth.exr": _depth(np.inf)}),
    "small_depth": lambda d: _rewrite(d, TRAIN0, {"00000001.f003.depth.exr": _depth(1.0, (5, 7))}),
    "huge_width": lambda d: _rewrite(d, TRAIN0, {"00000001.json": _metadata(d, TRAIN0, "00000001",
                                                                            width=10**9, frames=1000)}),
    "huge_scene": lambda d: _rewrite(d, TRAIN0, {"00000001.json": _metadata(d, TRAIN0, "00000001", width=8192,
                                                                            height=8192, frames=1000)}),
    "png16_bomb_header": lambda d: _rewrite(d, TRAIN0, {"00000001.f001.png": _png16_bomb(100_000, 100_000)}),
    "png16_bomb_stream": lambda d: _rewrite(d, TRAIN0, {"00000001.f001.png": _png16_bomb(WIDTH, HEIGHT)}),
    "deep_json": _deep_json,
    # the FoD500-shaped dataset (setup fod_dataset: blender lens, one depth map, 32 x 32 px)
    "fod_nan_depth": lambda d: _rewrite(d, TRAIN0, {"00000001.depth.exr": _depth(np.nan, (32, 32))}),
    "fod_small_depth": lambda d: _rewrite(d, TRAIN0, {"00000001.depth.exr": _depth(1.0, (5, 7))}),
    "fod_garbage_png": lambda d: _rewrite(d, TRAIN0, {"00000000.f003.png": _GARBAGE_PNG}),
}
ASSETS: dict = {}
SETUP: dict = {"fod_dataset": _fod_dataset}
