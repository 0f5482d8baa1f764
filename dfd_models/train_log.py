"""What a training run reports: TensorBoard scalars and image grids, the progress bar's loss,
and what a slow step makes the run cost.

Rank 0 alone reports. TensorBoard (``RUN/tb/``) gets the mean of every loss term, ``lr`` and
``grad_norm`` over each ``train.log_every`` steps, and every ``train.image_every`` steps the
first stack's frames and its predicted and true depth. The progress bar shows the smoothed
loss from the first step; when the first step (on CUDA the second: the first warms up) takes
more than :data:`SLOW_STEP_S`, one line says what the run will cost and which ``--set``
options make a step cheaper.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from generator.core.display import colorize, linear_to_srgb
from generator.core.errors import DfdgenError
from dfd_models.config import DataSection
from dfd_models.data import Batch

__all__ = ["SLOW_STEP_S", "Logger", "ProgressLoss", "image_grids", "step_cost_note"]

#: A step slower than this (seconds) makes the run say what it will cost (:func:`step_cost_note`).
SLOW_STEP_S = 1.0


def image_grids(batch: Batch, outputs: dict[str, Tensor]) -> dict[str, np.ndarray]:
    """[H, W', 3] uint8 images of the batch's first stack: its frames side by side (sRGB),
    and the predicted and true depth coloured on the true depth's range (invalid black)."""
    frames = batch["frames"][0].detach().float().cpu().numpy()  # [T, 3, H, W] linear
    srgb = linear_to_srgb(np.clip(frames.transpose(0, 2, 3, 1), 0.0, 1.0))  # [T, H, W, 3]
    true = batch["depth"][0, 0].detach().cpu().numpy()  # [H, W]
    valid = batch["valid"][0, 0].cpu().numpy()
    pred = outputs["depth"][0, 0].detach().float().cpu().numpy()  # [H, W]
    low, high = (float(true[valid].min()), float(true[valid].max())) if valid.any() else (0.0, 1.0)
    return {
        "frames": (np.concatenate(list(srgb), axis=1) * 255 + 0.5).astype(np.uint8),
        "depth/predicted": colorize(pred, low, high),
        "depth/true": colorize(true, low, high, invalid=~valid),
    }


class Logger:
    """Rank 0's TensorBoard writer: means of the logged scalars over each interval, image grids.

    Imports TensorBoard only when a run writes logs.
    """

    def __init__(self, log_dir: Path, every: int):
        from torch.utils.tensorboard import SummaryWriter

        self.writer, self.every = SummaryWriter(str(log_dir)), every
        self.sums: dict[str, Tensor] = {}
        self.count = 0

    def add(self, step: int, logged: dict[str, Tensor]) -> dict[str, float] | None:
        """Add one step's scalars; every ``every`` steps write and return their means.

        Raises:
            DfdgenError: the mean loss is not finite (training diverged).
        """
        for name, value in logged.items():
            self.sums[name] = self.sums.get(name, 0) + value  # on the device: no sync per step
        self.count += 1
        if step % self.every:
            return None
        means = {name: float(total) / self.count for name, total in self.sums.items()}
        self.sums.clear()
        self.count = 0
        if not math.isfinite(means["total"]):
            raise DfdgenError(f"training diverged: mean loss {means['total']} over the steps up to {step}; "
                              "lower optim.lr or enable optim.grad_clip")
        for name, value in means.items():
            self.writer.add_scalar(name if name in ("lr", "grad_norm") else f"loss/{name}", value, step)
        return means

    def images(self, step: int, batch: Batch, outputs: dict[str, Tensor]) -> None:
        for tag, image in image_grids(batch, outputs).items():
            self.writer.add_image(tag, image, step, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


class ProgressLoss:
    """The progress bar's postfix from the first step on: the loss of every step, smoothed (an
    exponential moving average, bias-corrected, so step 1 shows its own loss), and the
    learning rate. The average stays on the device; it is read (a device sync) at most every
    :attr:`EVERY_S` seconds, and at the steps a caller asks for (``now``)."""

    SMOOTHING = 0.9
    EVERY_S = 0.5

    def __init__(self, bar: tqdm):
        self.bar, self.average, self.steps, self.shown_at = bar, None, 0, -math.inf

    def add(self, logged: dict[str, Tensor], *, now: bool = False) -> None:
        """Add one step's logged scalars (:func:`dfd_models.optimisation.train_step`); show them when due."""
        if self.bar.disable:
            return
        loss, beta = logged["total"], self.SMOOTHING
        self.average = (1 - beta) * loss if self.average is None else beta * self.average + (1 - beta) * loss
        self.steps += 1
        if now or time.monotonic() - self.shown_at >= self.EVERY_S:
            self.shown_at = time.monotonic()
            smoothed = float(self.average) / (1 - beta ** self.steps)
            self.bar.set_postfix(loss=f"{smoothed:.4g}", lr=f"{float(logged['lr']):.2e}", refresh=now)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 90 * 60 else f"{seconds / 3600:.1f} h"


def step_cost_note(seconds: float, step: int, total: int, data: DataSection, image: dict | None, multiple: int,
                   device: torch.device) -> str | None:
    """What the run will cost when step ``step`` took more than :data:`SLOW_STEP_S` ``seconds``,
    and the ``--set`` options that make a step cheaper (half the batch, half the crop's sides);
    None for a faster step."""
    if seconds <= SLOW_STEP_S:
        return None
    size = (data.crop[0], data.crop[1]) if data.crop is not None else (
        (image["height"], image["width"]) if image else None)
    what = "full frames" if data.crop is None else f"{size[0]}x{size[1]} px crops"
    note = (f"step {step} took {seconds:.1f} s (batch {data.batch_size} of {what} on {device.type.upper()}): "
            f"the {total - step} steps left take about {_duration(seconds * (total - step))}")
    options, fraction = [], 1.0
    if data.batch_size > 1:
        options.append(f"--set data.batch_size={data.batch_size // 2}")
        fraction *= (data.batch_size // 2) / data.batch_size
    if size is not None:
        half = [max(multiple, side // 2 // multiple * multiple) for side in size]
        if min(half) >= 16 and half != list(size):
            options.append(f"--set 'data.crop=[{half[0]}, {half[1]}]'")
            fraction *= half[0] * half[1] / (size[0] * size[1])
    if options:
        note += f"; cheaper steps ({fraction:.2g} of the pixels): {' '.join(options)}"
    return note
