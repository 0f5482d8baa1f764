"""Checkpoints: one file holds a run's full state, to resume it or to use its model.

A checkpoint is a dict of plain Python values and tensors only (no pickled
classes), so it loads with ``torch.load(weights_only=True)``::

    format          "dfdgen.checkpoint"           format_version  1
    generator       {"name": "dfdgen", "version": ...}
    config          TrainConfig.to_dict(): the full resolved training config; its
                    model.config is the model's config as plain data
                    (dataclasses.asdict of its DepthModel.Config)
    data            what the training data's manifest says about it (:func:`dataset_info`)
    step, epoch, batch_in_epoch
                    optimizer steps done; the epoch being read and the batches
                    of it already used (a resumed run skips those)
    model           state_dict of the bare model (no DDP ``module.`` prefix)
    optimizer, scheduler
                    their state_dicts; None for a model that is fitted, not
                    trained (``trainable`` False, saved at step 0)
    scaler          GradScaler state_dict, or None (no fp16, or fitted)
    rng             per rank, {"python", "numpy", "torch", "cuda"} generator states

Files are written atomically (a temporary file renamed into place), so a crash
leaves the previous checkpoint readable. A checkpoint is user input: one whose
``config`` is not a training config (:class:`dfd_models.config.TrainConfig`) naming
a model, whose model config is not one the model's ``Config`` accepts (an unknown key, a
value out of its bounds, e.g. layers wider than the model allows), or whose other fields
are not of their type is refused (:class:`~generator.core.errors.BadInput`, exit status 2)
before anything is built. A model config written by an earlier dfdgen loads when its keys
are still the model's or a deprecated alias of one (``mask_wall``, read as ``regions``).
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import generator
from generator.core.errors import BadInput
from generator.core.files import write_atomic
from generator.dataset.format import MANIFEST, read_manifest
from dfd_models.config import ConfigError, TrainConfig
from dfd_models.networks import DepthModel, build_model
from dfd_models.networks.base import saved_model_config

FORMAT = "dfdgen.checkpoint"
FORMAT_VERSION = 1


def dataset_info(shards: str | Path) -> dict[str, Any]:
    """What a dataset directory's ``manifest.json`` says about its data, for checkpoints
    and metrics: ``{"recipe": {"name", "sha256"}, "lens": the recipe's lens section,
    "max_depth_m": the farthest wall distance, metres, "image": {"width", "height"}
    in pixels (when the recipe has them)}``; ``{}`` for shards without one.

    Raises:
        BadInput: a manifest without a readable recipe.
    """
    manifest = Path(shards) / MANIFEST
    if not manifest.is_file():
        return {}
    try:
        recipe = read_manifest(shards)["recipe"]
        wall = recipe["config"]["scene"]["wall"]["distance_m"]
        image = recipe["config"].get("image", {})
        info = {
            "recipe": {"name": recipe["name"], "sha256": recipe["sha256"]},
            "lens": recipe["config"]["lens"],
            "max_depth_m": float(max(wall) if isinstance(wall, list) else wall),
        }
        if "width" in image and "height" in image:
            info["image"] = {"width": int(image["width"]), "height": int(image["height"])}
        return info
    except (ValueError, KeyError, TypeError) as exc:
        raise BadInput(f"{manifest}: cannot read its recipe ({exc!r})") from exc


def rng_state() -> dict[str, Any]:
    """The Python, numpy, torch (and current CUDA device's) random generator states,
    as plain values and CPU tensors."""
    np_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,  # current device
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generator states of :func:`rng_state`."""
    random.setstate(state["python"])
    np_state = state["numpy"]
    np.random.set_state({
        "bit_generator": "MT19937",
        "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
        "has_gauss": np_state["has_gauss"],
        "gauss": np_state["gauss"],
    })
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_checkpoint(payload: dict[str, Any], paths: Iterable[Path]) -> None:
    """Write ``payload`` (the fields listed in the module docstring, less the format keys)
    to every path in ``paths``, each atomically."""
    buffer = io.BytesIO()
    header = {"format": FORMAT, "format_version": FORMAT_VERSION,
              "generator": {"name": "dfdgen", "version": generator.__version__}}
    torch.save({**header, **payload}, buffer)
    for path in paths:
        write_atomic(Path(path), buffer.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a dfdgen checkpoint with ``torch.load(weights_only=True)``.

    Raises:
        BadInput: a missing file, a file that is not a dfdgen checkpoint, one of a newer
            format, or one whose fields are not a dfdgen checkpoint's (:func:`_check_fields`).
    """
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"checkpoint {path} not found")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch.load fails on foreign bytes in many ways (KeyError, EOFError, ...)
        raise BadInput(f"{path} is not a dfdgen checkpoint: it does not load with weights only "
                       f"({type(exc).__name__}; dfdgen never unpickles Python objects)") from exc
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise BadInput(f"{path} is not a dfdgen checkpoint (no format {FORMAT!r} in it)")
    if checkpoint.get("format_version", 0) > FORMAT_VERSION:
        raise BadInput(f"{path} has checkpoint format version {checkpoint['format_version']}; "
                       f"this dfdgen reads up to {FORMAT_VERSION}: update dfdgen")
    _check_fields(checkpoint, path)
    return checkpoint


#: The fields every reader of a checkpoint uses, and their types (the config is checked as a TrainConfig).
_FIELDS = {"model": dict, "data": dict, "step": int}


def _check_fields(checkpoint: dict[str, Any], path: Path) -> None:
    """Refuse a checkpoint whose ``config`` is not a training config naming a model, or whose
    ``model`` (state_dict), ``data`` or ``step`` is missing or of another type.

    Raises:
        BadInput: ``PATH is not a valid dfdgen checkpoint: ...`` naming the field.
    """
    def refuse(why: str) -> None:
        raise BadInput(f"{path} is not a valid dfdgen checkpoint: {why}")

    if "config" not in checkpoint:
        refuse("no config in it")
    try:
        config = TrainConfig.from_dict(checkpoint["config"])
    except ConfigError as exc:
        refuse(str(exc))
    if not isinstance(config.model.name, str):
        refuse("its config names no model (model.name)")
    for key, kind in _FIELDS.items():
        value = checkpoint.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            refuse(f"its {key} is {type(value).__name__ if key in checkpoint else 'missing'}, not {kind.__name__}")


def load_strict(target: Any, state: dict, what: str, source: str | Path) -> None:
    """``target.load_state_dict(state)`` (strict for modules; also optimizers, schedulers,
    scalers), with a clear error on any mismatch.

    Raises:
        BadInput: missing or unexpected keys, or tensors of another shape; the
            message names ``what`` (e.g. ``"model sdgs"``), ``source`` and the keys.
    """
    try:
        if isinstance(target, nn.Module):
            target.load_state_dict(state, strict=True)
        else:
            target.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise BadInput(f"{source}: the saved {what} does not match the one built from its config: {exc}") from exc


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[DepthModel, dict[str, Any]]:
    """The model of a checkpoint, rebuilt from its config with the saved weights, in eval mode.

    Returns:
        (model on ``device``, the checkpoint dict).

    Raises:
        BadInput: not a dfdgen checkpoint, a model this dfdgen cannot build (an unknown
            name, a config key it does not have, a value its config does not allow, such as
            layers wider than it allows), or weights that do not match it.
    """
    checkpoint = load_checkpoint(path, map_location=device)
    section = TrainConfig.from_dict(checkpoint["config"]).model  # checked by load_checkpoint
    name = section.name
    try:
        model = build_model(name, saved_model_config(name, section.config))  # checked before any layer is built
    except ConfigError as exc:
        raise BadInput(f"{path}: cannot build its model: {exc}") from None
    load_strict(model, checkpoint["model"], f"model {name}", path)
    return model.to(device).eval(), checkpoint
