"""The dataset format's one owner: member names, shard names, the manifest, and the tar reader/writer.

Every module that writes or reads dfdgen's data names it through here
(DESIGN.md section 5): :mod:`generator.dataset.sample` (what a member holds),
:mod:`generator.dataset.shards` (writing a dataset folder), ``export``, ``inspect``,
the loader's stages and sources, checkpoints and the benchmarks.

    shard     {recipe}-{split}-{shard:06d}.tar: samples one after another, each
              KEY.MEMBER in sorted member order, fixed mtime, owner and mode
              (``webdataset.TarWriter``'s bytes), then the end-of-archive blocks
    sample    KEY = {scene_index:08d}; members ``json``, ``fNNN.png|exr|jpg``,
              ``depth.exr`` or ``fNNN.depth.exr``, ``aif.png|exr|jpg``, ``fNNN.coc.exr``,
              ``fNNN.motion.exr``, ``fNNN.clean.exr`` (the member functions below)
    folder    manifest.json (what is done), progress.json (shards being written),
              recipe.yaml (the recipe that made them)

Pure Python (no webdataset at import, no bpy): the Blender add-on writes its
one-sample shards with the same writer.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
import zlib
from pathlib import Path
from typing import Any, Iterator, Mapping

import generator
from generator.core.errors import BadInput, CorruptShard, brief
from generator.core.precision import float32
from generator.core.safe_json import load_json_file

#: Version of the sample layout and metadata schema below.
FORMAT_VERSION = 1


def sample_key(scene_index: int) -> str:
    """WebDataset key of a scene: zero-padded, no dots."""
    return f"{scene_index:08d}"


# Member names

#: The sample's metadata member (JSON, DESIGN.md section 5).
META = "json"
#: Stem of the all-in-focus image's member.
AIF = "aif"
#: Extensions an image member may have, in the order a reader looks for them.
RGB_EXTENSIONS = ("png", "exr", "jpg")


def frame_stem(index: int) -> str:
    """Stem of frame ``index``'s members: ``fNNN``."""
    return f"f{index:03d}"


def rgb_member(sample: Mapping[str, Any], stem: str) -> str | None:
    """The member holding image ``stem`` (``fNNN`` or :data:`AIF`) in ``sample``: ``stem.png``, ``.exr`` or ``.jpg``."""
    return next((f"{stem}.{ext}" for ext in RGB_EXTENSIONS if f"{stem}.{ext}" in sample), None)


def depth_member(index: int | None) -> str:
    """Frame ``index``'s depth member (``fNNN.depth.exr``), or the scene's one map (``depth.exr``) for None."""
    return "depth.exr" if index is None else f"{frame_stem(index)}.depth.exr"


def coc_member(index: int) -> str:
    """Frame ``index``'s CoC member (channel ``Y``, pixels)."""
    return f"{frame_stem(index)}.coc.exr"


def clean_member(index: int) -> str:
    """Frame ``index``'s clean radiance member (channels ``R``, ``G``, ``B``, linear; recipe ``outputs.clean``)."""
    return f"{frame_stem(index)}.clean.exr"


def motion_member(index: int) -> str:
    """Frame ``index``'s motion member (channels ``X``, ``Y`` pixels, ``Z`` metres; to the next frame)."""
    return f"{frame_stem(index)}.motion.exr"


# Shard names and the manifest

MANIFEST = "manifest.json"
PROGRESS = "progress.json"
RECIPE = "recipe.yaml"
#: The file names dfdgen gives shards: ``{recipe}-{split}-{shard:06d}.tar``, the recipe name as
#: :class:`generator.recipe.recipe.Recipe` allows it (no path separator, no ``:``).
SHARD_NAME = re.compile(r"(?P<recipe>[A-Za-z0-9_][A-Za-z0-9_-]*)-(?P<split>train|val|test)-(?P<shard>\d{6})\.tar")


#: Any ``{name}-{split}-{shard:06d}.tar``, dfdgen's or not: how a split is read from a folder
#: without a manifest (the name may itself contain dashes).
_ANY_SHARD_NAME = re.compile(r"^(?P<recipe>.+)-(?P<split>[^-]+)-(?P<shard>\d{6})\.tar$")


def shard_name(recipe_name: str, split: str, number: int) -> str:
    """File name of shard ``number`` of a split."""
    return f"{recipe_name}-{split}-{number:06d}.tar"


def shard_split(url: str) -> str | None:
    """The split named in a shard's file name ``{name}-{split}-{shard:06d}.tar``, else ``None``."""
    match = _ANY_SHARD_NAME.match(os.path.basename(url))
    return match["split"] if match else None


def metadata_json(meta: Mapping[str, Any]) -> bytes:
    """A sample's ``json`` member: sorted keys, every float at float32 precision (:mod:`generator.core.precision`)."""
    return json.dumps(float32(meta), sort_keys=True, indent=1, allow_nan=False).encode("utf-8")


def manifest_json(recipe: Any, shards: list[dict[str, Any]], failed: Mapping[int, str], scenes_done: set[int],
                  complete: bool) -> bytes:
    """The manifest's bytes: deterministic (no clock, no host), so reruns compare equal.

    ``recipe``: name, sha256, seed, count and the full recipe ``config`` (``recipe.to_dict()``);
    ``shards``: [{name, split, samples, bytes, sha256, scenes}] sorted by name;
    ``failed``: [{scene, reason}]; ``scenes_done``: sorted scene indices in
    listed shards; ``complete``: every scene is in a shard or failed.
    """
    manifest = {
        "format_version": FORMAT_VERSION,
        "generator": {"name": "dfdgen", "version": generator.__version__},
        "recipe": {"name": recipe.name, "sha256": recipe.sha256, "seed": recipe.seed, "count": recipe.count,
                   "file": RECIPE, "config": recipe.to_dict()},
        "shards": sorted(shards, key=lambda s: s["name"]),
        "failed": [{"scene": i, "reason": failed[i]} for i in sorted(failed)],
        "scenes_done": sorted(scenes_done),
        "complete": complete,
    }
    return json.dumps(manifest, sort_keys=True, indent=1, allow_nan=False).encode("utf-8")


def read_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of dataset ``directory``, its shard list checked (:func:`manifest_shards`).

    Raises:
        BadInput: no manifest, not dfdgen's JSON, or a shard entry that is not one of
            dfdgen's shard names (``../x``, an absolute path, ``pipe:cmd``).
    """
    path = Path(directory) / MANIFEST
    if not path.exists():
        raise BadInput(f"{directory} is not a dfdgen dataset: no {MANIFEST}")
    try:
        manifest = load_json_file(path)
        if manifest["generator"]["name"] != "dfdgen":
            raise ValueError("not written by dfdgen")
        check_shard_entries(manifest["shards"], path)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, IsADirectoryError) as exn:
        raise BadInput(f"{path} is not a dfdgen manifest ({brief(exn)})") from None
    return manifest


def check_shard_entries(entries: Any, where: Path) -> None:
    """Every entry a mapping whose ``name`` is a dfdgen shard name; raises ValueError."""
    if not isinstance(entries, list):
        raise ValueError(f"shards must be a list in {where}")
    for entry in entries:
        name = entry["name"]
        if not isinstance(name, str) or not SHARD_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a dfdgen shard name")


def manifest_shards(directory: str | os.PathLike[str], split: str | None = None,
                    manifest: dict[str, Any] | None = None) -> list[Path]:
    """Absolute paths of the complete shards the manifest of ``directory`` lists (of ``split``),
    in manifest order. Each is a dfdgen shard name inside ``directory`` (:func:`read_manifest`;
    ``manifest``: its result, when the caller has it already).

    Raises:
        BadInput: as :func:`read_manifest`; or a listed shard resolves outside ``directory``
            (a symbolic link).
    """
    folder = Path(directory).resolve()
    paths = []
    for shard in (manifest or read_manifest(directory))["shards"]:
        if split is None or shard.get("split") == split:
            path = folder / shard["name"]
            if path.resolve().parent != folder:
                raise BadInput(f"shard {path} listed in {folder / MANIFEST} lies outside {folder}")
            paths.append(path)
    return paths


def split_samples(directory: str | os.PathLike[str], split: str) -> int | None:
    """Samples of split ``split`` the manifest of dataset ``directory`` lists (a progress bar's total);
    ``None`` for shards without a manifest (a URL, a file list)."""
    if is_url(str(directory)) or not (Path(directory) / MANIFEST).is_file():
        return None
    return sum(s["samples"] for s in read_manifest(directory)["shards"] if s.get("split") == split)


#: A URL with a scheme (``pipe:``, ``http://``), as opposed to a local path.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")


def is_url(text: object) -> bool:
    """Whether ``text`` (or any string in a list of them) is a URL or ``pipe:`` rather than a local path."""
    items = text if isinstance(text, (list, tuple)) else [text]
    return any(isinstance(t, str) and _URL.match(t) is not None for t in items)


class _CheckedTarInfo(tarfile.TarInfo):
    """TarInfo that turns the header errors tarfile treats as a quiet end of the
    archive (a cut or damaged header after the first member) into errors, so a
    truncated shard is never read as a shorter valid one. The end-of-archive
    zero block still ends it."""

    @classmethod
    def fromtarfile(cls, tar):
        try:
            return super().fromtarfile(tar)
        except tarfile.EOFHeaderError:
            raise
        except (tarfile.EmptyHeaderError, tarfile.TruncatedHeaderError) as exn:
            raise tarfile.ReadError(f"archive ends without its end marker ({exn})") from None
        except tarfile.InvalidHeaderError as exn:
            raise tarfile.ReadError(f"damaged header ({exn})") from None


def read_shard(url: str) -> Iterator[dict[str, Any]]:
    """Flat samples (``__key__``, ``__url__``, member suffix -> bytes) of one shard, in tar order.

    A local path is opened as a file; only a URL with a scheme (``pipe:``, ``http://``)
    goes through webdataset's ``gopen``. Links and other non-regular members are
    skipped. A shard that cannot be opened or read to its end-of-archive marker (cut,
    damaged header) raises :class:`CorruptShard` naming the last member read;
    the samples before the break have been yielded.
    """
    from webdataset.gopen import gopen  # here, not at import: the add-on writes shards without webdataset
    from webdataset.tariterators import base_plus_ext

    member = None
    try:
        stream = gopen(url) if _URL.match(url) else open(url, "rb")
    except OSError as exn:
        raise CorruptShard(url, None, f"cannot open ({exn})") from exn
    with stream:
        sample = None
        try:
            tar = tarfile.open(fileobj=stream, mode="r|*", tarinfo=_CheckedTarInfo)
            for info in tar:
                member = info.name
                key, suffix = base_plus_ext(member)
                if not info.isreg() or key is None:
                    continue
                data = tar.extractfile(info).read()
                if sample is not None and sample["__key__"] != key:
                    yield sample
                    sample = None
                if sample is None:
                    sample = {"__key__": key, "__url__": url}
                sample[suffix] = data
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exn:
            where = "at or after this member" if member else "from its start"
            raise CorruptShard(url, member, f"tar unreadable {where}: {exn}") from exn
        if sample is not None:
            yield sample


# Tar: one writer, one reader

#: Fixed tar member mtime (2020-01-01T00:00:00Z): tars must not depend on the clock.
#: Not 0, which GNU tar flags as an "implausibly old time stamp" on extraction.
TAR_MTIME = 1_577_836_800
#: Owner (user and group name) and mode of every tar member: fixed, like the mtime.
TAR_OWNER = "dfdgen"
TAR_MODE = 0o444


def tar_members(sample: Mapping[str, Any]) -> bytes:
    """One WebDataset sample's tar members (headers and padded data), without the end-of-archive marker.

    Members are ``KEY.NAME`` in sorted name order with the fixed mtime, owner and
    mode above: ``webdataset.TarWriter``'s bytes for the same sample. Shards are
    these blocks one sample after another, then :func:`tar_end`, so a shard can be
    appended to one sample at a time and resumed after a crash.
    """
    buffer = io.BytesIO()
    tar = tarfile.open(fileobj=buffer, mode="w")
    for name in sorted(k for k in sample if not k.startswith("_")):
        info = tarfile.TarInfo(f"{sample['__key__']}.{name}")
        info.size, info.mtime, info.mode = len(sample[name]), TAR_MTIME, TAR_MODE
        info.uname = info.gname = TAR_OWNER
        tar.addfile(info, io.BytesIO(sample[name]))
    return buffer.getvalue()[: tar.offset]


def sample_keys(members: bytes) -> list[str]:
    """The keys of the samples whose tar members (:func:`tar_members`, one sample after another)
    fill ``members`` exactly, in order: how a resumed shard is checked against ``progress.json``.

    Raises:
        ValueError: ``members`` does not end on a member boundary, or a header is damaged.
    """
    keys: list[str] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(members + tar_end(len(members))), mode="r|",
                          tarinfo=_CheckedTarInfo) as tar:
            for info in tar:
                key = info.name.split(".", 1)[0]
                if not keys or keys[-1] != key:
                    keys.append(key)
            # the end marker must come right after the last member, where the appended blocks start
            if tar.offset != len(members):
                raise ValueError(f"the members end at byte {tar.offset}, not at {len(members)}")
    except tarfile.TarError as exn:
        raise ValueError(str(exn)) from None
    return keys


def tar_end(offset: int) -> bytes:
    """The end of a tar whose members fill ``offset`` bytes: two zero blocks, then zeros up to
    a whole record (20 blocks), as ``tarfile`` closes an archive."""
    end = offset + 2 * tarfile.BLOCKSIZE
    return bytes(2 * tarfile.BLOCKSIZE + -end % tarfile.RECORDSIZE)


def sample_tar(sample: Mapping[str, Any]) -> bytes:
    """One WebDataset sample as a whole tar, byte for byte as a one-sample dfdgen shard."""
    members = tar_members(sample)
    return members + tar_end(len(members))
