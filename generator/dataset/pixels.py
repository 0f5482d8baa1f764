"""Pixel codecs of a sample's members: 8/16-bit sRGB PNG, EXR and 8-bit sRGB JPEG, as bytes.

Every encoding is deterministic (fixed zlib level, fixed JPEG settings, no timestamps), so the same render gives
the same bytes in any process; every decoder checks the header against
:mod:`generator.core.limits` before a pixel is decompressed. No bpy."""

from __future__ import annotations

import functools
import io
import struct
import zlib
from typing import Mapping

import numpy as np
import OpenEXR
from PIL import Image

from generator.core.limits import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS
from generator.core.display import linear_to_srgb, srgb_to_linear

#: zlib level for PNG members (Pillow's default): fixed so bytes never depend on defaults.
_PNG_LEVEL = 6
#: Pillow's JPEG settings besides the quality, fixed so bytes never depend on defaults: 4:2:0
#: chroma subsampling (what cameras write), baseline, standard Huffman tables; Pillow writes no
#: EXIF, so no timestamp either.
_JPEG = {"subsampling": "4:2:0", "optimize": False, "progressive": False}


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
    """Refuse an image whose header declares more than :data:`generator.core.limits.MAX_IMAGE_PIXELS`
    pixels or :data:`~generator.core.limits.MAX_IMAGE_BYTES` bytes of decoded pixels (ValueError)."""
    if width * height > MAX_IMAGE_PIXELS or width * height * bytes_per_pixel > MAX_IMAGE_BYTES:
        raise ValueError(f"{what} of {width}x{height} px, more than the {MAX_IMAGE_PIXELS} pixels "
                         f"({MAX_IMAGE_BYTES} bytes) allowed")


def png_header(data: bytes) -> tuple[int, int, tuple[int, ...]]:
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
    width, height, fields = png_header(data)
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


def exr_size(data: bytes) -> tuple[int, int]:
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
    exr_size(data)
    exr = OpenEXR.File(io.BytesIO(data), separate_channels=True)
    return {name: np.asarray(ch.pixels) for name, ch in exr.channels().items()}


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a JPEG from its header alone, checked against the image limits (ValueError)."""
    if not data.startswith(b"\xff\xd8"):  # SOI marker
        raise ValueError("not a JPEG (no start-of-image marker)")
    with Image.open(io.BytesIO(data), formats=["JPEG"]) as image:
        _check_pixels("JPEG", *image.size, 3)
        return image.size


def encode_rgb(rgb: np.ndarray, kind: str, quality: int | None = None) -> tuple[str, bytes]:
    """(extension, bytes) of a linear RGB image in the recipe's ``rgb`` encoding; ``quality``:
    Pillow's JPEG quality (1-95), for ``jpeg`` only."""
    if kind == "jpeg":
        buf = io.BytesIO()
        Image.fromarray(srgb8(rgb)).save(buf, format="JPEG", quality=quality, **_JPEG)
        return "jpg", buf.getvalue()
    if kind == "exr":
        return "exr", write_exr_bytes({"R": rgb[..., 0], "G": rgb[..., 1], "B": rgb[..., 2]})
    if kind == "png16":
        return "png", _png16(_quantize(linear_to_srgb(rgb), 16))
    if kind == "png8":
        return "png", _png8(srgb8(rgb))
    raise ValueError(f"unknown rgb encoding {kind!r}; expected png8, png16, exr or jpeg")


def decode_rgb(data: bytes, ext: str) -> np.ndarray:
    """Linear RGB [H, W, 3] float32 from a ``png`` (sRGB, 8 or 16 bit), ``jpeg`` or ``jpg`` (sRGB,
    8 bit: a ``jpeg`` sample's frame, or a camera's for ``dfdgen predict``; its colour profile is
    not applied) or ``exr`` image.

    Raises:
        ValueError: the header declares more than the image limits (:mod:`generator.core.limits`),
            checked before any pixel is decompressed; anything else a damaged image raises.
    """
    if ext == "exr":
        ch = read_exr_bytes(data)
        return np.stack([ch["R"], ch["G"], ch["B"]], axis=-1).astype(np.float32)
    if ext in ("jpeg", "jpg"):
        jpeg_size(data)
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as image:
            return _linear_lut(8)[np.asarray(image.convert("RGB"))]
    if png_header(data)[2][0] == 16:  # bit depth
        return _linear_lut(16)[_read_png16(data)]
    return _linear_lut(8)[np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))]


@functools.cache
def _linear_lut(bits: int) -> np.ndarray:
    """Linear value (float32) of every ``bits``-bit sRGB code: decoding by table lookup
    is several times faster than evaluating the power law per pixel, with the same values."""
    return srgb_to_linear(np.arange(1 << bits) / ((1 << bits) - 1)).astype(np.float32)
