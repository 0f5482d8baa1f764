"""One optimizer step and its schedule: AdamW, the warmup + cosine learning rate, AMP loss
scaling and gradient clipping.

One step: the batch goes through ``model(batch)`` (under autocast when ``optim.amp`` is on),
``model.losses(batch, outputs)["total"]`` is back-propagated (scaled for fp16), the global
gradient norm clipped, then AdamW and the learning-rate schedule (:func:`lr_factor`) step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dfd_models.config import ConfigError, TrainConfig
from dfd_models.data import Batch
from dfd_models.runtime import amp_dtype, bare_model

__all__ = ["Optimisation", "lr_factor", "make_optimisation", "total_steps", "train_step"]


def total_steps(config: TrainConfig) -> int:
    """Optimizer steps the run takes: ``train.max_steps``, or ``train.epochs`` epochs of
    ``data.epoch_len // data.batch_size`` batches, whichever is fewer."""
    by_epochs = None
    if config.train.epochs is not None:
        if config.data.epoch_len is None:
            raise ConfigError("data.epoch_len", None, "samples per epoch: required with train.epochs "
                              "(it sets the length of the learning-rate schedule and keeps DDP ranks in step)")
        by_epochs = config.train.epochs * (config.data.epoch_len // config.data.batch_size)
    limits = [n for n in (config.train.max_steps, by_epochs) if n is not None]
    return min(limits)


def lr_factor(step: int, *, warmup: int, total: int, final: float) -> float:
    """Learning rate of step ``step`` (0-based) as a fraction of the peak.

    Linear warmup ``(step + 1) / warmup`` for ``step < warmup``, then a cosine from
    1 down to ``final`` (= min_lr / lr) at the last step ``total - 1``:
    ``final + (1 - final) (1 + cos(pi t)) / 2``, t = (step - warmup) / (total - 1 - warmup).
    """
    if step < warmup:
        return (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - 1 - warmup))
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * t))


@dataclass
class Optimisation:
    """What a step updates besides the model."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    amp: torch.dtype | None
    grad_clip: float | None


def make_optimisation(model: nn.Module, config: TrainConfig, device: torch.device) -> Optimisation:
    """AdamW, the warmup + cosine schedule, and a gradient scaler (enabled for fp16 only)."""
    optim = config.optim
    optimizer = torch.optim.AdamW(model.parameters(), lr=optim.lr, betas=tuple(optim.betas),
                                  weight_decay=optim.weight_decay)
    total, final = total_steps(config), (optim.min_lr / optim.lr if optim.lr > 0 else 1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, warmup=optim.warmup_steps, total=total, final=final))
    dtype = amp_dtype(optim.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    return Optimisation(optimizer, scheduler, scaler, dtype, optim.grad_clip)


def train_step(model: nn.Module, batch: Batch, opt: Optimisation) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """One optimizer step on ``batch``.

    Args:
        model: the model, or its DDP wrapper (``losses`` is taken from the bare model).

    Returns:
        (outputs, logged): the model's outputs and the detached scalars to log:
        every loss term, ``lr`` and, with clipping, ``grad_norm`` (before clipping).
    """
    bare = bare_model(model)
    device_type = next(bare.parameters()).device.type
    opt.optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device_type, dtype=opt.amp, enabled=opt.amp is not None):
        outputs = model(batch)
        terms = bare.losses(batch, outputs)
    opt.scaler.scale(terms["total"]).backward()
    logged = {name: value.detach().float() for name, value in terms.items()}
    logged["lr"] = torch.tensor(opt.scheduler.get_last_lr()[0])
    if opt.grad_clip is not None:
        opt.scaler.unscale_(opt.optimizer)
        logged["grad_norm"] = nn.utils.clip_grad_norm_(bare.parameters(), opt.grad_clip).detach()
    opt.scaler.step(opt.optimizer)
    opt.scaler.update()
    opt.scheduler.step()
    return outputs, logged
