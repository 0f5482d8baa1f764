"""Training configuration: defaults, an optional YAML file and ``key.path=value`` overrides.

A config is a :class:`TrainConfig` of four sections; written as YAML::

    model: {name: sdgs, config: {...}}       # the model's own keys (its default_config)
    data:  {shards: data/small_obj, split: train, crop: [128, 128], batch_size: 8, ...}
    optim: {lr: 0.0002, weight_decay: 0.01, warmup_steps: 100, grad_clip: 1.0, amp: auto, ...}
    train: {max_steps: 10000, epochs: null, log_every: 20, ckpt_every: 1000, seed: 0, ...}

:func:`resolve_config` builds one from, in order of precedence (last wins): the
defaults below, the YAML file, ``--set`` overrides, a command's own options
(``--model``, ``--max-steps``, ...). ``model.config`` is the
model's business (``DepthModel.resolve_config`` checks and completes it). Files are read with ``generator.safe_yaml.load_yaml``, an
override's value is parsed as YAML (``optim.lr=3e-4``, ``data.crop=[64, 64]``,
``data.epoch_len=null``). Every error is a :class:`ConfigError` (exit status 2)
naming the key path, the value and what is allowed.

The resolved config is plain data (:meth:`TrainConfig.to_dict`), saved as
``RUN/config.yaml`` and inside every checkpoint; :meth:`TrainConfig.from_dict`
reads it back.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from generator.errors import BadInput, FieldError, brief
from generator.overrides import parse_override
from generator.safe_yaml import MAX_CHARS, load_yaml

#: ``optim.amp`` choices: ``auto`` = fp16 on CUDA, off on CPU.
AMP_MODES = ("auto", "off", "bf16", "fp16")


class ConfigError(FieldError):
    """A training config key is unknown or its value is not allowed (exit status 2)."""

    what = "config key"


def _k(default: Any = None, **meta: Any) -> Any:
    """A config key with its default and checks: ``ge`` (lower bound), ``choices``."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(kw_only=True)
class ModelSection:
    """Which network (``dfd_models.networks.MODELS``) and its own keys (see its ``default_config``)."""

    name: str | None = _k()
    config: dict = _k({})


@dataclass(kw_only=True)
class DataSection:
    """The training data (:func:`dfd_models.data.make_loader`).

    Attributes:
        shards: dataset directory, brace pattern or URL of the shards.
        split: split trained on.
        crop: [height, width] of random crops, pixels; null = full frames.
        batch_size: stacks per batch, per process.
        workers: DataLoader worker processes per process.
        ramp: ramp of a sequence used as the stack: an index or ``random``.
        flip: random left-right flips.
        shuffle: shuffle buffer, samples (0 = read in order).
        epoch_len: samples per epoch per process (null = one pass over the shards);
            required with ``train.epochs`` under DDP, so every rank steps equally.
        skip_corrupt: skip corrupt samples with a warning instead of stopping.
    """

    shards: str | None = _k()
    split: str = _k("train")
    crop: list[int] | None = _k([128, 128], ge=1)
    batch_size: int = _k(8, ge=1)
    workers: int = _k(2, ge=0)
    ramp: int | str = _k("random", ge=0, choices=("random",))
    flip: bool = _k(True)
    shuffle: int = _k(128, ge=0)
    epoch_len: int | None = _k(None, ge=1)
    skip_corrupt: bool = _k(False)


@dataclass(kw_only=True)
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

    lr: float = _k(2e-4, ge=0)
    min_lr: float = _k(0.0, ge=0)
    weight_decay: float = _k(0.01, ge=0)
    betas: list[float] = _k([0.9, 0.999], ge=0)
    warmup_steps: int = _k(100, ge=0)
    grad_clip: float | None = _k(1.0, ge=0)
    amp: str = _k("auto", choices=AMP_MODES)


@dataclass(kw_only=True)
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
    """

    max_steps: int | None = _k(None, ge=1)
    epochs: int | None = _k(None, ge=1)
    log_every: int = _k(20, ge=1)
    image_every: int = _k(500, ge=0)
    ckpt_every: int = _k(1000, ge=1)
    seed: int = _k(0, ge=0)
    device: str = _k("auto")


@dataclass(kw_only=True)
class TrainConfig:
    """A full training config (see the module docstring)."""

    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    train: TrainSection = field(default_factory=TrainSection)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (dicts, lists, str, numbers, bools, None): YAML- and ``weights_only``-safe."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "config") -> TrainConfig:
        """Validate plain data (a partial config is completed with the defaults).

        Raises:
            ConfigError: an unknown key or a value of the wrong type or range.
        """
        return _build(cls, data, "", where)

    def to_yaml(self) -> str:
        """The config as a YAML document."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# --- validation ---------------------------------------------------------------------


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _unknown(path: str, value: object, known: Sequence[str]) -> ConfigError:
    key = path.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return ConfigError(path, value, f"unknown key; {hint}known keys: {', '.join(known)}")


def _describe(tp: Any, meta: Mapping[str, Any]) -> str:
    """What a key accepts, in words."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_describe(a, meta) if a is not type(None) else "null" for a in typing.get_args(tp))
    if typing.get_origin(tp) is list:
        return f"a list of {_describe(typing.get_args(tp)[0], meta)}"
    if "choices" in meta:
        return f"one of: {', '.join(meta['choices'])}"
    words = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a mapping"}[tp]
    return f"{words} >= {meta['ge']}" if "ge" in meta and tp in (int, float) else words


def _fits(tp: Any, value: Any, meta: Mapping[str, Any]) -> bool:
    """Whether ``value`` is of the annotated type ``tp`` and within ``meta``'s checks."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(a, value, meta) for a in typing.get_args(tp))
    if origin is list:
        return isinstance(value, list) and all(_fits(typing.get_args(tp)[0], v, meta) for v in value)
    if tp is type(None):
        return value is None
    if tp in (int, float):
        number = isinstance(value, int) or (tp is float and isinstance(value, float) and math.isfinite(value))
        return number and not isinstance(value, bool) and value >= meta.get("ge", -math.inf)
    if tp is str:
        return isinstance(value, str) and value in meta.get("choices", (value,))
    return isinstance(value, tp)


def _scientific(tp: Any, value: Any) -> Any:
    """A number written ``3e-4`` or ``1e5``, which YAML 1.1 reads as a string, as a float
    (or an int, for an integer key); any other value as it is."""
    kinds = set(typing.get_args(tp)) | {tp}
    if isinstance(value, float) and value.is_integer() and int in kinds and float not in kinds:
        return int(value)  # 1e5, a float in YAML 1.2 (generator.safe_yaml), for an integer key
    if not isinstance(value, str) or str in kinds or not kinds & {int, float}:
        return value
    try:
        number = float(value)
    except ValueError:
        return value
    if float in kinds:
        return number
    return int(number) if number.is_integer() else value


def _build(cls: type, data: Any, path: str, where: str) -> Any:
    """Validate the mapping ``data`` into the dataclass ``cls`` (``path``: its dotted location)."""
    if not isinstance(data, Mapping):
        raise ConfigError(path or where, data, "a mapping of keys")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise _unknown(_join(path, key), value, list(fields))
        tp, meta = hints[key], fields[key].metadata
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value, _join(path, key), where)
            continue
        value = _scientific(tp, value)
        if not _fits(tp, value, meta):
            raise ConfigError(_join(path, key), value, _describe(tp, meta))
        kwargs[key] = float(value) if tp is float and isinstance(value, int) else value
    return cls(**kwargs)


# --- building a config --------------------------------------------------------------


def _set(data: dict, key: str, value: Any) -> None:
    """Set dotted ``key`` in nested ``data``, creating sections; validation comes later."""
    *parents, last = key.split(".")
    node = data
    for depth, part in enumerate(parents):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(".".join(parents[: depth + 1]), node, f"a section, to set {key}")
    node[last] = value


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of plain config ``data`` with ``key.path=value`` overrides (values parsed as YAML).

    Raises:
        ConfigError: an override without ``=`` or with a value that is not YAML.
    """
    out = copy.deepcopy(dict(data))
    for item in overrides:
        key, value = parse_override(item, ConfigError, "optim.lr=3e-4")
        _set(out, key, value)
    return out


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
            _set(data, key, value)
    config = TrainConfig.from_dict(data, where)
    for key in ("model.name", "data.shards"):
        section, name = key.split(".")
        if getattr(getattr(config, section), name) is None:
            raise ConfigError(key, None, f"required: set it in {where} or with the command's option")
    if config.optim.min_lr > config.optim.lr:
        raise ConfigError("optim.min_lr", config.optim.min_lr, f"at most optim.lr = {config.optim.lr}")
    if config.data.crop is not None and len(config.data.crop) != 2:
        raise ConfigError("data.crop", config.data.crop, "[height, width] in pixels, or null")
    if len(config.optim.betas) != 2 or max(config.optim.betas) >= 1:
        raise ConfigError("optim.betas", config.optim.betas, "[beta1, beta2], each in [0, 1)")
    if config.train.max_steps is None and config.train.epochs is None:
        raise ConfigError("train.max_steps", None, "a number of steps (--max-steps), or set train.epochs (--epochs)")
    return config
