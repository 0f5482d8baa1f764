"""Scale-out and devices: the Ray executor and ``--device gpu`` give the local CPU executor's bytes.

Ray runs as a local instance of 2 CPUs (a small object store, no dashboard),
started once for this module and shut down at its end. Renders are tiny
(32 x 32 px, 4 samples, 2 frames per scene).
"""

from __future__ import annotations

import collections
import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
import webdataset as wds
from click.testing import CliRunner

from conftest import require
from fakes import dir_bytes, fake_task, flaky_task, listed_shards, tiny_recipe, write_tiny_recipe
from generator.cli import main
from generator.render.options import NO_GPU
from generator.render.pipeline import render_dataset

pytestmark = pytest.mark.slow  # starts Ray

TESTS = Path(__file__).parent
#: Scenes of the tiny recipe rendered with Cycles by every executor here.
COUNT = 4


def _render_cli(*args) -> str:
    result = CliRunner().invoke(main, ["render", *map(str, args)])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def local_cpu(bpy, tmp_path_factory):
    """The tiny recipe (:data:`COUNT` scenes) rendered by the local executor on the CPU: (recipe path, output dir)."""
    work = tmp_path_factory.mktemp("scale_out")
    recipe = write_tiny_recipe(work / "tiny.yaml", {"count": COUNT})
    _render_cli("--recipe", recipe, "--out", work / "local")
    return recipe, work / "local"


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray instance for this module: 2 CPUs, 100 MB object store, no dashboard.

    The workers find ``fakes`` (the tests' task module) through PYTHONPATH.
    ``ray.shutdown()`` at the end stops every process this ``ray.init`` started
    (the Ctrl-C test checks the same of a run's own local Ray).
    """
    ray = require("ray")
    ray.init(num_cpus=2, object_store_memory=100 * 2**20, include_dashboard=False, logging_level="WARNING",
             runtime_env={"env_vars": {"PYTHONPATH": str(TESTS)}})
    yield ray
    ray.shutdown()


def test_ray_executor_gives_the_local_bytes(local_cpu, ray_local, tmp_path):
    recipe, local = local_cpu
    output = _render_cli("--recipe", recipe, "--out", tmp_path / "ray", "--executor", "ray", "--workers", "2",
                         "--recycle-every", "1")
    assert f"{COUNT} scenes rendered" in output
    assert dir_bytes(tmp_path / "ray") == dir_bytes(local)


def test_killed_ray_worker_scene_is_rerun_and_written_once(ray_local, tmp_path):
    recipe = tiny_recipe("count=8")
    render_dataset(recipe, tmp_path / "local", task=functools.partial(fake_task, recipe), progress=False)
    log = tmp_path / "attempts"
    log.mkdir()
    victim = 3  # hangs on its first attempt until its worker is killed
    task = functools.partial(flaky_task, str(log), {victim: "hang-once"}, recipe)

    def kill_victim_worker():
        deadline = time.monotonic() + 60
        first = log / f"{victim}-1"
        while time.monotonic() < deadline and not (first.exists() and first.read_text()):
            time.sleep(0.05)
        os.kill(int(first.read_text()), signal.SIGKILL)

    killer = threading.Thread(target=kill_victim_worker, daemon=True)
    killer.start()
    summary = render_dataset(recipe, tmp_path / "ray", task=task, workers=2, executor="ray", progress=False)
    killer.join()
    assert summary.rendered == 8 and summary.failed == ()
    assert sorted(p.name for p in log.iterdir() if p.name.startswith(f"{victim}-")) == [f"{victim}-1", f"{victim}-2"]
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    keys = [s["__key__"] for shard in manifest["shards"]
            for s in wds.WebDataset(str(tmp_path / "ray" / shard["name"]), shardshuffle=False)]
    assert sorted(keys) == [f"{i:08d}" for i in range(8)]  # every scene, exactly once
    assert dir_bytes(tmp_path / "ray") == dir_bytes(tmp_path / "local")


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_both_executors_retry_once_isolate_crashes_and_record(executor, request, tmp_path):
    """The scheduler's rules (generator.render.scheduler), whichever pool runs the tasks: a scene that
    raises is retried once; one whose worker dies is retried alone; both are then recorded."""
    if executor == "ray":
        request.getfixturevalue("ray_local")
    recipe = tiny_recipe("count=8")
    log = tmp_path / "attempts"
    log.mkdir()
    fail = {1: "raise", 2: "raise-once", 3: "die-once", 5: "die"}
    summary = render_dataset(recipe, tmp_path / "out", task=functools.partial(flaky_task, str(log), fail, recipe),
                             workers=2, executor=executor, progress=False)
    runs = {i: len(list(log.glob(f"{i}-*"))) for i in range(8)}
    # two charged attempts each; a local crash also ends the scene beside it, which is then
    # retried alone, uncharged (a Ray worker's death ends only its own task: exact counts)
    assert all(2 <= runs[i] <= 3 for i in fail) and all(1 <= runs[i] <= 2 for i in runs if i not in fail)
    if executor == "ray":
        assert runs == {0: 1, 1: 2, 2: 2, 3: 2, 4: 1, 5: 2, 6: 1, 7: 1}
    assert [i for i, _ in summary.failed] == [1, 5]
    reasons = dict(summary.failed)
    assert reasons[1] == "RuntimeError: injected failure in scene 1"
    assert "worker process died" in reasons[5]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["scenes_done"] == [0, 2, 3, 4, 6, 7] and manifest["complete"]
    assert [f["scene"] for f in manifest["failed"]] == [1, 5]
    # a rerun does not retry recorded failures
    rerun = render_dataset(recipe, tmp_path / "out", task=functools.partial(flaky_task, str(log), fail, recipe),
                           executor=executor, progress=False)
    assert rerun.rendered == 0


def test_ray_worker_processes_are_recycled(ray_local, tmp_path):
    recipe = tiny_recipe("count=6")
    log = tmp_path / "attempts"
    log.mkdir()
    render_dataset(recipe, tmp_path / "out", task=functools.partial(flaky_task, str(log), {}, recipe),
                   workers=2, recycle_every=2, executor="ray", progress=False)
    scenes_per_process = collections.Counter(p.read_text() for p in log.iterdir())
    assert sum(scenes_per_process.values()) == 6 and max(scenes_per_process.values()) <= 2


def test_ray_device_gpu_without_a_gpu_warns_and_uses_the_cpu(bpy, ray_local, tmp_path):
    from generator.render.blender.device import gpu_backend

    if gpu_backend() is not None or ray_local.cluster_resources().get("GPU"):
        pytest.skip("this machine has a GPU: --device gpu renders on it")
    recipe = tiny_recipe("count=2")
    with pytest.warns(RuntimeWarning, match="--device gpu"):
        summary = render_dataset(recipe, tmp_path, task=functools.partial(fake_task, recipe), executor="ray",
                                 device="gpu", progress=False)
    assert summary.rendered == 2


def test_ray_address_while_ray_runs_here_is_refused(ray_local, tmp_path):
    recipe = write_tiny_recipe(tmp_path / "tiny.yaml")
    result = CliRunner().invoke(main, ["render", "--recipe", str(recipe), "--out", str(tmp_path / "out"),
                                       "--executor", "ray", "--ray-address", "auto"])
    assert result.exit_code == 2 and "--ray-address auto" in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_ctrl_c_stops_a_ray_run_cleanly_and_leaves_no_process(bpy, tmp_path):
    require("ray")
    recipe = write_tiny_recipe(tmp_path / "tiny.yaml", {"count": 40})
    out = tmp_path / "out"
    command = [sys.executable, "-c", "from generator.cli import main; main()", "render", "--recipe", str(recipe),
               "--out", str(out), "--executor", "ray", "--workers", "2"]  # starts its own local Ray
    proc = subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not listed_shards(out) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
        output = proc.communicate(timeout=120)[0].decode()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130 and "interrupted" in output, output
    manifest = json.loads((out / "manifest.json").read_text())
    progress = json.loads((out / "progress.json").read_text())["open"] if (out / "progress.json").exists() else []
    # complete shards, and the open ones with their finished scenes kept for a rerun (a claim may
    # precede its file, and a listed shard's claim stays until the rerun)
    listed = {s["name"] for s in manifest["shards"]}
    assert {p.name for p in out.glob("*.tar")} == listed
    assert {p.name for p in out.glob("*.partial")} <= {s["name"] + ".partial" for s in progress}
    assert all(s["name"] + ".partial" in {p.name for p in out.glob("*.partial")}
               for s in progress if s["scenes"] and s["name"] not in listed)
    deadline = time.monotonic() + 30
    while _group_alive(proc.pid) and time.monotonic() < deadline:  # Ray's daemons were in the run's group
        time.sleep(0.2)
    assert not _group_alive(proc.pid)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_device_gpu_without_a_gpu_warns_and_renders_the_cpu_bytes(local_cpu, tmp_path):
    from generator.render.blender.device import gpu_backend

    if gpu_backend() is not None:
        pytest.skip("this machine has a GPU: --device gpu renders on it")
    recipe, local = local_cpu
    output = _render_cli("--recipe", recipe, "--out", tmp_path / "gpu", "--device", "gpu")
    assert f"Warning: {NO_GPU}" in output
    assert dir_bytes(tmp_path / "gpu") == dir_bytes(local)


def test_select_device(bpy):
    from generator.render.blender.device import gpu_backend, select_device

    scene = bpy.data.scenes.new("device_test")
    try:
        assert select_device(scene, "cpu") == "CPU" and scene.cycles.device == "CPU"
        backend = gpu_backend()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            chosen = select_device(scene, "gpu")
        if backend is None:
            assert chosen == "CPU" and scene.cycles.device == "CPU"
            assert [str(w.message) for w in caught] == [NO_GPU]
        else:
            assert chosen == backend and scene.cycles.device == "GPU" and not caught
            devices = bpy.context.preferences.addons["cycles"].preferences.get_devices_for_type(backend)
            assert all(d.use == (d.type == backend) for d in devices)
        with pytest.raises(ValueError, match="bogus"):
            select_device(scene, "bogus")
    finally:
        bpy.data.scenes.remove(scene)
