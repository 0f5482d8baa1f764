"""Shard writing, manifest, resume, overwrite, worker pool: fast, with a fake renderer (no Blender)."""

from __future__ import annotations

import collections
import functools
import json
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import pytest
import webdataset as wds

from fakes import dir_bytes, fake_task, listed_shards, slow_task, tiny_recipe
from generator.core.errors import BadInput, OutputError
from generator.core.files import LOCK
from generator.render.scheduler import ProcessPool, run_tasks
from generator.render.pipeline import render_dataset
from generator.dataset.format import MANIFEST, PROGRESS, TAR_MTIME, tar_members
from generator.dataset.shards import DatasetDir

TESTS = Path(__file__).parent


def _render(recipe, out, **kw):
    kw.setdefault("task", functools.partial(fake_task, recipe))
    return render_dataset(recipe, out, progress=False, **kw)


def _manifest(out: Path) -> dict:
    return json.loads((out / MANIFEST).read_text())



def test_round_trip_with_stock_webdataset(tmp_path):
    recipe = tiny_recipe()
    summary = _render(recipe, tmp_path)
    assert (summary.rendered, summary.skipped, summary.failed) == (6, 0, ())
    # scenes 1, 4 are test (scene_split); the rest train; 2 samples per shard
    names = sorted(p.name for p in tmp_path.glob("*.tar"))
    assert names == ["small_obj-test-000000.tar", "small_obj-train-000000.tar", "small_obj-train-000001.tar"]
    manifest = _manifest(tmp_path)
    assert [(s["name"], s["scenes"]) for s in manifest["shards"]] == [
        ("small_obj-test-000000.tar", [1, 4]),
        ("small_obj-train-000000.tar", [0, 2]),
        ("small_obj-train-000001.tar", [3, 5]),
    ]
    assert manifest["recipe"]["sha256"] == recipe.sha256 and manifest["recipe"]["config"] == recipe.to_dict()
    assert manifest["scenes_done"] == list(range(6)) and manifest["complete"] and manifest["failed"] == []
    assert (tmp_path / "recipe.yaml").read_text() == recipe.to_yaml()
    assert not list(tmp_path.glob("*.partial"))

    urls = [str(tmp_path / n) for n in names]
    samples = list(wds.WebDataset(urls, shardshuffle=False))
    assert sorted(s["__key__"] for s in samples) == [f"{i:08d}" for i in range(6)]
    for s in samples:
        assert {"json", "f000.png", "f003.png", "f000.depth.exr"} <= set(s)
        assert json.loads(s["json"])["scene_index"] == int(s["__key__"])

    listing = subprocess.run(["tar", "-tf", str(tmp_path / "small_obj-train-000000.tar")], capture_output=True, text=True, check=True).stdout.split()
    assert listing[0] == "00000000.f000.depth.exr" and listing[-1] == "00000002.json"
    assert listing == sorted(listing)  # fixed member order
    with tarfile.open(urls[0]) as tar:
        for member in tar.getmembers():
            assert (member.mtime, member.uid, member.gid, member.uname, member.gname, member.mode) == (
                TAR_MTIME, 0, 0, "dfdgen", "dfdgen", 0o444)
    for shard in manifest["shards"]:
        assert (tmp_path / shard["name"]).stat().st_size == shard["bytes"]


def _samples(n, size=1000):
    return [{"__key__": f"{i:08d}", "json": b"{}", "f000.png": bytes(size)} for i in range(n)]


def test_shard_limits_and_atomic_manifest(tmp_path):
    recipe = tiny_recipe()
    per_sample = len(tar_members(_samples(1)[0]))
    out = DatasetDir(tmp_path, recipe, max_samples=10, max_bytes=2 * per_sample)
    assert _manifest(tmp_path)["shards"] == []  # identity recorded before any work
    for i, sample in enumerate(_samples(3)):
        out.add(i, "train", sample)
    # the third sample would exceed max_bytes: shard 0 was closed, renamed and listed
    assert [s["scenes"] for s in _manifest(tmp_path)["shards"]] == [[0, 1]]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        LOCK, "manifest.json", "progress.json", "recipe.yaml", "small_obj-train-000000.tar",
        "small_obj-train-000001.tar.partial"]
    assert json.loads((tmp_path / PROGRESS).read_text())["open"] == [
        {"name": "small_obj-train-000001.tar", "split": "train", "scenes": [2], "bytes": per_sample}]
    out.add(3, "train", _samples(1, size=10 * per_sample)[0])  # too big alone: gets its own shard
    out.finish()
    assert [s["scenes"] for s in _manifest(tmp_path)["shards"]] == [[0, 1], [2], [3]]
    assert not (tmp_path / LOCK).exists()  # the lock is the run's, gone when it ends


def test_resume_keeps_every_written_scene_and_never_touches_unclaimed_files(tmp_path):
    recipe = tiny_recipe()
    out = DatasetDir(tmp_path, recipe, max_samples=2)
    for i, sample in enumerate(_samples(3)):
        out.add(i, "train", sample)
    # "crash" while scene 3 was being appended: its bytes are in the partial file, not in progress.json
    with open(tmp_path / "small_obj-train-000001.tar.partial", "ab") as f:
        f.write(b"half a sample")
    again = DatasetDir(tmp_path, recipe, max_samples=2)
    assert again.done == {0, 1, 2}  # scene 2, in the open shard, is not rendered again
    again.add(3, "train", _samples(4)[3])
    again.finish()
    whole = tmp_path / "whole"
    fresh = DatasetDir(whole, recipe, max_samples=2)
    for i, sample in enumerate(_samples(4)):
        fresh.add(i, "train", sample)
    fresh.finish()
    shards = sorted(p.name for p in tmp_path.glob("*.tar"))
    assert shards == sorted(p.name for p in whole.glob("*.tar"))
    assert all((tmp_path / n).read_bytes() == (whole / n).read_bytes() for n in shards)
    assert not (tmp_path / PROGRESS).exists() and not list(tmp_path.glob("*.partial"))

    # a file named like a shard that no manifest claims is refused, and left as it was
    stray = tmp_path / "small_obj-test-000000.tar"
    stray.write_bytes(b"unlisted")
    with pytest.raises(OutputError, match="does not claim"):
        DatasetDir(tmp_path, recipe, max_samples=2)
    with pytest.raises(OutputError, match="does not claim"):
        DatasetDir(tmp_path, recipe, max_samples=2, overwrite=True)
    assert stray.read_bytes() == b"unlisted" and (tmp_path / shards[0]).is_file()


def test_resumed_run_is_byte_identical(tmp_path):
    recipe = tiny_recipe("count=9")
    _render(recipe, tmp_path / "full")
    out = tmp_path / "resumed"
    _render(recipe, out)
    for shard in _manifest(out)["shards"][1:]:  # lose all but the first shard ...
        (out / shard["name"]).unlink()
    manifest = _manifest(out)
    manifest["shards"] = manifest["shards"][:1]
    (out / MANIFEST).write_text(json.dumps(manifest))
    summary = _render(recipe, out)  # ... and resume
    assert (summary.skipped, summary.rendered) == (2, 7)
    assert dir_bytes(out) == dir_bytes(tmp_path / "full")
    assert _render(recipe, out).rendered == 0  # complete: nothing to do


@pytest.mark.slow
def test_interrupted_subprocess_resumes_identically(tmp_path):
    """SIGKILL a run (the whole process group, as a crash would) after its first shard; rerun."""
    recipe = tiny_recipe("count=12")
    _render(recipe, tmp_path / "full")
    out = tmp_path / "killed"
    script = textwrap.dedent(f"""
        import functools, sys
        sys.path.insert(0, {str(TESTS)!r})
        from fakes import slow_task, tiny_recipe
        from generator.render.pipeline import render_dataset
        recipe = tiny_recipe("count=12")
        render_dataset(recipe, {str(out)!r}, workers=2, progress=False,
                       task=functools.partial(slow_task, 0.3, recipe))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not listed_shards(out) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert 0 < len(_manifest(out)["scenes_done"]) < 12
    summary = _render(recipe, out, workers=2)
    assert summary.skipped + summary.rendered == 12
    assert dir_bytes(out) == dir_bytes(tmp_path / "full")


@pytest.mark.slow
def test_ctrl_c_stops_cleanly(tmp_path):
    recipe = tiny_recipe("count=12")
    script = textwrap.dedent(f"""
        import functools, sys
        sys.path.insert(0, {str(TESTS)!r})
        from fakes import slow_task, tiny_recipe
        from generator.render.pipeline import render_dataset
        recipe = tiny_recipe("count=12")
        try:
            render_dataset(recipe, {str(tmp_path)!r}, workers=2, progress=False,
                           task=functools.partial(slow_task, 0.3, recipe))
        except KeyboardInterrupt:
            sys.exit(130)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    deadline = time.monotonic() + 60
    while not listed_shards(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: parent and workers
    assert proc.wait(timeout=30) == 130
    manifest = _manifest(tmp_path)
    assert not manifest["complete"] and manifest["shards"]
    assert sorted(p.name for p in tmp_path.glob("*.tar")) == sorted(s["name"] for s in manifest["shards"])
    for shard in manifest["shards"]:
        assert len(list(wds.WebDataset(str(tmp_path / shard["name"]), shardshuffle=False))) == shard["samples"]
    # the open shards keep their written scenes for the rerun, which renders only the others
    # every partial file is claimed; a claim may precede its file, or outlive its listing in the
    # manifest (an interrupt between the two), which the rerun settles
    claims = json.loads((tmp_path / PROGRESS).read_text())["open"]
    listed = {s["name"] for s in manifest["shards"]}
    open_shards = [s for s in claims if s["name"] not in listed]
    partials = {p.name for p in tmp_path.glob("*.partial")}
    assert all(s["name"] + ".partial" in partials for s in open_shards if s["scenes"]), (claims, listed, partials, sorted(p.name for p in tmp_path.iterdir()))
    assert all(s["name"] + ".partial" in partials for s in open_shards if s["scenes"])
    written = len(manifest["scenes_done"]) + sum(len(s["scenes"]) for s in open_shards)
    summary = _render(recipe, tmp_path)
    assert (summary.skipped, summary.rendered) == (written, 12 - written)
    full = tmp_path.parent / (tmp_path.name + "-full")
    _render(recipe, full)
    assert dir_bytes(tmp_path) == dir_bytes(full)


@pytest.mark.slow
def test_workers_do_not_change_bytes(tmp_path):
    recipe = tiny_recipe("count=8")
    _render(recipe, tmp_path / "one", workers=1)
    _render(recipe, tmp_path / "two", workers=2, recycle_every=1)
    assert dir_bytes(tmp_path / "one") == dir_bytes(tmp_path / "two")


def test_executor_yields_in_order_with_bounded_window():
    seen = []
    results = list(run_tasks(functools.partial(slow_task, 0.0, tiny_recipe()), [5, 2, 7], ProcessPool(2, 50),
                             window=1, on_complete=lambda r: seen.append(r.index)))
    assert [r.index for r in results] == [5, 2, 7] and all(r.attempts == 1 for r in results)
    assert seen == [5, 2, 7]  # window 1: one scene at a time


def test_refuses_another_recipe_and_overwrite_keeps_userdir_bytes(tmp_path):
    first, other = tiny_recipe(), tiny_recipe("seed=5")
    _render(first, tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "mine.tar").write_bytes(b"user data")
    before = dir_bytes(tmp_path)
    with pytest.raises(OutputError) as err:
        _render(other, tmp_path)
    assert err.value.exit_code == 2
    message = str(err.value)
    assert first.sha256[:12] in message and other.sha256[:12] in message and "--overwrite" in message
    assert dir_bytes(tmp_path) == before  # nothing changed

    _render(tiny_recipe("seed=5", "count=2"), tmp_path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "manifest.json", "mine.tar", "notes.txt", "recipe.yaml",
        "small_obj-train-000000.tar", "small_obj-val-000000.tar"]
    assert (tmp_path / "notes.txt").read_text() == "mine" and (tmp_path / "mine.tar").read_bytes() == b"user data"
    assert _manifest(tmp_path)["recipe"]["count"] == 2


def test_unclaimed_shards_and_bad_paths_are_refused(tmp_path):
    (tmp_path / "small_obj-train-000000.tar").write_bytes(b"someone's")
    with pytest.raises(OutputError, match="does not claim"):
        _render(tiny_recipe(), tmp_path)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "manifest.json").write_text('{"files": []}')
    for overwrite in (False, True):
        with pytest.raises(OutputError, match="not written by dfdgen"):
            _render(tiny_recipe(), foreign, overwrite=overwrite)
    assert [p.name for p in foreign.iterdir()] == ["manifest.json"]
    for bad in ({"workers": 0}, {"threads": -1}, {"recycle_every": 0}, {"executor": "slurm"}, {"device": "tpu"}):
        with pytest.raises(BadInput, match=next(iter(bad))):
            _render(tiny_recipe(), tmp_path / "never", **bad)
    assert not (tmp_path / "never").exists()
    afile = tmp_path / "afile"
    afile.write_text("x")
    for bad in (afile, afile / "sub"):
        with pytest.raises(OutputError, match="afile"):
            _render(tiny_recipe(), bad)
    assert afile.read_text() == "x"


def _children(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (from /proc)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_sigkill_of_the_parent_leaves_no_worker_behind(tmp_path):
    """kill -9 of the process that runs render_dataset: its workers (and multiprocessing's
    resource tracker) end within 10 s, although nothing tells them."""
    script = textwrap.dedent(f"""
        import functools, sys
        sys.path.insert(0, {str(TESTS)!r})
        from fakes import slow_task, tiny_recipe
        from generator.render.pipeline import render_dataset
        recipe = tiny_recipe("count=40")
        render_dataset(recipe, {str(tmp_path / "out")!r}, workers=2, progress=False,
                       task=functools.partial(slow_task, 0.5, recipe))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    children: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(_children(proc.pid)) < 3 and time.monotonic() < deadline:  # 2 workers + resource tracker
            time.sleep(0.05)
        children = _children(proc.pid)
        assert len(children) >= 3, children
        proc.kill()  # the parent only, as the OOM killer would
        proc.wait()
        deadline = time.monotonic() + 10
        while any(_alive(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [c for c in children if _alive(c)]
    finally:
        for c in children:
            if _alive(c):
                os.kill(c, signal.SIGKILL)


@pytest.mark.slow
def test_a_second_run_into_a_busy_folder_is_refused_and_the_first_ends_intact(tmp_path):
    """Two renders into one folder at once: the second exits at once naming the first's pid."""
    recipe = tiny_recipe("count=8")
    _render(recipe, tmp_path / "alone")
    script = textwrap.dedent(f"""
        import functools, sys
        sys.path.insert(0, {str(TESTS)!r})
        from fakes import slow_task, tiny_recipe
        from generator.render.pipeline import render_dataset
        recipe = tiny_recipe("count=8")
        render_dataset(recipe, {str(tmp_path / "busy")!r}, workers=1, progress=False,
                       task=functools.partial(slow_task, 0.3, recipe))
    """)
    first = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 60
    while not (tmp_path / "busy" / MANIFEST).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    with pytest.raises(OutputError, match=rf"in use by another dfdgen run \(pid {first.pid}\)"):
        _render(recipe, tmp_path / "busy")
    assert first.wait(timeout=60) == 0
    assert dir_bytes(tmp_path / "busy") == dir_bytes(tmp_path / "alone")


class _Crash(Exception):
    """What the fake pool below raises for a task whose worker died."""


class _CrashingPool:
    """A pool whose tasks all finish at once (each future is done when submitted): the tasks in
    ``dying`` kill their worker on every attempt. Every crash then lands in the same wait."""

    workers, threads = 2, 1

    def __init__(self, dying: set[int], crash_ends_all: bool):
        self.dying, self.crash_ends_all, self.runs = dying, crash_ends_all, collections.Counter()

    def submit(self, task, index):
        from concurrent.futures import Future

        self.runs[index] += 1
        future = Future()
        if index in self.dying:
            future.set_exception(_Crash(index))
        else:
            future.set_result(task(index))
        return future

    def describe(self, exc):
        return "died"

    def crashed(self, exc):
        return isinstance(exc, _Crash)

    def restart(self):
        pass

    def close(self):
        pass

    def kill(self):
        pass


@pytest.mark.parametrize("crash_ends_all, runs", [(True, 3), (False, 2)])
def test_crashes_that_land_together_are_charged_unless_the_pool_shares_them(crash_ends_all, runs):
    """Two workers dying in one wait: where a death fails every task in flight (a local pool) neither
    task is known to be the culprit, so both are retried alone uncharged first (3 runs); where a
    death fails only its own task (Ray), each is charged (2 runs, MAX_ATTEMPTS), however they land."""
    pool = _CrashingPool({0, 1}, crash_ends_all)
    results = list(run_tasks(str, [0, 1, 2], pool))
    assert [r.error for r in results] == ["died", "died", None]
    assert pool.runs == {0: runs, 1: runs, 2: 1}
