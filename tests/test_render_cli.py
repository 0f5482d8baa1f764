"""``dfdgen render`` end to end with Blender: tiny renders (32 x 32 px, 4 samples, 2 frames)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import webdataset as wds
from click.testing import CliRunner

from fakes import dir_bytes, write_tiny_recipe
from generator.core.precision import float32
from generator.core import lens as lensmod
from generator.cli import main
from generator.recipe.recipe import load_recipe
from generator.dataset.sample import decode_sample
from generator.draw.scene import scene_split
from generator.scene.spec import SceneSpec

COUNT = 8



def _dfdgen(*args) -> subprocess.Popen:
    """``dfdgen ...`` in its own process group (so a test can kill it and its workers, as a crash would)."""
    command = [sys.executable, "-c", "from generator.cli import main; main()", *map(str, args)]
    return subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def rendered(bpy, tmp_path_factory):
    """The tiny recipe rendered once with one worker: (work dir, recipe path, output dir)."""
    work = tmp_path_factory.mktemp("render")
    recipe = write_tiny_recipe(work / "tiny.yaml", {"count": COUNT})
    out = work / "one"
    result = CliRunner().invoke(main, ["render", "--recipe", str(recipe), "--out", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert f"data in {out}" in result.output and f"{COUNT} scenes rendered" in result.output
    return work, recipe, out


def test_shards_hold_every_scene_with_consistent_metadata(rendered):
    _, recipe_path, out = rendered
    recipe = load_recipe(recipe_path)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["scenes_done"] == list(range(COUNT)) and not manifest["failed"]
    urls = [str(out / s["name"]) for s in manifest["shards"]]
    samples = [decode_sample(s) for s in wds.WebDataset(urls, shardshuffle=False)]
    assert sorted(int(s.key) for s in samples) == list(range(COUNT))
    for sample in samples:
        meta, index = sample.meta, int(sample.key)
        assert meta["split"] == scene_split(recipe, index) and meta["recipe"]["sha256"] == recipe.sha256
        assert len(sample.frames) == 2 and all(f.shape == (32, 32, 3) for f in sample.frames)
        assert sample.aif.shape == (32, 32, 3)
        assert len(sample.depth) == 2 and sample.depth[0].dtype == np.float32  # thin lens: per frame
        assert np.all(sample.depth[0] > 0)  # the wall fills the view
        assert meta["depth"]["min_m"] == pytest.approx(min(float(d.min()) for d in sample.depth))
        spec = SceneSpec.from_dict(meta["scene"])
        for frame in meta["frames"]:
            K = lensmod.intrinsics(spec.lens, frame["focus_distance_m"], 32, 32)
            np.testing.assert_array_equal(frame["K"], float32(K.tolist()))  # core/precision.py
            cam = lensmod.blender_camera(spec.lens, frame["focus_distance_m"])
            assert frame["blender_camera"]["fstop"] == float32(cam.fstop)


def test_two_workers_give_identical_bytes(rendered):
    work, recipe, out = rendered
    result = CliRunner().invoke(main, ["render", "--recipe", str(recipe), "--out", str(work / "two"),
                                       "--workers", "2", "--threads", "1", "--recycle-every", "3"])
    assert result.exit_code == 0, result.output
    assert dir_bytes(work / "two") == dir_bytes(out)


def _written(out) -> set[int]:
    """Scenes on disk in ``out``: in listed shards, or in open shards (progress.json)."""
    manifest = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").exists() else None
    progress = json.loads((out / "progress.json").read_text())["open"] if (out / "progress.json").exists() else []
    return set(manifest["scenes_done"] if manifest else []) | {i for s in progress for i in s["scenes"]}


def test_killed_run_resumes_to_identical_bytes(rendered):
    """SIGKILL (the whole process group, as a crash) once a scene sits in an unfinished shard: the
    rerun renders only the scenes not yet on disk (at most those in flight), to the same bytes."""
    work, recipe, out = rendered
    killed = work / "killed"
    proc = _dfdgen("render", "--recipe", recipe, "--out", killed)
    try:
        deadline, in_open_shard = time.monotonic() + 120, set()
        while not in_open_shard and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
            try:
                progress = json.loads((killed / "progress.json").read_text())["open"]
            except (OSError, ValueError):  # not there yet, or replaced while read
                continue
            in_open_shard = {i for shard in progress for i in shard["scenes"]}
        assert proc.poll() is None, "the run ended before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    done = _written(killed)
    assert in_open_shard <= done and 0 < len(done) < COUNT

    proc = _dfdgen("render", "--recipe", recipe, "--out", killed)
    output = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode == 0, output
    assert f"{COUNT - len(done)} scenes rendered ({len(done)} already done" in output
    assert dir_bytes(killed) == dir_bytes(out)
    for name in (p.name for p in killed.glob("*.tar")):
        subprocess.run(["tar", "-tf", str(killed / name)], check=True, capture_output=True)


def test_save_blend(bpy, tmp_path):
    recipe = write_tiny_recipe(tmp_path / "tiny.yaml")
    blend = tmp_path / "scene.blend"
    proc = _dfdgen("render", "--recipe", recipe, "--save-blend", blend, "--scene", 2)
    output = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 0, output
    assert blend.read_bytes()[:7] == b"BLENDER"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.blend", "tiny.yaml"]
