"""Fitting a model that is not trained (``dfdgen train`` of a reference predictor).

Models that are not trained (``trainable`` False: the reference predictors ``constant``
and ``dff``, :mod:`dfd_models.networks.reference`) get no optimizer: :func:`fit_reference`
calls ``model.fit`` once with one pass over the training split (full frames, no flips,
``data.ramp`` as configured, no shuffle) and writes ``config.yaml`` and a checkpoint at
step 0 (no optimizer step was taken; ``optimizer``, ``scheduler`` and ``scaler`` are None)
as ``ckpt/step_0000000.pt`` and ``ckpt/last.pt``; no TensorBoard log. ``train.max_steps``
and ``train.epochs`` do not apply (the log line says so). With a validation split the
fitted model is scored once: ``val.jsonl`` holds that one line (step 0) and
``ckpt/best.pt`` is the fitted checkpoint. Under DDP rank 0 fits on the whole split while
the others wait; ``--resume`` fits again (the same pass, the same result).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from generator.core.errors import BadInput
from generator.core.files import write_atomic
from dfd_models.checkpoint import dataset_info, rng_state
from dfd_models.config import TrainConfig
from dfd_models.data import Batch, make_loader
from dfd_models.networks import build_model
from dfd_models.run_dir import RunDir
from dfd_models.run_state import Position, save_run
from dfd_models.runtime import Process, auto_workers, seed_everything
from dfd_models.sizing import sized_config
from dfd_models.validation import start_validation

__all__ = ["fit_reference"]


def fit_reference(config: TrainConfig, run: RunDir, proc: Process, started: float) -> tuple[Path | None, Path | None]:
    """Fit ``config.model`` (``trainable`` False; module docstring) and write the run directory.

    Rank 0 fits the model on one pass over the whole training split and writes the
    run directory (only once the fit is done: an interrupted fit leaves nothing);
    the other ranks wait for it.

    Args:
        started: when the run started (``time.perf_counter()``), for the log line.

    Returns:
        (the step-0 checkpoint, ``ckpt/best.pt`` when validation kept it), each None on
        the ranks that do not write.

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

        def counted() -> Iterator[Batch]:
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
        validation = start_validation(config, run, info, proc, resume=False, step=0)
        improved, line, logged = (validation.score(model, 0, log=False) if validation is not None
                                  else (False, None, None))
        run.path.mkdir(parents=True, exist_ok=True)
        write_atomic(run.config, config.to_yaml().encode("utf-8"))
        paths = [run.step_checkpoint(0), run.last] + ([run.best] if improved else [])
        saved = save_run(run, config, info, model, None, Position(), [rng_state()], paths)
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
    proc.barrier()
    return saved, best
