"""Shared test helpers.

Optional heavy dependencies (bpy, torch) are skipped on a developer machine
that lacks them, but under CI (``CI=true``) a missing one is a failure: a
green CI must mean every test ran.

Markers (``pyproject.toml``): ``blender`` (renders with Cycles; given here to every test that
uses a Blender fixture, and by hand to the modules that render in a subprocess), ``slow``
(trains, or renders many scenes), ``cuda`` (needs a GPU). ``pytest -m "not blender and not
slow"`` runs the rest in well under a minute; CI runs everything.
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


#: Fixtures that render or build with Blender: a test using one is marked ``blender``.
BLENDER_FIXTURES = {"bpy", "tiny_dataset", "addon_zip"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if BLENDER_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.blender)


@pytest.fixture(scope="session")
def bpy():
    """The bpy module (Blender as a Python module)."""
    return require("bpy")


@pytest.fixture(scope="session")
def torch():
    """The torch module."""
    return require("torch")


#: The tiny rendered dataset shared by the training tests: 8 scenes, 64 x 64 px,
#: one ramp of 3 frames, all in the train split, 2 samples per shard (4 shards,
#: enough for 2 DDP ranks x 2 loader workers). Every surface is textured: the
#: overfit tests need a defocus cue everywhere (plain surfaces have none).
TINY_DATASET = (
    "name=tiny64", "count=8", "image.width=64", "image.height=64", "image.samples=8",
    "focus.ramps=1", "focus.frames_per_ramp=3", "scene.objects.count=[2, 4]",
    "scene.lights.count=1", "splits={train: 1.0, val: 0.0, test: 0.0}",
    "shards.max_samples=2", "outputs.aif=true",
    "scene.materials.textureless_fraction=0", "scene.materials.families=[noise, voronoi, checker, wave, brick, magic]",
)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """Directory of a tiny dataset rendered once per test session with Cycles."""
    require("bpy")
    from generator.render.pipeline import render_dataset
    from generator.recipe.recipe import load_recipe

    out = tmp_path_factory.mktemp("tiny64")
    render_dataset(load_recipe("small_obj", TINY_DATASET), out, workers=2, progress=False)
    return out


@pytest.fixture(scope="session")
def addon_zip(tmp_path_factory):
    """The Blender extension zip, built once per test session by ``dfdgen addon build``
    (for this machine's platform; wheels come from pip's cache or the package index)."""
    require("bpy")  # Blender's extension tool ships in the bpy wheel
    from click.testing import CliRunner

    from generator.cli import main

    out = tmp_path_factory.mktemp("addon")
    result = CliRunner().invoke(main, ["addon", "build", "--out", str(out)])
    assert result.exit_code == 0, result.output
    (path,) = out.glob("*.zip")
    return path
