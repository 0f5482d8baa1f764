"""Sizing an ``auto`` crop and batch to the data's images and the device.

``data.crop`` and ``data.batch_size`` default to ``auto`` (:data:`dfd_models.config.AUTO`):
:func:`auto_data` picks them from the image size in the data's manifest and the device type,
:func:`sized_config` does so for a training config and a model, and the line it returns
says what was chosen (``dfdgen train`` prints it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import torch

from dfd_models.config import AUTO, DataSection, TrainConfig

__all__ = ["AUTO_CPU_BATCH", "AUTO_SIZE", "COSTLY_RATIO", "auto_data", "sized_config"]

#: What ``auto`` picks for ``data.crop`` and ``data.batch_size``, by device type: the
#: largest crop side, pixels (images smaller than that are cropped to their own size), and
#: the batch size. On 2 CPU cores these give every model 2.5 steps/s or more on a 128 px
#: small_obj render, sdgs 1.6 on a 256 px one (DESIGN.md section 10). CUDA's (the earlier
#: defaults) are not measured yet.
AUTO_SIZE = {"cpu": (64, 4), "cuda": (128, 8)}

#: Batch size ``auto`` picks on the CPU for the models whose step costs several times more
#: per pixel there than the others' (``sdgs`` re-renders every frame with splats; 64 px
#: crops on 2 cores: 1.2 steps/s at batch 4 and 2.6 at batch 2 on 128 px images, 1.6 at
#: batch 2 on 256 px images, whose blur discs are twice as wide in pixels).
AUTO_CPU_BATCH = {"sdgs": 2}

#: A crop and batch with this many times the pixels per step of what ``auto`` would pick
#: are pointed out before training starts (:func:`auto_data`'s line).
COSTLY_RATIO = 4


def auto_data(data: DataSection, *, image: Mapping[str, int] | None, device: str, model: str | None = None,
              multiple: int = 1) -> tuple[DataSection, str | None]:
    """``data`` with an ``auto`` ``crop`` and ``batch_size`` sized to the images and the device.

    The rule: on ``device`` type ``cpu`` a crop of at most 64 x 64 px and a batch of 4
    (2 for ``sdgs``, :data:`AUTO_CPU_BATCH`), elsewhere (CUDA) at most 128 x 128 px and 8
    (:data:`AUTO_SIZE`); each crop side is the image's side where that is smaller, rounded
    down to a multiple of ``multiple``; an unknown image size takes the largest crop.
    Values that are not ``auto`` (the user's) are kept as they are.

    Args:
        image: the data's ``{"width", "height"}`` in pixels (from its manifest,
            :func:`dfd_models.checkpoint.dataset_info`); None when unknown.
        device: a torch device type: ``cpu``, or ``cuda`` (any other is sized as ``cuda``).
        model: the registered model name (for :data:`AUTO_CPU_BATCH` and the message).
        multiple: what the model needs the crop's sides to be multiples of (``model.size_multiple``).

    Returns:
        (the data section with no ``auto`` crop or batch size, one line saying what was
        chosen and why, or, for a crop and batch of :data:`COSTLY_RATIO` or more times the
        pixels ``auto`` would pick, how many times and the options that pick those; None
        when neither was ``auto`` and the size is not that costly).
    """
    cpu = device == "cpu"
    side, batch = AUTO_SIZE["cpu" if cpu else "cuda"]
    if cpu:
        batch = AUTO_CPU_BATCH.get(model, batch)
    sizes = (image["height"], image["width"]) if image else (side, side)
    auto_crop = [max(multiple, min(side, size) // multiple * multiple) for size in sizes]
    crop = auto_crop if data.crop == AUTO else data.crop
    batch_size = batch if data.batch_size == AUTO else data.batch_size
    where = " ".join(filter(None, [model, "on", "CPU" if cpu else device.upper()]))
    parts = ["full frames" if crop is None else f"crop {crop[0]}x{crop[1]} px", f"batch {batch_size}"]
    parts = [part + ("" if value == AUTO else " as set") for part, value in zip(parts, (data.crop, data.batch_size))]
    line = f"data: {', '.join(parts)}"
    if AUTO in (data.crop, data.batch_size):
        line += f" ({where}; " + (f"the data is {image['height']}x{image['width']} px)" if image
                                   else "the image size is unknown: no manifest)")
    pixels = batch_size * (crop[0] * crop[1] if crop is not None else sizes[0] * sizes[1])
    ratio = pixels / (batch * auto_crop[0] * auto_crop[1])
    if ratio >= COSTLY_RATIO and (crop is not None or image):
        line += (f": {ratio:.3g} times the pixels per step of the default for {where} (crop {auto_crop[0]}x"
                 f"{auto_crop[1]} px, batch {batch}); --set 'data.crop=[{auto_crop[0]}, {auto_crop[1]}]' "
                 f"--set data.batch_size={batch} for that")
    elif AUTO in (data.crop, data.batch_size):
        line += "; set data.crop / data.batch_size to choose"
    else:
        line = None
    return dataclasses.replace(data, crop=crop, batch_size=batch_size), line


def sized_config(config: TrainConfig, info: dict, device: torch.device,
                 multiple: int) -> tuple[TrainConfig, str | None]:
    """``config`` with an ``auto`` ``data.crop`` and ``data.batch_size`` sized to the data's
    image size (``info``, :func:`dfd_models.checkpoint.dataset_info`) and ``device``, and the
    line saying what was chosen (None: nothing was ``auto``); see :func:`auto_data`."""
    data, line = auto_data(config.data, image=info.get("image"), device=device.type, model=config.model.name,
                           multiple=multiple)
    return dataclasses.replace(config, data=data), line
