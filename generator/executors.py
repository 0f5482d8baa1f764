"""Run scene tasks in a pool of long-lived worker processes.

:func:`run_scenes` calls ``task(index)`` (a picklable callable returning a
sample; by default :func:`render_task`) for each scene index in worker
processes and yields the results **in the order of the indices given**, so
what is written never depends on which worker finished first.

Workers are started with 'spawn' (bpy must not be forked), ignore SIGINT (the
parent owns Ctrl-C) and are replaced every ``recycle_every`` scenes so that
Blender's memory stays bounded. A task that raises is retried once; a worker
that dies (segfault, OOM kill) breaks the pool: it is restarted and the scenes
that were in flight are retried one at a time (the crash then counts as an
attempt only of a scene that ran alone), so a scene that kills its worker is
told apart from the innocent ones that ran beside it.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from generator.recipe import Recipe
from generator.sample import encode_sample
from generator.sampling import sample_scene

#: Attempts per scene: the first try and one retry (DESIGN.md section 8).
MAX_ATTEMPTS = 2


@dataclass(frozen=True)
class SceneResult:
    """The outcome of one scene.

    Attributes:
        index: scene index.
        sample: the task's return value, or ``None`` when the scene failed.
        error: why the last attempt failed (``None`` on success).
        attempts: attempts made (1 or 2).
    """

    index: int
    sample: Any
    error: str | None
    attempts: int


def render_task(recipe: Recipe, index: int, *, threads: int = 0) -> dict[str, Any]:
    """Worker task: draw scene ``index``, render it with Cycles, encode it as a sample (member -> bytes).

    Imports bpy on first use, so only worker processes ever load Blender (and
    this module stays free of heavy imports such as webdataset, which pulls in torch).
    """
    from generator.blender.render import render_scene

    spec = sample_scene(recipe, index)
    return encode_sample(spec, render_scene(spec, threads=threads), recipe)


def _init_worker() -> None:
    """Worker initializer.

    Ctrl-C reaches the whole process group; only the parent acts on it. Blender
    logs every render ("Fra:1 ...", "Saved: ...") on file descriptor 1, which
    would bury the parent's progress bar and summary: workers write stdout to
    /dev/null (errors still reach the parent as exceptions, and stderr is kept).

    A spawned worker inherits the parent's ``sys.path``. If the parent has
    imported bpy, that path starts with Blender's ``scripts/modules``, whose
    pure-Python ``bpy`` package would shadow the compiled module ("No module
    named '_bpy'"); such entries are dropped (bpy adds them back when imported).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    sys.path[:] = [p for p in sys.path if not os.path.isfile(os.path.join(p, "bpy", "__init__.py"))]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BrokenProcessPool):
        return "the worker process died (crash or out of memory)"
    return f"{type(exc).__name__}: {exc}"


class _Pool:
    """A ProcessPoolExecutor that can be replaced when broken and killed on Ctrl-C."""

    def __init__(self, workers: int, recycle_every: int):
        self.workers, self.recycle_every = workers, recycle_every
        self.pool = self._new()

    def _new(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            max_tasks_per_child=self.recycle_every,
        )

    def restart(self) -> None:
        """Replace a broken pool.

        Not ``shutdown(wait=True)``: in Python 3.11 a worker that the pool spawns
        on demand while another one dies can miss the pool's own termination, and
        the shutdown then waits for it forever.
        """
        self.kill()
        self.pool = self._new()

    def kill(self) -> None:
        """Stop now, without waiting for running renders (Python 3.11 has no public way:
        ``terminate_workers`` arrived in 3.14, so the workers are signalled directly)."""
        processes = list((self.pool._processes or {}).values())
        self.pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        for process in processes:
            process.join()


def run_scenes(
    task: Callable[[int], Any],
    indices: Iterable[int],
    *,
    workers: int = 1,
    recycle_every: int = 50,
    window: int | None = None,
    on_complete: Callable[[SceneResult], None] | None = None,
) -> Iterator[SceneResult]:
    """Run ``task(i)`` for every scene index and yield the results in the order given.

    Args:
        task: picklable callable, ``task(index) -> sample``; runs in a worker process.
        indices: scene indices, in the order results are wanted.
        workers: worker processes (>= 1).
        recycle_every: scenes a worker renders before it is replaced (>= 1).
        window: how far (in scenes) submission may run ahead of the oldest result
            not yet yielded; bounds the finished samples held in memory. Default 8 x workers.
        on_complete: called with every result as soon as it is final (for progress bars).

    On KeyboardInterrupt (or the consumer closing the generator) the workers are
    killed and nothing more is yielded.
    """
    order = list(indices)
    window = window or 8 * workers
    pool = _Pool(workers, recycle_every)
    inflight: dict[Future, int] = {}
    finished: dict[int, SceneResult] = {}
    attempts = {i: 0 for i in order}
    retry: deque[int] = deque()  # raised once: retry with the others
    isolate: deque[int] = deque()  # in flight when a worker died: retry alone
    next_yield = next_submit = 0

    def submit(index: int) -> None:
        attempts[index] += 1
        try:
            future = pool.pool.submit(task, index)
        except BrokenProcessPool:  # a worker died while idle: nothing in flight to blame
            pool.restart()
            future = pool.pool.submit(task, index)
        inflight[future] = index

    def settle(future: Future) -> None:
        """Record a finished future: a result, a retry, or a final failure."""
        index = inflight.pop(future)
        exc = future.exception()
        if exc is None:
            result = SceneResult(index, future.result(), None, attempts[index])
        elif attempts[index] < MAX_ATTEMPTS:
            (isolate if isinstance(exc, BrokenProcessPool) else retry).append(index)
            return
        else:
            result = SceneResult(index, None, _describe(exc), attempts[index])
        finished[index] = result
        if on_complete:
            on_complete(result)

    try:
        while next_yield < len(order):
            while next_yield < len(order) and order[next_yield] in finished:
                yield finished.pop(order[next_yield])
                next_yield += 1
            if next_yield == len(order):
                break
            if isolate:
                if not inflight:
                    submit(isolate.popleft())
            else:
                while retry and len(inflight) < workers:
                    submit(retry.popleft())
                while (len(inflight) < workers and next_submit < len(order)
                       and next_submit < next_yield + window):
                    submit(order[next_submit])
                    next_submit += 1
            done, _ = wait(inflight, return_when=FIRST_COMPLETED)
            if any(isinstance(f.exception(), BrokenProcessPool) for f in done):
                # A worker died, so every future in flight fails: collect them all.
                done, _ = wait(inflight)
                crashed = [f for f in done if isinstance(f.exception(), BrokenProcessPool)]
                if len(crashed) > 1:  # which scene killed it is unknown: retry each alone, uncharged
                    for future in crashed:
                        attempts[inflight[future]] -= 1
                pool.restart()
            for future in done:
                settle(future)
        pool.pool.shutdown(wait=True)
    except BaseException:
        pool.kill()
        raise
