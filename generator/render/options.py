"""How a dataset is rendered (not what: that is the recipe), declared once.

:class:`RenderOptions` is what ``dfdgen render``'s options and the keywords of
:func:`generator.render.pipeline.render_dataset` mean, with their defaults and checks;
the CLI takes its defaults from here. None of them changes a sample's bytes
except ``device`` (a GPU gives other pixels than the CPU).
"""

from __future__ import annotations

from dataclasses import dataclass

from generator.core.errors import BadInput

#: Where scenes render: local worker processes (:class:`generator.render.scheduler.ProcessPool`),
#: or a Ray cluster (:class:`generator.render.ray_executor.RayPool`).
EXECUTORS = ("local", "ray")
#: What Cycles renders on (:mod:`generator.render.blender.device`).
DEVICES = ("cpu", "gpu")
#: The warning of a ``--device gpu`` run that renders on the CPU for want of a GPU.
NO_GPU = "--device gpu: Cycles finds no OptiX or CUDA GPU here; rendering on the CPU instead"


@dataclass(frozen=True)
class RenderOptions:
    """Options of a render run.

    Attributes:
        workers: worker processes, each with its own Blender (with Ray: scenes in flight
            across the cluster), >= 1.
        threads: Cycles threads per worker; 0 = the cores shared evenly among the workers
            (with Ray: the cluster's CPUs, at most one node's; each Ray task declares them).
        recycle_every: scenes a worker process renders before it is replaced (bounds memory), >= 1.
        executor: one of :data:`EXECUTORS`.
        ray_address: the Ray cluster (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``); None
            starts a local Ray for the run. Only with ``executor='ray'``.
        device: one of :data:`DEVICES`: ``gpu`` = OptiX, else CUDA; without a GPU the run
            warns (:data:`NO_GPU`) and renders on the CPU.
        overwrite: replace another recipe's data in the output folder.

    Raises:
        BadInput: a value out of range, or ``ray_address`` without ``executor='ray'``.
    """

    workers: int = 1
    threads: int = 0
    recycle_every: int = 50
    executor: str = "local"
    ray_address: str | None = None
    device: str = "cpu"
    overwrite: bool = False

    def __post_init__(self) -> None:
        for name, least in (("workers", 1), ("threads", 0), ("recycle_every", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise BadInput(f"{name} must be an integer >= {least}, got {value!r}")
        for name, allowed in (("executor", EXECUTORS), ("device", DEVICES)):
            if getattr(self, name) not in allowed:
                raise BadInput(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.ray_address is not None and self.executor != "ray":
            raise BadInput(f"--ray-address {self.ray_address} is only used with --executor ray")
