"""How a dataset is rendered (not what: that is the recipe), declared once.

:class:`RenderOptions` is what ``dfdgen render``'s options and the keywords of
:func:`generator.render.pipeline.render_dataset` mean, with their defaults and checks
(:mod:`generator.core.schema`, the recipes' mechanism); the CLI takes its defaults from
here. None of them changes a sample's bytes except ``device`` (a GPU gives other pixels
than the CPU).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from generator.core.errors import FieldError
from generator.core.schema import build, setting

#: Where scenes render: local worker processes (:class:`generator.render.scheduler.ProcessPool`),
#: or a Ray cluster (:class:`generator.render.ray_executor.RayPool`).
EXECUTORS = ("local", "ray")
#: What Cycles renders on (:mod:`generator.render.blender.device`).
DEVICES = ("cpu", "gpu")
#: The warning of a ``--device gpu`` run that renders on the CPU for want of a GPU.
NO_GPU = "--device gpu: Cycles finds no OptiX or CUDA GPU here; rendering on the CPU instead"


class RenderOptionError(FieldError):
    """A render option is unknown or its value is not allowed (exit status 2)."""

    what = "render option"


@dataclass(frozen=True, kw_only=True)
class RenderOptions:
    """Options of a render run; build one with :meth:`from_dict` (checked), not the constructor.

    Attributes:
        workers: worker processes, each with its own Blender (with Ray: scenes in flight
            across the cluster).
        threads: Cycles threads per worker; 0 = the cores shared evenly among the workers
            (with Ray: the cluster's CPUs, at most one node's; each Ray task declares them).
        recycle_every: scenes a worker process renders before it is replaced (bounds memory).
        executor: one of :data:`EXECUTORS`.
        ray_address: the Ray cluster (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``); None
            starts a local Ray for the run. Only with ``executor='ray'``.
        device: one of :data:`DEVICES`: ``gpu`` = OptiX, else CUDA; without a GPU the run
            warns (:data:`NO_GPU`) and renders on the CPU.
        overwrite: replace another recipe's data in the output folder.
    """

    workers: int = setting(1, ge=1)
    threads: int = setting(0, ge=0)
    recycle_every: int = setting(50, ge=1)
    executor: str = setting("local", choices=EXECUTORS)
    ray_address: str | None = setting(None)
    device: str = setting("cpu", choices=DEVICES)
    overwrite: bool = setting(False)

    def __post_init__(self) -> None:
        if self.ray_address is not None and self.executor != "ray":
            raise RenderOptionError("ray_address", self.ray_address, "null unless executor is 'ray' (--executor ray)")

    @classmethod
    def from_dict(cls, options: Mapping[str, Any]) -> RenderOptions:
        """The options named in ``options`` (the others at their defaults), checked.

        Raises:
            RenderOptionError: an unknown option, a value out of range or not one of its
                choices, or ``ray_address`` without ``executor='ray'``.
        """
        return build(cls, options, RenderOptionError)
