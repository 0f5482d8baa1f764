"""Reading JSON a stranger wrote: sample metadata, ``manifest.json``, ``progress.json``, a glTF header.

``json.loads`` runs no code, but it recurses once per level (10^6 nested brackets end in a
``RecursionError`` traceback) and reads text of any size. :func:`load_json` refuses text
longer than :data:`generator.core.limits.MAX_JSON_BYTES` and nesting deeper than
:data:`generator.core.limits.MAX_JSON_DEPTH` with a ``ValueError`` naming the limit, so every
caller reports it the way it reports any other malformed JSON.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from generator.core.limits import MAX_JSON_BYTES, MAX_JSON_DEPTH


def load_json(data: bytes | str, *, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """``json.loads(data)`` with a size and a nesting limit.

    Raises:
        ValueError: not JSON (``json.JSONDecodeError`` is one), longer than ``max_bytes``
            bytes, or nested deeper than :data:`MAX_JSON_DEPTH` levels.
    """
    if len(data) > max_bytes:
        raise ValueError(f"JSON of {len(data)} bytes, more than the {max_bytes} allowed")
    try:
        value = json.loads(data)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    _check_depth(value)
    return value


def load_json_file(path: Path, *, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """:func:`load_json` of the file at ``path``, read only if it is a regular file (a FIFO or
    ``/dev/zero`` planted under its name would block or never end) and at most ``max_bytes`` + 1 bytes.

    Raises:
        OSError: ``path`` cannot be opened (``FileNotFoundError`` when it is missing).
        ValueError: as :func:`load_json`, or ``path`` is not a regular file.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("not a regular file")
        return load_json(f.read(max_bytes + 1), max_bytes=max_bytes)


def _check_depth(value: Any) -> None:
    """Refuse ``value`` nested deeper than :data:`MAX_JSON_DEPTH` (iteratively: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        if children and depth > MAX_JSON_DEPTH:
            raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children)
