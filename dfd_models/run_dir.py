"""A run directory and the config a run starts, resumes and records with (``dfdgen train``).

A run directory ``RUN`` holds::

    RUN/config.yaml              the full resolved config (dfd_models.config)
    RUN/ckpt/step_XXXXXXX.pt     checkpoints every train.ckpt_every steps and at the end
    RUN/ckpt/last.pt             the latest of them (what --resume continues from)
    RUN/ckpt/best.pt             the best on validation so far (train.best_metric; same format)
    RUN/best.json                its {"metric", "higher_is_better", "step", "value", "checkpoint"}
    RUN/val.jsonl                one line per validation: {"step", "split", "samples", "regions": {"all", "objects"}}
    RUN/tb/                      TensorBoard: every loss term, lr, grad norm, val/<region>/<metric>; image grids

Only rank 0 writes it. ``config.yaml`` and the checkpoints record the sizes a run used
(:mod:`dfd_models.sizing`), never ``auto``, so a resumed run reads the same batches.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generator.core.errors import BadInput, OutputError
from dfd_models.config import ConfigError, TrainConfig, read_yaml, resolve_config
from dfd_models.networks import MODELS
from dfd_models.networks.base import saved_model_config

__all__ = ["BEST_FILE", "CONFIG_FILE", "VAL_LOG", "RunDir", "complete_model_config", "run_config"]

CONFIG_FILE = "config.yaml"
VAL_LOG = "val.jsonl"
BEST_FILE = "best.json"


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
    ``config.yaml`` in place of ``base`` (which must then be ``None``), and the same model
    (keys added to it since take :attr:`~dfd_models.networks.DepthModel.saved_before`'s value).

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
    model = data.get("model")
    if isinstance(model, dict) and isinstance(model.get("config") or {}, dict):  # else resolve_config refuses it
        model["config"] = saved_model_config(str(model.get("name")), model.get("config") or {})
    config = resolve_config(data, overrides, settings, where=str(saved))
    if config.model.name != data.get("model", {}).get("name"):
        raise BadInput(f"{run_dir} trains model {data.get('model', {}).get('name')!r}, "
                       f"not {config.model.name!r}: a resumed run keeps its model")
    return complete_model_config(config)
