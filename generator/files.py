"""Writing output files safely: atomic replacement and reproducible tars.

Pure Python (no webdataset, no bpy), so the Blender add-on, which bundles
:mod:`generator` without the dataset writer's dependencies, writes its samples
and recipes the same way :mod:`generator.shards` writes datasets.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import Any, Mapping

from generator.errors import OutputError

#: Suffix of a file being written; it is renamed into place when complete.
PARTIAL = ".partial"
#: Fixed tar member mtime (2020-01-01T00:00:00Z): tars must not depend on the clock.
#: Not 0, which GNU tar flags as an "implausibly old time stamp" on extraction.
TAR_MTIME = 1_577_836_800
#: Owner (user and group name) and mode of every tar member: fixed, like the mtime.
TAR_OWNER = "dfdgen"
TAR_MODE = 0o444


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``path`` via a temp file and ``os.replace``: readers see old or new, never half."""
    tmp = path.with_name(path.name + PARTIAL)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def output_file(path: str | os.PathLike[str]) -> Path:
    """``path`` as a file to write, checked before any work is done.

    Raises:
        OutputError: ``path`` is a folder, or its folder does not exist.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot save {path}: it is a folder")
    if not path.parent.is_dir():
        raise OutputError(f"cannot save {path}: folder {path.parent} does not exist")
    return path


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


def tar_end(offset: int) -> bytes:
    """The end of a tar whose members fill ``offset`` bytes: two zero blocks, then zeros up to
    a whole record (20 blocks), as ``tarfile`` closes an archive."""
    end = offset + 2 * tarfile.BLOCKSIZE
    return bytes(2 * tarfile.BLOCKSIZE + -end % tarfile.RECORDSIZE)


def sample_tar(sample: Mapping[str, Any]) -> bytes:
    """One WebDataset sample as a whole tar, byte for byte as a one-sample dfdgen shard."""
    members = tar_members(sample)
    return members + tar_end(len(members))
