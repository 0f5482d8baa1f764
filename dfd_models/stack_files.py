"""A user's focal stacks from files, for ``dfdgen predict``: stack folders and focus files, frames
and their EXIF, the camera file, and the lens each stack is predicted with.

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
depth map per stack, on the pixel grid of frame ``T // 2`` of the sorted stack
(under the thin lens' focus breathing every frame has its own K). A stack is
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
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from generator.dataset.pixels import decode_rgb
from generator.core.errors import BadInput, brief, printable
from generator.core.lens import LENS_MODELS, Lens
from generator.core.limits import MAX_FRAMES
from generator.core.safe_yaml import load_yaml

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


def missing_message(missing: dict[str, dict[str, str]], n_stacks: int) -> str:
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
