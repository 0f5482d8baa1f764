"""Training: the loop of ``dfdgen train``, from a config to a run directory.

:func:`train` checks and locks the run directory (:mod:`dfd_models.run_dir`, which also
lays it out), joins the process group (:mod:`dfd_models.runtime`), builds the model and,
for a model that is not trained, fits it instead (:mod:`dfd_models.fit`). Otherwise it
loops: a batch from the loader (:mod:`dfd_models.data`), one optimizer step
(:mod:`dfd_models.optimisation`), the logs (:mod:`dfd_models.train_log`), a checkpoint every
``train.ckpt_every`` steps and at the end (:mod:`dfd_models.run_state`), and validation.

Sizes: an ``auto`` ``data.crop`` and ``data.batch_size`` (the defaults) are sized to the
data's image size and the device (:mod:`dfd_models.sizing`), and one line on stderr says
what was chosen;
``data.workers: auto`` starts at most one worker per shard of the process.

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

Reproducibility: torch, numpy and Python are seeded with ``train.seed + rank``,
the data order with ``train.seed``; a checkpoint holds every rank's generator
states and the position in the epoch, so a run resumed on as many processes
continues exactly. Logged losses are rank 0's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from generator.core.errors import BadInput
from generator.core.files import folder_lock, write_atomic
from dfd_models.checkpoint import dataset_info
from dfd_models.config import ConfigError, TrainConfig
from dfd_models.data import Batch, FocalStackLoader, make_loader
from dfd_models.fit import fit_reference
from dfd_models.networks import MODELS, build_model
from dfd_models.optimisation import make_optimisation, total_steps, train_step
from dfd_models.run_dir import RunDir
from dfd_models.run_state import Position, restore_run, save_run
from dfd_models.runtime import Process, auto_workers, seed_everything, setup_process, to_device
from dfd_models.sizing import sized_config
from dfd_models.train_log import Logger, ProgressLoss, step_cost_note
from dfd_models.validation import start_validation

__all__ = ["TrainSummary", "train"]


@dataclass(frozen=True)
class TrainSummary:
    """What :func:`train` did."""

    run_dir: Path
    steps: int
    last_checkpoint: Path | None
    last_losses: dict[str, float]
    seconds: float
    best_checkpoint: Path | None = None


def _batches(loader: FocalStackLoader, pos: Position, where: str) -> Iterator[Batch]:
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
        proc.close()


def _train(config: TrainConfig, run: RunDir, proc: Process, resume: bool, progress: bool,
           started: float) -> TrainSummary:
    """:func:`train`'s work, with the run directory checked and locked."""
    if not MODELS[config.model.name].trainable:
        saved, best = fit_reference(config, run, proc, started)
        return TrainSummary(run.path, 0, saved, {}, time.perf_counter() - started, best)
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
    pos, data = restore_run(run, model, opt, proc, config.train.seed) if resume else (Position(), info)
    validation = start_validation(config, run, info, proc, resume=resume, step=pos.step)
    stepper = proc.stepper(model)
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
            rng = proc.rng_states()
            if proc.is_main:
                if ckpt_due:  # before validating: a validation that fails loses no checkpoint
                    saved = save_run(run, config, data, model, opt, pos, rng)
                if val_due:
                    improved, line, _ = validation.score(model, pos.step, writer=logger.writer)
                    bar.write(line, file=sys.stderr)
                    if improved:
                        if ckpt_due:  # the same bytes
                            write_atomic(run.best, run.last.read_bytes())
                        else:
                            save_run(run, config, data, model, opt, pos, rng, [run.best])
                        validation.record_best()
    batches.close()
    bar.close()
    if logger is not None:
        logger.close()
    proc.barrier()
    best = run.best if validation is not None and validation.best.step is not None else None
    return TrainSummary(run.path, pos.step, saved, last_losses, time.perf_counter() - started, best)
