"""Pipeline stages: small generators over samples, each taking the iterator first.

The chain :func:`dfd_models.data.pipeline.FocalStackDataset` composes::

    shard URLs -> tar_samples -> (shuffle) -> select_ramp -> decode
               -> random_crop -> random_flip -> to_tensors -> (batch)

Stages that meet shard data take ``handler=``, webdataset's convention: it is
called with the exception and returns True to skip the sample (or the rest of
a broken shard) and go on, False to stop, or raises. Data problems are raised
as :class:`generator.core.errors.CorruptShard` naming the shard and member;
:func:`reraise` and :func:`warn_and_skip` are the two handlers used.

Metadata and members are read through :mod:`generator.dataset.codec` (``read_metadata``,
``decode_member``), the codecs that wrote them and the checks ``dfdgen inspect --verify``
and ``export`` apply: bounds, image limits, sizes, finite depth.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

from generator.core.errors import CorruptShard
from generator.core.lens import LENS_MODELS
from generator.dataset.sample import decode_member, image_member, read_metadata
from generator.dataset.format import AIF, META, coc_member, depth_member, frame_stem, read_shard, rgb_member
from dfd_models.data import transforms

Handler = Callable[[Exception], bool]
#: Scalar lens fields copied from the metadata into every stack (metres, or f-number).
LENS_FIELDS = ("focal_length_m", "f_number", "sensor_width_m", "pixel_pitch_m")
#: Relative tolerance of the wall mask: a valid pixel is wall when |depth - wall_m| <= WALL_RTOL * wall_m.
#: Cycles' planar depth of the fronto-parallel wall is float32 (relative error ~1e-7), and the
#: recipe keeps every object in front of the wall by a finite gap (generator.recipe.recipe checks
#: objects.depth_m.max + objects.size_m.max < wall.distance_m.min), far more than 1e-4.
WALL_RTOL = 1e-4


def reraise(exn: Exception) -> bool:
    """Handler: raise every error."""
    raise exn


def warn_and_skip(exn: Exception) -> bool:
    """Handler: warn about a :class:`CorruptShard` (naming shard and member) and skip it; raise anything else."""
    if not isinstance(exn, CorruptShard):
        raise exn
    warnings.warn(f"skipping: {exn}", RuntimeWarning, stacklevel=2)
    return True


def _guarded(src: Iterable[dict], fn: Callable[[dict], dict], handler: Handler) -> Iterator[dict]:
    """Apply ``fn`` to each sample, passing errors to ``handler``."""
    for sample in src:
        try:
            out = fn(sample)
        except Exception as exn:
            if handler(exn):
                continue
            return
        yield out


# --- reading ---------------------------------------------------------------


def tar_samples(src: Iterable[str], *, handler: Handler = reraise) -> Iterator[dict]:
    """Stage: shard URLs -> flat raw samples (member suffix -> bytes, plus ``__key__``, ``__url__``).

    A shard that cannot be opened or read to its end-of-archive marker (cut,
    damaged header) raises :class:`CorruptShard` naming the last member read,
    to ``handler``; if it skips, the rest of the shard is skipped with the
    sample being read at the break (it may be incomplete); samples yielded
    before the break stay.
    """
    for url in src:
        try:
            yield from read_shard(url)
        except Exception as exn:
            if handler(exn):
                continue
            return


# --- one ramp as a stack -----------------------------------------------------


def _select(sample: dict, ramp: int | str, rng: np.random.Generator) -> dict:
    url, key = sample["__url__"], sample["__key__"]
    meta = read_metadata(sample)
    try:
        lens = {name: float(meta["lens"][name]) for name in LENS_FIELDS}
        lens_model = LENS_MODELS.index(meta["lens"]["model"])
        frames = [(f["ramp"], float(f["focus_distance_m"]), int(f["index"]), f["K"]) for f in meta["frames"]]
        per_frame = bool(meta["depth"]["per_frame"])
        wall_m = meta["depth"].get("wall_m")  # absent in samples written before it existed
        wall_m = None if wall_m is None else float(wall_m)
        size = (meta["image"]["height"], meta["image"]["width"])
    except (ValueError, KeyError, TypeError) as exn:
        raise CorruptShard(url, f"{key}.{META}", f"bad metadata ({exn!r})") from exn
    ramps = sorted({f[0] for f in frames})
    if ramp == "random":
        ramp = ramps[rng.integers(len(ramps))]
    elif ramp not in ramps:
        raise ValueError(f"sample {key} in {url} has ramps {ramps}; ramp={ramp!r} is not one of them")
    stack = sorted((f for f in frames if f[0] == ramp), key=lambda f: f[1])  # by focus distance
    ref = len(stack) // 2
    rgb = [image_member(sample, frame_stem(index)) for _, _, index, _ in stack]
    depth = depth_member(stack[ref][2] if per_frame else None)
    aif = rgb_member(sample, AIF)
    coc = [coc_member(index) for _, _, index, _ in stack]
    try:
        k = np.array([f[3] for f in stack], dtype=np.float32).reshape(len(stack), 3, 3)  # [T, 3, 3]
    except ValueError as exn:
        raise CorruptShard(url, f"{key}.{META}", f"bad K ({exn})") from exn
    members = {"frames": rgb, "depth": depth}
    if aif is not None:
        members["aif"] = aif
    if coc[0] in sample:
        members["coc"] = coc
    names = [*rgb, depth, *([aif] if aif is not None else []), *members.get("coc", [])]
    return {
        "__key__": key,
        "__url__": url,
        "size": size,
        "members": members,
        # what decode_member reads: the stack's members (one missing raises there), key and shard
        "encoded": {"__key__": key, "__url__": url, **{name: sample[name] for name in names if name in sample}},
        "focus_m": np.array([f[1] for f in stack], dtype=np.float32),  # [T]
        "K": k,
        "ref_frame": ref,
        "wall_m": wall_m,
        "lens_model": lens_model,
        **lens,
    }


def select_ramp(
    src: Iterable[dict], *, ramp: int | str, rng: np.random.Generator, handler: Handler = reraise
) -> Iterator[dict]:
    """Stage: raw sample -> one ramp as a focus stack, still encoded (only its members are kept).

    Args:
        ramp: ramp index, or ``"random"`` (uniform over the sample's ramps, drawn from ``rng``).

    The stack's T frames are sorted by increasing focus distance. Its depth is
    the reference frame's, ``ref_frame = T // 2`` of the sorted stack (the middle
    frame): the only depth map of a static ``blender``-model scene, or that
    frame's own map when depth is per frame (breathing ``thin_lens``, motion),
    which matches ``K[ref_frame]``.
    """
    return _guarded(src, lambda sample: _select(sample, ramp, rng), handler)


def _decode(stack: dict) -> dict:
    members = stack["members"]
    out = {name: value for name, value in stack.items() if name not in ("members", "encoded")}

    def member(name: str) -> np.ndarray:
        return decode_member(stack["encoded"], name, stack["size"])

    out["frames"] = np.stack([member(name) for name in members["frames"]])  # [T, H, W, 3]
    out["depth"] = member(members["depth"])[..., None]  # [H, W, 1]
    if "aif" in members:
        out["aif"] = member(members["aif"])  # [H, W, 3]
    if "coc" in members:
        out["coc"] = np.stack([member(name) for name in members["coc"]])[..., None]  # [T, H, W, 1]
    return out


def decode(src: Iterable[dict], *, handler: Handler = reraise) -> Iterator[dict]:
    """Stage: encoded stack -> numpy images (channels last, see :mod:`dfd_models.data.transforms`).

    ``frames`` [T, H, W, 3] float32 linear RGB (``generator.dataset.pixels.decode_rgb``:
    sRGB PNGs are linearised, in [0, 1]; EXR frames are as rendered, not clipped),
    ``depth`` [H, W, 1] float32 planar metres (0 = no surface), optional ``aif``
    [H, W, 3] and ``coc`` [T, H, W, 1] (CoC diameter, pixels).
    """
    return _guarded(src, _decode, handler)


# --- augmentation ------------------------------------------------------------


def random_crop(src: Iterable[dict], *, size: tuple[int, int], rng: np.random.Generator) -> Iterator[dict]:
    """Stage: crop every image of a stack to ``size`` = (height, width) pixels at one
    uniform random offset (K's principal point follows)."""
    height, width = size
    for stack in src:
        full_h, full_w = transforms.image_size(stack)
        if height > full_h or width > full_w:
            raise ValueError(f"crop {size} is larger than the {full_h}x{full_w} images of {stack['__url__']}")
        top = int(rng.integers(full_h - height + 1))
        left = int(rng.integers(full_w - width + 1))
        yield transforms.crop(stack, top, left, height, width)


def random_flip(src: Iterable[dict], *, rng: np.random.Generator, p: float = 0.5) -> Iterator[dict]:
    """Stage: mirror a whole stack left-right with probability ``p`` (K follows, see
    :func:`dfd_models.data.transforms.hflip`)."""
    for stack in src:
        yield transforms.hflip(stack) if rng.random() < p else stack


# --- to torch ----------------------------------------------------------------


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


def _chw(image: np.ndarray):
    """[..., H, W, C] numpy -> [..., C, H, W] contiguous torch tensor (one copy)."""
    axes = (*range(image.ndim - 3), image.ndim - 1, image.ndim - 3, image.ndim - 2)
    return torch.from_numpy(np.ascontiguousarray(image.transpose(axes)))


def to_tensors(src: Iterable[dict]) -> Iterator[dict]:
    """Stage: numpy stack -> the training sample, a flat dict of tensors.

    Keys and shapes (T frames, sorted by focus distance):

    - ``key`` str; ``frames`` [T, 3, H, W] float32 linear RGB;
      ``focus_m`` [T] float32 metres; ``K`` [T, 3, 3] float32 pixels;
    - ``depth`` [1, H, W] float32 planar metres of frame ``ref_frame``;
      ``valid`` [1, H, W] bool (depth > 0); ``ref_frame`` int64 [];
    - ``wall`` [1, H, W] bool: valid pixels on the background wall (depth within
      :data:`WALL_RTOL` of the metadata's ``depth.wall_m``, see :func:`wall_mask`);
      all False for samples without ``wall_m`` (written before it existed), so
      batches mixing old and new samples still collate and masking excludes nothing.
      Derived from the cropped / flipped depth, so it moves with it;
    - ``lens_model`` int64 [] (index in ``generator.core.lens.LENS_MODELS``);
      ``focal_length_m``, ``f_number``, ``sensor_width_m`` (full, uncropped
      sensor), ``pixel_pitch_m`` float32 [];
    - when the shards hold them: ``aif`` [3, H, W], ``coc`` [T, 1, H, W] (pixels).
    """
    for stack in src:
        out = {
            "key": stack["__key__"],
            "frames": _chw(stack["frames"]),  # [T, 3, H, W]
            "focus_m": torch.from_numpy(stack["focus_m"]),  # [T]
            "K": torch.from_numpy(stack["K"]),  # [T, 3, 3]
            "depth": _chw(stack["depth"]),  # [1, H, W]
            "valid": _chw(stack["depth"] > 0),  # [1, H, W]
            "wall": _chw(wall_mask(stack["depth"], stack["wall_m"])),  # [1, H, W]
            "ref_frame": torch.tensor(stack["ref_frame"]),
            "lens_model": torch.tensor(stack["lens_model"]),
            **{name: torch.tensor(stack[name], dtype=torch.float32) for name in LENS_FIELDS},
        }
        if "aif" in stack:
            out["aif"] = _chw(stack["aif"])  # [3, H, W]
        if "coc" in stack:
            out["coc"] = _chw(stack["coc"])  # [T, 1, H, W]
        yield out


def collate(samples: list[dict]) -> dict:
    """Batch training samples: tensors stacked on a new leading axis B, other values listed.

    Stacks with numpy (one single-threaded copy): torch's parallel kernels in a
    loading process compete with the training threads for the same cores.
    """
    batch = {}
    for name, first in samples[0].items():
        values = [sample[name] for sample in samples]
        batch[name] = torch.from_numpy(np.stack([v.numpy() for v in values])) if torch.is_tensor(first) else values
    return batch
