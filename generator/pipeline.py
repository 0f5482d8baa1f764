"""Render a recipe's dataset into shards: the library function behind ``dfdgen render``.

recipe -> scene indices still to do -> worker processes (sample_scene ->
render_scene -> encode_sample) -> samples in scene order -> shards.
This module imports no bpy: the workers import the renderer when they first
run a task (:func:`generator.executors.render_task`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager

from tqdm import tqdm

from generator.assets import AssetFiles
from generator.errors import BadInput, DfdgenError
from generator.executors import DEVICES, EXECUTORS, NO_GPU, Pool, ProcessPool, gpu_probe_task, render_task, run_scenes
from generator.files import output_file
from generator.recipe import Recipe, recipe_from_dict
from generator.sampling import check_scene_index, sample_scene
from generator.shards import DatasetDir



#: The warning of a run whose recipe turns the denoiser on (``image.denoise``).
DENOISE = ("recipe image.denoise is on: the denoiser alters the defocus blur and invents detail, "
           "so the frames are no longer what the lens renders")


@dataclass(frozen=True)
class RunSummary:
    """What :func:`render_dataset` did.

    Attributes:
        out_dir: the output directory.
        rendered: scenes rendered and written by this run.
        skipped: scenes already done by an earlier run (resumed).
        failed: (scene index, reason) of every scene that failed, this run or before.
        shards: complete shards in the directory.
        bytes: their total size, bytes.
        seconds: wall time of this run.
    """

    out_dir: Path
    rendered: int
    skipped: int
    failed: tuple[tuple[int, str], ...]
    shards: int
    bytes: int
    seconds: float

    def line(self) -> str:
        """One-line human summary."""
        rate = self.rendered / self.seconds if self.seconds > 0 else 0.0
        return (
            f"{self.rendered} scenes rendered ({self.skipped} already done, {len(self.failed)} failed) "
            f"in {self.seconds:.1f} s ({rate:.2f} scenes/s); {self.shards} shards, {self.bytes / 1e6:.1f} MB"
        )


def render_dataset(
    recipe: Recipe,
    out_dir: str | Path,
    *,
    count: int | None = None,
    workers: int = 1,
    threads: int = 0,
    overwrite: bool = False,
    progress: bool = True,
    recycle_every: int = 50,
    task: Callable[[int], dict[str, Any]] | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    device: str = "cpu",
) -> RunSummary:
    """Render scenes ``0 .. count-1`` of ``recipe`` into WebDataset shards in ``out_dir``.

    Resumes a previous run of the same recipe in ``out_dir`` (see :mod:`generator.shards`).
    The shards are byte-identical whatever ``workers``, ``threads``, ``executor`` or
    interruptions (not ``device``: a GPU gives other pixels than the CPU).

    Args:
        recipe: the recipe.
        out_dir: output directory.
        count: number of scenes, overriding ``recipe.count`` (the recipe, and so its
            sha256, changes with it, as with ``--set count=N``).
        workers: worker processes, each with its own Blender (with Ray: scenes in flight
            across the cluster).
        threads: Cycles threads per worker; 0 = the cores shared evenly among the workers
            (with Ray: the cluster's CPUs, at most one node's; each Ray task declares them).
        overwrite: replace another recipe's data in ``out_dir``.
        progress: show a progress bar on stderr.
        recycle_every: scenes per worker process before it is replaced (bounds memory).
        task: picklable ``task(index) -> sample`` to run instead of the Cycles renderer
            (the default is :func:`render_task` of this recipe).
        executor: ``local`` (worker processes here) or ``ray`` (:mod:`generator.ray_executor`).
        ray_address: the Ray cluster (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``);
            None starts a local Ray for the run. Only with ``executor='ray'``.
        device: ``cpu`` or ``gpu`` (OptiX, else CUDA). Without a GPU the run warns
            (:data:`NO_GPU`, a RuntimeWarning) and renders on the CPU.

    Warns (RuntimeWarning) :data:`DENOISE` when the recipe turns the denoiser on.

    Raises:
        BadInput: an unusable asset folder or file (:class:`generator.assets.AssetError`);
            invalid ``count``, ``workers``, ``threads``, ``recycle_every``,
            ``executor``, ``device`` or ``ray_address`` (also: nothing answers there);
            OutputError: unusable ``out_dir``. Nothing is written then.
        DfdgenError: ``executor='ray'`` without Ray installed.
        KeyboardInterrupt: after stopping cleanly (complete shards kept, partial ones removed).
    """
    start = time.perf_counter()
    for name, value, least in (("workers", workers, 1), ("threads", threads, 0), ("recycle_every", recycle_every, 1)):
        if value < least:
            raise BadInput(f"{name} must be >= {least}, got {value}")
    for name, value, allowed in (("executor", executor, EXECUTORS), ("device", device, DEVICES)):
        if value not in allowed:
            raise BadInput(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    if ray_address is not None and executor != "ray":
        raise BadInput(f"--ray-address {ray_address} is only used with --executor ray")
    if count is not None:
        recipe = recipe_from_dict({**recipe.to_dict(), "count": count}, source="count")
    # Every asset file is read here, so a corrupt one is bad input before anything renders or is written.
    AssetFiles.of(recipe.assets).check()
    if recipe.image.denoise:
        warnings.warn(DENOISE, RuntimeWarning, stacklevel=2)
    with contextlib.ExitStack() as stack:
        # Ray first: an unreachable cluster is refused before anything is written.
        pool = stack.enter_context(_pool(executor, workers, threads, recycle_every, device, ray_address))
        try:
            out = DatasetDir(out_dir, recipe, max_samples=recipe.shards.max_samples,
                             max_bytes=recipe.shards.max_bytes, overwrite=overwrite)
            device = _usable_device(device, pool)
        except BaseException:
            pool.kill()
            raise
        todo = [i for i in range(recipe.count) if i not in out.done]
        task = task or functools.partial(render_task, recipe, threads=pool.threads, device=device)
        _write(out, recipe, todo, task, pool, progress)
    return RunSummary(
        out_dir=out.path,
        rendered=len(todo) - sum(i in out.failed for i in todo),
        skipped=recipe.count - len(todo),
        failed=tuple(sorted(out.failed.items())),
        shards=len(out.shards),
        bytes=sum(s["bytes"] for s in out.shards),
        seconds=time.perf_counter() - start,
    )


def _pool(executor: str, workers: int, threads: int, recycle_every: int, device: str,
          ray_address: str | None) -> ContextManager[Pool]:
    """The pool of ``executor`` (connected to Ray while the context lasts)."""
    if executor == "local":
        return contextlib.nullcontext(ProcessPool(workers, recycle_every, threads=threads))
    try:
        from generator.ray_executor import ray_pool
    except ImportError as exc:
        if exc.name != "ray":
            raise
        raise DfdgenError("--executor ray needs Ray: pip install 'dfdgen[ray]'") from exc
    return ray_pool(address=ray_address, workers=workers, threads=threads, recycle_every=recycle_every,
                    gpu=device == "gpu")


def _usable_device(device: str, pool: Pool) -> str:
    """``device``, or ``cpu`` with a :data:`NO_GPU` warning when a worker of ``pool`` finds no GPU.

    Asked once, in a worker (the parent never imports bpy), before anything renders.
    """
    if device == "gpu" and pool.submit(gpu_probe_task, 0).result() is None:
        warnings.warn(NO_GPU, RuntimeWarning, stacklevel=3)
        return "cpu"
    return device


def _write(out: DatasetDir, recipe: Recipe, todo: list[int], task: Callable[[int], dict[str, Any]],
           pool: Pool, progress: bool) -> None:
    """Run ``task`` for the ``todo`` scenes in ``pool`` and write each result, in scene order, into ``out``."""
    bar = tqdm(total=recipe.count, initial=recipe.count - len(todo), unit="scene",
               desc=recipe.name, disable=not progress, file=sys.stderr, dynamic_ncols=True)
    results = run_scenes(task, todo, pool=pool, on_complete=lambda _: bar.update())
    try:
        with contextlib.closing(results):
            for result in results:
                if result.error is None:
                    split = json.loads(result.sample["json"])["split"]
                    out.add(result.index, split, result.sample)
                else:
                    out.fail(result.index, result.error)
        out.finish()
    except BaseException:
        out.abort()
        raise
    finally:
        bar.close()


def save_scene_blend(recipe: Recipe, index: int, path: str | Path) -> Path:
    """Build scene ``index`` of ``recipe`` in Blender and save it as a .blend file (for a look in the UI).

    Runs Blender in this process (bpy is imported here, on first use).

    Raises:
        BadInput: ``index`` is not a scene of the recipe, or an asset is unusable;
            OutputError: ``path`` is a folder or its folder is missing.
    """
    check_scene_index(recipe, index)
    AssetFiles.of(recipe.assets).check()
    path = output_file(path)
    from generator.blender.render import save_blend

    save_blend(sample_scene(recipe, index), path)
    return path
