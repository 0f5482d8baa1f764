"""Run scene tasks on Ray (``dfdgen render --executor ray``): the same tasks in another pool.

:class:`RayPool` is a :class:`generator.render.scheduler.Pool`, so
:func:`generator.render.scheduler.run_tasks` does on Ray what it does locally:
results stream back to the one process that writes the shards, in scene
order, and a failed scene is retried once, a crashed one alone. Shards and
manifest are therefore byte-identical to the local executor's.

- One scene = one Ray task calling the same task as a local worker
  (:func:`generator.render.tasks.render_task`). Ray keeps a worker process for the
  tasks of a run, so Blender is imported once per process; ``max_calls``
  replaces the process after ``recycle_every`` scenes (memory stays bounded).
- Every task declares what it uses: ``num_cpus`` = its Cycles threads, and a
  share of a GPU for ``--device gpu``; Ray then never starts more renders on
  a node than it has cores (or GPUs).
- A dead worker fails only its own task (``WorkerCrashedError``, a crash for
  :meth:`RayPool.crashed`). Ray's own retries are off (``max_retries=0``):
  ``run_tasks`` resubmits the scene once, as it does locally, and Ray runs it on
  whichever worker of the cluster is free.

Importing this module imports ray (``pip install 'dfdgen[ray]'``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
from concurrent.futures import Future
from typing import Any, Callable, Iterator

import ray
import ray.exceptions

from generator.core.errors import BadInput, DfdgenError
from generator.render.scheduler import WORKER_DIED, init_worker

#: Bytes of Ray's object store when dfdgen starts a local Ray: finished samples
#: wait there only until the writer fetches them (at most a window of them).
LOCAL_OBJECT_STORE_BYTES = 512 * 2**20


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Connect to the Ray cluster at ``address``, or start a local Ray when it is None; leave it at the end.

    ``address``: ``auto`` (the cluster this machine joined with ``ray start``),
    ``host:port`` of a head node, or ``ray://host:port`` (Ray Client). A local
    Ray gets every core of this machine, no dashboard and a
    :data:`LOCAL_OBJECT_STORE_BYTES` object store; it is stopped at the end.
    A Ray already initialised in this process (by a test or a notebook) is used
    as it is and left running; ``address`` must then be None.

    Raises:
        BadInput: ``address`` is malformed, nothing answers there (the message names
            it), or Ray is initialised here already and an address is given.
        DfdgenError: a local Ray does not start.
    """
    if ray.is_initialized():
        if address is not None:
            raise BadInput(f"--ray-address {address}: this process is connected to Ray already; give no address")
        yield
        return
    if address is not None:
        _check_reachable(address)
    try:
        if address is None:
            ray.init(num_cpus=os.cpu_count(), object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                     include_dashboard=False, logging_level="WARNING")
        else:
            ray.init(address=address, logging_level="WARNING")
    except (ConnectionError, ValueError, RuntimeError, TimeoutError) as exc:
        if address is None:
            raise DfdgenError(f"cannot start a local Ray ({exc})") from exc
        raise BadInput(f"--ray-address {address}: cannot connect to a Ray cluster there ({exc})") from exc
    try:
        yield
    finally:
        ray.shutdown()


#: Seconds to wait for a TCP answer from a Ray address before calling it unreachable.
CONNECT_TIMEOUT_S = 5.0


def _check_reachable(address: str) -> None:
    """Refuse an address that is malformed or where nothing accepts a connection.

    Checked before ``ray.init``, which would otherwise retry an unanswered
    ``host:port`` for minutes before giving up.
    """
    if address == "auto":  # Ray itself finds the cluster this machine joined, or says there is none
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise BadInput(f"--ray-address {address}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise BadInput(f"--ray-address {address}: nothing answers at {host}:{port} ({exc})") from exc


def cluster_threads(workers: int) -> int:
    """Threads (= CPUs) per scene when ``--threads 0``: the cluster's CPUs shared evenly among
    ``workers`` scenes in flight, but never more than the largest node has (a task runs on one node)."""
    cpus = [node["Resources"].get("CPU", 0.0) for node in ray.nodes() if node["Alive"]]
    return max(1, min(int(max(cpus, default=1)), int(sum(cpus)) // workers))


@functools.cache
def _init_once() -> None:
    """:func:`generator.render.scheduler.init_worker`, once per Ray worker process (quiet stdout, clean sys.path)."""
    init_worker()


def _call(task: Callable[[int], Any], index: int) -> Any:
    """The Ray task: ``task(index)`` in a worker process set up like a local one."""
    _init_once()
    return task(index)


class RayPool:
    """Tasks on the Ray cluster this process is connected to (see :func:`ray_session`).

    Args:
        workers: scenes in flight at once, across the cluster.
        recycle_every: tasks a Ray worker process runs before it is replaced.
        threads: CPUs each task declares (and Cycles threads it renders with); >= 1.
        gpus: GPUs each task declares (0 on the CPU; a fraction lets scenes share a GPU).
    """

    #: A dead Ray worker fails only its own task (``WorkerCrashedError``).
    crash_ends_all = False

    def __init__(self, workers: int, recycle_every: int, *, threads: int, gpus: float = 0.0):
        self.workers, self.threads = workers, threads
        self._remote = ray.remote(num_cpus=threads, num_gpus=gpus, max_calls=recycle_every, max_retries=0)(_call)
        self._running: dict[Future, ray.ObjectRef] = {}

    def submit(self, task: Callable[[int], Any], index: int) -> Future:
        ref = self._remote.remote(task, index)
        future = ref.future()
        self._running[future] = ref
        future.add_done_callback(lambda done: self._running.pop(done, None))  # runs at once if already done
        return future

    def describe(self, exc: BaseException) -> str:
        if isinstance(exc, ray.exceptions.RayTaskError):  # the task raised: name its own exception
            exc = exc.cause
        elif self.crashed(exc):
            return WORKER_DIED
        return f"{type(exc).__name__}: {exc}"

    def crashed(self, exc: BaseException | None) -> bool:
        return isinstance(exc, ray.exceptions.WorkerCrashedError)

    def restart(self) -> None:
        """Nothing to do: Ray replaces a dead worker process itself."""

    def close(self) -> None:
        """Nothing to release: Ray keeps its idle workers until the session ends (:func:`ray_session`)."""

    def kill(self) -> None:
        for ref in list(self._running.values()):
            ray.cancel(ref, force=True)


def gpus_per_task(workers: int) -> float:
    """GPUs each of ``workers`` scenes in flight declares for ``--device gpu``: the cluster's GPUs
    shared evenly, at most one each (a Cycles render uses every GPU it is given); 0 without GPUs."""
    return min(1.0, ray.cluster_resources().get("GPU", 0.0) / workers)


@contextlib.contextmanager
def ray_pool(*, address: str | None, workers: int, threads: int, recycle_every: int,
             gpu: bool) -> Iterator[RayPool]:
    """A :class:`RayPool` in a :func:`ray_session`; ``threads`` 0 = :func:`cluster_threads`."""
    with ray_session(address):
        yield RayPool(workers, recycle_every, threads=threads or cluster_threads(workers),
                      gpus=gpus_per_task(workers) if gpu else 0.0)
