"""One rendered scene -> one flat WebDataset sample (DESIGN.md section 5), and back.

A sample is ``{"__key__": "00000042", "json": bytes, "f000.png": bytes, ...}``:
member names are the part after the key, their last extension picks the codec.
Every member is encoded here to bytes, deterministically (no timestamps, fixed
compression settings), so the same render gives the same bytes in any process.
Decoding checks what a stranger may have written (:func:`decode_member`, the one
decoder of ``inspect --verify``, ``export`` and the training loader): the metadata
within the recipe's bounds, each image's header within :mod:`generator.limits` and of
the metadata's size before its pixels are decompressed, depth finite.

Pure Python + numpy/Pillow/OpenEXR; no bpy.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import struct
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np
import OpenEXR
from PIL import Image

import generator
from generator import lens as lensmod
from generator.errors import CorruptShard, brief
from generator.flow import CHANNELS as FLOW_CHANNELS
from generator.flow import forward_flow
from generator.format import (AIF, FORMAT_VERSION, META, RGB_EXTENSIONS, coc_member, depth_member, frame_stem,
                              motion_member, rgb_member, sample_key)
from generator.limits import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS
from generator.recipe import MAX_FRAMES, MAX_SCENE_PIXELS, ImageRecipe
from generator.safe_json import load_json
from generator.spec import SceneSpec, euler_xyz_matrix, world_to_camera

#: Name of the background wall object in a spec (:func:`generator.draw.sample_scene`).
WALL_NAME = "wall"
#: Largest in-plane component of the wall's unit normal in the camera frame for it
#: to count as fronto-parallel (one planar depth over the whole image).
_WALL_TILT = 1e-9
#: zlib level for PNG members (Pillow's default): fixed so bytes never depend on defaults.
_PNG_LEVEL = 6


class Rendered(Protocol):
    """What :func:`encode_sample` needs from ``generator.blender.render.RenderedScene``."""

    frames: Sequence[np.ndarray]  # each [H, W, 3] float32, linear RGB, in spec.frames order
    depth: Sequence[np.ndarray]  # each [H, W] float32, planar metres, 0 = invalid
    object_index: Sequence[np.ndarray] | None  # per depth map, [H, W]; needed when spec.render.motion
    aif: np.ndarray | None  # [H, W, 3] float32 linear RGB


class RecipeInfo(Protocol):
    """What :func:`encode_sample` needs from a ``Recipe``."""

    name: str
    sha256: str
    seed: int


# --- pixel encodings -------------------------------------------------------


def linear_to_srgb(rgb: np.ndarray) -> np.ndarray:
    """sRGB OETF (IEC 61966-2-1) of linear values, clipped to [0, 1]."""
    x = np.clip(np.asarray(rgb, dtype=np.float64), 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055)


def srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
    """Inverse sRGB OETF, for values in [0, 1]."""
    x = np.asarray(srgb, dtype=np.float64)
    return np.where(x <= 0.04045, x / 12.92, np.power((x + 0.055) / 1.055, 2.4))


def _quantize(srgb: np.ndarray, bits: int) -> np.ndarray:
    top = (1 << bits) - 1
    return np.floor(srgb * top + 0.5).astype(np.uint8 if bits == 8 else np.uint16)


def srgb8(rgb: np.ndarray) -> np.ndarray:
    """8-bit sRGB codes [..., 3] uint8 of linear RGB, exactly as the ``png8`` encoding stores them."""
    return _quantize(linear_to_srgb(rgb), 8)


def _png8(rgb_u8: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb_u8).save(buf, format="PNG", compress_level=_PNG_LEVEL)
    return buf.getvalue()


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def _png16(rgb_u16: np.ndarray) -> bytes:
    """48-bit RGB PNG. Pillow cannot write (or read) 16-bit-per-channel RGB, so
    this writes the minimal file by the PNG spec: IHDR, one IDAT of unfiltered
    rows (filter byte 0), IEND."""
    h, w, _ = rgb_u16.shape
    rows = np.zeros((h, 1 + 6 * w), dtype=np.uint8)
    rows[:, 1:] = np.ascontiguousarray(rgb_u16, dtype=">u2").view(np.uint8).reshape(h, 6 * w)
    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)  # 16 bit, truecolour, no interlace
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), _PNG_LEVEL))
        + _png_chunk(b"IEND", b"")
    )


def _check_pixels(what: str, width: int, height: int, bytes_per_pixel: int) -> None:
    """Refuse an image whose header declares more than :data:`generator.limits.MAX_IMAGE_PIXELS`
    pixels or :data:`~generator.limits.MAX_IMAGE_BYTES` bytes of decoded pixels (ValueError)."""
    if width * height > MAX_IMAGE_PIXELS or width * height * bytes_per_pixel > MAX_IMAGE_BYTES:
        raise ValueError(f"{what} of {width}x{height} px, more than the {MAX_IMAGE_PIXELS} pixels "
                         f"({MAX_IMAGE_BYTES} bytes) allowed")


def _png_header(data: bytes) -> tuple[int, int, tuple[int, ...]]:
    """(width, height, (bit depth, colour type, compression, filter, interlace)) from a PNG's IHDR,
    checked against the image limits before anything is decompressed (ValueError)."""
    if len(data) < 29 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG (no signature and IHDR chunk)")
    width, height, *fields = struct.unpack(">IIBBBBB", data[16:29])
    # Pillow holds an 8-bit image in 4 bytes per pixel; a 16-bit RGB row is 6 per pixel
    _check_pixels("PNG", width, height, 6 if fields[0] == 16 else 4)
    return width, height, tuple(fields)


def _read_png16(data: bytes) -> np.ndarray:
    """Decode what :func:`_png16` writes: [H, W, 3] uint16.

    The IDAT data is inflated to at most the bytes the IHDR declares (checked against the
    image limits first), so a small member that inflates to gigabytes is refused after that.
    """
    width, height, fields = _png_header(data)
    if fields != (16, 2, 0, 0, 0):
        raise ValueError("16-bit PNG other than RGB, unfiltered, not interlaced: not written by dfdgen")
    pos, idat = 8, []
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        if data[pos + 4 : pos + 8] == b"IDAT":
            idat.append(data[pos + 8 : pos + 8 + length])
        pos += 12 + length
    size = height * (1 + 6 * width)
    inflate = zlib.decompressobj()
    raw = inflate.decompress(b"".join(idat), size)
    if inflate.decompress(inflate.unconsumed_tail, 1):  # one byte more than declared is enough to know
        raise ValueError(f"16-bit PNG data inflates past the {width}x{height} px its IHDR declares")
    if len(raw) != size:
        raise ValueError(f"16-bit PNG data ends after {len(raw)} of the {size} bytes its IHDR declares")
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, 1 + 6 * width)
    if np.any(rows[:, 0]):
        raise ValueError("16-bit PNG with row filters: not written by dfdgen")
    return rows[:, 1:].copy().view(">u2").reshape(height, width, 3).astype(np.uint16)


def write_exr_bytes(channels: Mapping[str, np.ndarray]) -> bytes:
    """Single-part scanline EXR, ZIP compression, float32 channels (deterministic bytes)."""
    pixels = {name: np.ascontiguousarray(a, dtype=np.float32) for name, a in channels.items()}
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    buf = io.BytesIO()
    OpenEXR.File(header, pixels).write(buf)
    return buf.getvalue()


def _exr_size(data: bytes) -> tuple[int, int]:
    """(width, height) of an EXR's data window, read from its header alone and checked against
    the image limits (4 bytes per value at most, every channel; ValueError)."""
    exr = OpenEXR.File(io.BytesIO(data), header_only=True)
    if len(exr.parts) != 1:
        raise ValueError(f"EXR of {len(exr.parts)} parts; dfdgen writes one")
    header = exr.parts[0].header
    low, high = (np.asarray(corner, dtype=np.int64) for corner in header["dataWindow"])
    width, height = (int(n) for n in high - low + 1)
    if width < 1 or height < 1:
        raise ValueError(f"EXR data window of {width}x{height} px")
    _check_pixels("EXR", width, height, 4 * len(header["channels"]))
    return width, height


def read_exr_bytes(data: bytes) -> dict[str, np.ndarray]:
    """Channels of an EXR held in memory: name -> [H, W] array (float32 as written).

    Its header is read first: an EXR larger than the image limits is refused (ValueError)
    before any pixel is decompressed.
    """
    _exr_size(data)
    exr = OpenEXR.File(io.BytesIO(data), separate_channels=True)
    return {name: np.asarray(ch.pixels) for name, ch in exr.channels().items()}


def _encode_rgb(rgb: np.ndarray, kind: str) -> tuple[str, bytes]:
    """(extension, bytes) of a linear RGB image in the recipe's ``rgb`` encoding."""
    if kind == "exr":
        return "exr", write_exr_bytes({"R": rgb[..., 0], "G": rgb[..., 1], "B": rgb[..., 2]})
    if kind == "png16":
        return "png", _png16(_quantize(linear_to_srgb(rgb), 16))
    if kind == "png8":
        return "png", _png8(srgb8(rgb))
    raise ValueError(f"unknown rgb encoding {kind!r}; expected png8, png16 or exr")


def decode_rgb(data: bytes, ext: str) -> np.ndarray:
    """Linear RGB [H, W, 3] float32 from a ``png`` (sRGB, 8 or 16 bit), ``jpeg`` (sRGB, 8 bit: a
    camera's frame for ``dfdgen predict``; its colour profile is not applied) or ``exr`` image.

    Raises:
        ValueError: the header declares more than the image limits (:mod:`generator.limits`),
            checked before any pixel is decompressed; anything else a damaged image raises.
    """
    if ext == "exr":
        ch = read_exr_bytes(data)
        return np.stack([ch["R"], ch["G"], ch["B"]], axis=-1).astype(np.float32)
    if ext == "jpeg":
        if not data.startswith(b"\xff\xd8"):  # SOI marker
            raise ValueError("not a JPEG (no start-of-image marker)")
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as image:
            _check_pixels("JPEG", *image.size, 3)
            return _linear_lut(8)[np.asarray(image.convert("RGB"))]
    if _png_header(data)[2][0] == 16:  # bit depth
        return _linear_lut(16)[_read_png16(data)]
    return _linear_lut(8)[np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))]


@functools.cache
def _linear_lut(bits: int) -> np.ndarray:
    """Linear value (float32) of every ``bits``-bit sRGB code: decoding by table lookup
    is several times faster than evaluating the power law per pixel, with the same values."""
    return srgb_to_linear(np.arange(1 << bits) / ((1 << bits) - 1)).astype(np.float32)


class Encoder:
    """Encodes one scene's members, each from distinct arrays once, optionally off the render thread.

    A renderer hands it the depth pass (:meth:`depth_pass`) and every image
    (:meth:`image`) as soon as they are rendered
    (:class:`generator.blender.render.RenderListener`). With ``background=True``
    a worker thread encodes them, and derives the CoC maps and motion vectors
    from the depth pass, while Cycles renders the next view (a Cycles render
    releases the GIL); :func:`encode_sample` then only collects the bytes.
    Work is keyed by the arrays' identity, so the repeated ramps of a static
    scene, which share one array, are encoded once. The bytes never depend on
    where or when a member was encoded. Use as a context manager (the thread
    stops on exit).

    Args:
        spec: the scene whose members are encoded.
        background: encode on a worker thread (else on the caller's, when asked).
    """

    def __init__(self, spec: SceneSpec, *, background: bool = False):
        self.spec = spec
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="dfdgen-encode") if background else None
        # key -> (the arrays it reads, kept so that their ids stay unique; the member's future bytes)
        self._jobs: dict[tuple, tuple[tuple[np.ndarray, ...], Future]] = {}

    def __enter__(self) -> "Encoder":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=True, cancel_futures=True)

    def image(self, rgb: np.ndarray) -> Future:
        """Encode a linear RGB image [H, W, 3] in the spec's ``rgb`` encoding: a future (extension, bytes)."""
        return self._job(("rgb",), (rgb,), _encode_rgb, rgb, self.spec.render.rgb)

    def depth_pass(self, depth: Sequence[np.ndarray], object_index: Sequence[np.ndarray] | None) -> dict[str, Future]:
        """The members made from the depth pass: member name -> future bytes.

        ``depth``: the planar depth maps in metres (one, or one per frame, as in
        :class:`Rendered`); ``object_index``: per depth map, when ``spec.render.motion``.
        Depth maps as ``depth.exr`` / ``fNNN.depth.exr``, then ``fNNN.coc.exr``
        and ``fNNN.motion.exr`` when the spec asks for them.
        """
        spec = self.spec
        members: dict[str, Future] = {}
        if spec.depth_per_frame:
            for frame, d in zip(spec.frames, depth):
                members[depth_member(frame.index)] = self._job(("depth",), (d,), write_exr_bytes, {"Z": d})
        else:
            members[depth_member(None)] = self._job(("depth",), (depth[0],), write_exr_bytes, {"Z": depth[0]})
        for i, frame in enumerate(spec.frames):
            at = i if spec.depth_per_frame else 0  # the depth map (and object-index map) of frame i
            if spec.render.coc:
                members[coc_member(frame.index)] = self._job(("coc", i), (depth[at],), _coc_exr, spec, i, depth[at])
            if spec.render.motion and i < len(spec.frames) - 1:
                maps = (depth[at], object_index[at])
                members[motion_member(frame.index)] = self._job(("motion", i), maps, _motion_exr, spec, i, *maps)
        return members

    def _job(self, kind: tuple, arrays: tuple[np.ndarray, ...], work: Callable[..., Any], *args: Any) -> Future:
        """The future of ``work(*args)``, started once per ``kind`` and ``arrays``."""
        key = (*kind, *map(id, arrays))
        if key not in self._jobs:
            if self._thread is not None:
                future = self._thread.submit(work, *args)
            else:  # now, on this thread (an exception is raised here, to the caller)
                future = Future()
                future.set_result(work(*args))
            self._jobs[key] = (arrays, future)
        return self._jobs[key][1]


def _coc_exr(spec: SceneSpec, i: int, depth: np.ndarray) -> bytes:
    """Frame ``i``'s CoC diameter map (pixels) from its depth map, as an EXR (channel ``Y``)."""
    return write_exr_bytes({"Y": lensmod.coc_map_px(spec.lens, depth, spec.frames[i].focus_distance_m, spec.render.width)})


def _motion_exr(spec: SceneSpec, i: int, depth: np.ndarray, object_index: np.ndarray) -> bytes:
    """Frame ``i``'s motion to the next frame (:func:`generator.flow.forward_flow`) as an EXR."""
    flow = forward_flow(spec, i, depth, object_index)
    return write_exr_bytes(dict(zip(FLOW_CHANNELS, np.moveaxis(flow, -1, 0))))


# --- metadata --------------------------------------------------------------


def _frame_meta(spec: SceneSpec, frame) -> dict[str, Any]:
    width, height = spec.render.width, spec.render.height
    cam = lensmod.blender_camera(spec.lens, frame.focus_distance_m)
    return {
        "index": frame.index,
        "ramp": frame.ramp,
        "time_s": frame.time_s,
        "focus_distance_m": frame.focus_distance_m,
        "K": lensmod.intrinsics(spec.lens, frame.focus_distance_m, width, height).tolist(),
        "world_to_camera": world_to_camera(spec.camera_at(frame)).tolist(),
        "blender_camera": {
            "lens_mm": cam.lens_mm,
            "fstop": cam.fstop,
            "focus_distance_m": cam.focus_distance_m,
            "sensor_width_mm": cam.sensor_width_mm,
        },
    }


def wall_depth_m(spec: SceneSpec) -> float | None:
    """Planar depth of the scene's background wall, metres, or None when it has none.

    The wall (:func:`generator.draw._sample_wall`) is a ``plane`` object named
    :data:`WALL_NAME`, undeformed, whose normal lies along the optical axis: every
    point of it then has the same planar depth z in the OpenCV camera frame, so a
    pixel sees the wall exactly where its depth equals this value. The lens model
    changes only K (breathing), never the camera frame, and the wall does not
    move, so the value holds for every frame as long as the camera pose does.

    Returns None when there is no such object, or it is deformed, or tilted (normal
    off the optical axis by more than 1e-9) in some frame, or its depth differs
    between frames (a moving camera): no single value then identifies its pixels.
    """
    wall = next((o for o in spec.objects if o.name == WALL_NAME and o.shape == "plane"), None)
    if wall is None or wall.twist or wall.taper or wall.displace:
        return None
    depths = set()
    for camera in dict.fromkeys(spec.camera_at(frame) for frame in spec.frames):
        w2c = world_to_camera(camera)
        normal = w2c[:3, :3] @ euler_xyz_matrix(wall.rotation)[:, 2]  # plane primitive: local +Z
        if np.hypot(normal[0], normal[1]) > _WALL_TILT:
            return None
        depths.add(float((w2c @ np.append(wall.location, 1.0))[2]))
    return depths.pop() if len(depths) == 1 else None


def sample_metadata(spec: SceneSpec, rendered: Rendered, recipe: RecipeInfo) -> dict[str, Any]:
    """The ``json`` member (DESIGN.md section 5) plus ``scene``, the full spec.

    ``depth.min_m`` / ``max_m`` are the range of valid (non-zero) depth over the
    stored depth maps, metres; ``None`` when no pixel has a surface.
    ``depth.wall_m`` is the background wall's planar depth in every frame, metres
    (:func:`wall_depth_m`; ``None`` without a fronto-parallel wall): the loader
    marks pixels at that depth as wall.
    """
    valid = np.concatenate([d[d > 0].ravel() for d in rendered.depth])
    return {
        "format_version": FORMAT_VERSION,
        "generator": {"name": "dfdgen", "version": generator.__version__},
        "recipe": {"name": recipe.name, "sha256": recipe.sha256, "seed": recipe.seed},
        "scene_index": spec.index,
        "seed": spec.seed,
        "split": spec.split,
        "image": {"width": spec.render.width, "height": spec.render.height, "samples": spec.render.samples},
        "lens": {
            "model": spec.lens.model,
            "focal_length_m": spec.lens.focal_length_m,
            "f_number": spec.lens.f_number,
            "sensor_width_m": spec.lens.sensor_width_m,
            "pixel_pitch_m": spec.lens.pixel_pitch_m(spec.render.width),
        },
        "depth": {
            "per_frame": spec.depth_per_frame,
            "kind": "planar",
            "units": "m",
            "invalid": 0,
            "min_m": float(valid.min()) if valid.size else None,
            "max_m": float(valid.max()) if valid.size else None,
            "wall_m": wall_depth_m(spec),
        },
        "frames": [_frame_meta(spec, frame) for frame in spec.frames],
        "scene": spec.to_dict(),
    }


# --- encode / decode -------------------------------------------------------


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

    Members: ``json``; ``fNNN.png`` (or ``fNNN.exr`` for ``rgb: exr``);
    ``depth.exr`` or ``fNNN.depth.exr`` (channel ``Z``, planar metres, 0 = invalid);
    ``aif.png`` / ``aif.exr`` when rendered; ``fNNN.coc.exr`` (channel ``Y``, CoC
    diameter in pixels from :func:`generator.lens.coc_map_px`) when ``spec.render.coc``;
    ``fNNN.motion.exr`` (channels ``X``, ``Y``: pixels, ``Z``: metres; motion to the
    next frame from :func:`generator.flow.forward_flow`) for every frame but the
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
        META: json.dumps(meta, sort_keys=True, indent=1, allow_nan=False).encode("utf-8"),
    }
    images = [(frame_stem(frame.index), rgb) for frame, rgb in zip(spec.frames, rendered.frames)]
    for stem, rgb in images + ([(AIF, rendered.aif)] if rendered.aif is not None else []):
        ext, data = encoder.image(rgb).result()
        sample[f"{stem}.{ext}"] = data
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
    """

    key: str
    meta: dict[str, Any]
    frames: list[np.ndarray]
    depth: list[np.ndarray]
    aif: np.ndarray | None
    coc: list[np.ndarray] | None
    motion: list[np.ndarray] | None = None


#: Width and height a sample may declare, pixels: the recipe's bounds (:class:`generator.recipe.ImageRecipe`).
_IMAGE_BOUNDS = {f.name: (f.metadata["ge"], f.metadata["le"])
                 for f in dataclasses.fields(ImageRecipe) if f.name in ("width", "height")}
#: Channels of each EXR pass member, by the pass name before ``.exr`` (DESIGN.md section 5).
_PASS_CHANNELS = {"depth": ("Z",), "coc": ("Y",), "motion": FLOW_CHANNELS}


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

    The JSON is read within :mod:`generator.limits`' size and nesting limits; ``image.width``
    and ``height`` (pixels) are integers within the recipe's bounds; ``frames`` is a list of
    1 to :data:`generator.recipe.MAX_FRAMES` frames with distinct integer indices >= 0, and
    at most :data:`generator.recipe.MAX_SCENE_PIXELS` pixels over them; ``depth.per_frame``
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
    """The member holding image ``stem`` (:func:`generator.format.rgb_member`), or ``stem.png|exr``
    when the sample has none (a name for the error :func:`decode_member` then raises)."""
    return rgb_member(sample, stem) or f"{stem}.{'|'.join(RGB_EXTENSIONS)}"


def decode_member(sample: Mapping[str, Any], name: str, size: tuple[int, int]) -> np.ndarray:
    """Member ``name`` of ``sample`` decoded and checked: the one decoder of every member
    that :func:`decode_sample`, ``inspect --verify``, ``export`` and the training loader use.

    Its header (PNG IHDR, EXR data window) must declare ``size`` = (height, width) pixels,
    from the metadata, and stay within :mod:`generator.limits`, before any pixel is
    decompressed; a depth map must be finite and >= 0 everywhere (metres, 0 = no surface).

    Returns:
        an image (``fNNN.png|exr``, ``aif.png|exr``): [H, W, 3] float32 linear RGB
        (:func:`decode_rgb`); ``depth.exr`` / ``fNNN.depth.exr``: [H, W] float32 metres;
        ``fNNN.coc.exr``: [H, W] float32 pixels; ``fNNN.motion.exr``: [H, W, 3] float32
        (channels :data:`generator.flow.CHANNELS`).
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
        width, height = _exr_size(sample[name]) if ext == "exr" else _png_header(sample[name])[:2]
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
    return DecodedSample(
        key=sample["__key__"],
        meta=meta,
        frames=frames,
        depth=depth,
        aif=None if aif is None else member(aif),
        coc=coc,
        motion=motion,
    )
