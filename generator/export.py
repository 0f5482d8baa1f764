"""Export a dfdgen dataset to layouts that existing depth-from-focus code reads (``dfdgen export``).

``fod500``: the layout of the FoD500 dataset ("Focus on Defocus", Maximov et
al., CVPR 2020) that the DefocusNet, DFV and AiFDepthNet loaders read: one
folder with, per scene,

- ``{scene:06d}_{k:02d}All.tif``, k = 0..4: the five frames of the scene's first
  ramp in increasing focus distance, 8-bit sRGB RGB TIFF, 256 x 256;
- ``{scene:06d}Dpt.exr``: planar depth in metres (0 = no surface) as float16
  channels R, G and B (the same values in each), ZIP compressed.

``scene`` is the dfdgen scene index, so scene i of the recipe keeps its number
(a failed scene leaves a gap, which the loaders' directory globs skip). With
per-frame depth (``thin_lens`` breathing) the depth map is that of the
nearest-focused frame; a dynamic sample (frames at different times) has no
single depth map and is refused.

The export is written to ``OUT.partial`` and renamed to ``OUT`` when complete,
so a failure leaves nothing behind.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import OpenEXR
from PIL import Image

from generator.errors import BadInput, OutputError
from generator.inspect import iter_samples
from generator.sample import decode_rgb, read_exr_bytes, srgb8

FORMATS = ("fod500",)
#: The FoD500 layout: frames per scene and image size (pixels).
FOD500_FRAMES = 5
FOD500_SIZE = 256


def export_dataset(data_dir: str | Path, out_dir: str | Path, fmt: str = "fod500") -> int:
    """Export the dataset in ``data_dir`` to ``out_dir`` in format ``fmt``; returns the number of scenes.

    Raises:
        BadInput: unknown ``fmt``; ``data_dir`` is not a dfdgen dataset, holds no
            complete shard, or a sample does not fit the format (its size, its
            frames per ramp, motion). OutputError: ``out_dir`` exists and is not
            an empty folder. Nothing is left in ``out_dir`` then.
    """
    if fmt not in FORMATS:
        raise BadInput(f"export format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    data_dir, out = Path(data_dir), Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputError(f"{out} exists and is not an empty folder; export into a new one")
    samples = iter_samples(data_dir)  # raises BadInput without a manifest
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)  # our own leftover from an interrupted export
    partial.mkdir(parents=True)
    try:
        count = sum(_write_fod500(sample, partial) for sample in samples)
        if not count:
            raise BadInput(f"{data_dir} holds no complete shard to export")
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return count


def _write_fod500(sample: dict, folder: Path) -> int:
    """Write one sample's FoD500 files into ``folder``; returns 1."""
    meta = json.loads(sample["json"])
    key, image = sample["__key__"], meta["image"]
    if (image["width"], image["height"]) != (FOD500_SIZE, FOD500_SIZE):
        raise BadInput(f"sample {key} is {image['width']}x{image['height']} px; FoD500 is "
                       f"{FOD500_SIZE}x{FOD500_SIZE} (render with --set image.width={FOD500_SIZE} "
                       f"--set image.height={FOD500_SIZE})")
    first_ramp = [i for i, f in enumerate(meta["frames"]) if f["ramp"] == meta["frames"][0]["ramp"]]
    if len(first_ramp) != FOD500_FRAMES:
        raise BadInput(f"sample {key} has {len(first_ramp)} frames per ramp; FoD500 has {FOD500_FRAMES}")
    if len({f["time_s"] for f in meta["frames"]}) > 1:
        raise BadInput(f"sample {key} is dynamic (frames at different times); FoD500 has one depth map per scene")
    order = sorted(first_ramp, key=lambda i: meta["frames"][i]["focus_distance_m"])
    scene = meta["scene_index"]
    for k, i in enumerate(order):
        stem = f"f{meta['frames'][i]['index']:03d}"
        ext = "png" if f"{stem}.png" in sample else "exr"
        rgb = srgb8(decode_rgb(sample[f"{stem}.{ext}"], ext))
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, format="TIFF")  # uncompressed, no timestamp
        (folder / f"{scene:06d}_{k:02d}All.tif").write_bytes(buffer.getvalue())
    nearest = f"f{meta['frames'][order[0]]['index']:03d}.depth.exr"
    depth = read_exr_bytes(sample[nearest if meta["depth"]["per_frame"] else "depth.exr"])["Z"].astype(np.float16)
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    OpenEXR.File(header, {"R": depth, "G": depth, "B": depth}).write(str(folder / f"{scene:06d}Dpt.exr"))
    return 1
