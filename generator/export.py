"""Export a dfdgen dataset to layouts that existing depth-from-focus code reads (``dfdgen export``).

``fod500``: the layout of the FoD500 dataset ("Focus on Defocus", Maximov et
al., CVPR 2020) that the DefocusNet, DFV and AiFDepthNet loaders read: one
folder with, per scene,

- ``{n:06d}_{k:02d}All.tif``, k = 0..4: the five frames of the scene's first
  ramp in increasing focus distance, 8-bit sRGB RGB TIFF, 256 x 256;
- ``{n:06d}Dpt.exr``: planar depth in metres (0 = no surface) as float16
  channels R, G and B (the same values in each), ZIP compressed;

and ``dfdgen_export.json``, which the loaders' globs skip: the index range of each
split and the dfdgen scene of every index.

Those loaders split FoD500 by file index, not by a list: DFV's ``FoD500Loader``
trains on ``int(name[:6]) < 400`` (the first 80 % of its 500 scenes) and
DefocusNet on the first 80 %. So the export numbers scenes ``n = 0, 1, ...`` with
the dataset's train scenes first, then val, then test (each in scene order): a
loader's "first k" never takes a test scene before every train scene is taken.
``recipes/fod500.yaml`` draws its splits as contiguous index ranges
(``splits.order: contiguous``), so its 500 scenes export as exactly 400 train
(0-399) and 100 test (400-499), FoD500's own split.

The loaders also hard-code FoD500's camera: f = 2.9 mm, f/1, focus at 0.1,
0.15, 0.3, 0.7 and 1.5 m, 256 x 256 px. A dataset that differs is refused
(exit 2) unless ``force``: those loaders would read it with the wrong lens. With
per-frame depth (``thin_lens`` breathing) the depth map is that of the
nearest-focused frame; a dynamic sample (frames at different times) has no
single depth map and is refused.

The export is written to ``OUT.partial`` (which must not exist) and renamed to
``OUT`` when complete, so a failure leaves nothing behind.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import OpenEXR
from PIL import Image

from generator.errors import BadInput, CorruptShard, OutputError, brief
from generator.files import write_atomic
from generator.inspect import iter_samples
from generator.recipe import SPLITS
from generator.codec import decode_rgb, read_exr_bytes, srgb8
from generator.format import META, depth_member, frame_stem, read_manifest, rgb_member

FORMATS = ("fod500",)
#: The FoD500 camera the published loaders hard-code: frames per scene, image size (pixels),
#: focus distances (metres), focal length (metres) and f-number.
FOD500_FRAMES = 5
FOD500_SIZE = 256
FOD500_FOCUS_M = (0.1, 0.15, 0.3, 0.7, 1.5)
FOD500_FOCAL_LENGTH_M = 2.9e-3
FOD500_F_NUMBER = 1.0
#: The export's own description of itself, beside the FoD500 files.
INDEX_FILE = "dfdgen_export.json"


def export_order(manifest: dict) -> list[int]:
    """Scene indices of a dataset in export order: train, then val, then test, each ascending.

    Position n of the list is the scene exported as ``{n:06d}``.
    """
    scenes = {split: [] for split in SPLITS}
    for shard in manifest["shards"]:
        scenes.setdefault(shard["split"], []).extend(shard["scenes"])
    return [i for split in scenes for i in sorted(scenes[split])]


def export_dataset(data_dir: str | Path, out_dir: str | Path, fmt: str = "fod500", *,
                   force: bool = False) -> dict[str, tuple[int, int]]:
    """Export the dataset in ``data_dir`` to ``out_dir`` in format ``fmt``.

    Args:
        force: write a dataset whose camera differs from FoD500's (module docstring).
    Returns:
        Each split present and its exported index range [first, last].
    Raises:
        BadInput: unknown ``fmt``; ``data_dir`` is not a dfdgen dataset, holds no
            complete shard, or a sample does not fit the format (its camera unless
            ``force``, its frames per ramp, motion). OutputError: ``out_dir`` exists and is
            not an empty folder, or ``OUT.partial`` exists. Nothing is left in ``out_dir`` then.
    """
    if fmt not in FORMATS:
        raise BadInput(f"export format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    data_dir, out = Path(data_dir), Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputError(f"{out} exists and is not an empty folder; export into a new one")
    manifest = read_manifest(data_dir)
    order = export_order(manifest)
    if not order:
        raise BadInput(f"{data_dir} holds no complete shard to export")
    number = {scene: n for n, scene in enumerate(order)}
    split_of = {i: shard["split"] for shard in manifest["shards"] for i in shard["scenes"]}
    partial = out.with_name(out.name + ".partial")
    try:
        partial.mkdir(parents=True)  # not exist_ok: never write into (or remove) a folder we did not make
    except FileExistsError:
        raise OutputError(f"{partial} exists (an interrupted export?); remove it or choose another --out") from None
    try:
        for sample in iter_samples(data_dir):
            try:
                _write_fod500(sample, partial, number, force)
            except (KeyError, ValueError, TypeError, IndexError) as exn:  # damaged metadata or member
                raise CorruptShard(sample["__url__"], sample["__key__"], f"cannot export ({brief(exn)})") from None
        ranges = {}
        for n, scene in enumerate(order):
            first, _ = ranges.get(split_of[scene], (n, n))
            ranges[split_of[scene]] = (first, n)
        index = {"format": fmt, "source": str(data_dir.resolve()), "recipe": manifest["recipe"]["name"],
                 "splits": {k: list(v) for k, v in ranges.items()}, "scenes": order}
        write_atomic(partial / INDEX_FILE, json.dumps(index, indent=1).encode("utf-8"))
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # ours: created above
        raise
    return ranges


def _check_camera(meta: dict, key: str) -> None:
    """Refuse a sample whose lens or focus differs from what the FoD500 loaders hard-code."""
    lens = meta["lens"]
    focus = sorted(f["focus_distance_m"] for f in meta["frames"] if f["ramp"] == meta["frames"][0]["ramp"])
    checks = (("focal length", lens["focal_length_m"] * 1e3, FOD500_FOCAL_LENGTH_M * 1e3, "mm"),
              ("f-number", lens["f_number"], FOD500_F_NUMBER, ""))
    for what, got, want, unit in checks:
        if not math.isclose(got, want, rel_tol=1e-6):
            raise BadInput(f"sample {key} has {what} {got:g}{unit}; the FoD500 loaders assume {want:g}{unit} "
                           f"(pass --force to export it anyway)")
    if len(focus) == FOD500_FRAMES and not all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(focus, FOD500_FOCUS_M)):
        raise BadInput(f"sample {key} is focused at {[round(f, 4) for f in focus]} m; the FoD500 loaders assume "
                       f"{list(FOD500_FOCUS_M)} m (pass --force to export it anyway)")


def _write_fod500(sample: dict, folder: Path, number: dict[int, int], force: bool) -> None:
    """Write one sample's FoD500 files into ``folder``, numbered ``number[scene]``."""
    meta = json.loads(sample[META])
    key, image = sample["__key__"], meta["image"]
    if (image["width"], image["height"]) != (FOD500_SIZE, FOD500_SIZE) and not force:
        raise BadInput(f"sample {key} is {image['width']}x{image['height']} px; FoD500 is "
                       f"{FOD500_SIZE}x{FOD500_SIZE} (render with --set image.width={FOD500_SIZE} "
                       f"--set image.height={FOD500_SIZE}, or pass --force)")
    first_ramp = [i for i, f in enumerate(meta["frames"]) if f["ramp"] == meta["frames"][0]["ramp"]]
    if len(first_ramp) != FOD500_FRAMES:
        raise BadInput(f"sample {key} has {len(first_ramp)} frames per ramp; FoD500 has {FOD500_FRAMES}")
    if len({f["time_s"] for f in meta["frames"]}) > 1:
        raise BadInput(f"sample {key} is dynamic (frames at different times); FoD500 has one depth map per scene")
    if not force:
        _check_camera(meta, key)
    order = sorted(first_ramp, key=lambda i: meta["frames"][i]["focus_distance_m"])
    scene = number[meta["scene_index"]]
    for k, i in enumerate(order):
        name = rgb_member(sample, frame_stem(meta["frames"][i]["index"]))
        rgb = srgb8(decode_rgb(sample[name], name.rsplit(".", 1)[1]))
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, format="TIFF")  # uncompressed, no timestamp
        (folder / f"{scene:06d}_{k:02d}All.tif").write_bytes(buffer.getvalue())
    nearest = meta["frames"][order[0]]["index"] if meta["depth"]["per_frame"] else None
    depth = read_exr_bytes(sample[depth_member(nearest)])["Z"].astype(np.float16)
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    OpenEXR.File(header, {"R": depth, "G": depth, "B": depth}).write(str(folder / f"{scene:06d}Dpt.exr"))
