"""Training: a run directory, the loop, checkpoints and TensorBoard logs (``dfdgen train``).

A run directory ``RUN`` holds::

    RUN/config.yaml              the full resolved config (dfd_models.config)
    RUN/ckpt/step_XXXXXXX.pt     checkpoints every train.ckpt_every steps and at the end
    RUN/ckpt/last.pt             the latest of them (what --resume continues from)
    RUN/ckpt/best.pt             the best on validation so far (train.best_metric; same format)
    RUN/best.json                its {"metric", "higher_is_better", "step", "value", "checkpoint"}
    RUN/val.jsonl                one line per validation: {"step", "split", "samples", "regions": {"all", "objects"}}
    RUN/tb/                      TensorBoard: every loss term, lr, grad norm, val/<region>/<metric>; image grids

One step: the batch goes through ``model(batch)`` (under autocast when
``optim.amp`` is on), ``model.losses(batch, outputs)["total"]`` is
back-propagated (scaled for fp16), the global gradient norm clipped, then AdamW
and the warmup + cosine learning-rate schedule (:func:`lr_factor`) step.

Sizes: an ``auto`` ``data.crop`` and ``data.batch_size`` (the defaults) are sized to the
data's image size (its manifest) and the device (:func:`dfd_models.config.auto_data`), and
one line on stderr says what was chosen; ``data.workers: auto`` starts at most one worker
per shard of the process. ``config.yaml`` and the checkpoints record the values used, so a
resumed run reads the same batches. The progress bar shows the smoothed loss of every
step and the steps per second from the first step; when the first step (on CUDA the
second: the first warms up) takes more than :data:`SLOW_STEP_S`, one line says what the
run will cost and which ``--set`` options make a step cheaper.

Validation: when the shards hold a sample of split ``train.val_split`` (``val``; not the
split trained on), rank 0 scores the model on all of it (:func:`dfd_models.evaluate.score_model`:
eval mode, no gradients, full frames, ramp 0, in order, no loader worker; as ``dfdgen eval``)
every ``train.val_every`` steps (0: at every checkpoint) and at the last step, prints one
line, logs ``val/<region>/<metric>`` and appends to ``val.jsonl``; when ``train.best_metric``
improves on every earlier validation of the run (``best.json``, kept across ``--resume``)
the model is saved as ``ckpt/best.pt``. Validation leaves the random generators as it found
them, so it changes no training step. Without such a split one line says validation is
off, and no ``best.pt`` is kept. A resumed run drops the ``val.jsonl`` lines after its
checkpoint's step (they are scored again).

Distributed: started by ``torchrun`` (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``
in the environment) the run joins the process group (NCCL on CUDA, gloo on
CPU), wraps the model in DistributedDataParallel and reads its own share of the
shards (the loader splits them by rank). Every rank starts from the same
weights (DDP broadcasts rank 0's); only rank 0 writes the run directory. A
resumed multi-process run needs ``RUN`` on a file system every rank can read.

Models that are not trained (``trainable`` False: the reference predictors
``constant`` and ``dff``, :mod:`dfd_models.networks.reference`) get no
optimizer: :func:`train` calls ``model.fit`` once with one pass over the
training split (full frames, no flips, ``data.ramp`` as configured, no shuffle)
and writes ``config.yaml`` and a checkpoint at step 0 (no optimizer step was
taken; ``optimizer``, ``scheduler`` and ``scaler`` are None) as
``ckpt/step_0000000.pt`` and ``ckpt/last.pt``; no TensorBoard log.
``train.max_steps`` and ``train.epochs`` do not apply (the log line says so). With a
validation split the fitted model is scored once: ``val.jsonl`` holds that one line (step
0) and ``ckpt/best.pt`` is the fitted checkpoint.
Under DDP rank 0 fits on the whole split while the others wait; ``--resume``
fits again (the same pass, the same result).

Reproducibility: torch, numpy and Python are seeded with ``train.seed + rank``,
the data order with ``train.seed``; a checkpoint holds every rank's generator
states and the position in the epoch, so a run resumed on as many processes
continues exactly. Logged losses are rank 0's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import os
import random
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from generator.core.errors import BadInput, DfdgenError, OutputError
from generator.core.display import colorize
from generator.core.display import linear_to_srgb
from generator.core.files import folder_lock, write_atomic
from dfd_models.checkpoint import (dataset_info, load_checkpoint, load_strict, rng_state, save_checkpoint,
                                   set_rng_state)
from dfd_models.config import ConfigError, TrainConfig, auto_data, read_yaml, resolve_config
from dfd_models.data import FocalStackLoader, make_loader
from dfd_models.device import pick_device, to_device
from dfd_models.networks import MODELS, build_model
from dfd_models.validation import Validation, validation_off

CONFIG_FILE = "config.yaml"
VAL_LOG = "val.jsonl"
BEST_FILE = "best.json"


# --- config and run directory -------------------------------------------------------


def complete_model_config(config: TrainConfig) -> TrainConfig:
    """``config`` with ``model.config`` completed with the model's defaults (and checked).

    Raises:
        ConfigError: no model of that name is registered, a key of ``model.config`` the
            model lacks, or a value of the wrong type.
    """
    name = config.model.name
    if name not in MODELS:
        raise ConfigError("model.name", name, f"one of the registered models: {', '.join(sorted(MODELS))}")
    completed = dataclasses.asdict(MODELS[name].resolve_config(config.model.config))
    model = dataclasses.replace(config.model, config=completed)
    return dataclasses.replace(config, model=model)


def run_config(
    run_dir: str | Path, base: dict | None, overrides: Sequence[str], settings: dict[str, Any], *, resume: bool
) -> TrainConfig:
    """The config of a run (see :func:`dfd_models.config.resolve_config`): ``base`` (a YAML
    file's data), ``overrides`` and ``settings``; when resuming, the run's saved
    ``config.yaml`` in place of ``base`` (which must then be ``None``), and the same model.

    Raises:
        BadInput: ``base`` given with ``resume``; a run to resume without its config;
            another model than the resumed run's.
        ConfigError: see :func:`dfd_models.config.resolve_config`.
    """
    if not resume:
        return complete_model_config(resolve_config(base, overrides, settings))
    if base is not None:
        raise BadInput("--resume continues a run with its saved config.yaml; change it with --set, not --config")
    saved = RunDir(Path(run_dir)).config
    if not saved.is_file():
        raise OutputError(f"{run_dir} holds no run to resume (no {saved.name})")
    data = read_yaml(saved)
    config = resolve_config(data, overrides, settings, where=str(saved))
    if config.model.name != data.get("model", {}).get("name"):
        raise BadInput(f"{run_dir} trains model {data.get('model', {}).get('name')!r}, "
                       f"not {config.model.name!r}: a resumed run keeps its model")
    return complete_model_config(config)


@dataclass(frozen=True)
class RunDir:
    """The paths of a run directory (see the module docstring)."""

    path: Path

    @property
    def config(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def ckpt(self) -> Path:
        return self.path / "ckpt"

    @property
    def last(self) -> Path:
        return self.ckpt / "last.pt"

    @property
    def tb(self) -> Path:
        return self.path / "tb"

    @property
    def best(self) -> Path:
        return self.ckpt / "best.pt"

    @property
    def val_log(self) -> Path:
        return self.path / VAL_LOG

    @property
    def best_record(self) -> Path:
        return self.path / BEST_FILE

    def step_checkpoint(self, step: int) -> Path:
        return self.ckpt / f"step_{step:07d}.pt"

    def check_is_folder(self) -> None:
        """Raises OutputError if ``RUN`` exists and is not a folder."""
        if self.path.exists() and not self.path.is_dir():
            raise OutputError(f"run directory {self.path} is a file")

    def check(self, resume: bool) -> None:
        """Refuse a directory that holds a run (fresh start) or none (``resume``).

        Raises:
            OutputError: see above.
        """
        held = [p.name for p in (self.config, self.ckpt, self.tb, self.val_log) if p.exists()]
        if resume and not self.last.is_file():
            raise OutputError(f"{self.path} holds no checkpoint to resume ({self.last} is missing)")
        if not resume and held:
            raise OutputError(f"{self.path} holds another run ({', '.join(held)}); "
                              "continue it with --resume, or give a new --out")


# --- process, device, precision ---------------------------------------------------------


@dataclass(frozen=True)
class Process:
    """This process's place in a (possibly single-process) run."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_process(device: str) -> Process:
    """Join the torchrun process group when ``WORLD_SIZE`` > 1 and pick the device
    (see :func:`pick_device`; ``LOCAL_RANK`` picks the GPU)."""
    world_size, local_rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_RANK", "0"))
    chosen = pick_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
    return Process(dist.get_rank() if world_size > 1 else 0, world_size, chosen)


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``optim.amp`` on ``device`` (``None``: full precision)."""
    if mode == "auto":
        mode = "fp16" if device.type == "cuda" else "off"
    if mode == "fp16" and device.type != "cuda":
        raise ConfigError("optim.amp", mode, "bf16 or off on CPU (fp16 autocast needs CUDA)")
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[mode]


#: Loader workers ``data.workers: auto`` starts per process (at most one per shard of it).
AUTO_WORKERS = 2


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


# --- schedule and one step ------------------------------------------------------------


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


def train_step(model: nn.Module, batch: dict, opt: Optimisation) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """One optimizer step on ``batch``.

    Args:
        model: the model, or its DDP wrapper (``losses`` is taken from the bare model).

    Returns:
        (outputs, logged): the model's outputs and the detached scalars to log:
        every loss term, ``lr`` and, with clipping, ``grad_norm`` (before clipping).
    """
    bare = model.module if isinstance(model, DistributedDataParallel) else model
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


# --- logging ----------------------------------------------------------------------------


def image_grids(batch: dict, outputs: dict[str, Tensor]) -> dict[str, np.ndarray]:
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

    def images(self, step: int, batch: dict, outputs: dict[str, Tensor]) -> None:
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
        """Add one step's logged scalars (:func:`train_step`); show them when due."""
        if self.bar.disable:
            return
        loss, beta = logged["total"], self.SMOOTHING
        self.average = (1 - beta) * loss if self.average is None else beta * self.average + (1 - beta) * loss
        self.steps += 1
        if now or time.monotonic() - self.shown_at >= self.EVERY_S:
            self.shown_at = time.monotonic()
            smoothed = float(self.average) / (1 - beta ** self.steps)
            self.bar.set_postfix(loss=f"{smoothed:.4g}", lr=f"{float(logged['lr']):.2e}", refresh=now)


#: A step slower than this (seconds) makes :func:`train` say what the run will cost.
SLOW_STEP_S = 1.0


def sized_config(config: TrainConfig, info: dict, device: torch.device,
                 multiple: int) -> tuple[TrainConfig, str | None]:
    """``config`` with an ``auto`` ``data.crop`` and ``data.batch_size`` sized to the data's
    image size (``info``, :func:`dfd_models.checkpoint.dataset_info`) and ``device``, and the
    line saying what was chosen (None: nothing was ``auto``); see :func:`dfd_models.config.auto_data`."""
    data, line = auto_data(config.data, image=info.get("image"), device=device.type, model=config.model.name,
                           multiple=multiple)
    return dataclasses.replace(config, data=data), line


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 90 * 60 else f"{seconds / 3600:.1f} h"


def step_cost_note(seconds: float, step: int, total: int, data: Any, image: dict | None, multiple: int,
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


# --- the run ----------------------------------------------------------------------------


@dataclass
class Position:
    """Where a run is: optimizer steps done, the epoch being read, batches of it used."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0


@dataclass(frozen=True)
class TrainSummary:
    """What :func:`train` did."""

    run_dir: Path
    steps: int
    last_checkpoint: Path | None
    last_losses: dict[str, float]
    seconds: float
    best_checkpoint: Path | None = None


def _rng_states(proc: Process) -> list[dict]:
    """Every rank's generator states, by rank (a collective: every rank calls it)."""
    if proc.world_size == 1:
        return [rng_state()]
    states: list = [None] * proc.world_size
    dist.all_gather_object(states, rng_state())
    return states


def _restore(run: RunDir, model: nn.Module, opt: Optimisation, proc: Process, seed: int) -> tuple[Position, dict]:
    """Load ``RUN/ckpt/last.pt`` into the model, optimizer, schedule, scaler and generators.

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


def _save(run: RunDir, config: TrainConfig, data: dict, model: nn.Module, opt: Optimisation | None,
          pos: Position, rng: list[dict], paths: Sequence[Path] | None = None) -> Path:
    """Write ``ckpt/step_XXXXXXX.pt`` and ``ckpt/last.pt`` (rank 0), or ``paths`` (the first is
    returned), with every rank's ``rng`` states (``opt`` None, for a fitted model: no optimizer,
    schedule or scaler state)."""
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


def _batches(loader: FocalStackLoader, pos: Position, where: str) -> Iterator[dict]:
    """The loader's batches from ``pos`` on, epoch after epoch; ``pos.epoch`` and
    ``pos.batch_in_epoch`` count each batch as used when it is yielded.

    Raises:
        BadInput: an epoch without a single batch (no data for this process).
    """
    while True:
        loader.set_epoch(pos.epoch)
        fresh = pos.batch_in_epoch == 0
        for batch in itertools.islice(loader, pos.batch_in_epoch, None):
            fresh = False
            pos.batch_in_epoch += 1
            yield batch
        if fresh:
            raise BadInput(f"epoch {pos.epoch} yielded no batch from {where}: no data for this process")
        pos.epoch, pos.batch_in_epoch = pos.epoch + 1, 0


def _fit_reference(config: TrainConfig, run: RunDir, proc: Process, started: float) -> TrainSummary:
    """:func:`train` for a model that is not trained (``trainable`` False; module docstring).

    Rank 0 fits the model on one pass over the whole training split and writes the
    run directory (only once the fit is done: an interrupted fit leaves nothing);
    the other ranks wait for it.

    Raises:
        BadInput: the training data cannot fit the model (e.g. no valid pixel).
    """
    seed_everything(config.train.seed)
    model = build_model(config.model.name, config.model.config).to(proc.device)
    config, _ = sized_config(config, dataset_info(config.data.shards), proc.device, model.size_multiple)
    data_cfg = config.data
    saved = best = None
    if proc.is_main:
        # every training stack once, in order, whole (a fit sees the data as it is)
        data = dataclasses.replace(data_cfg, crop=None, flip=False, shuffle=0, epoch_len=None)
        loader = make_loader(data, seed=config.train.seed, rank=0, world_size=1, auto_workers=auto_workers(proc))
        config = dataclasses.replace(config, data=dataclasses.replace(data_cfg, workers=loader.workers))
        stacks = 0

        def counted() -> Iterator[dict]:
            nonlocal stacks
            for batch in loader:
                stacks += len(batch["key"])
                yield batch

        where = f"{data_cfg.shards} (split {data_cfg.split!r})"
        try:
            fitted = model.fit(counted())
        except ValueError as exc:
            raise BadInput(f"model {config.model.name} cannot be fitted on {where}: {exc}") from exc
        info = dataset_info(data_cfg.shards)
        validation = _validation(config, run, info, proc, resume=False, step=0)
        improved, line, logged = (validation.score(model, 0, log=False) if validation is not None
                                  else (False, None, None))
        run.path.mkdir(parents=True, exist_ok=True)
        write_atomic(run.config, config.to_yaml().encode("utf-8"))
        paths = [run.step_checkpoint(0), run.last] + ([run.best] if improved else [])
        saved = _save(run, config, info, model, None, Position(), [rng_state()], paths)
        if logged:  # a fit (again, when resumed) is scored once: the log holds that line alone
            write_atomic(run.val_log, logged.encode("utf-8"))
        if improved:
            validation.record_best()
            best = run.best
        values = ", ".join(f"{name} {value:.6g}" for name, value in fitted.items())
        read = f"fitted on one pass over {stacks} stacks of {where}" if stacks else "nothing to fit, no data read"
        print(f"{config.model.name} has no trainable parameters: {read}" + (f" ({values})" if values else "")
              + f" in {time.perf_counter() - started:.1f} s; train.max_steps and train.epochs do not apply",
              file=sys.stderr, flush=True)
        if line:
            print(line, file=sys.stderr, flush=True)
    if proc.world_size > 1:
        dist.barrier()
    return TrainSummary(run.path, 0, saved, {}, time.perf_counter() - started, best)


def train(config: TrainConfig, run_dir: str | Path, *, resume: bool = False, progress: bool = True) -> TrainSummary:
    """Train ``config.model`` on ``config.data`` and write the run directory ``run_dir``.

    Args:
        resume: continue from ``run_dir/ckpt/last.pt`` (the config may extend
            ``train.max_steps``/``train.epochs``); else ``run_dir`` must hold no run.
        progress: show a progress bar (rank 0).

    Raises:
        OutputError: ``run_dir`` holds another run (or, resuming, no checkpoint).
        ConfigError, BadInput: a config the data or machine cannot serve.
        CorruptShard: unreadable training data.
    """
    started = time.perf_counter()
    run = RunDir(Path(run_dir))
    proc = setup_process(config.train.device)
    try:
        with contextlib.ExitStack() as stack:
            if proc.is_main:  # the run directory is rank 0's: it alone checks, locks and writes it
                run.check_is_folder()
                stack.enter_context(folder_lock(run.path))
                run.check(resume)
            return _train(config, run, proc, resume, progress, started)
    finally:
        if proc.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _validation(config: TrainConfig, run: RunDir, info: dict, proc: Process, *, resume: bool,
                step: int) -> Validation | None:
    """The run's :class:`Validation` (None: off); rank 0 says which, and when resuming takes the
    best so far from the run (:meth:`Validation.resume` at checkpoint step ``step``)."""
    off = validation_off(config)
    if off is not None:
        if proc.is_main:
            print(f"validation off: {off}; no ckpt/best.pt is kept", file=sys.stderr, flush=True)
        return None
    validation = Validation(config, run, info, proc.device)
    if proc.is_main and MODELS[config.model.name].trainable:
        print(validation.describe(), file=sys.stderr, flush=True)
        note = validation.resume(step) if resume else None
        if note:
            print(note, file=sys.stderr, flush=True)
    return validation


def _train(config: TrainConfig, run: RunDir, proc: Process, resume: bool, progress: bool,
           started: float) -> TrainSummary:
    """:func:`train`'s work, with the run directory checked and locked."""
    if not MODELS[config.model.name].trainable:
        return _fit_reference(config, run, proc, started)
    seed_everything(config.train.seed + proc.rank)
    model = build_model(config.model.name, config.model.config).to(proc.device)
    info = dataset_info(config.data.shards)
    image = info.get("image")  # known for a dataset directory
    config, chosen = sized_config(config, info, proc.device, model.size_multiple)
    data_cfg, total = config.data, total_steps(config)
    crop, multiple = data_cfg.crop, model.size_multiple
    if crop is not None and (crop[0] % multiple or crop[1] % multiple):
        raise ConfigError("data.crop", crop, f"multiples of {multiple} (what model {config.model.name} needs)")
    if crop is not None and image and (crop[0] > image["height"] or crop[1] > image["width"]):
        raise ConfigError("data.crop", crop, f"[height, width] at most the image size, {image['height']} x "
                          f"{image['width']} px in {data_cfg.shards} (or null for full frames)")
    if chosen and proc.is_main:
        print(chosen, file=sys.stderr, flush=True)
    opt = make_optimisation(model, config, proc.device)
    pos, data = _restore(run, model, opt, proc, config.train.seed) if resume else (Position(), info)
    validation = _validation(config, run, info, proc, resume=resume, step=pos.step)
    stepper = model if proc.world_size == 1 else DistributedDataParallel(
        model, device_ids=[proc.device.index] if proc.device.type == "cuda" else None)
    loader = make_loader(data_cfg, seed=config.train.seed, pin_memory=proc.device.type == "cuda",
                         auto_workers=auto_workers(proc))
    config = dataclasses.replace(config, data=dataclasses.replace(data_cfg, workers=loader.workers))
    logger = None
    if proc.is_main:
        run.path.mkdir(parents=True, exist_ok=True)
        write_atomic(run.config, config.to_yaml().encode("utf-8"))
        logger = Logger(run.tb, config.train.log_every)
    saved, last_losses = (run.last if resume else None), {}
    bar = tqdm(total=total, initial=pos.step, unit="step", disable=not (progress and proc.is_main),
               dynamic_ncols=True)
    shown = ProgressLoss(bar)
    first, probe = pos.step, pos.step + (1 if proc.device.type == "cpu" else 2)  # CUDA's first step warms up
    batches = _batches(loader, pos, f"{data_cfg.shards} (split {data_cfg.split!r})")
    model.train()
    while pos.step < total:
        batch = to_device(next(batches), proc.device)
        step_started = time.perf_counter()
        outputs, logged = train_step(stepper, batch, opt)
        pos.step += 1
        bar.update()
        if proc.is_main:
            shown.add(logged, now=pos.step in (first + 1, total))
            if pos.step == probe < total:
                if proc.device.type == "cuda":
                    torch.cuda.synchronize(proc.device)
                cost = step_cost_note(time.perf_counter() - step_started, pos.step, total, data_cfg, image,
                                      multiple, proc.device)
                if cost:
                    bar.write(cost, file=sys.stderr)
        if logger is not None:
            means = logger.add(pos.step, logged)
            if means is not None:
                last_losses = means
            if config.train.image_every and pos.step % config.train.image_every == 0:
                logger.images(pos.step, batch, outputs)
        ckpt_due = pos.step % config.train.ckpt_every == 0 or pos.step == total
        val_due = validation is not None and validation.due(pos.step, total)
        if ckpt_due or val_due:
            rng = _rng_states(proc)
            if proc.is_main:
                if ckpt_due:  # before validating: a validation that fails loses no checkpoint
                    saved = _save(run, config, data, model, opt, pos, rng)
                if val_due:
                    improved, line, _ = validation.score(model, pos.step, writer=logger.writer)
                    bar.write(line, file=sys.stderr)
                    if improved:
                        if ckpt_due:  # the same bytes
                            write_atomic(run.best, run.last.read_bytes())
                        else:
                            _save(run, config, data, model, opt, pos, rng, [run.best])
                        validation.record_best()
    batches.close()
    bar.close()
    if logger is not None:
        logger.close()
    if proc.world_size > 1:
        dist.barrier()
    best = run.best if validation is not None and validation.best.step is not None else None
    return TrainSummary(run.path, pos.step, saved, last_losses, time.perf_counter() - started, best)
