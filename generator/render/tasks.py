"""dfdgen's worker tasks: draw a scene, render it with Cycles, encode it as a sample.

What :func:`generator.render.scheduler.run_tasks` runs in worker processes for
``dfdgen render`` (:func:`render_task`), and the one-off GPU probe. Each imports
bpy on first use, so only worker processes ever load Blender (and this module
stays free of heavy imports such as webdataset, which pulls in torch).
"""

from __future__ import annotations

from typing import Any

from generator.dataset.encoder import Encoder

from generator.dataset.sample import encode_sample
from generator.draw.scene import draw_scene
from generator.recipe.recipe import Recipe
from generator.scene.spec import SceneSpec


def render_task(recipe: Recipe, index: int, *, threads: int = 0, device: str = "cpu") -> dict[str, Any]:
    """Worker task: draw scene ``index``, render it with Cycles, encode it as a sample (member -> bytes).

    ``threads``: Cycles CPU threads (0 = all cores); ``device``: ``cpu`` or ``gpu``
    (see :func:`generator.render.blender.device.select_device`).
    """
    sample, _ = render_sample(draw_scene(recipe, index), recipe, threads=threads, device=device)
    return sample


def render_sample(
    spec: SceneSpec, recipe: Recipe, *, threads: int = 0, device: str = "cpu", background_encoding: bool = True
) -> tuple[dict[str, Any], Any]:
    """Render ``spec`` with Cycles and encode it as a sample: (member -> bytes, the ``RenderedScene``).

    The depth pass's members (depth, CoC and motion EXRs) and each image are
    encoded on a background thread as soon as they are rendered, while Cycles
    renders the next view (:class:`generator.dataset.encoder.Encoder`): after the last
    render only its image and the metadata are left. ``background_encoding=False``
    encodes everything on this thread after the last render instead (the same
    bytes; for benchmarks).
    """
    from generator.render.blender.render import render_scene

    with Encoder(spec, background=background_encoding) as encoder:
        rendered = render_scene(spec, threads=threads, device=device,
                                listener=encoder if background_encoding else None)
        return encode_sample(spec, rendered, recipe, encoder), rendered


def gpu_probe_task(_index: int) -> str | None:
    """Worker task: the GPU backend Cycles would use in this worker (``'OPTIX'``, ``'CUDA'``), or None.

    Run once through the pool before a ``--device gpu`` run, so that a missing
    GPU is reported by the parent before rendering starts.
    """
    from generator.render.blender.device import gpu_backend

    return gpu_backend()
