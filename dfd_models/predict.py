"""Depth maps of image files with a trained checkpoint (``dfdgen predict``).

Each image is read as linear RGB (sRGB PNGs are linearised, as the training data
is, by :func:`generator.codec.decode_rgb`), given its focus distance, the lens
and the intrinsics that lens implies (:func:`dfd_models.lens.intrinsics`), and
predicted on its own (a stack of one frame). Per image ``NAME.png`` the output
directory receives ``NAME.depth.exr`` (channel ``Z``, float32 planar metres) and
``NAME.depth.png`` (viridis from the nearest to the farthest predicted depth).

Every image is predicted, and every depth map checked finite, before the first
file is written: a bad image or a damaged model writes nothing, not some outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from generator.errors import BadInput, DfdgenError
from generator.inspect import colorize
from generator.lens import LENS_MODELS, Lens
from generator.codec import decode_rgb, write_exr_bytes
from dfd_models.checkpoint import load_model
from dfd_models.evaluate import predict_depth
from dfd_models.lens import LensParams, intrinsics
from dfd_models.train import pick_device

#: (keyword and recipe key, factor to metres, command-line option) of each lens value.
_LENS_VALUES = (
    ("focal_length_mm", 1e-3, "--lens-focal-length-mm"),
    ("f_number", 1.0, "--f-number"),
    ("sensor_width_mm", 1e-3, "--sensor-width-mm"),
)


def resolve_lens(recorded: dict[str, Any], model: str | None = None, **given: float | None) -> Lens:
    """The lens to predict with: the values given, else the training data's where it had one value.

    Args:
        recorded: the training recipe's lens section (``checkpoint["data"]["lens"]``,
            possibly empty): ``model``, ``focal_length_mm``, ``f_number``,
            ``sensor_width_mm``, each a number or a [min, max] range.
        model: ``thin_lens`` or ``blender``.
        given: ``focal_length_mm``, ``f_number``, ``sensor_width_mm`` (``None``: not given).

    Raises:
        BadInput: a value neither given nor fixed in the training data.
        LensError: values no lens has (not positive).
    """
    model = model or recorded.get("model")
    if model is None:
        raise BadInput(f"--lens-model is required (the checkpoint does not record its data's lens): "
                       f"one of {', '.join(LENS_MODELS)}")
    values = []
    for name, scale, option in _LENS_VALUES:
        value = given.get(name)
        if value is None:
            value = recorded.get(name)
            if value is None or isinstance(value, list):
                trained = f"the training data's varies over {value}" if value is not None else "not recorded"
                raise BadInput(f"{option} is required ({trained})")
        values.append(float(value) * scale)
    return Lens(model, *values)


def read_image(path: Path) -> np.ndarray:
    """Linear RGB [H, W, 3] float32 of a PNG (8/16-bit sRGB) or EXR (linear) file.

    Raises:
        BadInput: a missing or undecodable file.
    """
    ext = path.suffix.lower().lstrip(".")
    if ext not in ("png", "exr"):
        raise BadInput(f"{path}: not a PNG or EXR image")
    try:
        return decode_rgb(path.read_bytes(), ext)
    except Exception as exc:  # any decoder error means a bad file
        raise BadInput(f"{path}: cannot read the image ({exc})") from exc


def predict_images(
    checkpoint: str | Path,
    images: Sequence[Path],
    focus_m: Sequence[float],
    out_dir: str | Path,
    *,
    lens_model: str | None = None,
    focal_length_mm: float | None = None,
    f_number: float | None = None,
    sensor_width_mm: float | None = None,
    device: str = "auto",
) -> list[tuple[Path, Path]]:
    """Predict depth for every image and write it to ``out_dir`` (see the module docstring).

    Args:
        focus_m: focus distance of each image, metres, or one for all.
        lens_model, focal_length_mm, f_number, sensor_width_mm: the lens; each
            defaults to the training data's when that had one value.

    Returns:
        (EXR path, PNG path) per image.

    Raises:
        BadInput: bad checkpoint or image, counts that do not match, two images
            of one name, or a lens/focus no camera has (focus within the focal length).
        DfdgenError: a depth map that is not finite everywhere (a damaged model). Nothing
            is written when anything is raised.
    """
    if len(focus_m) not in (1, len(images)):
        raise BadInput(f"give one --focus-distance for all images or one per image: "
                       f"{len(images)} images, {len(focus_m)} focus distances")
    names = [Path(p).stem for p in images]
    if len(set(names)) != len(names):
        raise BadInput(f"two images have the same name (outputs would collide): {sorted(names)}")
    target = pick_device(device)
    model, ckpt = load_model(checkpoint, target)
    lens = resolve_lens(ckpt["data"].get("lens", {}), lens_model, focal_length_mm=focal_length_mm,
                        f_number=f_number, sensor_width_mm=sensor_width_mm)
    focus = list(focus_m) * len(images) if len(focus_m) == 1 else list(focus_m)
    params = LensParams.from_lens(lens, device=target)
    depths = []  # every image's depth map [H, W] float32 (4 bytes a pixel), kept until all are checked
    for path, distance in zip(images, focus):
        rgb = read_image(Path(path))
        height, width = rgb.shape[:2]
        focus_t = torch.tensor([[distance]], dtype=torch.float32, device=target)  # [1, 1]
        k = intrinsics(params, focus_t[0, 0], width, height)[None, None]  # [1, 1, 3, 3]
        frames = torch.from_numpy(rgb).permute(2, 0, 1)[None, None].to(target)  # [1, 1, 3, H, W]
        with torch.no_grad():
            depth = predict_depth(model, frames, focus_t, params, k)[0, 0].float().cpu().numpy()  # [H, W]
        bad = int(np.count_nonzero(~np.isfinite(depth)))
        if bad:
            raise DfdgenError(f"{checkpoint}: the depth predicted for {path} is not finite at {bad} of {depth.size} "
                              f"pixels (NaN or infinite weights?); nothing written")
        depths.append(depth)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, depth in zip(names, depths):
        exr, png = out / f"{name}.depth.exr", out / f"{name}.depth.png"
        exr.write_bytes(write_exr_bytes({"Z": depth}))
        Image.fromarray(colorize(depth, float(depth.min()), float(depth.max()))).save(png)
        written.append((exr, png))
    return written
