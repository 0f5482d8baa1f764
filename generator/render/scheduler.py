"""Run tasks in a pool of long-lived worker processes, results in the order asked: generic scheduling.

:func:`run_tasks` calls ``task(index)`` (any picklable callable; dfdgen's are in
:mod:`generator.render.tasks`) for each index in a :class:`Pool` and yields the
results **in the order of the indices given**, so what is written never depends
on which worker finished first. Nothing here knows about recipes, scenes or
Blender.

Retries, the same for every pool: a task that raises is retried once. A worker
that dies (segfault, OOM kill) is a *crash* (:meth:`Pool.crashed`): the
scheduler then waits for every task in flight, restarts the pool
(:meth:`Pool.restart`) and retries each crashed task alone; a crash counts as an
attempt only when one task crashed, so a task that kills its worker is told
apart from the innocent ones that ran beside it. (A local worker's death fails
every task of the pool; a Ray worker's death only its own.)

Pools: :class:`ProcessPool` (local worker processes, started with 'spawn', since
bpy must not be forked; they ignore SIGINT, the parent owns Ctrl-C, and are
replaced every ``recycle_every`` tasks so that Blender's memory stays bounded)
and :class:`generator.render.ray_executor.RayPool` (Ray workers on a cluster).
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

#: Attempts per task: the first try and one retry (DESIGN.md section 8).
MAX_ATTEMPTS = 2


@dataclass(frozen=True)
class TaskResult:
    """The outcome of one task.

    Attributes:
        index: the task's index (a scene index, for dfdgen's tasks).
        sample: the task's return value, or ``None`` when it failed.
        error: why the last attempt failed (``None`` on success).
        attempts: attempts made (1 or 2).
    """

    index: int
    sample: Any
    error: str | None
    attempts: int


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


#: Why a task failed when its worker process died.
WORKER_DIED = "the worker process died (crash or out of memory)"


class Pool(Protocol):
    """Where :func:`run_tasks` runs tasks.

    Attributes:
        workers: tasks the pool runs at once (and :func:`run_tasks` keeps in flight).
        threads: CPU threads each task may use (>= 1; a render task gives them to Cycles).
        crash_ends_all: whether a dying worker fails every task in flight (a local process
            pool), so that which task killed it is unknown; False where it fails only its own
            task (Ray), which is then charged its attempt whatever else crashed meanwhile.
    """

    workers: int
    threads: int
    crash_ends_all: bool

    def submit(self, task: Callable[[int], Any], index: int) -> Future:
        """Start ``task(index)``; the future holds its result or the exception that ended it."""

    def describe(self, exc: BaseException) -> str:
        """Why a task failed, in one line, for the manifest."""

    def crashed(self, exc: BaseException | None) -> bool:
        """Whether ``exc`` (a future's exception) means the task's worker died, rather than the task raising."""

    def restart(self) -> None:
        """Make the pool usable again after a crash (nothing is in flight)."""

    def close(self) -> None:
        """Release the workers after the last result (nothing is in flight)."""

    def kill(self) -> None:
        """Stop now: abandon the tasks in flight."""


class ProcessPool:
    """Local worker processes: a ProcessPoolExecutor that is replaced when broken and killed on Ctrl-C.

    Args:
        workers: worker processes.
        recycle_every: tasks a worker process runs before it is replaced.
        threads: CPU threads per task; 0 = this machine's cores shared evenly among the workers.
    """

    #: A dead worker breaks the executor: every task in flight fails with it.
    crash_ends_all = True

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
        return WORKER_DIED if self.crashed(exc) else f"{type(exc).__name__}: {exc}"

    def crashed(self, exc: BaseException | None) -> bool:
        return isinstance(exc, BrokenProcessPool)

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


def run_tasks(
    task: Callable[[int], Any],
    indices: Iterable[int],
    pool: Pool,
    *,
    window: int | None = None,
    on_complete: Callable[[TaskResult], None] | None = None,
) -> Iterator[TaskResult]:
    """Run ``task(i)`` for every index and yield the results in the order given.

    Args:
        task: picklable callable, ``task(index) -> result``; runs in a worker process.
        indices: the indices, in the order results are wanted.
        pool: where the tasks run; closed (or killed) at the end either way.
        window: how far (in tasks) submission may run ahead of the oldest result
            not yet yielded; bounds the finished results held in memory. Default 8 x workers.
        on_complete: called with every result as soon as it is final (for progress bars).

    On KeyboardInterrupt (or the consumer closing the generator) the workers are
    killed and nothing more is yielded.
    """
    order = list(indices)
    workers = pool.workers
    window = window or 8 * workers
    inflight: dict[Future, int] = {}
    finished: dict[int, TaskResult] = {}
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
            result = TaskResult(index, future.result(), None, attempts[index])
        elif attempts[index] < MAX_ATTEMPTS:
            (isolate if pool.crashed(exc) else retry).append(index)
            return
        else:
            result = TaskResult(index, None, pool.describe(exc), attempts[index])
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
            if pool.crash_ends_all and any(pool.crashed(f.exception()) for f in done):
                # A worker died and every task in flight fails with it: let all of them end.
                done, _ = wait(inflight)
                crashed = [f for f in done if pool.crashed(f.exception())]
                if len(crashed) > 1:  # which task killed it is unknown: retry each alone, uncharged
                    for future in crashed:
                        attempts[inflight[future]] -= 1
                pool.restart()
            for future in done:
                settle(future)
        pool.close()
    except BaseException:
        pool.kill()
        raise
