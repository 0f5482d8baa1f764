"""Depth maps of focal stacks with a trained checkpoint (``dfdgen predict``).
The stacks, their frames and their lens are read by :mod:`dfd_models.stack_files`.

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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from generator.dataset.pixels import write_exr_bytes
from generator.core.errors import BadInput, DfdgenError, WriteError, printable
from generator.core.files import refuse_link, write_atomic
from generator.core.display import colorize
from generator.core.lens import Lens
from dfd_models.checkpoint import load_model
from dfd_models.evaluate import predict_depth_and_confidence
from dfd_models.stack_files import Stack, exif_lens, gather_stacks, missing_message, read_camera_file, read_image, resolve_lens
from dfd_models.lens import LensParams, intrinsics
from dfd_models.device import pick_device

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
        raise BadInput(missing_message(missing, len(stacks)))

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
