"""Writing output files safely: atomic replacement, and checks before any work is done.

Pure Python (no webdataset, no bpy), so the Blender add-on, which bundles
:mod:`generator` without the dataset writer's dependencies, writes its samples
and recipes the same way :mod:`generator.shards` writes datasets.
"""

from __future__ import annotations

import os
from pathlib import Path

from generator.errors import OutputError

#: Suffix of a file being written; it is renamed into place when complete.
PARTIAL = ".partial"


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


