"""Shared test helpers.

Optional heavy dependencies (bpy, torch) are skipped on a developer machine
that lacks them, but under CI (``CI=true``) a missing one is a failure: a
green CI must mean every test ran.
"""

from __future__ import annotations

import importlib
import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(module: str):
    """Import ``module`` or skip (locally) / fail (in CI) the calling test."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the machine
        if IN_CI:
            pytest.fail(f"{module} is required in CI but cannot be imported: {exc}")
        pytest.skip(f"{module} not installed")


@pytest.fixture(scope="session")
def bpy():
    """The bpy module (Blender as a Python module)."""
    return require("bpy")


@pytest.fixture(scope="session")
def torch():
    """The torch module."""
    return require("torch")
