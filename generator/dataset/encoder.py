"""Encode one scene's members as they are rendered, optionally on a worker thread (:class:`Encoder`).

Work is keyed by the arrays' identity, so the repeated ramps of a static scene are encoded
once; the bytes never depend on where or when a member was encoded. No bpy."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Sequence

import numpy as np

from generator.core import lens as lensmod
from generator.dataset.pixels import encode_rgb, write_exr_bytes
from generator.scene.flow import CHANNELS as FLOW_CHANNELS
from generator.scene.flow import forward_flow
from generator.scene.sensor import photograph
from generator.dataset.format import (coc_member, depth_member, motion_member)
from generator.scene.spec import SceneSpec

class Encoder:
    """Encodes one scene's members, each from distinct arrays once, optionally off the render thread.

    A renderer hands it the depth pass (:meth:`depth_pass`) and every image
    (:meth:`image`), which the spec's sensor turns into the camera's frames
    (:func:`generator.scene.sensor.photograph`), as soon as they are rendered
    (:class:`generator.render.blender.render.RenderListener`). With ``background=True``
    a worker thread encodes them, and derives the CoC maps and motion vectors
    from the depth pass, while Cycles renders the next view (a Cycles render
    releases the GIL); :func:`encode_sample` then only collects the bytes.
    Work is keyed by the arrays' identity, so the repeated ramps of a static
    scene, which share one array, are encoded once. The bytes never depend on
    where or when a member was encoded. Use as a context manager (the thread
    stops on exit).

    Args:
        spec: the scene whose members are encoded.
        background: encode on a worker thread (else on the caller's, when asked).
    """

    def __init__(self, spec: SceneSpec, *, background: bool = False):
        self.spec = spec
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="dfdgen-encode") if background else None
        # key -> (the arrays it reads, kept so that their ids stay unique; the member's future bytes)
        self._jobs: dict[tuple, tuple[tuple[np.ndarray, ...], Future]] = {}

    def __enter__(self) -> "Encoder":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=True, cancel_futures=True)

    def image(self, rgb: np.ndarray, frames: Sequence[int]) -> None:
        """Start encoding a rendered linear RGB image [H, W, 3]: the all-in-focus image when
        ``frames`` is empty, else the frames at those positions of ``spec.frames`` (which share
        one render: the repeated ramps of a static scene). The renderer's call."""
        for i in frames:
            self.frame(i, rgb)
            if self.spec.sensor is not None and self.spec.sensor.clean:
                self.clean(rgb)
        if not frames:
            self.aif(rgb)

    def frame(self, i: int, rgb: np.ndarray) -> Future:
        """Frame ``i`` (position in ``spec.frames``) from its linear RGB render [H, W, 3], through
        the spec's sensor if it has one (each frame its own noise and exposure, so encoded per
        frame), in the ``rgb`` encoding: a future (extension, bytes)."""
        if self.spec.sensor is None:
            return self._job(("rgb",), (rgb,), self._encode, rgb)
        return self._job(("frame", i), (rgb,), self._photograph, rgb, i, self.spec.frames[i].index)

    def aif(self, rgb: np.ndarray) -> Future:
        """The all-in-focus image from its render, as :meth:`frame` 0 but without noise: a future
        (extension, bytes)."""
        if self.spec.sensor is None:
            return self._job(("rgb",), (rgb,), self._encode, rgb)
        return self._job(("aif",), (rgb,), self._photograph, rgb, 0, None)

    def clean(self, rgb: np.ndarray) -> Future:
        """A frame's clean radiance [H, W, 3] as a linear EXR (``R``, ``G``, ``B``): future bytes."""
        return self._job(("clean",), (rgb,), write_exr_bytes, dict(zip("RGB", np.moveaxis(rgb, -1, 0))))

    def _encode(self, rgb: np.ndarray) -> tuple[str, bytes]:
        return encode_rgb(rgb, self.spec.render.rgb, self.spec.render.jpeg_quality)

    def _photograph(self, rgb: np.ndarray, i: int, index: int | None) -> tuple[str, bytes]:
        return self._encode(photograph(rgb, self.spec.sensor, i, index))

    def depth_pass(self, depth: Sequence[np.ndarray], object_index: Sequence[np.ndarray] | None) -> dict[str, Future]:
        """The members made from the depth pass: member name -> future bytes.

        ``depth``: the planar depth maps in metres (one, or one per frame, as in
        :class:`Rendered`); ``object_index``: per depth map, when ``spec.render.motion``.
        Depth maps as ``depth.exr`` / ``fNNN.depth.exr``, then ``fNNN.coc.exr``
        and ``fNNN.motion.exr`` when the spec asks for them.
        """
        spec = self.spec
        members: dict[str, Future] = {}
        if spec.depth_per_frame:
            for frame, d in zip(spec.frames, depth):
                members[depth_member(frame.index)] = self._job(("depth",), (d,), write_exr_bytes, {"Z": d})
        else:
            members[depth_member(None)] = self._job(("depth",), (depth[0],), write_exr_bytes, {"Z": depth[0]})
        for i, frame in enumerate(spec.frames):
            at = i if spec.depth_per_frame else 0  # the depth map (and object-index map) of frame i
            if spec.render.coc:
                members[coc_member(frame.index)] = self._job(("coc", i), (depth[at],), _coc_exr, spec, i, depth[at])
            if spec.render.motion and i < len(spec.frames) - 1:
                maps = (depth[at], object_index[at])
                members[motion_member(frame.index)] = self._job(("motion", i), maps, _motion_exr, spec, i, *maps)
        return members

    def _job(self, kind: tuple, arrays: tuple[np.ndarray, ...], work: Callable[..., Any], *args: Any) -> Future:
        """The future of ``work(*args)``, started once per ``kind`` and ``arrays``."""
        key = (*kind, *map(id, arrays))
        if key not in self._jobs:
            if self._thread is not None:
                future = self._thread.submit(work, *args)
            else:  # now, on this thread (an exception is raised here, to the caller)
                future = Future()
                future.set_result(work(*args))
            self._jobs[key] = (arrays, future)
        return self._jobs[key][1]


def _coc_exr(spec: SceneSpec, i: int, depth: np.ndarray) -> bytes:
    """Frame ``i``'s CoC diameter map (pixels) from its depth map, as an EXR (channel ``Y``)."""
    return write_exr_bytes({"Y": lensmod.coc_map_px(spec.lens, depth, spec.frames[i].focus_distance_m, spec.render.width)})


def _motion_exr(spec: SceneSpec, i: int, depth: np.ndarray, object_index: np.ndarray) -> bytes:
    """Frame ``i``'s motion to the next frame (:func:`generator.scene.flow.forward_flow`) as an EXR."""
    flow = forward_flow(spec, i, depth, object_index)
    return write_exr_bytes(dict(zip(FLOW_CHANNELS, np.moveaxis(flow, -1, 0))))
