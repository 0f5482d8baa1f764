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

Modules: :mod:`.inputs` (stacks, focus files, camera files), :mod:`.images` (a frame's
pixels and EXIF), :mod:`.lens_values` (the lens, value by value), :mod:`.depth_png` (the
depth map's picture); this one predicts and writes (:func:`predict_stacks`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from generator.core.errors import BadInput, DfdgenError, WriteError, printable
from generator.core.files import refuse_link, write_atomic
from generator.core.lens import Lens
from generator.dataset.pixels import write_exr_bytes
from dfd_models.checkpoint import load_model
from dfd_models.evaluate import predict_depth_and_confidence
from dfd_models.lens import LensParams, intrinsics
from dfd_models.predict.depth_png import depth_png
from dfd_models.predict.images import read_image
from dfd_models.predict.inputs import Stack, gather_stacks, read_camera_file
from dfd_models.predict.lens_values import missing_message, resolve_lens, stack_exif
from dfd_models.runtime import pick_device

__all__ = ["Prediction", "Stack", "predict_stacks"]


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
        exif, conflicts = stack_exif(stack)
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
