"""The batch: what a loader yields and every model reads, and the stages that make it.

:class:`Batch` is the one declaration of its keys: each entry's shape, dtype and units
are in its annotation (a :class:`Field`), which tests read back to check the loader.
:func:`reference_index` names the frame whose ground truth a stack carries and on whose
pixel grid every model returns depth. :func:`to_tensors` turns a decoded stack into one
sample (a batch's entries without the leading B, ``key`` a str) and :func:`collate`
stacks samples into a batch.
"""

# No ``from __future__ import annotations`` here: TypedDict reads NotRequired only from evaluated
# annotations (as strings, Python 3.11 counts ``aif`` and ``coc`` as required keys).
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Annotated, NotRequired, TypedDict

import numpy as np
import torch
from torch import Tensor
from webdataset.filters import pipelinefilter

__all__ = ["LENS_FIELDS", "WALL_RTOL", "Batch", "Field", "collate", "reference_index", "to_tensors", "wall_mask"]

#: Scalar lens fields copied from a sample's metadata into every stack (metres, or f-number). The
#: metadata's ``sensor_width_m`` is not one: it is the full sensor's, wrong for a crop, and the lens
#: of a batch is built from the pixel pitch (:func:`dfd_models.networks.lens_from_batch`).
LENS_FIELDS = ("focal_length_m", "f_number", "pixel_pitch_m")
#: Relative tolerance of the wall mask: a valid pixel is wall when |depth - wall_m| <= WALL_RTOL * wall_m.
#: Cycles' planar depth of the fronto-parallel wall is float32 (relative error ~1e-7), and the
#: recipe keeps every object in front of the wall by a finite gap (generator.recipe.recipe checks
#: objects.depth_m.max + objects.size_m.max < wall.distance_m.min), far more than 1e-4.
WALL_RTOL = 1e-4


def reference_index(frames: int) -> int:
    """The reference frame of a stack of ``frames`` frames sorted by focus distance: the middle one,
    T // 2. The loader's ``depth`` is this frame's (its own map when depth is per frame), and every
    model returns depth on its pixel grid (K differs per frame under focus breathing). The middle
    frame keeps the grid closest, on average, to every other frame's."""
    return frames // 2


@dataclass(frozen=True)
class Field:
    """The contract of one batch entry.

    Attributes:
        shape: axis sizes, or the names B (stacks), T (frames), H, W (pixels).
        dtype: the tensor's dtype.
        units: what the values mean.
    """

    shape: tuple[int | str, ...]
    dtype: torch.dtype
    units: str


class Batch(TypedDict):
    """A batch of B focus stacks of T frames each, H x W pixels, frames sorted by increasing focus
    distance. Crops and flips move every image and K together (:mod:`dfd_models.data.transforms`).

    ``aif`` and ``coc`` are present when the shards hold them (recipe ``outputs.aif``,
    ``outputs.coc``). ``wall`` is all False for samples written before metadata ``depth.wall_m``
    existed, or with no fronto-parallel wall, so batches mixing those still collate and masking
    excludes nothing.
    """

    key: list[str]  # the samples' keys, ``{scene_index:08d}``; B entries
    frames: Annotated[Tensor, Field(("B", "T", 3, "H", "W"), torch.float32,
                                    "linear RGB: sRGB PNGs linearised to [0, 1], EXR as rendered")]
    focus_m: Annotated[Tensor, Field(("B", "T"), torch.float32, "focus distance, metres, increasing")]
    K: Annotated[Tensor, Field(("B", "T", 3, 3), torch.float32,
                               "each frame's intrinsics, pixels (OpenCV, centres at integer + 0.5)")]
    depth: Annotated[Tensor, Field(("B", 1, "H", "W"), torch.float32,
                                   "planar depth of the reference frame (reference_index), metres; 0 = no surface")]
    valid: Annotated[Tensor, Field(("B", 1, "H", "W"), torch.bool, "depth > 0")]
    wall: Annotated[Tensor, Field(("B", 1, "H", "W"), torch.bool,
                                  "valid pixels on the background wall (wall_mask of metadata depth.wall_m)")]
    lens_model: Annotated[Tensor, Field(("B",), torch.int64, "index in generator.core.lens.LENS_MODELS")]
    focal_length_m: Annotated[Tensor, Field(("B",), torch.float32, "focal length, metres")]
    f_number: Annotated[Tensor, Field(("B",), torch.float32, "f-number")]
    pixel_pitch_m: Annotated[Tensor, Field(("B",), torch.float32, "sensor width of one pixel, metres")]
    aif: NotRequired[Annotated[Tensor, Field(("B", 3, "H", "W"), torch.float32,
                                             "all-in-focus render (camera of capture frame 0), linear RGB")]]
    coc: NotRequired[Annotated[Tensor, Field(("B", "T", 1, "H", "W"), torch.float32,
                                             "each frame's CoC diameter, pixels")]]


def wall_mask(depth: np.ndarray, wall_m: float | None) -> np.ndarray:
    """Boolean mask of the pixels that see the background wall, shaped like ``depth``.

    Args:
        depth: planar depth, metres, 0 = no surface.  # [..., H, W, 1]
        wall_m: the wall's planar depth (metadata ``depth.wall_m``), metres; None
            (older samples, or no fronto-parallel wall) gives an all-False mask.

    Assumes the wall is fronto-parallel, so it has one planar depth everywhere
    (:func:`generator.dataset.metadata.wall_depth_m` writes None otherwise), and that no
    object surface lies within :data:`WALL_RTOL` of it.
    """
    if wall_m is None:
        return np.zeros(depth.shape, dtype=bool)
    return (depth > 0) & (np.abs(depth - wall_m) <= WALL_RTOL * wall_m)


def _chw(image: np.ndarray) -> Tensor:
    """[..., H, W, C] numpy -> [..., C, H, W] contiguous torch tensor (one copy)."""
    axes = (*range(image.ndim - 3), image.ndim - 1, image.ndim - 3, image.ndim - 2)
    return torch.from_numpy(np.ascontiguousarray(image.transpose(axes)))


@pipelinefilter
def to_tensors(src: Iterable[dict]) -> Iterator[dict]:
    """Stage: decoded stack (:func:`dfd_models.data.stages.decode`, channels last) -> one sample of
    a :class:`Batch`: its entries without the leading B, ``key`` a str. ``wall`` is derived from
    the cropped / flipped depth, so it moves with it."""
    for stack in src:
        out = {
            "key": stack["__key__"],
            "frames": _chw(stack["frames"]),  # [T, 3, H, W]
            "focus_m": torch.from_numpy(stack["focus_m"]),  # [T]
            "K": torch.from_numpy(stack["K"]),  # [T, 3, 3]
            "depth": _chw(stack["depth"]),  # [1, H, W]
            "valid": _chw(stack["depth"] > 0),  # [1, H, W]
            "wall": _chw(wall_mask(stack["depth"], stack["wall_m"])),  # [1, H, W]
            "lens_model": torch.tensor(stack["lens_model"]),
            **{name: torch.tensor(stack[name], dtype=torch.float32) for name in LENS_FIELDS},
        }
        if "aif" in stack:
            out["aif"] = _chw(stack["aif"])  # [3, H, W]
        if "coc" in stack:
            out["coc"] = _chw(stack["coc"])  # [T, 1, H, W]
        yield out


def collate(samples: list[dict]) -> Batch:
    """Batch samples of :func:`to_tensors`: tensors stacked on a new leading axis B, other values listed.

    Stacks with numpy (one single-threaded copy): torch's parallel kernels in a
    loading process compete with the training threads for the same cores.
    """
    batch = {}
    for name, first in samples[0].items():
        values = [sample[name] for sample in samples]
        batch[name] = torch.from_numpy(np.stack([v.numpy() for v in values])) if torch.is_tensor(first) else values
    return batch
