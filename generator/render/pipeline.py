"""Render a recipe's dataset into shards: the library function behind ``dfdgen render``.

recipe -> scene indices still to do -> worker processes (draw_scene ->
render_scene -> encode_sample) -> samples in scene order -> shards.
This module imports no bpy: the workers import the renderer when they first
run a task (:func:`generator.render.tasks.render_task`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager

from tqdm import tqdm

from generator.scene.assets import AssetFiles
from generator.core.errors import DfdgenError
from generator.render.options import NO_GPU, RenderOptions
from generator.render.tasks import gpu_probe_task, render_task
from generator.render.scheduler import Pool, ProcessPool, run_tasks
from generator.core.files import output_file, refuse_link
from generator.recipe.recipe import Recipe
from generator.draw.scene import check_scene_index, draw_scene, scene_split
from generator.dataset.shards import DatasetDir



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
        per_scene = f" ({self.seconds / self.rendered:.1f} s per scene)" if self.rendered else ""
        return (
            f"{self.rendered} scenes rendered ({self.skipped} already done, {len(self.failed)} failed) "
            f"in {self.seconds:.1f} s{per_scene}; {self.shards} shards, {self.bytes / 1e6:.1f} MB"
        )


def render_dataset(
    recipe: Recipe,
    out_dir: str | Path,
    *,
    progress: bool = True,
    task: Callable[[int], dict[str, Any]] | None = None,
    **options: Any,
) -> RunSummary:
    """Render scenes ``0 .. recipe.count-1`` of ``recipe`` into WebDataset shards in ``out_dir``.

    Resumes a previous run of the same recipe in ``out_dir`` (see :mod:`generator.dataset.shards`).
    The shards are byte-identical whatever the options or interruptions (not
    ``device``: a GPU gives other pixels than the CPU).

    Args:
        recipe: the recipe.
        out_dir: output directory.
        progress: show a progress bar on stderr.
        task: picklable ``task(index) -> sample`` to run instead of the Cycles renderer
            (the default is :func:`render_task` of this recipe).
        options: the fields of :class:`generator.render.options.RenderOptions` (``workers``,
            ``threads``, ``recycle_every``, ``executor``, ``ray_address``, ``device``,
            ``overwrite``), its defaults where not given. Without a GPU a ``device='gpu'``
            run warns (:data:`NO_GPU`, a RuntimeWarning) and renders on the CPU.

    Warns (RuntimeWarning) :data:`DENOISE` when the recipe turns the denoiser on.

    Raises:
        BadInput: an unusable asset folder or file (:class:`generator.scene.assets.AssetError`);
            an invalid option (also: nothing answers at ``ray_address``);
            OutputError: unusable ``out_dir``, or another run holds it. Nothing is written then.
        DfdgenError: ``executor='ray'`` without Ray installed.
        KeyboardInterrupt: after stopping cleanly (complete shards kept, partial ones removed).
    """
    start = time.perf_counter()
    opts = RenderOptions.from_dict(options)
    # Every asset file is read here, so a corrupt one is bad input before anything renders or is written.
    AssetFiles.of(recipe.assets).check()
    if recipe.image.denoise:
        warnings.warn(DENOISE, RuntimeWarning, stacklevel=2)
    with contextlib.ExitStack() as stack:
        # Ray first: an unreachable cluster is refused before anything is written.
        pool = stack.enter_context(_pool(opts))
        try:
            out = DatasetDir(out_dir, recipe, max_samples=recipe.shards.max_samples,
                             max_bytes=recipe.shards.max_bytes, overwrite=opts.overwrite)
        except BaseException:
            pool.kill()
            raise
        try:
            device = _usable_device(opts.device, pool)
        except BaseException:
            pool.kill()
            out.abort()  # gives the folder's lock back
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


def _pool(opts: RenderOptions) -> ContextManager[Pool]:
    """The pool of ``opts.executor`` (connected to Ray while the context lasts)."""
    if opts.executor == "local":
        return contextlib.nullcontext(ProcessPool(opts.workers, opts.recycle_every, threads=opts.threads))
    try:
        from generator.render.ray_executor import ray_pool
    except ImportError as exc:
        if exc.name != "ray":
            raise
        raise DfdgenError("--executor ray needs Ray: pip install 'dfdgen[ray]'") from exc
    return ray_pool(address=opts.ray_address, workers=opts.workers, threads=opts.threads,
                    recycle_every=opts.recycle_every, gpu=opts.device == "gpu")


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
    """Run ``task`` for the ``todo`` scenes in ``pool`` and write each result, in scene order, into ``out``
    (with ``progress``: first a line saying what goes where, then a bar with its ETA)."""
    if progress:
        image = recipe.image
        print(f"rendering {len(todo)} of {recipe.count} scenes of {recipe.name} ({image.width}x{image.height} px, "
              f"{image.samples} samples, {recipe.focus.ramps * recipe.focus.frames_per_ramp} frames each) "
              f"into {out.path}", file=sys.stderr, flush=True)
    bar = tqdm(total=recipe.count, initial=recipe.count - len(todo), unit="scene",
               desc=recipe.name, disable=not progress, file=sys.stderr, dynamic_ncols=True)
    results = run_tasks(task, todo, pool, on_complete=lambda _: bar.update())
    try:
        with contextlib.closing(results):
            for result in results:
                if result.error is None:
                    out.add(result.index, scene_split(recipe, result.index), result.sample)
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
    from generator.render.blender.render import save_blend

    # Blender writes PATH@ and renames it: in a private folder, a link planted at PATH@ is never followed.
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".dfdgen-") as private:
        saved = Path(private) / path.name
        save_blend(draw_scene(recipe, index), saved)
        refuse_link(path)
        os.replace(saved, path)
    return path
