"""What a user gives ``dfdgen predict``, read and checked: stacks (stack folders with their focus
files, or frame files with their focus distances) and camera files (formats: :mod:`dfd_models.predict`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generator.core.errors import BadInput, brief, printable
from generator.core.lens import LENS_MODELS
from generator.core.limits import MAX_FRAMES
from generator.core.safe_yaml import load_yaml

__all__ = ["CAMERA_KEYS", "FOCUS_FILES", "IMAGE_KINDS", "MAX_TEXT_BYTES", "Stack", "gather_stacks", "natural_key",
           "positive", "read_camera_file", "read_focus_file"]

#: Frame file extensions (lower case) and the decoder of each.
IMAGE_KINDS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".exr": "exr"}
#: Names of a stack folder's focus file, in the order they are looked for (exactly one may exist).
FOCUS_FILES = ("focus.yaml", "focus.yml", "focus.txt")
#: Keys of a camera file (all optional).
CAMERA_KEYS = ("focal_length_mm", "f_number", "sensor_width_mm", "model")
#: Bytes of a focus or camera file, at most (a focus list of MAX_FRAMES entries is a few KB).
MAX_TEXT_BYTES = 1_000_000


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


def positive(value: Any, what: str) -> float:
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
    return [positive(v, f"{path}: the focus distance of {printable(n)}") for v, n in zip(values, frame_names)]


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
        focus = [positive(v, "--focus-distance") for v in focus_m]
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
            values[key] = positive(value, f"{path}: {key}")
    return values
