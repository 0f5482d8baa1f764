"""Where and how a run computes: the device, the torchrun process group (DDP), mixed precision
(AMP), the loader workers a process can spare, and seeding.

``dfdgen train`` uses all of it; ``dfdgen eval`` and ``predict`` pick their device and move
batches with :func:`pick_device` and :func:`to_device`.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from dfd_models.checkpoint import rng_state
from dfd_models.config import ConfigError

__all__ = ["AUTO_WORKERS", "Process", "amp_dtype", "auto_workers", "bare_model", "pick_device", "seed_everything",
           "setup_process", "to_device"]

#: Loader workers ``data.workers: auto`` starts per process (at most one per shard of it).
AUTO_WORKERS = 2


def pick_device(device: str, local_rank: int = 0) -> torch.device:
    """The torch device ``device`` names: ``auto`` (CUDA when present, else CPU), ``cpu``,
    ``cuda`` (``cuda:local_rank``) or ``cuda:N``; a CUDA device becomes the current one.

    Raises:
        ConfigError: a name torch does not know, or CUDA on a machine without it.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        chosen = torch.device(f"cuda:{local_rank}" if device == "cuda" else device)
    except RuntimeError as exc:
        raise ConfigError("train.device", device, "auto, cpu, cuda or cuda:N") from exc
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("train.device", device, "a device this machine has: it has no CUDA")
        torch.cuda.set_device(chosen)
    return chosen


def to_device(batch: dict, device: torch.device) -> dict:
    """The batch with its tensors on ``device`` (other values as they are)."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


@dataclass(frozen=True)
class Process:
    """This process's place in a (possibly single-process) run."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def stepper(self, model: nn.Module) -> nn.Module:
        """The module a training step calls: ``model`` itself, or, under DDP, wrapped in
        DistributedDataParallel (which averages the gradients across ranks)."""
        if self.world_size == 1:
            return model
        return DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def rng_states(self) -> list[dict]:
        """Every rank's generator states, by rank (a collective: every rank calls it)."""
        if self.world_size == 1:
            return [rng_state()]
        states: list = [None] * self.world_size
        dist.all_gather_object(states, rng_state())
        return states

    def barrier(self) -> None:
        """Wait for every rank (nothing to wait for in a single process)."""
        if self.world_size > 1:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group, if this process joined one."""
        if self.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()


def setup_process(device: str) -> Process:
    """Join the torchrun process group when ``WORLD_SIZE`` > 1 (NCCL on CUDA, gloo on CPU) and pick
    the device (see :func:`pick_device`; ``LOCAL_RANK`` picks the GPU)."""
    world_size, local_rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_RANK", "0"))
    chosen = pick_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
    return Process(dist.get_rank() if world_size > 1 else 0, world_size, chosen)


def bare_model(model: nn.Module) -> nn.Module:
    """The model inside a DDP wrapper (:meth:`Process.stepper`), or ``model`` itself."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``optim.amp`` on ``device`` (``None``: full precision)."""
    if mode == "auto":
        mode = "fp16" if device.type == "cuda" else "off"
    if mode == "fp16" and device.type != "cuda":
        raise ConfigError("optim.amp", mode, "bf16 or off on CPU (fp16 autocast needs CUDA)")
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[mode]


def auto_workers(proc: Process) -> int:
    """The loader workers ``data.workers: auto`` asks for: :data:`AUTO_WORKERS`; training on the
    CPU, at most the cores torch's threads leave free (measured on 2 cores, where torch uses
    both: one worker made defocusnet's steps 3 times slower, sdgs's 2 times)."""
    if proc.device.type != "cpu":
        return AUTO_WORKERS
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    spare = cores - proc.world_size * torch.get_num_threads()
    return max(0, min(AUTO_WORKERS, spare // proc.world_size))


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
