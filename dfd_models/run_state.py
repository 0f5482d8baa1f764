"""A run's state in its checkpoints: what ``dfdgen train`` saves and ``--resume`` restores.

A checkpoint (the file format of :mod:`dfd_models.checkpoint`) holds the config, the data's
manifest facts, the position (optimizer steps done, epoch, batches of it used), the model,
the optimizer, schedule and gradient-scaler states, and every rank's generator states, so a
run resumed on as many processes continues exactly.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from dfd_models.checkpoint import load_checkpoint, load_strict, save_checkpoint, set_rng_state
from dfd_models.config import TrainConfig
from dfd_models.optimisation import Optimisation
from dfd_models.run_dir import RunDir
from dfd_models.runtime import Process, seed_everything

__all__ = ["Position", "restore_run", "save_run"]


@dataclass
class Position:
    """Where a run is: optimizer steps done, the epoch being read, batches of it used."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0


def restore_run(run: RunDir, model: nn.Module, opt: Optimisation, proc: Process, seed: int) -> tuple[Position, dict]:
    """Load ``RUN/ckpt/last.pt`` into the model, optimizer, schedule, scaler and generators;
    returns the position and the checkpoint's data facts.

    Each rank takes its own saved generator states; a run resumed on another number
    of processes than saved it is reseeded (``seed + rank``) instead, with a warning.
    """
    checkpoint = load_checkpoint(run.last)  # on the CPU, where generator states live
    name = checkpoint["config"]["model"]["name"]
    load_strict(model, checkpoint["model"], f"model {name}", run.last)
    load_strict(opt.optimizer, checkpoint["optimizer"], "optimizer state", run.last)
    load_strict(opt.scheduler, checkpoint["scheduler"], "schedule state", run.last)
    if checkpoint["scaler"] is not None:
        load_strict(opt.scaler, checkpoint["scaler"], "gradient scaler state", run.last)
    if len(checkpoint["rng"]) == proc.world_size:
        set_rng_state(checkpoint["rng"][proc.rank])
    else:
        warnings.warn(f"{run.last} was saved by {len(checkpoint['rng'])} processes, resumed by "
                      f"{proc.world_size}: random draws differ from an uninterrupted run", stacklevel=2)
        seed_everything(seed + proc.rank)
    return Position(checkpoint["step"], checkpoint["epoch"], checkpoint["batch_in_epoch"]), checkpoint["data"]


def save_run(run: RunDir, config: TrainConfig, data: dict, model: nn.Module, opt: Optimisation | None,
             pos: Position, rng: list[dict], paths: Sequence[Path] | None = None) -> Path:
    """Write ``ckpt/step_XXXXXXX.pt`` and ``ckpt/last.pt`` (rank 0), or ``paths`` (the first is
    returned), with every rank's ``rng`` states (:meth:`dfd_models.runtime.Process.rng_states`;
    ``opt`` None, for a fitted model: no optimizer, schedule or scaler state)."""
    run.ckpt.mkdir(parents=True, exist_ok=True)
    payload = {
        "config": config.to_dict(),
        "data": data,
        "step": pos.step,
        "epoch": pos.epoch,
        "batch_in_epoch": pos.batch_in_epoch,
        "model": model.state_dict(),
        "optimizer": opt.optimizer.state_dict() if opt is not None else None,
        "scheduler": opt.scheduler.state_dict() if opt is not None else None,
        "scaler": opt.scaler.state_dict() if opt is not None and opt.scaler.is_enabled() else None,
        "rng": rng,
    }
    paths = [run.step_checkpoint(pos.step), run.last] if paths is None else list(paths)
    save_checkpoint(payload, paths)
    return paths[0]
