"""Which torch device a run uses, and moving a batch onto it (train, eval and predict share them)."""

from __future__ import annotations

import torch

from dfd_models.config import ConfigError

__all__ = ["pick_device", "to_device"]


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
