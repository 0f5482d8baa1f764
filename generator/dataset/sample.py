"""One rendered scene -> one flat WebDataset sample (DESIGN.md section 5), and back.

A sample is ``{"__key__": "00000042", "json": bytes, "f000.png": bytes, ...}``: member names
are the part after the key, their last extension picks the codec (:mod:`generator.dataset.pixels`).
Decoding checks what a stranger may have written (:func:`decode_member`, the one decoder of
``inspect --verify``, ``export`` and the training loader): the metadata within the recipe's
bounds, each image's header within :mod:`generator.core.limits` and of the metadata's size
before its pixels are decompressed, depth finite. No bpy."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from generator.core.errors import CorruptShard, brief
from generator.dataset.encoder import Encoder
from generator.dataset.metadata import RecipeInfo, Rendered, sample_metadata
from generator.dataset.pixels import decode_rgb, exr_size, jpeg_size, png_header, read_exr_bytes
from generator.scene.flow import CHANNELS as FLOW_CHANNELS
from generator.dataset.format import (AIF, META, RGB_EXTENSIONS, clean_member, coc_member, depth_member,
                              frame_stem, metadata_json, motion_member, rgb_member, sample_key)
from generator.core.limits import MAX_FRAMES, MAX_SCENE_PIXELS
from generator.recipe.recipe import ImageRecipe
from generator.core.safe_json import load_json
from generator.scene.spec import SceneSpec

def _check_shapes(spec: SceneSpec, rendered: Rendered) -> None:
    hw = (spec.render.height, spec.render.width)
    n_depth = len(spec.frames) if spec.depth_per_frame else 1
    if len(rendered.frames) != len(spec.frames) or len(rendered.depth) != n_depth:
        raise ValueError(
            f"scene {spec.index}: got {len(rendered.frames)} frames and {len(rendered.depth)} depth maps, "
            f"expected {len(spec.frames)} and {n_depth}"
        )
    images = [*rendered.frames, *([rendered.aif] if rendered.aif is not None else [])]
    if any(im.shape != (*hw, 3) for im in images) or any(d.shape != hw for d in rendered.depth):
        raise ValueError(f"scene {spec.index}: image or depth shape differs from {hw}")
    if spec.render.motion and (
        rendered.object_index is None
        or [m.shape for m in rendered.object_index] != [d.shape for d in rendered.depth]
    ):
        raise ValueError(f"scene {spec.index}: motion vectors need one {hw} object-index map per depth map")


def encode_sample(
    spec: SceneSpec, rendered: Rendered, recipe: RecipeInfo, encoder: Encoder | None = None
) -> dict[str, Any]:
    """Encode one rendered scene as a flat WebDataset sample (member name -> bytes).

    Members: ``json``; ``fNNN.png`` (or ``fNNN.exr`` for ``rgb: exr``, ``fNNN.jpg`` for ``rgb: jpeg``),
    through the spec's sensor when it has one (:mod:`generator.scene.sensor`); ``fNNN.clean.exr``
    (channels ``R``, ``G``, ``B``: the render before the sensor) when ``spec.sensor.clean``;
    ``depth.exr`` or ``fNNN.depth.exr`` (channel ``Z``, planar metres, 0 = invalid);
    ``aif.png`` / ``aif.exr`` when rendered; ``fNNN.coc.exr`` (channel ``Y``, CoC
    diameter in pixels from :func:`generator.core.lens.coc_map_px`) when ``spec.render.coc``;
    ``fNNN.motion.exr`` (channels ``X``, ``Y``: pixels, ``Z``: metres; motion to the
    next frame from :func:`generator.scene.flow.forward_flow`) for every frame but the
    last when ``spec.render.motion``.

    ``encoder`` (of this spec) may hold members encoded already, as they were
    rendered; by default each is encoded here.
    """
    _check_shapes(spec, rendered)
    encoder = encoder or Encoder(spec)
    if encoder.spec != spec:
        raise ValueError(f"scene {spec.index}: the encoder was made for another scene spec")
    meta = sample_metadata(spec, rendered, recipe)
    sample: dict[str, Any] = {
        "__key__": sample_key(spec.index),
        META: metadata_json(meta),
    }
    clean = spec.sensor is not None and spec.sensor.clean
    for i, (frame, rgb) in enumerate(zip(spec.frames, rendered.frames)):
        ext, data = encoder.frame(i, rgb).result()
        sample[f"{frame_stem(frame.index)}.{ext}"] = data
        if clean:
            sample[clean_member(frame.index)] = encoder.clean(rgb).result()
    if rendered.aif is not None:
        ext, data = encoder.aif(rendered.aif).result()
        sample[f"{AIF}.{ext}"] = data
    for name, data in encoder.depth_pass(rendered.depth, rendered.object_index).items():
        sample[name] = data.result()
    return sample


@dataclass
class DecodedSample:
    """A sample's arrays.

    Attributes:
        key: the sample key.
        meta: the parsed ``json`` member.
        frames: per frame, [H, W, 3] float32 linear RGB (sRGB PNGs are linearised).
        depth: [H, W] float32 planar metres (0 = invalid); one map, or one per frame.
        aif: [H, W, 3] float32 linear RGB, or ``None``.
        coc: per frame, [H, W] float32 CoC diameter in pixels, or ``None``.
        motion: per frame but the last, [H, W, 3] float32 motion to the next frame
            (du, dv pixels; dz metres), or ``None``.
        clean: per frame, [H, W, 3] float32 linear radiance before the sensor (recipe
            ``outputs.clean``), or ``None``.
    """

    key: str
    meta: dict[str, Any]
    frames: list[np.ndarray]
    depth: list[np.ndarray]
    aif: np.ndarray | None
    coc: list[np.ndarray] | None
    motion: list[np.ndarray] | None = None
    clean: list[np.ndarray] | None = None


#: Width and height a sample may declare, pixels: the recipe's bounds (:class:`generator.recipe.recipe.ImageRecipe`).
_IMAGE_BOUNDS = {f.name: (f.metadata["ge"], f.metadata["le"])
                 for f in dataclasses.fields(ImageRecipe) if f.name in ("width", "height")}
#: Channels of each EXR pass member, by the pass name before ``.exr`` (DESIGN.md section 5).
_PASS_CHANNELS = {"depth": ("Z",), "coc": ("Y",), "motion": FLOW_CHANNELS, "clean": ("R", "G", "B")}
#: Header readers of each image extension: (width, height) pixels, checked against the limits.
_SIZE = {"exr": exr_size, "jpg": jpeg_size, "png": lambda data: png_header(data)[:2]}


def _where(sample: Mapping[str, Any], name: str) -> tuple[str, str]:
    """(shard, member) of member ``name`` for a :class:`CorruptShard` (a sample that was never in a
    shard, e.g. straight from :func:`encode_sample`, is named as in memory)."""
    return sample.get("__url__", "(sample in memory)"), f"{sample['__key__']}.{name}"


def _check_metadata(meta: Any) -> None:
    """Raise ValueError where metadata breaks what decoding relies on (:func:`read_metadata`)."""
    if not isinstance(meta, dict):
        raise ValueError("not a JSON object")
    for name, (low, high) in _IMAGE_BOUNDS.items():
        value = meta["image"][name]
        if type(value) is not int or not low <= value <= high:
            raise ValueError(f"image.{name} {brief(value, 40)} is not an integer in {low}..{high}")
    frames = meta["frames"]
    if not isinstance(frames, list) or not 1 <= len(frames) <= MAX_FRAMES:
        raise ValueError(f"frames is not a list of 1 to {MAX_FRAMES} frames")
    indices = [frame["index"] for frame in frames]
    if any(type(i) is not int or i < 0 for i in indices) or len(set(indices)) < len(indices):
        raise ValueError("frame indices are not distinct integers >= 0")
    width, height = meta["image"]["width"], meta["image"]["height"]
    if width * height * len(frames) > MAX_SCENE_PIXELS:
        raise ValueError(f"{len(frames)} frames of {width}x{height} px, more than the {MAX_SCENE_PIXELS} "
                         f"pixels a scene may have")
    if not isinstance(meta["depth"]["per_frame"], bool):
        raise ValueError("depth.per_frame is not true or false")


def read_metadata(sample: Mapping[str, Any]) -> dict[str, Any]:
    """A sample's metadata (its ``json`` member), read and checked where decoding relies on it.

    The JSON is read within :mod:`generator.core.limits`' size and nesting limits; ``image.width``
    and ``height`` (pixels) are integers within the recipe's bounds; ``frames`` is a list of
    1 to :data:`generator.core.limits.MAX_FRAMES` frames with distinct integer indices >= 0, and
    at most :data:`generator.core.limits.MAX_SCENE_PIXELS` pixels over them; ``depth.per_frame``
    is a boolean. Other fields are left to their readers.

    Raises:
        CorruptShard: naming ``KEY.json``, "bad metadata": missing (a link or other
            non-regular tar member is not read), not such JSON, or out of bounds.
    """
    shard, member = _where(sample, META)
    if META not in sample:
        raise CorruptShard(shard, member, "bad metadata (member missing or not a regular file)")
    try:
        meta = load_json(sample[META])
        _check_metadata(meta)
    except (ValueError, KeyError, TypeError) as exn:
        reason = str(exn) if isinstance(exn, ValueError) else brief(exn)
        raise CorruptShard(shard, member, f"bad metadata ({reason})") from None
    return meta


def image_member(sample: Mapping[str, Any], stem: str) -> str:
    """The member holding image ``stem`` (:func:`generator.dataset.format.rgb_member`), or ``stem.png|exr|jpg``
    when the sample has none (a name for the error :func:`decode_member` then raises)."""
    return rgb_member(sample, stem) or f"{stem}.{'|'.join(RGB_EXTENSIONS)}"


def decode_member(sample: Mapping[str, Any], name: str, size: tuple[int, int]) -> np.ndarray:
    """Member ``name`` of ``sample`` decoded and checked: the one decoder of every member
    that :func:`decode_sample`, ``inspect --verify``, ``export`` and the training loader use.

    Its header (PNG IHDR, EXR data window) must declare ``size`` = (height, width) pixels,
    from the metadata, and stay within :mod:`generator.core.limits`, before any pixel is
    decompressed; a depth map must be finite and >= 0 everywhere (metres, 0 = no surface).

    Returns:
        an image (``fNNN.png|exr|jpg``, ``aif.png|exr|jpg``): [H, W, 3] float32 linear RGB
        (:func:`decode_rgb`); ``fNNN.clean.exr``: [H, W, 3] float32 linear RGB; ``depth.exr`` / ``fNNN.depth.exr``: [H, W] float32 metres;
        ``fNNN.coc.exr``: [H, W] float32 pixels; ``fNNN.motion.exr``: [H, W, 3] float32
        (channels :data:`generator.scene.flow.CHANNELS`).
    Raises:
        CorruptShard: naming the member: missing (a link or other non-regular tar member is
            not read), not decodable, past the limits, another size, or bad depth.
    """
    shard, member = _where(sample, name)
    if name not in sample:
        raise CorruptShard(shard, member, "member missing or not a regular file")
    stem, ext = name.rsplit(".", 1)
    kind = stem.rsplit(".", 1)[-1]  # depth, coc, motion; else an image (fNNN, aif)
    channels = _PASS_CHANNELS.get(kind)
    try:
        width, height = _SIZE[ext](sample[name])
    except Exception as exn:  # whatever a damaged header raises: one line naming the member
        raise CorruptShard(shard, member, f"cannot decode ({brief(exn)})") from None
    if (height, width) != tuple(size):
        raise CorruptShard(shard, member, f"{width}x{height} px; the metadata says {size[1]}x{size[0]}")
    try:
        if channels is None:
            image = decode_rgb(sample[name], ext)
        else:
            maps = read_exr_bytes(sample[name])
            image = maps[channels[0]] if len(channels) == 1 else np.stack([maps[c] for c in channels], axis=-1)
    except Exception as exn:  # whatever damaged pixel data raises: one line naming the member
        raise CorruptShard(shard, member, f"cannot decode ({brief(exn)})") from None
    if kind == "depth":
        bad = np.count_nonzero(~(np.isfinite(image) & (image >= 0)))
        if bad:
            raise CorruptShard(shard, member, f"depth not finite or negative at {bad} of {image.size} pixels")
    return image


def decode_sample(sample: Mapping[str, Any]) -> DecodedSample:
    """Decode and check every member of a sample as :func:`encode_sample` wrote it (or as stock
    WebDataset reads it: bytes): the metadata (:func:`read_metadata`), then each frame, depth map,
    all-in-focus image, CoC and motion map it implies (:func:`decode_member`).

    Raises:
        CorruptShard: naming the first member that is missing or does not check.
    """
    meta = read_metadata(sample)
    size = (meta["image"]["height"], meta["image"]["width"])

    def member(name: str) -> np.ndarray:
        return decode_member(sample, name, size)

    indices = [fr["index"] for fr in meta["frames"]]
    frames = [member(image_member(sample, frame_stem(i))) for i in indices]
    depth = [member(depth_member(i)) for i in (indices if meta["depth"]["per_frame"] else [None])]
    aif = rgb_member(sample, AIF)
    coc = [member(coc_member(i)) for i in indices] if coc_member(indices[0]) in sample else None
    motion = [member(motion_member(i)) for i in indices[:-1]] if motion_member(indices[0]) in sample else None
    clean = [member(clean_member(i)) for i in indices] if clean_member(indices[0]) in sample else None
    return DecodedSample(
        key=sample["__key__"],
        meta=meta,
        frames=frames,
        depth=depth,
        aif=None if aif is None else member(aif),
        coc=coc,
        motion=motion,
        clean=clean,
    )
