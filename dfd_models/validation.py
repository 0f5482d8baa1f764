"""Scoring the validation split while a run trains (``dfdgen train``; :mod:`dfd_models.train`'s docstring).

Rank 0 scores the whole split with :func:`dfd_models.evaluate.score_model` (``dfdgen eval``'s
scoring, both regions), logs it (one line, TensorBoard ``val/<region>/<metric>``, ``RUN/val.jsonl``)
and keeps ``RUN/ckpt/best.pt`` and ``RUN/best.json`` for the best ``train.best_metric`` so far.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from generator.core.errors import BadInput, brief
from generator.core.files import write_atomic
from generator.dataset.format import split_samples
from dfd_models.checkpoint import rng_state, set_rng_state
from dfd_models.config import HIGHER_IS_BETTER, TrainConfig
from dfd_models.data import resolve_shards
from dfd_models.evaluate import score_model
from dfd_models.networks import MODELS
from dfd_models.run_dir import RunDir
from dfd_models.runtime import Process

__all__ = ["Best", "Validation", "start_validation", "val_batch_size", "validation_off"]


def validation_off(config: TrainConfig) -> str | None:
    """Why split ``train.val_split`` cannot be scored during training (one clause), or None when it can:
    it is null, it is the split trained on, or the shards hold no sample of it (a dataset
    directory's manifest counts its samples; other shards are matched by file name)."""
    split, data = config.train.val_split, config.data
    if split is None:
        return "train.val_split is null"
    if data.split is None:
        return f"data.split is null, so split {split!r} is trained on (train.val_split)"
    if data.split == split:
        return f"split {split!r} is the one trained on (data.split, train.val_split)"
    shards = data.shards
    count = split_samples(shards, split) if isinstance(shards, (str, Path)) else None
    if count == 0:
        return f"the shards have no {split!r} split: {shards} lists no sample of it (train.val_split)"
    if count is None:
        try:
            resolve_shards(shards, split)
        except BadInput:
            return f"the shards have no {split!r} split: no shard of it in {shards} (train.val_split)"
    return None


def val_batch_size(data: Any, image: dict | None) -> int:
    """Full-frame stacks per validation batch: the training batch's pixels (``data.batch_size``
    crops of ``data.crop``) in whole frames of ``image``, at least 1."""
    if data.crop is None:
        return data.batch_size
    if not image:
        return 1
    return max(1, data.batch_size * data.crop[0] * data.crop[1] // (image["height"] * image["width"]))


#: Metrics the validation line shows for each region (and ``train.best_metric``'s).
VAL_LINE = {"abs_rel": "AbsRel", "delta1": "delta1"}


@dataclass
class Best:
    """The best value of ``metric`` (``REGION.METRIC``) so far in a run, and its step (``RUN/best.json``)."""

    metric: str
    step: int | None = None
    value: float | None = None

    @property
    def higher_is_better(self) -> bool:
        return self.metric.split(".", 1)[1] in HIGHER_IS_BETTER

    def of(self, regions: dict[str, dict | None]) -> float | None:
        """``metric``'s value in ``regions`` (None: its region has no pixel)."""
        region, name = self.metric.split(".", 1)
        scores = regions.get(region)
        return None if scores is None else scores.get(name)

    def improves(self, value: float | None) -> bool:
        """Whether ``value`` is finite and strictly better than the best so far (any is, first)."""
        if value is None or not math.isfinite(value):
            return False
        if self.value is None:
            return True
        return value > self.value if self.higher_is_better else value < self.value

    def to_json(self) -> bytes:
        return json.dumps({"metric": self.metric, "higher_is_better": self.higher_is_better, "step": self.step,
                           "value": self.value, "checkpoint": "ckpt/best.pt"}, indent=2).encode("utf-8")


def _logged_step(line: str) -> int | None:
    """The step of a ``val.jsonl`` line; None for one that is not a whole record."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None


class Validation:
    """Rank 0's scoring of the validation split during a run (module docstring)."""

    def __init__(self, config: TrainConfig, run: RunDir, info: dict, device: torch.device):
        self.config, self.run, self.device = config, run, device
        self.split = config.train.val_split
        self.batch_size = val_batch_size(config.data, info.get("image"))
        self.max_depth_m = info.get("max_depth_m")
        self.best = Best(config.train.best_metric)

    def due(self, step: int, total: int) -> bool:
        """Whether step ``step`` (1-based) of ``total`` is validated."""
        every = self.config.train.val_every or self.config.train.ckpt_every
        return step % every == 0 or step == total

    def describe(self) -> str:
        train = self.config.train
        when = (f"every {train.val_every} steps" if train.val_every
                else f"at every checkpoint ({train.ckpt_every} steps)")
        order = "higher" if self.best.higher_is_better else "lower"
        return (f"validation: split {self.split!r}, {when} and the last step; ckpt/best.pt by "
                f"{self.best.metric} ({order} is better)")

    def resume(self, step: int) -> str | None:
        """Take the best so far from ``best.json`` and drop ``val.jsonl``'s lines after ``step``
        (a resumed run scores them again); the note to show when ``best.json`` ranks by another
        metric (the next validation then replaces ``best.pt``), else None."""
        log = self.run.val_log
        if log.is_file():
            lines = log.read_text(encoding="utf-8").splitlines(keepends=True)
            kept = [line for line in lines if _logged_step(line) is not None and _logged_step(line) <= step]
            if len(kept) != len(lines):  # also drops a line cut by an interruption
                write_atomic(log, "".join(kept).encode("utf-8"))
        if not self.run.best_record.is_file():
            return None
        try:
            saved = json.loads(self.run.best_record.read_text(encoding="utf-8"))
            metric, best_step, value = saved["metric"], int(saved["step"]), float(saved["value"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            return f"{self.run.best_record} is unreadable ({brief(exc)}): the next validation replaces ckpt/best.pt"
        if metric != self.best.metric:
            return (f"train.best_metric is {self.best.metric}, ckpt/best.pt was chosen by {metric}: "
                    "the next validation replaces it")
        self.best.step, self.best.value = best_step, value
        return None

    def score(self, model: nn.Module, step: int, *, writer: Any = None, log: bool = True) -> tuple[bool, str, str]:
        """Score ``model`` on the split at ``step``: log it (TensorBoard ``writer``; ``val.jsonl`` unless
        not ``log``) and note a new best (the caller then saves ``best.pt`` and :meth:`record_best`).

        Returns:
            (whether ``train.best_metric`` improved, the line to show, the ``val.jsonl`` line).
        """
        state, training = rng_state(), model.training
        model.eval()
        try:
            regions, _, samples = score_model(model, self.config.data.shards, split=self.split, device=self.device,
                                              batch_size=self.batch_size, workers=0, max_depth_m=self.max_depth_m,
                                              progress=False, skip_corrupt=self.config.data.skip_corrupt)
        finally:
            model.train(training)
            set_rng_state(state)
        value = self.best.of(regions)
        improved = self.best.improves(value)
        if improved:
            self.best.step, self.best.value = step, value
        line = json.dumps({"step": step, "split": self.split, "samples": samples, "regions": regions}) + "\n"
        if log:
            with open(self.run.val_log, "a", encoding="utf-8") as stream:
                stream.write(line)
        if writer is not None:
            for region, scores in regions.items():
                for name, number in (scores or {}).items():
                    if name != "n_pixels":
                        writer.add_scalar(f"val/{region}/{name}", number, step)
        return improved, self._line(step, regions, improved), line

    def record_best(self) -> None:
        """Write ``best.json`` (after ``best.pt``)."""
        write_atomic(self.run.best_record, self.best.to_json())

    def _line(self, step: int, regions: dict, improved: bool) -> str:
        shown = dict(VAL_LINE)
        shown.setdefault(self.best.metric.split(".", 1)[1], self.best.metric.split(".", 1)[1])
        parts = []
        for region in ("objects", "all"):
            scores = regions.get(region)
            if scores is None:
                parts.append(f"{region} (no pixel)")
            else:
                parts.append(" ".join([region] + [f"{label} {scores[name]:.4g}" for name, label in shown.items()]))
        note = "  (best)" if improved else (f"  (best {self.best.value:.4g} at step {self.best.step})"
                                            if self.best.value is not None else "")
        return f"val step {step}: {' | '.join(parts)}{note}"


def start_validation(config: TrainConfig, run: RunDir, info: dict, proc: Process, *, resume: bool,
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
