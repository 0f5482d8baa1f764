"""The stages that read shards: small generators over samples, each taking the iterator first.

:meth:`dfd_models.data.pipeline.FocalStackDataset.stage_list` lists the whole chain::

    shard URLs -> tar_samples -> (shuffle) -> select_ramp -> decode    this module
               -> random_crop -> random_flip                           dfd_models.data.transforms
               -> to_tensors -> (batched, collate)                     dfd_models.data.batch

Each stage is a webdataset ``pipelinefilter``: called with its keyword arguments it
returns the stage, a function of the samples (``decode(handler=reraise)(samples)``).

Stages that meet shard data take ``handler=``, webdataset's convention: it is
called with the exception and returns True to skip the sample (or the rest of
a broken shard) and go on, False to stop, or raises. Data problems are raised
as :class:`generator.core.errors.CorruptShard` naming the shard and member;
:func:`reraise` and :func:`warn_and_skip` are the two handlers used.

Metadata and members are read through :mod:`generator.dataset.sample` (``read_metadata``,
``decode_member``), the codecs that wrote them and the checks ``dfdgen inspect --verify``
and ``export`` apply: bounds, image limits, sizes, finite depth.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator

import numpy as np
from webdataset.filters import pipelinefilter

from generator.core.errors import CorruptShard
from generator.core.lens import LENS_MODELS
from generator.dataset.sample import decode_member, image_member, read_metadata
from generator.dataset.format import AIF, META, coc_member, depth_member, frame_stem, read_shard, rgb_member
from dfd_models.data.batch import LENS_FIELDS, reference_index

Handler = Callable[[Exception], bool]


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


@pipelinefilter
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
    ref = reference_index(len(stack))
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
        "wall_m": wall_m,
        "lens_model": lens_model,
        **lens,
    }


@pipelinefilter
def select_ramp(
    src: Iterable[dict], *, ramp: int | str, rng: np.random.Generator, handler: Handler = reraise
) -> Iterator[dict]:
    """Stage: raw sample -> one ramp as a focus stack, still encoded (only its members are kept).

    Args:
        ramp: ramp index, or ``"random"`` (uniform over the sample's ramps, drawn from ``rng``).

    The stack's T frames are sorted by increasing focus distance. Its depth is
    the reference frame's (:func:`dfd_models.data.batch.reference_index` of the sorted
    stack): the only depth map of a static ``blender``-model scene, or that frame's
    own map when depth is per frame (breathing ``thin_lens``, motion), which matches
    its K.
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


@pipelinefilter
def decode(src: Iterable[dict], *, handler: Handler = reraise) -> Iterator[dict]:
    """Stage: encoded stack -> numpy images (channels last, see :mod:`dfd_models.data.transforms`).

    ``frames`` [T, H, W, 3] float32 linear RGB (``generator.dataset.pixels.decode_rgb``:
    sRGB PNGs are linearised, in [0, 1]; EXR frames are as rendered, not clipped),
    ``depth`` [H, W, 1] float32 planar metres (0 = no surface), optional ``aif``
    [H, W, 3] and ``coc`` [T, H, W, 1] (CoC diameter, pixels).
    """
    return _guarded(src, _decode, handler)
