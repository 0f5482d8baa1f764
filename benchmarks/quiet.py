"""Blender prints a log line per render on file descriptor 1; benchmarks print their results apart from it."""

from __future__ import annotations

import os
from typing import TextIO


def results_stream() -> TextIO:
    """Send file descriptor 1 (Blender's render log) to /dev/null; return a line-buffered stream
    to the original stdout for the benchmark's own output."""
    results = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    return results
