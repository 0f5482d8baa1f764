"""Evaluation of a checkpoint on a split of a dataset (``dfdgen eval``).

The model is rebuilt from the checkpoint's config and run once over every
sample of the split, in shard order, on full frames (no crop, no flip, ramp 0
of each sequence). Depth comes from the model's ``predict`` (images, focus,
lens and K only; never the ground truth), and the metrics of DESIGN.md
section 7 are accumulated over every valid pixel of the split, and over the
valid pixels off the background wall (regions ``all`` and ``objects`` of
:class:`dfd_models.metrics.RegionMetrics`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from generator.core.errors import BadInput
from generator.dataset.format import split_samples
from dfd_models.checkpoint import dataset_info, load_model
from dfd_models.data import DataSection, make_loader, resolve_shards
from dfd_models.lens import LensParams
from dfd_models.metrics import RegionMetrics
from dfd_models.networks import DepthModel, lens_from_batch
from dfd_models.runtime import pick_device, to_device


def predict_depth(model: DepthModel, frames: Tensor, focus_m: Tensor, lens: LensParams, K: Tensor) -> Tensor:
    """``model.predict`` on images of any size (:func:`predict_depth_and_confidence`'s depth)."""
    return predict_depth_and_confidence(model, frames, focus_m, lens, K)[0]


def predict_depth_and_confidence(model: DepthModel, frames: Tensor, focus_m: Tensor, lens: LensParams,
                                 K: Tensor) -> tuple[Tensor, Tensor | None]:
    """``model.predict_with_confidence`` on images of any size.

    Frames whose height or width is not a multiple of ``model.size_multiple`` are
    padded at the right and bottom (edge pixels repeated), which leaves K valid,
    and the depth is cropped back.

    Args:
        frames: linear RGB sorted by focus.  # [B, T, 3, H, W]
        focus_m: focus distances, metres.  # [B, T]
        lens: the lens, pixel pitch that of these images.
        K: intrinsics, pixels.  # [B, T, 3, 3]
    Returns:
        planar depth of the reference frame, metres, and the model's confidence or None.  # [B, 1, H, W] each
    """
    b, t, c, h, w = frames.shape
    m = model.size_multiple
    pad_h, pad_w = -h % m, -w % m
    if pad_h or pad_w:
        frames = F.pad(frames.reshape(b * t, c, h, w), (0, pad_w, 0, pad_h), mode="replicate")
        frames = frames.reshape(b, t, c, h + pad_h, w + pad_w)
    depth, confidence = model.predict_with_confidence(frames, focus_m, lens, K)
    return depth[..., :h, :w], None if confidence is None else confidence[..., :h, :w]


def score_model(
    model: DepthModel,
    shards: Any,
    *,
    split: str,
    device: torch.device,
    batch_size: int = 4,
    workers: int = 2,
    max_depth_m: float | None = None,
    progress: bool = True,
    skip_corrupt: bool = False,
) -> tuple[dict[str, dict[str, float] | None], dict[str, str], int]:
    """The metrics of ``model`` (on ``device``, used as it is: the caller sets eval mode) over
    split ``split`` of ``shards``: every stack once, in order, full frames, without gradients.

    What :func:`evaluate` scores a checkpoint with, and training its validation split
    (:mod:`dfd_models.train`); arguments as for :func:`evaluate`.

    Returns:
        (:meth:`RegionMetrics.compute`'s regions, :meth:`RegionMetrics.absent`, the stacks scored).

    Raises:
        BadInput: no shards of the split, or no valid pixel in them.
        CorruptShard: see :func:`evaluate`.
    """
    urls = resolve_shards(shards, split)
    data = DataSection.for_eval(urls, split=None, batch_size=batch_size, workers=min(workers, len(urls)),
                                skip_corrupt=skip_corrupt)
    loader = make_loader(data, rank=0, world_size=1)
    metrics = RegionMetrics(max_depth_m)
    samples = 0
    total = split_samples(shards, split) if isinstance(shards, (str, Path)) else None
    bar = tqdm(total=total, desc="eval", unit="stack", disable=not progress, dynamic_ncols=True)
    with torch.no_grad(), bar:
        for batch in loader:
            batch = to_device(batch, device)
            depth = predict_depth(model, batch["frames"], batch["focus_m"], lens_from_batch(batch), batch["K"])
            metrics.update(depth.float(), batch["depth"], batch["valid"], batch["wall"])
            samples += len(batch["key"])
            bar.update(len(batch["key"]))
    try:
        regions = metrics.compute()
    except ValueError as exc:
        raise BadInput(f"split {split!r} of {shards}: {exc}") from exc
    return regions, metrics.absent(), samples


def evaluate(
    checkpoint: str | Path,
    shards: str | Path,
    *,
    split: str = "test",
    batch_size: int = 4,
    workers: int = 2,
    device: str = "auto",
    max_depth_m: float | None = None,
    progress: bool = True,
    skip_corrupt: bool = False,
) -> dict[str, Any]:
    """Metrics of ``checkpoint``'s model over split ``split`` of ``shards``.

    Args:
        batch_size, workers: stacks per forward pass; loader worker processes (at most
            one per shard).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        max_depth_m: D of the normalised metrics, metres; default: the farthest
            wall of the evaluated data's recipe, else of the training data's; the
            normalised metrics are left out when neither is known.
        skip_corrupt: warn about and skip corrupt samples and shards (the metrics are then
            over the rest) instead of stopping with :class:`CorruptShard`.

    Returns:
        ``{"metrics": {name: value}, "regions": {"all": {...}, "objects": {...} or None},
        "absent_regions": {region: reason}, "objects_fraction", "checkpoint", "model",
        "step", "shards", "split", "samples", "max_depth_m"}`` (plain JSON-able values):
        ``metrics`` is region ``all`` (every valid pixel); ``objects`` (valid pixels off
        the wall) is None, with its reason in ``absent_regions``, when the split has
        none; ``objects_fraction`` is the fraction of valid pixels that are objects.

    Raises:
        BadInput: not a dfdgen checkpoint, no shards of the split, or no valid pixel in them.
        CorruptShard: a damaged shard or sample, naming it (unless ``skip_corrupt``).
    """
    target = pick_device(device)
    model, ckpt = load_model(checkpoint, target)
    if max_depth_m is None:
        max_depth_m = dataset_info(shards).get("max_depth_m", ckpt["data"].get("max_depth_m"))
    regions, absent, samples = score_model(model, shards, split=split, device=target, batch_size=batch_size,
                                           workers=workers, max_depth_m=max_depth_m, progress=progress,
                                           skip_corrupt=skip_corrupt)
    objects = regions["objects"]
    return {
        "metrics": regions["all"],
        "regions": regions,
        "absent_regions": absent,
        "objects_fraction": (objects["n_pixels"] if objects else 0.0) / regions["all"]["n_pixels"],
        "checkpoint": str(checkpoint),
        "model": ckpt["config"]["model"]["name"],
        "step": ckpt["step"],
        "shards": str(shards),
        "split": split,
        "samples": samples,
        "max_depth_m": max_depth_m,
    }
