"""One rendered scene -> one flat WebDataset sample (DESIGN.md section 5), and back.

A sample is ``{"__key__": "00000042", "json": bytes, "f000.png": bytes, ...}``:
member names are the part after the key, their last extension picks the codec.
Every member is encoded here to bytes, deterministically (no timestamps, fixed
compression settings), so the same render gives the same bytes in any process.

Pure Python + numpy/Pillow/OpenEXR; no bpy.
"""

from __future__ import annotations

import functools
import io
import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence

import numpy as np
import OpenEXR
from PIL import Image

import generator
from generator import lens as lensmod
from generator.flow import CHANNELS as FLOW_CHANNELS
from generator.flow import forward_flow
from generator.spec import SceneSpec, euler_xyz_matrix, world_to_camera

#: Version of the sample layout and metadata schema below.
FORMAT_VERSION = 1
#: Name of the background wall object in a spec (:func:`generator.sampling.sample_scene`).
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


def sample_key(scene_index: int) -> str:
    """WebDataset key of a scene: zero-padded, no dots."""
    return f"{scene_index:08d}"


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


def _read_png16(data: bytes) -> np.ndarray:
    """Decode what :func:`_png16` writes: [H, W, 3] uint16."""
    pos, idat, header = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if tag == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif tag == b"IDAT":
            idat.append(body)
        pos += 12 + length
    w, h = header[0], header[1]
    rows = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8).reshape(h, 1 + 6 * w)
    if np.any(rows[:, 0]):
        raise ValueError("16-bit PNG with row filters: not written by dfdgen")
    return rows[:, 1:].copy().view(">u2").reshape(h, w, 3).astype(np.uint16)


def write_exr_bytes(channels: Mapping[str, np.ndarray]) -> bytes:
    """Single-part scanline EXR, ZIP compression, float32 channels (deterministic bytes)."""
    pixels = {name: np.ascontiguousarray(a, dtype=np.float32) for name, a in channels.items()}
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    buf = io.BytesIO()
    OpenEXR.File(header, pixels).write(buf)
    return buf.getvalue()


def read_exr_bytes(data: bytes) -> dict[str, np.ndarray]:
    """Channels of an EXR held in memory: name -> [H, W] array (float32 as written)."""
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
    """Linear RGB [H, W, 3] float32 from a ``png`` (sRGB, 8 or 16 bit) or ``exr`` member."""
    if ext == "exr":
        ch = read_exr_bytes(data)
        return np.stack([ch["R"], ch["G"], ch["B"]], axis=-1).astype(np.float32)
    if data[24] == 16:  # IHDR bit depth
        return _linear_lut(16)[_read_png16(data)]
    return _linear_lut(8)[np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))]


@functools.cache
def _linear_lut(bits: int) -> np.ndarray:
    """Linear value (float32) of every ``bits``-bit sRGB code: decoding by table lookup
    is several times faster than evaluating the power law per pixel, with the same values."""
    return srgb_to_linear(np.arange(1 << bits) / ((1 << bits) - 1)).astype(np.float32)


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

    The wall (:func:`generator.sampling._sample_wall`) is a ``plane`` object named
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


def encode_sample(spec: SceneSpec, rendered: Rendered, recipe: RecipeInfo) -> dict[str, Any]:
    """Encode one rendered scene as a flat WebDataset sample (member name -> bytes).

    Members: ``json``; ``fNNN.png`` (or ``fNNN.exr`` for ``rgb: exr``);
    ``depth.exr`` or ``fNNN.depth.exr`` (channel ``Z``, planar metres, 0 = invalid);
    ``aif.png`` / ``aif.exr`` when rendered; ``fNNN.coc.exr`` (channel ``Y``, CoC
    diameter in pixels from :func:`generator.lens.coc_map_px`) when ``spec.render.coc``;
    ``fNNN.motion.exr`` (channels ``X``, ``Y``: pixels, ``Z``: metres; motion to the
    next frame from :func:`generator.flow.forward_flow`) for every frame but the
    last when ``spec.render.motion``.
    """
    _check_shapes(spec, rendered)
    meta = sample_metadata(spec, rendered, recipe)
    sample: dict[str, Any] = {
        "__key__": sample_key(spec.index),
        "json": json.dumps(meta, sort_keys=True, indent=1, allow_nan=False).encode("utf-8"),
    }
    for frame, rgb in zip(spec.frames, rendered.frames):
        ext, data = _encode_rgb(rgb, spec.render.rgb)
        sample[f"f{frame.index:03d}.{ext}"] = data
    if spec.depth_per_frame:
        for frame, depth in zip(spec.frames, rendered.depth):
            sample[f"f{frame.index:03d}.depth.exr"] = write_exr_bytes({"Z": depth})
    else:
        sample["depth.exr"] = write_exr_bytes({"Z": rendered.depth[0]})
    if rendered.aif is not None:
        ext, data = _encode_rgb(rendered.aif, spec.render.rgb)
        sample[f"aif.{ext}"] = data
    if spec.render.coc:
        for i, frame in enumerate(spec.frames):
            depth = rendered.depth[i if spec.depth_per_frame else 0]
            coc = lensmod.coc_map_px(spec.lens, depth, frame.focus_distance_m, spec.render.width)
            sample[f"f{frame.index:03d}.coc.exr"] = write_exr_bytes({"Y": coc})
    if spec.render.motion:
        for i, frame in enumerate(spec.frames[:-1]):
            at = i if spec.depth_per_frame else 0
            flow = forward_flow(spec, i, rendered.depth[at], rendered.object_index[at])
            sample[f"f{frame.index:03d}.motion.exr"] = write_exr_bytes(dict(zip(FLOW_CHANNELS, np.moveaxis(flow, -1, 0))))
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


def _member(sample: Mapping[str, Any], stem: str) -> tuple[bytes, str] | None:
    """(bytes, extension) of the member ``stem.png`` or ``stem.exr``, if present."""
    for ext in ("png", "exr"):
        if f"{stem}.{ext}" in sample:
            return sample[f"{stem}.{ext}"], ext
    return None


def decode_sample(sample: Mapping[str, Any]) -> DecodedSample:
    """Decode a sample as :func:`encode_sample` wrote it (or as stock WebDataset reads it: bytes)."""
    meta = json.loads(sample["json"])
    stems = [f"f{fr['index']:03d}" for fr in meta["frames"]]
    frames = [decode_rgb(*_member(sample, s)) for s in stems]
    depth_names = [f"{s}.depth.exr" for s in stems] if meta["depth"]["per_frame"] else ["depth.exr"]
    depth = [read_exr_bytes(sample[name])["Z"] for name in depth_names]
    aif = _member(sample, "aif")
    coc = [read_exr_bytes(sample[f"{s}.coc.exr"])["Y"] for s in stems] if f"{stems[0]}.coc.exr" in sample else None
    motion = None
    if f"{stems[0]}.motion.exr" in sample:
        maps = [read_exr_bytes(sample[f"{s}.motion.exr"]) for s in stems[:-1]]
        motion = [np.stack([m[c] for c in FLOW_CHANNELS], axis=-1) for m in maps]
    return DecodedSample(
        key=sample["__key__"],
        meta=meta,
        frames=frames,
        depth=depth,
        aif=decode_rgb(*aif) if aif else None,
        coc=coc,
        motion=motion,
    )
