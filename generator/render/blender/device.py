"""Which device Cycles renders on: the CPU, or every OptiX / CUDA GPU of the machine (``--device gpu``).

Device choice lives in Cycles' add-on preferences, which
``read_factory_settings`` (run before every scene) resets, so
:func:`select_device` is applied to every scene after it is built.
A GPU render is deterministic on one GPU model and driver but does not give
the CPU's bytes: datasets that must match byte for byte use one device.
"""

from __future__ import annotations

import warnings

import bpy

from generator.render.options import DEVICES, NO_GPU

#: GPU backends in order of preference: OptiX (RTX ray tracing cores) first, then CUDA.
GPU_BACKENDS = ("OPTIX", "CUDA")


def _preferences():
    return bpy.context.preferences.addons["cycles"].preferences


def gpu_backend() -> str | None:
    """The first backend of :data:`GPU_BACKENDS` with at least one GPU, or None.

    Refreshes Cycles' device list first (``refresh_devices``): the list is
    empty until queried, and a driver may appear after Blender started.
    """
    preferences = _preferences()
    preferences.refresh_devices()
    for backend in GPU_BACKENDS:
        if any(d.type == backend for d in preferences.get_devices_for_type(backend)):
            return backend
    return None


def select_device(scene: bpy.types.Scene, device: str) -> str:
    """Make ``scene`` render on ``device`` (``'cpu'`` or ``'gpu'``); return the Cycles backend used.

    ``'gpu'``: ``compute_device_type`` = the :func:`gpu_backend`, every GPU of it
    enabled and the CPU entry disabled (a CPU beside a GPU slows the render
    and competes with the other workers' threads), ``scene.cycles.device='GPU'``.
    Without a GPU it warns (:data:`NO_GPU`, a RuntimeWarning) and renders on the CPU.

    Returns ``'CPU'``, ``'OPTIX'`` or ``'CUDA'``.

    Raises:
        ValueError: ``device`` is not one of :data:`DEVICES`.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    backend = gpu_backend() if device == "gpu" else None
    if backend is None:
        if device == "gpu":
            warnings.warn(NO_GPU, RuntimeWarning, stacklevel=2)
        scene.cycles.device = "CPU"
        return "CPU"
    preferences = _preferences()
    preferences.compute_device_type = backend
    for entry in preferences.get_devices_for_type(backend):
        entry.use = entry.type == backend
    scene.cycles.device = "GPU"
    return backend
