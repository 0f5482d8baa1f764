"""Training configuration: defaults, an optional YAML file and ``key.path=value`` overrides.

A config is a :class:`TrainConfig` of four sections; written as YAML::

    model: {name: sdgs, config: {...}}       # the model's own keys (its DepthModel.Config)
    data:  {shards: data/small_obj, split: train, crop: auto, batch_size: auto, workers: auto, ...}
    optim: {lr: 0.0002, weight_decay: 0.01, warmup_steps: 100, grad_clip: 1.0, amp: auto, ...}
    train: {max_steps: 10000, epochs: null, log_every: 20, ckpt_every: 1000, seed: 0,
            val_split: val, val_every: 0, best_metric: objects.abs_rel, ...}

:func:`resolve_config` builds one from, in order of precedence (last wins): the
defaults below, the YAML file, ``--set`` overrides, a command's own options
(``--model``, ``--max-steps``, ...). ``model.config`` holds the keys of the model
``model.name`` names: its ``DepthModel.Config``, a frozen dataclass of the same mechanism,
which ``DepthModel.resolve_config`` checks and completes (``dfdgen train`` does so before
anything is written). Validation is :mod:`generator.core.schema`'s (the recipes' mechanism:
frozen sections, the same errors).
Files are read with ``generator.core.safe_yaml.load_yaml``, an override's value is parsed as YAML (``optim.lr=3e-4``, ``data.crop=[64, 64]``,
``data.epoch_len=null``). Every error is a :class:`ConfigError` (exit status 2)
naming the key path, the value and what is allowed.

``data.crop``, ``data.batch_size`` and ``data.workers`` default to ``auto``: sized to the
data's image size and the device (``crop`` and ``batch_size``, :mod:`dfd_models.sizing`)
and to the shards (``workers``, :func:`dfd_models.data.make_loader`). A run records the
values it used, never ``auto``.

The resolved config is plain data (:meth:`TrainConfig.to_dict`), saved as
``RUN/config.yaml`` and inside every checkpoint; :meth:`TrainConfig.from_dict`
reads it back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from generator.core.errors import BadInput, FieldError, brief
from generator.core.safe_yaml import MAX_CHARS, load_yaml
from generator.core.schema import build, set_value, setting
from generator.core.schema import apply_overrides as schema_overrides

#: ``optim.amp`` choices: ``auto`` = fp16 on CUDA, off on CPU.
AMP_MODES = ("auto", "off", "bf16", "fp16")

#: The value of ``data.crop``, ``data.batch_size`` and ``data.workers`` that asks dfdgen to size them.
AUTO = "auto"

#: Metrics of :class:`dfd_models.metrics.RegionMetrics` that ``train.best_metric`` may name
#: (not ``n_pixels``, nor ``mse_norm`` / ``rms_norm``, absent without a maximum depth and
#: ranked as ``mse``), and those of them where higher is better (lower for the rest).
BEST_METRICS = ("abs_rel", "sq_rel", "rmse", "mse", "mae", "rmse_log", "inv_mae", "inv_rmse",
                "delta1", "delta2", "delta3", "accuracy", "pearson")
HIGHER_IS_BETTER = frozenset({"delta1", "delta2", "delta3", "accuracy", "pearson"})


class ConfigError(FieldError):
    """A training config key is unknown or its value is not allowed (exit status 2)."""

    what = "config key"


@dataclass(frozen=True, kw_only=True)
class ModelSection:
    """Which network (``dfd_models.networks.MODELS``) and its own keys: plain data of its
    ``DepthModel.Config`` (``dataclasses.asdict``), checked by the model (the keys depend on ``name``)."""

    name: str | None = setting(None)
    config: dict = setting({})


@dataclass(frozen=True, kw_only=True)
class DataSection:
    """The training data (:func:`dfd_models.data.make_loader`).

    Attributes:
        shards: dataset directory, brace pattern or URL of the shards (a list of them in code).
        split: split trained on (null: every shard).
        crop: [height, width] of random crops, pixels; null = full frames; ``auto`` =
            sized to the images and the device (:func:`auto_data`).
        batch_size: stacks per batch, per process; ``auto``: see :func:`auto_data`.
        workers: DataLoader worker processes per process, at most the shards per process
            (more are cut to that, with a warning); ``auto``: 2, at most one per shard, and
            training on the CPU at most the cores torch's threads leave free (silently).
        ramp: ramp of a sequence used as the stack: an index or ``random``.
        flip: random left-right flips.
        shuffle: shuffle buffer, samples (0 = read in order).
        epoch_len: samples per epoch per process (null = one pass over the shards);
            required with ``train.epochs`` under DDP, so every rank steps equally.
        skip_corrupt: skip corrupt samples with a warning instead of stopping.
    """

    shards: str | list[str] | None = setting(None)
    split: str | None = setting("train")
    crop: list[int] | Literal["auto"] | None = setting(AUTO, ge=1)
    batch_size: int | Literal["auto"] = setting(AUTO, ge=1)
    workers: int | Literal["auto"] = setting(AUTO, ge=0)
    ramp: int | str = setting("random", ge=0, choices=("random",))
    flip: bool = setting(True)
    shuffle: int = setting(128, ge=0)
    epoch_len: int | None = setting(None, ge=1)
    skip_corrupt: bool = setting(False)

    @classmethod
    def for_eval(cls, shards: Any, *, split: str | None = "test", batch_size: int = 1, workers: int = 0,
                 skip_corrupt: bool = False) -> "DataSection":
        """An evaluation's data: every stack once, in order, whole frames, unflipped, ramp 0."""
        return cls(shards=shards, split=split, crop=None, batch_size=batch_size, workers=workers, ramp=0,
                   flip=False, shuffle=0, skip_corrupt=skip_corrupt)


@dataclass(frozen=True, kw_only=True)
class OptimSection:
    """AdamW with linear warmup then cosine decay, gradient clipping, mixed precision.

    Attributes:
        lr: peak learning rate, reached after ``warmup_steps``.
        min_lr: learning rate at the last step (end of the cosine).
        weight_decay: AdamW's decoupled weight decay.
        betas: AdamW's [beta1, beta2].
        warmup_steps: steps of the linear warmup from 0.
        grad_clip: largest global gradient L2 norm; null = no clipping.
        amp: autocast dtype: ``auto`` (fp16 on CUDA, off on CPU), ``off``,
            ``bf16`` (CPU or CUDA) or ``fp16`` (CUDA only; with a gradient scaler).
    """

    lr: float = setting(2e-4, ge=0)
    min_lr: float = setting(0.0, ge=0)
    weight_decay: float = setting(0.01, ge=0)
    betas: list[float] = setting([0.9, 0.999], ge=0)
    warmup_steps: int = setting(100, ge=0)
    grad_clip: float | None = setting(1.0, ge=0)
    amp: str = setting("auto", choices=AMP_MODES)


@dataclass(frozen=True, kw_only=True)
class TrainSection:
    """How long to train, what to log and save.

    Attributes:
        max_steps: optimizer steps to train (the cosine's length); null = from ``epochs``.
        epochs: epochs to train; with ``max_steps`` too, whichever ends first.
        log_every: steps between TensorBoard scalar points (means over the interval).
        image_every: steps between TensorBoard image grids (0 = none).
        ckpt_every: steps between kept checkpoints ``ckpt/step_XXXXXXX.pt``
            (``ckpt/last.pt`` is written then and at the end).
        seed: seed of torch, numpy, Python and the data order.
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``.
        val_split: split of the training shards scored during training (null: none);
            validation is off, with one line saying why, when the shards hold no sample
            of it or it is the split trained on (``data.split``, or every split).
        val_every: steps between validations; 0 = at every checkpoint (every
            ``ckpt_every`` steps); either way also at the last step.
        best_metric: ``REGION.METRIC`` that picks ``ckpt/best.pt``: region ``objects``
            or ``all``, a metric of :data:`BEST_METRICS` (lower is better but for
            :data:`HIGHER_IS_BETTER`).
    """

    max_steps: int | None = setting(None, ge=1)
    epochs: int | None = setting(None, ge=1)
    log_every: int = setting(20, ge=1)
    image_every: int = setting(500, ge=0)
    ckpt_every: int = setting(1000, ge=1)
    seed: int = setting(0, ge=0)
    device: str = setting("auto")
    val_split: str | None = setting("val")
    val_every: int = setting(0, ge=0)
    best_metric: str = setting("objects.abs_rel", choices=tuple(
        f"{region}.{metric}" for region in ("objects", "all") for metric in BEST_METRICS))


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """A full training config (see the module docstring)."""

    model: ModelSection = setting(ModelSection)
    data: DataSection = setting(DataSection)
    optim: OptimSection = setting(OptimSection)
    train: TrainSection = setting(TrainSection)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (dicts, lists, str, numbers, bools, None): YAML- and ``weights_only``-safe."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "config") -> TrainConfig:
        """Validate plain data (a partial config is completed with the defaults).

        Raises:
            ConfigError: an unknown key or a value of the wrong type or range.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(where, data, "a mapping of sections")
        return build(cls, data, ConfigError)

    def to_yaml(self) -> str:
        """The config as a YAML document."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of plain config ``data`` with ``key.path=value`` overrides (values parsed as YAML).

    Raises:
        ConfigError: a malformed override, or a key path that is not a config key.
    """
    return schema_overrides(TrainConfig, data, overrides, ConfigError, "optim.lr=3e-4")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path`` (safe loader).

    Raises:
        BadInput: a missing or unreadable file, or YAML that is not a mapping.
    """
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read(MAX_CHARS + 1)
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"config {path} is not a readable text file: {brief(exc)}") from None
    data = load_yaml(text, f"config {path}")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadInput(f"config {path} must be a YAML mapping of sections, got {type(data).__name__}")
    return data


def resolve_config(
    base: Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
    settings: Mapping[str, Any] | None = None,
    *,
    where: str = "config",
) -> TrainConfig:
    """The full training config: ``base`` with ``overrides``, then ``settings``, validated.

    Args:
        base: plain config data (e.g. a YAML file's); missing keys take the defaults.
        overrides: ``key.path=value`` strings (``--set``), applied in order.
        settings: ``{"key.path": value}`` of typed values (a command's own options),
            applied last; ``None`` values are skipped.
        where: what ``base`` is, for messages (e.g. the YAML file's path).

    Raises:
        ConfigError: an unknown key, a bad value, a missing model name or shards.
    """
    data = apply_overrides(base or {}, overrides)
    for key, value in (settings or {}).items():
        if value is not None:
            set_value(TrainConfig, data, key, value, ConfigError)
    config = TrainConfig.from_dict(data, where)
    for key in ("model.name", "data.shards"):
        section, name = key.split(".")
        if getattr(getattr(config, section), name) is None:
            raise ConfigError(key, None, f"required: set it in {where} or with the command's option")
    if config.optim.min_lr > config.optim.lr:
        raise ConfigError("optim.min_lr", config.optim.min_lr, f"at most optim.lr = {config.optim.lr}")
    if isinstance(config.data.crop, list) and len(config.data.crop) != 2:
        raise ConfigError("data.crop", config.data.crop, "[height, width] in pixels, or null")
    if len(config.optim.betas) != 2 or max(config.optim.betas) >= 1:
        raise ConfigError("optim.betas", config.optim.betas, "[beta1, beta2], each in [0, 1)")
    if config.train.max_steps is None and config.train.epochs is None:
        raise ConfigError("train.max_steps", None, "a number of steps (--max-steps), or set train.epochs (--epochs)")
    return config
