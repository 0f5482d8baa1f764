"""Depth maps of focal stacks with a trained checkpoint (``dfdgen predict``).

**Stacks.** A stack is given in one of two ways:

(a) a folder per stack (several folders: several stacks): its frames, every
    ``*.png``, ``*.jpg``/``*.jpeg`` and ``*.exr`` file in it (hidden files, other
    files and subfolders are ignored), and a *focus file* giving each frame's
    focus distance in metres (a DFF dataset's per-frame focus list), one of:

    - ``focus.yaml`` (or ``focus.yml``): a list, one distance per frame in the
      frames' name order, or a mapping from frame file name to its distance::

          [0.30, 0.37, 0.48, 0.69, 1.20]      # or:
          IMG_0001.jpg: 0.30
          IMG_0002.jpg: 0.37

    - ``focus.txt``: one distance per line in the frames' name order (blank lines
      and ``#`` comments ignored).

    Name order is the natural order of the file names (runs of digits compared as
    numbers: ``f2.jpg`` before ``f10.jpg``; zero-padded names sort the same either way).

(b) frame files on the command line with ``--focus-distance`` repeated, one per
    file in the order given: one stack (one image and one focus distance is a stack
    of one frame, for models that take one frame).

A stack's frames are sorted by increasing focus distance (the order the training
data has) and the whole stack is the model's one input, ``[1, T, 3, H, W]``: one
depth map per stack, on the pixel grid of the sorted stack's reference frame
(:func:`dfd_models.data.batch.reference_index`; under the thin lens' focus breathing
every frame has its own K). A stack is
refused (:class:`BadInput`, one line, nothing written) when its frames differ in
size, when two frames share a focus distance, when a focus file's entries do not
match its frames, when a focus distance is not a positive finite number beyond
the focal length, or when the model cannot take T frames (``dfd_sweep`` needs at
least 2; ``sdgs`` predicts from one frame, ``input_frame``, though it trains on
stacks). No registered model needs a fixed T: ``ddff``/``lstm_ddff`` combine the
frames by a softmax / an LSTM over T, ``recurrent_ae`` is recurrent,
``defocusnet`` max-pools over the stack, ``dff`` and ``constant`` take any T.

**Images.** Frames are read as linear RGB: 8/16-bit sRGB PNG and 8-bit JPEG
(a phone's focal stack) through the sRGB table of :func:`generator.dataset.pixels.decode_rgb`,
linear EXR as it is; JPEG colour profiles are not applied (the pixels are taken as
sRGB), nor is an EXIF orientation (the depth map keeps the stored pixel layout,
whose width is the one the sensor width spans). The decoders' size limits of
:mod:`generator.core.limits` apply, checked from the header before any pixel is decoded.
A size that is not a multiple of the model's ``size_multiple`` is padded at the
right and bottom by repeating the edge pixels (which leaves K, and the pixel pitch
given to the model, those of the real pixels) and the depth is cropped back
(:func:`dfd_models.evaluate.predict_depth`).

**The lens**, value by value (focal length, f-number, sensor width): a
command-line option, else the camera file (``--camera``), else the frames' EXIF,
else the checkpoint's training data where that had one value (not a range). Every
value missing for any stack is named in one message, with the ways to give it.

- Camera file (YAML, read as data by :func:`generator.core.safe_yaml.load_yaml`), every
  key optional, no other keys::

      focal_length_mm: 4.25      # the real focal length, not the 35 mm equivalent
      f_number: 1.8
      sensor_width_mm: 5.6       # the sensor width the image's width spans
      model: thin_lens           # or blender (the Blender camera of DESIGN.md section 3)

- EXIF (JPEG, PNG): FocalLength (0x920A), FNumber (0x829D); the sensor width from
  FocalPlaneXResolution (0xA20E) and its unit (0xA210) over PixelXDimension (0xA002,
  else the image width), else from FocalLengthIn35mmFilm (0xA405) as the 35 mm
  frame's diagonal (43.27 mm) x f / f35 times the image's width / diagonal (36 mm x
  f / f35 for a 3:2 image). The frames of a stack must agree on a value they give,
  unless an option or the camera file gives it.
- The lens model: ``--lens-model``, else the camera file's ``model``, else the
  checkpoint's, else ``thin_lens`` (a real camera's lens). K follows from the lens
  (:func:`dfd_models.lens.intrinsics`; focus breathing for ``thin_lens``).

**Output**, per stack ``NAME`` (the folder's name, or the nearest-focused frame's
file stem), in the output folder (created if missing): ``NAME.depth.exr`` (channel
``Z``, float32 planar metres) and ``NAME.depth.png`` (viridis from the nearest to
the farthest predicted depth, with a colour bar below the map labelled with those
depths in metres at its ends), and ``NAME.confidence.exr`` (channel ``Y``, float32 in
[0, 1], 1 = sure) where the model has a confidence
(:meth:`dfd_models.networks.DepthModel.predict_with_confidence`: ``dfd_sweep``, whose
confidence is 1 - the best hypothesis' re-rendering error / the mean's, near 0 on
textureless surfaces).

Every stack is predicted, and every depth map checked finite, before the first file
is written, and every file is written atomically (never through a link,
:func:`generator.core.files.write_atomic`): bad input or a damaged model writes nothing.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from generator.dataset.pixels import decode_rgb, write_exr_bytes
from generator.core.errors import BadInput, DfdgenError, WriteError, brief, printable
from generator.core.files import refuse_link, write_atomic
from generator.core.display import colorize
from generator.core.lens import LENS_MODELS, Lens
from generator.core.limits import MAX_FRAMES
from generator.core.safe_yaml import load_yaml
from dfd_models.checkpoint import load_model
from dfd_models.evaluate import predict_depth_and_confidence
from dfd_models.lens import LensParams, intrinsics
from dfd_models.device import pick_device

#: Frame file extensions (lower case) and the decoder of each.
IMAGE_KINDS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".exr": "exr"}
#: Names of a stack folder's focus file, in the order they are looked for (exactly one may exist).
FOCUS_FILES = ("focus.yaml", "focus.yml", "focus.txt")
#: Keys of a camera file (all optional).
CAMERA_KEYS = ("focal_length_mm", "f_number", "sensor_width_mm", "model")
#: Bytes of a focus or camera file, at most (a focus list of MAX_FRAMES entries is a few KB).
MAX_TEXT_BYTES = 1_000_000

#: (key, what, command-line option, EXIF source) of each lens value, millimetres or plain.
LENS_VALUES = (
    ("focal_length_mm", "focal length", "--lens-focal-length-mm", "EXIF FocalLength"),
    ("f_number", "f-number", "--f-number", "EXIF FNumber"),
    ("sensor_width_mm", "sensor width", "--sensor-width-mm",
     "EXIF FocalPlaneXResolution, or FocalLength with FocalLengthIn35mmFilm"),
)

# EXIF tags (CIPA DC-008): the Exif sub-IFD pointer and the tags read from it.
_EXIF_IFD = 0x8769
_FOCAL_LENGTH, _F_NUMBER, _FOCAL_35MM = 0x920A, 0x829D, 0xA405
_FOCAL_PLANE_X_RES, _FOCAL_PLANE_UNIT, _PIXEL_X = 0xA20E, 0xA210, 0xA002
#: Millimetres per FocalPlaneResolutionUnit: 2 inch (the default), 3 cm, 4 mm, 5 um.
_FOCAL_PLANE_UNIT_MM = {2: 25.4, 3: 10.0, 4: 1.0, 5: 1e-3}
#: Diagonal of the 35 mm film frame (36 x 24 mm), mm.
_FILM_DIAGONAL_MM = math.hypot(36.0, 24.0)


@dataclass(frozen=True)
class Stack:
    """One focal stack to predict.

    Attributes:
        name: the output name (folder name, or the nearest-focused frame's stem).
        frames: the frame files, sorted by increasing focus distance.
        focus_m: their focus distances, metres, increasing.
    """

    name: str
    frames: tuple[Path, ...]
    focus_m: tuple[float, ...]


@dataclass(frozen=True)
class Prediction:
    """What :func:`predict_stacks` wrote for one stack.

    Attributes:
        stack: the stack.
        lens: the lens it was predicted with.
        sources: where each lens value came from, by ``LENS_VALUES`` key and ``model``:
            ``option``, ``camera file``, ``EXIF``, ``checkpoint`` or ``default``.
        depth_range_m: the nearest and farthest predicted depth (the PNG's colour scale).
        paths: the files written (depth EXR, depth PNG, and the confidence EXR where there is one).
    """

    stack: Stack
    lens: Lens
    sources: dict[str, str]
    depth_range_m: tuple[float, float]
    paths: tuple[Path, ...]


# --- stacks ------------------------------------------------------------------------------------


def natural_key(name: str) -> tuple:
    """Sort key of a file name: runs of ASCII digits compare as numbers (``f2`` before ``f10``)."""
    parts = re.split(r"([0-9]+)", name)  # text at even positions, digits at odd ones
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), name


def _read_text(path: Path) -> str:
    """A small UTF-8 text file (focus or camera file).

    Raises:
        BadInput: unreadable, over :data:`MAX_TEXT_BYTES`, or not UTF-8.
    """
    try:
        size = path.stat().st_size
        if size > MAX_TEXT_BYTES:
            raise BadInput(f"{path} is {size} bytes long; a focus or camera file is limited to {MAX_TEXT_BYTES}")
        return path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise BadInput(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise BadInput(f"{path} is not UTF-8 text") from None


def _positive(value: Any, what: str) -> float:
    """``value`` as a float, if it is a positive finite number (not a bool), else BadInput naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise BadInput(f"{what} must be a positive finite number, got {brief(value)}")
    return float(value)


def read_focus_file(path: Path, frame_names: Sequence[str]) -> list[float]:
    """The focus distance of each frame, metres, in the order of ``frame_names`` (module docstring: format).

    Raises:
        BadInput: not a list / mapping of numbers, an entry that is not a positive finite
            number, or entries that do not match the frames (count, or names of a mapping).
    """
    text = _read_text(path)
    entries = f"{path} must list one focus distance in metres per frame"
    if path.suffix.lower() == ".txt":
        values: list[Any] = []
        for number, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            try:
                values.append(float(line))
            except ValueError:
                raise BadInput(f"{path} line {number}: {brief(line)} is not a focus distance in metres") from None
    else:
        data = load_yaml(text, str(path))
        if isinstance(data, dict):
            names = set(frame_names)
            extra = sorted(str(k) for k in data if k not in names)
            missing = [n for n in frame_names if n not in data]
            if extra or missing:
                raise BadInput(f"{path} names frames that are not in its folder ({printable(', '.join(extra))}) "
                               f"or lacks some ({printable(', '.join(missing))}): its keys must be exactly the "
                               f"{len(frame_names)} frame file names")
            values = [data[n] for n in frame_names]
        elif isinstance(data, list):
            values = data
        else:
            raise BadInput(f"{entries}: a YAML list in the frames' name order, or a mapping of frame file "
                           f"name to distance; got {type(data).__name__}")
    if len(values) != len(frame_names):
        raise BadInput(f"{path} has {len(values)} focus distances for the {len(frame_names)} frames of its folder")
    return [_positive(v, f"{path}: the focus distance of {printable(n)}") for v, n in zip(values, frame_names)]


def _folder_stack(folder: Path) -> tuple[str, list[Path], list[float]]:
    """(name, frames, focus distances) of a stack folder, frames in name order."""
    frames = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_KINDS and not p.name.startswith(".")
                     and p.is_file()), key=lambda p: natural_key(p.name))
    if not frames:
        raise BadInput(f"{folder} holds no frames (*.png, *.jpg, *.jpeg or *.exr files)")
    focus_files = [folder / name for name in FOCUS_FILES if (folder / name).is_file()]
    if not focus_files:
        raise BadInput(f"{folder} has no focus file: write {FOCUS_FILES[0]} with one focus distance in metres per "
                       f"frame, in the frames' name order (or {FOCUS_FILES[-1]}: one per line); see "
                       "dfdgen predict --help")
    if len(focus_files) > 1:
        raise BadInput(f"{folder} has {len(focus_files)} focus files ({', '.join(p.name for p in focus_files)}): "
                       "keep one")
    focus = read_focus_file(focus_files[0], [p.name for p in frames])
    return folder.resolve().name or "stack", frames, focus


def gather_stacks(inputs: Sequence[Path], focus_m: Sequence[float]) -> list[Stack]:
    """The stacks of the command line: one per folder in ``inputs``, or one of the frame files
    in ``inputs`` with ``focus_m`` (one per file, in order). Frames sorted by focus distance.

    Raises:
        BadInput: folders and files mixed, ``--focus-distance`` with folders or not one per
            file, a missing focus file, a focus distance that is not positive and finite,
            two frames with one focus distance, two stacks with one name, a file that is
            not a PNG, JPEG or EXR image, or more than ``MAX_FRAMES`` frames in a stack.
    """
    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise BadInput("give a stack folder, or frame files with --focus-distance")
    for path in inputs:
        if not path.exists():
            raise BadInput(f"{path}: no such file or folder")
    folders = [p for p in inputs if p.is_dir()]
    raw: list[tuple[str, list[Path], list[float]]] = []
    if folders:
        if len(folders) != len(inputs):
            raise BadInput("give stack folders or the frame files of one stack, not both")
        if focus_m:
            raise BadInput("--focus-distance is for frame files: a stack folder's focus distances are in its "
                           f"focus file ({' or '.join(FOCUS_FILES)})")
        raw = [_folder_stack(folder) for folder in inputs]
    else:
        for path in inputs:
            if path.suffix.lower() not in IMAGE_KINDS:
                raise BadInput(f"{path}: not a PNG, JPEG or EXR image (by its name)")
        if len({p.resolve() for p in inputs}) != len(inputs):
            raise BadInput("a frame file is given twice")
        if len(focus_m) != len(inputs):
            raise BadInput(f"{len(inputs)} frames, {len(focus_m)} focus distances: give --focus-distance once per "
                           "frame, in the frames' order (every frame of a stack has its own focus distance)")
        focus = [_positive(v, "--focus-distance") for v in focus_m]
        raw = [("", inputs, focus)]
    stacks = []
    for name, frames, focus in raw:
        where = f"stack {name}" if name else "the frames given"
        if len(frames) > MAX_FRAMES:
            raise BadInput(f"{where} has {len(frames)} frames; a stack is limited to {MAX_FRAMES}")
        order = sorted(range(len(frames)), key=lambda i: focus[i])
        for a, b in zip(order, order[1:]):
            if focus[a] == focus[b]:
                raise BadInput(f"{where}: frames {printable(frames[a].name)} and {printable(frames[b].name)} "
                               f"have the same focus distance {focus[a]:g} m; every frame of a stack needs its own")
        frames_sorted = tuple(frames[i] for i in order)
        stacks.append(Stack(name or frames_sorted[0].stem, frames_sorted, tuple(focus[i] for i in order)))
    names = [s.name for s in stacks]
    if len(set(names)) != len(names):
        raise BadInput(f"two stacks have the same name (outputs would collide): {printable(', '.join(names))}")
    return stacks


# --- images ----------------------------------------------------------------------------------------


def read_image(path: Path) -> np.ndarray:
    """Linear RGB [H, W, 3] float32 of a PNG (8/16-bit sRGB), JPEG (8-bit sRGB) or EXR (linear) file.

    Raises:
        BadInput: a missing or undecodable file, another format, or more pixels than
            :data:`generator.core.limits.MAX_IMAGE_PIXELS` (from the header, before decoding).
    """
    kind = IMAGE_KINDS.get(path.suffix.lower())
    if kind is None:
        raise BadInput(f"{path}: not a PNG, JPEG or EXR image (by its name)")
    try:
        return decode_rgb(path.read_bytes(), kind)
    except Exception as exc:  # any decoder error means a bad file
        raise BadInput(f"{path}: cannot read the image ({printable(str(exc), 200)})") from exc


def exif_lens(path: Path) -> dict[str, float]:
    """The lens values a JPEG or PNG file's EXIF gives (module docstring), by ``LENS_VALUES`` key
    (millimetres, or plain for the f-number); ``{}`` without EXIF. Values that are not positive
    finite numbers count as absent."""
    if IMAGE_KINDS.get(path.suffix.lower()) not in ("jpeg", "png"):
        return {}
    try:
        with Image.open(path) as img:
            width, height = img.size
            if img.format == "PNG" and "exif" not in img.info:  # getexif would decode the whole PNG to look
                return {}
            exif = img.getexif()
            sub = exif.get_ifd(_EXIF_IFD)
    except Exception:  # no readable EXIF: read_image reports a damaged file
        return {}

    def tag(number: int) -> float | None:
        value = sub.get(number, exif.get(number))
        try:
            value = float(value)
        except (TypeError, ValueError, ZeroDivisionError):
            return None
        return value if math.isfinite(value) and value > 0 else None

    found: dict[str, float] = {}
    focal, f_number = tag(_FOCAL_LENGTH), tag(_F_NUMBER)
    if focal is not None:
        found["focal_length_mm"] = focal
    if f_number is not None:
        found["f_number"] = f_number
    x_res, unit = tag(_FOCAL_PLANE_X_RES), tag(_FOCAL_PLANE_UNIT)
    unit_mm = _FOCAL_PLANE_UNIT_MM.get(int(unit) if unit is not None else 2)
    if x_res is not None and unit_mm is not None:
        found["sensor_width_mm"] = (tag(_PIXEL_X) or width) / x_res * unit_mm
    elif focal is not None and tag(_FOCAL_35MM) is not None:
        found["sensor_width_mm"] = _FILM_DIAGONAL_MM * focal / tag(_FOCAL_35MM) * width / math.hypot(width, height)
    return found


# --- the lens ----------------------------------------------------------------------------------


def read_camera_file(path: Path) -> dict[str, Any]:
    """A camera file's values (module docstring: format), by :data:`CAMERA_KEYS` key.

    Raises:
        BadInput: not YAML, not a mapping, an unknown key, a number that is not positive
            and finite, or a lens model dfdgen does not have.
    """
    data = load_yaml(_read_text(path), str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadInput(f"{path}: a camera file is a YAML mapping of {', '.join(CAMERA_KEYS)}")
    unknown = sorted(str(k) for k in data if k not in CAMERA_KEYS)
    if unknown:
        raise BadInput(f"{path}: unknown key(s) {printable(', '.join(unknown))}; a camera file has "
                       f"{', '.join(CAMERA_KEYS)}")
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key == "model":
            if value not in LENS_MODELS:
                raise BadInput(f"{path}: model must be one of {', '.join(LENS_MODELS)}, got {brief(value)}")
            values[key] = value
        else:
            values[key] = _positive(value, f"{path}: {key}")
    return values


def _recorded(value: Any) -> tuple[float | None, str]:
    """A training-data lens value: (the value if it is one positive number, else None; why not)."""
    if value is None:
        return None, "not recorded in the checkpoint"
    if isinstance(value, list):
        return None, f"the training data's varies over {brief(value)}"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        return None, f"the checkpoint records {brief(value)}"
    return float(value), ""


def resolve_lens(
    recorded: dict[str, Any],
    *,
    given: dict[str, Any] | None = None,
    camera: dict[str, Any] | None = None,
    exif: dict[str, float] | None = None,
) -> tuple[Lens | None, dict[str, str], dict[str, str]]:
    """The lens of a stack, value by value: ``given`` (command-line options), else ``camera``
    (a camera file), else ``exif``, else ``recorded`` (the training data's lens section,
    ``checkpoint["data"]["lens"]``) where that is one value.

    Args:
        recorded: ``model``, ``focal_length_mm``, ``f_number``, ``sensor_width_mm``: each
            a number or a [min, max] range (possibly absent).
        given, camera: the same keys (millimetres); None or absent: not given.
        exif: :func:`exif_lens`'s values.

    Returns:
        (the lens, or None when a value is missing; the source of each value, by key and
        ``model``; for each missing value's key, why the checkpoint's cannot serve).
    Raises:
        BadInput: a given value that is not a positive finite number.
        LensError: a lens model dfdgen does not have.
    """
    layers = (("option", given or {}), ("camera file", camera or {}), ("EXIF", exif or {}))
    sources: dict[str, str] = {}
    values: dict[str, float] = {}
    missing: dict[str, str] = {}
    for key, _, option, _ in LENS_VALUES:
        for source, layer in layers:
            if layer.get(key) is not None:
                values[key] = _positive(layer[key], option if source == "option" else f"{source} {key}")
                sources[key] = source
                break
        else:
            value, why = _recorded(recorded.get(key))
            if value is None:
                missing[key] = why
            else:
                values[key], sources[key] = value, "checkpoint"
    model, sources["model"] = (given or {}).get("model"), "option"
    if model is None:
        model, sources["model"] = (camera or {}).get("model"), "camera file"
    if model is None:
        model, sources["model"] = recorded.get("model"), "checkpoint"
    if model is None:
        model, sources["model"] = "thin_lens", "default"
    if missing:
        return None, sources, missing
    return Lens(model, values["focal_length_mm"] * 1e-3, values["f_number"], values["sensor_width_mm"] * 1e-3), \
        sources, missing


def _missing_message(missing: dict[str, dict[str, str]], n_stacks: int) -> str:
    """One line naming every missing lens value and the ways to give each (``missing``: stack name ->
    the missing keys with why the checkpoint's value cannot serve)."""
    parts = []
    for key, what, option, exif in LENS_VALUES:
        lacking = {name: why[key] for name, why in missing.items() if key in why}
        if not lacking:
            continue
        whys = sorted(set(lacking.values()))
        stacks = "" if len(lacking) == n_stacks else f" for stack(s) {printable(', '.join(sorted(lacking)))}"
        parts.append(f"{what}{stacks}: give {option}, or {key} in a --camera file, or frames with {exif} "
                     f"({'; '.join(whys)})")
    return "the lens is not known: " + "; ".join(parts)


# --- output ----------------------------------------------------------------------------------


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow < 10.1, or no FreeType: the fixed bitmap font
        return ImageFont.load_default()


def scale_bar_labels(vmin: float, vmax: float) -> tuple[str, str]:
    """The texts at the ends of the colour bar: the nearest and farthest depth, metres."""
    return f"{vmin:.3g} m", f"{vmax:.3g} m"


def depth_png(depth: np.ndarray, vmin: float, vmax: float) -> bytes:
    """PNG bytes of a depth map [H, W] in viridis from ``vmin`` to ``vmax`` with a scale bar below it.

    Layout: the map at the top left, unchanged (``colorize(depth, vmin, vmax)``); below it, on
    white, a colour bar from ``vmin`` (left) to ``vmax`` (right) with
    :func:`scale_bar_labels` under its ends. The image is widened (white) when the labels
    need more room than the map's width.
    """
    h, w = depth.shape
    px = int(np.clip(max(w, h) // 40, 10, 64))  # text height: legible at 64 px, in scale at 4000 px
    font, margin = _font(px), max(px // 2, 3)
    left, right = scale_bar_labels(vmin, vmax)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    boxes = [measure.textbbox((0, 0), text, font=font) for text in (left, right)]
    text_w = [b[2] - b[0] for b in boxes]
    text_h = max(b[3] for b in boxes)
    width = max(w, sum(text_w) + 3 * margin)
    bar_top, bar_h = h + margin, px
    canvas = np.full((bar_top + bar_h + margin // 2 + text_h + margin, width, 3), 255, dtype=np.uint8)
    canvas[:h, :w] = colorize(depth, vmin, vmax)
    bar_w = width - 2 * margin
    ramp = np.linspace(vmin, vmax, bar_w, dtype=np.float64)[None].repeat(bar_h, 0)  # [bar_h, bar_w]
    canvas[bar_top:bar_top + bar_h, margin:margin + bar_w] = colorize(ramp, vmin, vmax)
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    y = bar_top + bar_h + margin // 2
    draw.text((margin - boxes[0][0], y), left, fill=(0, 0, 0), font=font)
    draw.text((margin + bar_w - text_w[1] - boxes[1][0], y), right, fill=(0, 0, 0), font=font)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


# --- prediction --------------------------------------------------------------------------------


def predict_stacks(
    checkpoint: str | Path,
    inputs: Sequence[Path],
    focus_m: Sequence[float],
    out_dir: str | Path,
    *,
    camera: str | Path | None = None,
    lens_model: str | None = None,
    focal_length_mm: float | None = None,
    f_number: float | None = None,
    sensor_width_mm: float | None = None,
    device: str = "auto",
) -> list[Prediction]:
    """Predict one depth map per stack and write them to ``out_dir`` (see the module docstring).

    Args:
        inputs: stack folders, or the frame files of one stack.
        focus_m: with frame files, the focus distance of each, metres, in their order.
        camera: a camera file.
        lens_model, focal_length_mm, f_number, sensor_width_mm: the lens options
            (None: not given); they override the camera file, EXIF and the checkpoint.

    Returns:
        per stack, what was predicted and written.

    Raises:
        BadInput: a bad checkpoint, stack, image, focus or camera file; a lens value known
            from nowhere (all of them named in one message); a count of frames the model
            cannot take; a focus distance within the focal length.
        DfdgenError: a depth map that is not finite everywhere (a damaged model).
        Nothing is written when anything is raised.
    """
    stacks = gather_stacks(inputs, focus_m)
    camera_values = read_camera_file(Path(camera)) if camera is not None else {}
    target = pick_device(device)
    model, ckpt = load_model(checkpoint, target)
    recorded = ckpt["data"].get("lens") if isinstance(ckpt.get("data"), dict) else None
    recorded = recorded if isinstance(recorded, dict) else {}
    given = {"model": lens_model, "focal_length_mm": focal_length_mm, "f_number": f_number,
             "sensor_width_mm": sensor_width_mm}

    lenses: list[tuple[Lens, dict[str, str]]] = []
    missing: dict[str, dict[str, str]] = {}
    for stack in stacks:
        exif, conflicts = _stack_exif(stack)
        for key, message in conflicts.items():
            if given[key] is None and camera_values.get(key) is None:
                raise BadInput(message)
        lens, sources, lacking = resolve_lens(recorded, given=given, camera=camera_values, exif=exif)
        if lens is None:
            missing[stack.name] = lacking
            continue
        for path, distance in zip(stack.frames, stack.focus_m):
            if distance <= lens.focal_length_m:
                raise BadInput(f"stack {stack.name}: the focus distance {distance:g} m of {printable(path.name)} is "
                               f"within the focal length {lens.focal_length_m * 1e3:g} mm (a real image needs F > f)")
        lenses.append((lens, sources))
    if missing:
        raise BadInput(_missing_message(missing, len(stacks)))

    # every stack's depth map [H, W] float32 and confidence (or None), kept until all are checked
    predicted = [_predict_stack(model, stack, lens, target, checkpoint) for stack, (lens, _) in zip(stacks, lenses)]

    out = Path(out_dir)
    paths = [(out / f"{s.name}.depth.exr", out / f"{s.name}.depth.png", out / f"{s.name}.confidence.exr")
             for s in stacks]
    for group in paths:
        for path in group:
            refuse_link(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        disk = WriteError.of(exc, out)
        raise (BadInput(f"{out}: cannot create the output folder ({exc.strerror or exc})") if disk is exc
               else disk) from None
    results = []
    for stack, (lens, sources), (depth, confidence), (exr, png, conf) in zip(stacks, lenses, predicted, paths):
        vmin, vmax = float(depth.min()), float(depth.max())
        write_atomic(exr, write_exr_bytes({"Z": depth}))
        write_atomic(png, depth_png(depth, vmin, vmax))
        written = (exr, png)
        if confidence is not None:
            write_atomic(conf, write_exr_bytes({"Y": confidence}))
            written += (conf,)
        results.append(Prediction(stack, lens, sources, (vmin, vmax), written))
    return results


def _stack_exif(stack: Stack) -> tuple[dict[str, float], dict[str, str]]:
    """The EXIF lens values of a stack's frames (those any frame gives; see :func:`exif_lens`),
    and, by key, a message for each value two frames give differently (left out of the values)."""
    values: dict[str, tuple[float, Path]] = {}
    conflicts: dict[str, str] = {}
    for path in stack.frames:
        for key, value in exif_lens(path).items():
            if key in values and not math.isclose(values[key][0], value, rel_tol=1e-6):
                first, where = values[key]
                conflicts.setdefault(key, f"stack {stack.name}: the frames' EXIF disagree on the {key} ({first:g} "
                                          f"in {printable(where.name)}, {value:g} in {printable(path.name)}); "
                                          "give it with an option or a --camera file")
            values.setdefault(key, (value, path))
    return {key: value for key, (value, _) in values.items() if key not in conflicts}, conflicts


def _predict_stack(model, stack: Stack, lens: Lens, target: torch.device,
                   checkpoint: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """The depth map [H, W] float32 of one stack (frames read, checked and predicted as one input),
    and the model's confidence map [H, W] float32 in [0, 1] where it has one.

    Raises:
        BadInput: frames of different sizes, or a count of frames the model cannot take.
        DfdgenError: a depth that is not finite everywhere.
    """
    frames, size = [], None
    for path in stack.frames:
        rgb = read_image(path)
        if size is None:
            size, first = rgb.shape[:2], path
        elif rgb.shape[:2] != size:
            raise BadInput(f"stack {stack.name}: the frames differ in size: {printable(first.name)} is "
                           f"{size[1]} x {size[0]} px, {printable(path.name)} {rgb.shape[1]} x {rgb.shape[0]} px")
        frames.append(torch.from_numpy(rgb).permute(2, 0, 1))  # [3, H, W]
    height, width = size
    t = len(frames)
    stack_t = torch.stack(frames)[None].to(target)  # [1, T, 3, H, W]
    focus = torch.tensor([stack.focus_m], dtype=torch.float32, device=target)  # [1, T]
    k = intrinsics(LensParams.from_lens(lens, device=target), focus[0], width, height)[None]  # [1, T, 3, 3]
    # The model sees the frames padded to its size multiple: give it the sensor width those padded
    # frames span, so that its pixel pitch stays the real pixels' (K above is already theirs).
    padded = width + (-width % model.size_multiple)
    seen = lens if padded == width else Lens(lens.model, lens.focal_length_m, lens.f_number,
                                             lens.sensor_width_m * padded / width)
    try:
        with torch.no_grad():
            depth, confidence = predict_depth_and_confidence(model, stack_t, focus,
                                                             LensParams.from_lens(seen, device=target), k)
    except ValueError as exc:
        if t >= model.min_frames:
            raise
        raise BadInput(f"stack {stack.name}: {t} frame(s), but model {model.name!r} cannot predict from so few "
                       f"({exc})") from None
    depth = depth[0, 0].float().cpu().numpy()  # [H, W]
    bad = int(np.count_nonzero(~np.isfinite(depth)))
    if bad:
        raise DfdgenError(f"{checkpoint}: the depth predicted for stack {stack.name} is not finite at {bad} of "
                          f"{depth.size} pixels (NaN or infinite weights?); nothing written")
    return depth, None if confidence is None else confidence[0, 0].float().cpu().numpy()
