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

Where tasks run is a *pool*: :class:`ProcessPool` (local worker processes, the
default) or :class:`generator.ray_executor.RayPool` (Ray workers on a cluster);
:func:`run_scenes`, its ordering, window and retries are the same for both.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Protocol

from generator.recipe import Recipe
from generator.sample import Encoder, encode_sample
from generator.sampling import sample_scene
from generator.spec import SceneSpec

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


def render_task(recipe: Recipe, index: int, *, threads: int = 0, device: str = "cpu") -> dict[str, Any]:
    """Worker task: draw scene ``index``, render it with Cycles, encode it as a sample (member -> bytes).

    ``threads``: Cycles CPU threads (0 = all cores); ``device``: ``cpu`` or ``gpu``
    (see :func:`generator.blender.device.select_device`).
    """
    sample, _ = render_sample(sample_scene(recipe, index), recipe, threads=threads, device=device)
    return sample


def render_sample(
    spec: SceneSpec, recipe: Recipe, *, threads: int = 0, device: str = "cpu", background_encoding: bool = True
) -> tuple[dict[str, Any], Any]:
    """Render ``spec`` with Cycles and encode it as a sample: (member -> bytes, the ``RenderedScene``).

    The depth pass's members (depth, CoC and motion EXRs) and each image are
    encoded on a background thread as soon as they are rendered, while Cycles
    renders the next view (:class:`generator.sample.Encoder`): after the last
    render only its image and the metadata are left. ``background_encoding=False``
    encodes everything on this thread after the last render instead (the same
    bytes; for benchmarks).

    Imports bpy on first use, so only worker processes ever load Blender (and
    this module stays free of heavy imports such as webdataset, which pulls in torch).
    """
    from generator.blender.render import render_scene

    with Encoder(spec, background=background_encoding) as encoder:
        rendered = render_scene(spec, threads=threads, device=device,
                                listener=encoder if background_encoding else None)
        return encode_sample(spec, rendered, recipe, encoder), rendered


def gpu_probe_task(_index: int) -> str | None:
    """Worker task: the GPU backend Cycles would use in this worker (``'OPTIX'``, ``'CUDA'``), or None.

    Run once through the pool before a ``--device gpu`` run, so that a missing
    GPU is reported by the parent before rendering starts.
    """
    from generator.blender.device import gpu_backend

    return gpu_backend()


#: Seconds between a worker's checks that its parent still lives (where the kernel cannot tell it).
PARENT_POLL_S = 1.0


def die_with_parent() -> None:
    """End this process when its parent dies, even by SIGKILL, so no worker (~300 MB of
    Blender each) is left behind.

    On Linux the kernel sends SIGKILL at once (``prctl(PR_SET_PDEATHSIG)``), even while
    Blender renders holding the GIL. Everywhere, a daemon thread also checks the parent
    every :data:`PARENT_POLL_S` seconds (a dead parent's children are re-parented).
    """
    spawner = multiprocessing.parent_process()
    parent = spawner.pid if spawner is not None else os.getppid()
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    if os.getppid() != parent:  # it died before the request above
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="dfdgen-parent-watch", daemon=True).start()


def init_worker() -> None:
    """Worker initializer.

    Ctrl-C reaches the whole process group; only the parent acts on it. Blender
    logs every render ("Fra:1 ...", "Saved: ...") on file descriptor 1, which
    would bury the parent's progress bar and summary: workers write stdout to
    /dev/null (errors still reach the parent as exceptions, and stderr is kept).

    A worker ends when its parent does, however the parent ends (:func:`die_with_parent`).

    A spawned worker inherits the parent's ``sys.path``. If the parent has
    imported bpy, that path starts with Blender's ``scripts/modules``, whose
    pure-Python ``bpy`` package would shadow the compiled module ("No module
    named '_bpy'"); such entries are dropped (bpy adds them back when imported).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    sys.path[:] = [p for p in sys.path if not os.path.isfile(os.path.join(p, "bpy", "__init__.py"))]


#: Why a scene failed when its worker process died.
WORKER_DIED = "the worker process died (crash or out of memory)"
#: Where scenes render: local worker processes (:class:`ProcessPool`), or a Ray
#: cluster (:class:`generator.ray_executor.RayPool`).
EXECUTORS = ("local", "ray")
#: What Cycles renders on (:mod:`generator.blender.device`).
DEVICES = ("cpu", "gpu")
#: The warning of a ``--device gpu`` run that renders on the CPU for want of a GPU.
NO_GPU = "--device gpu: Cycles finds no OptiX or CUDA GPU here; rendering on the CPU instead"


class Pool(Protocol):
    """Where :func:`run_scenes` runs tasks.

    Attributes:
        workers: tasks the pool runs at once (and :func:`run_scenes` keeps in flight).
        threads: Cycles threads each task renders with (>= 1).
    """

    workers: int
    threads: int

    def submit(self, task: Callable[[int], Any], index: int) -> Future:
        """Start ``task(index)``; the future holds its result or the exception that ended it."""

    def describe(self, exc: BaseException) -> str:
        """Why a task failed, in one line, for the manifest."""

    def close(self) -> None:
        """Release the workers after the last result (nothing is in flight)."""

    def kill(self) -> None:
        """Stop now: abandon the tasks in flight."""


class ProcessPool:
    """Local worker processes: a ProcessPoolExecutor that is replaced when broken and killed on Ctrl-C.

    Args:
        workers: worker processes.
        recycle_every: tasks a worker process runs before it is replaced.
        threads: Cycles threads per task; 0 = this machine's cores shared evenly among the workers.
    """

    def __init__(self, workers: int, recycle_every: int, *, threads: int = 0):
        self.workers, self.recycle_every = workers, recycle_every
        self.threads = threads or max(1, (os.cpu_count() or 1) // workers)  # K workers x all cores would thrash
        self.pool = self._new()

    def _new(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=init_worker,
            max_tasks_per_child=self.recycle_every,
        )

    def submit(self, task: Callable[[int], Any], index: int) -> Future:
        try:
            return self.pool.submit(task, index)
        except BrokenProcessPool:  # a worker died while idle: nothing in flight to blame
            self.restart()
            return self.pool.submit(task, index)

    def describe(self, exc: BaseException) -> str:
        return WORKER_DIED if isinstance(exc, BrokenProcessPool) else f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        self.pool.shutdown(wait=True)

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
    pool: Pool | None = None,
) -> Iterator[SceneResult]:
    """Run ``task(i)`` for every scene index and yield the results in the order given.

    Args:
        task: picklable callable, ``task(index) -> sample``; runs in a worker process.
        indices: scene indices, in the order results are wanted.
        workers: worker processes (>= 1) of the default pool.
        recycle_every: scenes a worker of the default pool renders before it is replaced (>= 1).
        window: how far (in scenes) submission may run ahead of the oldest result
            not yet yielded; bounds the finished samples held in memory. Default 8 x workers.
        on_complete: called with every result as soon as it is final (for progress bars).
        pool: where the tasks run; default: a :class:`ProcessPool` of ``workers`` and
            ``recycle_every``. Closed (or killed) at the end either way.

    On KeyboardInterrupt (or the consumer closing the generator) the workers are
    killed and nothing more is yielded.
    """
    order = list(indices)
    pool = pool or ProcessPool(workers, recycle_every)
    workers = pool.workers
    window = window or 8 * workers
    inflight: dict[Future, int] = {}
    finished: dict[int, SceneResult] = {}
    attempts = {i: 0 for i in order}
    retry: deque[int] = deque()  # raised once: retry with the others
    isolate: deque[int] = deque()  # in flight when a worker died: retry alone
    next_yield = next_submit = 0

    def submit(index: int) -> None:
        attempts[index] += 1
        inflight[pool.submit(task, index)] = index

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
            result = SceneResult(index, None, pool.describe(exc), attempts[index])
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
        pool.close()
    except BaseException:
        pool.kill()
        raise
