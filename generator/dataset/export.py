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

``stacks``: the folders ``dfdgen predict`` reads, as a camera's focus bracket gives them: per
scene, ``{split}/{key}/`` holds ``IMG_0001.jpg`` ... (the first ramp's frames in increasing focus,
the sample's own frame bytes, not re-encoded: JPEG as the recipe's camera wrote it, or PNG/EXR),
``focus.yaml`` (each frame's focus distance in metres, by file name, as a user writes it) and
``camera.yaml`` (the scene's lens, for ``dfdgen predict --camera``). It checks the workflow on
rendered stacks before real photos, and scores a model the way a user runs it. Any camera.

Every member of a sample is decoded and checked (:func:`generator.dataset.sample.decode_sample`)
before any of its files is written: a corrupt sample stops the export (exit 1), or with
``skip_corrupt`` is left out with a warning, the later scenes numbered on without a gap.
The export is written to ``OUT.partial`` (which must not exist) and renamed to
``OUT`` when complete, so a failure leaves nothing behind.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import OpenEXR
import yaml
from PIL import Image

from generator.core.errors import BadInput, CorruptShard, OutputError, brief
from generator.core.files import write_atomic
from generator.recipe.recipe import SPLITS
from generator.dataset.pixels import srgb8
from generator.dataset.sample import decode_sample
from generator.dataset.format import frame_stem, manifest_shards, read_manifest, read_shard, rgb_member, sample_key

FORMATS = ("fod500", "stacks")
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


def fod500_files(n: int) -> list[str]:
    """File names of the scene exported as number ``n``: its frames in focus order, then its depth."""
    return [f"{n:06d}_{k:02d}All.tif" for k in range(FOD500_FRAMES)] + [f"{n:06d}Dpt.exr"]


def export_dataset(data_dir: str | Path, out_dir: str | Path, fmt: str = "fod500", *,
                   force: bool = False, skip_corrupt: bool = False) -> dict[str, tuple[int, int]]:
    """Export the dataset in ``data_dir`` to ``out_dir`` in format ``fmt``.

    Args:
        force: write a dataset whose camera differs from FoD500's (module docstring).
        skip_corrupt: leave out a corrupt sample (or the rest of a shard that breaks off)
            with a one-line warning, instead of stopping with :class:`CorruptShard`.
    Returns:
        Each split present and its exported index range [first, last].
    Raises:
        BadInput: unknown ``fmt``; ``data_dir`` is not a dfdgen dataset, holds no
            complete shard, or a sample does not fit the format (its camera unless
            ``force``, its frames per ramp, motion). OutputError: ``out_dir`` exists and is
            not an empty folder, or ``OUT.partial`` exists. CorruptShard: a shard or sample is
            damaged (unless ``skip_corrupt``), naming it. Nothing is left in ``out_dir`` then.
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
        written = set()
        for sample in _samples(data_dir, manifest, skip_corrupt):
            try:
                if fmt == "fod500":
                    written.add(_write_fod500(sample, partial, number, force))
                else:
                    written.add(_write_stack(sample, partial, split_of))
            except CorruptShard as exn:
                _skip(exn, skip_corrupt)
        order = [scene for scene in order if scene in written]
        if fmt == "fod500":
            for n, scene in enumerate(order):  # skipped scenes leave no gap: the loaders split by index
                for old, new in zip(fod500_files(number[scene]), fod500_files(n)):
                    if old != new:
                        os.replace(partial / old, partial / new)
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


def _skip(exn: CorruptShard, skip_corrupt: bool) -> None:
    """Raise ``exn``, or with ``skip_corrupt`` warn about it in one line."""
    if not skip_corrupt:
        raise exn
    warnings.warn(f"skipping: {exn}", RuntimeWarning, stacklevel=3)


def _samples(data_dir: Path, manifest: dict, skip_corrupt: bool) -> Iterator[dict]:
    """Raw samples of every listed shard, in manifest order; a shard that breaks off raises
    :class:`CorruptShard`, or with ``skip_corrupt`` warns and the rest of it is skipped."""
    for path in manifest_shards(data_dir, manifest=manifest):
        try:
            yield from read_shard(str(path))
        except CorruptShard as exn:
            _skip(exn, skip_corrupt)


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


def _write_fod500(sample: dict, folder: Path, number: dict[int, int], force: bool) -> int:
    """Write one sample's FoD500 files into ``folder``, numbered ``number[scene]``; returns the scene.

    Raises:
        CorruptShard: a member does not decode or check (:func:`generator.dataset.sample.decode_sample`,
            before any file is written), or the metadata lacks what the export reads.
        BadInput: the sample does not fit the format (:func:`export_dataset`).
    """
    decoded = decode_sample(sample)
    meta, key = decoded.meta, decoded.key
    try:
        image = meta["image"]
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
        scene = meta["scene_index"]
        files = fod500_files(number[scene])
    except (KeyError, ValueError, TypeError, IndexError) as exn:  # damaged metadata
        raise CorruptShard(sample["__url__"], sample["__key__"], f"cannot export ({brief(exn)})") from None
    for k, i in enumerate(order):
        buffer = io.BytesIO()
        Image.fromarray(srgb8(decoded.frames[i])).save(buffer, format="TIFF")  # uncompressed, no timestamp
        (folder / files[k]).write_bytes(buffer.getvalue())
    depth = decoded.depth[order[0] if meta["depth"]["per_frame"] else 0].astype(np.float16)
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    OpenEXR.File(header, {"R": depth, "G": depth, "B": depth}).write(str(folder / files[-1]))
    return scene


#: Name of frame n (1, 2, ...) of an exported stack, as a camera numbers its files.
STACK_FRAME = "IMG_{:04d}"


def _write_stack(sample: dict, root: Path, split_of: dict[int, str]) -> int:
    """Write one sample as a ``stacks`` folder ``root/SPLIT/KEY`` (module docstring); returns the scene.

    The folder is named from the manifest's split and the scene index, never from the shard's member
    names, and the split must be one of :data:`SPLITS`: a stranger's shard or manifest writes nothing
    outside ``root``.

    Raises:
        CorruptShard: a member does not decode or check (:func:`generator.dataset.sample.decode_sample`,
            before any file is written), the metadata lacks what the export reads, or its scene is not
            one the manifest lists under a known split.
    """
    decoded = decode_sample(sample)
    meta = decoded.meta
    try:
        scene = meta["scene_index"]
        if type(scene) is not int or split_of.get(scene) not in SPLITS:
            raise ValueError(f"scene {brief(scene)} is not one the manifest lists under {'/'.join(SPLITS)}")
        first_ramp = [f for f in meta["frames"] if f["ramp"] == meta["frames"][0]["ramp"]]
        first_ramp.sort(key=lambda f: f["focus_distance_m"])
        lens = meta["lens"]
        camera = {"focal_length_mm": lens["focal_length_m"] * 1e3, "f_number": lens["f_number"],
                  "sensor_width_mm": lens["sensor_width_m"] * 1e3, "model": lens["model"]}
        members = [rgb_member(sample, frame_stem(frame["index"])) for frame in first_ramp]
    except (KeyError, ValueError, TypeError, IndexError) as exn:  # damaged metadata
        raise CorruptShard(sample["__url__"], sample["__key__"], f"cannot export ({brief(exn)})") from None
    out = root / split_of[scene] / sample_key(scene)
    out.mkdir(parents=True)
    focus = {}
    for n, (frame, member) in enumerate(zip(first_ramp, members), 1):
        name = STACK_FRAME.format(n) + "." + member.rsplit(".", 1)[1]
        write_atomic(out / name, sample[member])
        focus[name] = frame["focus_distance_m"]
    write_atomic(out / "focus.yaml", yaml.safe_dump(focus).encode("utf-8"))
    write_atomic(out / "camera.yaml", yaml.safe_dump(camera).encode("utf-8"))
    return scene
