"""Look at a rendered dataset: a text summary and a contact sheet (``dfdgen inspect``).

The summary is computed from the samples' metadata only (no image decoding);
the contact sheet decodes a few samples and lays out, per sample, its frames of
ramp 0 in focus order, the colourised depth and the CoC map of the nearest- and
farthest-focused frame of that ramp. A dynamic sample (frames at different
times) shows its sequence over time instead: frames spread from the first to
the last, and the depth of the first and the last frame.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image, ImageDraw

from generator.core import lens as lensmod
from generator.core.display import colorize
from generator.core.errors import BadInput, CorruptShard, brief
from generator.dataset.pixels import srgb8
from generator.dataset.sample import decode_sample, read_metadata
from generator.core.files import write_atomic
from generator.dataset.format import manifest_shards, read_manifest, read_shard, sample_key

def iter_samples(data_dir: Path) -> Iterator[dict[str, Any]]:
    """Raw samples (member name -> bytes) of every complete shard, in manifest order.

    Raises:
        BadInput: no dfdgen manifest (:func:`generator.dataset.format.read_manifest`).
        CorruptShard: a shard is missing, cut or damaged.
    """
    for path in manifest_shards(data_dir):
        yield from read_shard(str(path))


@dataclass
class Range:
    """Running minimum and maximum."""

    lo: float = float("inf")
    hi: float = float("-inf")

    def add(self, *values: float) -> None:
        self.lo, self.hi = min(self.lo, *values), max(self.hi, *values)

    def __str__(self) -> str:
        return f"{self.lo:.4g} .. {self.hi:.4g}" if self.lo <= self.hi else "-"


@dataclass
class Summary:
    """What a dataset holds, from metadata.

    Units: lengths in metres (focal length in mm for reading), CoC in pixels.
    """

    splits: dict[str, int] = field(default_factory=dict)
    failed: int = 0
    lens_models: set[str] = field(default_factory=set)
    image_sizes: set[tuple[int, int]] = field(default_factory=set)
    frames_per_sample: set[int] = field(default_factory=set)
    focal_length_mm: Range = field(default_factory=Range)
    f_number: Range = field(default_factory=Range)
    focus_m: Range = field(default_factory=Range)
    depth_m: Range = field(default_factory=Range)
    coc_px: Range = field(default_factory=Range)

    def add(self, meta: dict[str, Any]) -> None:
        """Fold one sample's metadata (the ``json`` member) in."""
        self.splits[meta["split"]] = self.splits.get(meta["split"], 0) + 1
        lm = meta["lens"]
        lens = lensmod.Lens(lm["model"], lm["focal_length_m"], lm["f_number"], lm["sensor_width_m"])
        width = meta["image"]["width"]
        self.lens_models.add(lens.model)
        self.image_sizes.add((width, meta["image"]["height"]))
        self.frames_per_sample.add(len(meta["frames"]))
        self.focal_length_mm.add(lens.focal_length_m * 1e3)
        self.f_number.add(lens.f_number)
        depth = meta["depth"]
        if depth["min_m"] is None:
            return
        self.depth_m.add(depth["min_m"], depth["max_m"])
        for frame in meta["frames"]:
            focus = frame["focus_distance_m"]
            self.focus_m.add(focus)
            # |1/z - 1/F| is monotonic on each side of F: extremes at the depth ends (or 0 at F).
            ends = lensmod.coc_px(lens, np.array([depth["min_m"], depth["max_m"]]), focus, width)
            inside = depth["min_m"] <= focus <= depth["max_m"]
            self.coc_px.add(0.0 if inside else float(ends.min()), float(ends.max()))

    def text(self) -> str:
        """Human-readable multi-line summary."""
        splits = ", ".join(f"{k} {v}" for k, v in sorted(self.splits.items())) or "none"
        sizes = ", ".join(f"{w}x{h}" for w, h in sorted(self.image_sizes)) or "-"
        return "\n".join([
            f"samples      {sum(self.splits.values())} ({splits}); failed scenes {self.failed}",
            f"image        {sizes}; frames per sample {sorted(self.frames_per_sample)}",
            f"lens         {', '.join(sorted(self.lens_models)) or '-'}; f {self.focal_length_mm} mm; "
            f"N {self.f_number}",
            f"focus        {self.focus_m} m",
            f"depth        {self.depth_m} m (valid pixels)",
            f"CoC          {self.coc_px} px (diameter)",
        ])


def summarize(data_dir: str | Path) -> Summary:
    """Summary of the dataset in ``data_dir`` (metadata only).

    Raises:
        BadInput: not a dfdgen dataset. CorruptShard: a shard or a sample's metadata is damaged.
    """
    data_dir = Path(data_dir)
    summary = Summary()
    for sample in iter_samples(data_dir):
        meta = read_metadata(sample)
        try:
            summary.add(meta)
        except Exception as exn:  # any other damage to the metadata: one line naming it
            raise CorruptShard(sample["__url__"], f"{sample['__key__']}.json", f"bad metadata ({brief(exn)})") from None
    summary.failed = len(read_manifest(data_dir)["failed"])
    return summary


def verify(data_dir: str | Path) -> tuple[int, list[str]]:
    """Check every shard of ``data_dir`` against its manifest and decode every member.

    Per listed shard: its size and sha256 equal the manifest's, it reads to its
    end-of-archive marker, it holds exactly the listed scenes (keys in order), and
    every sample decodes and checks (:func:`generator.dataset.sample.decode_sample`: metadata
    within the recipe's bounds; every frame, depth, all-in-focus, CoC and motion member
    it implies present as a regular file, within the image limits and of the metadata's
    size; depth finite).

    Returns:
        (samples checked, one line per problem found; empty when the dataset is intact).
    Raises:
        BadInput: not a dfdgen dataset.
    """
    data_dir = Path(data_dir)
    manifest = read_manifest(data_dir)
    problems, checked = [], 0
    for entry, path in zip(manifest["shards"], manifest_shards(data_dir, manifest=manifest)):
        if not path.is_file():
            problems.append(f"{path}: missing")
            continue
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        if (path.stat().st_size, digest) != (entry.get("bytes"), entry.get("sha256")):
            problems.append(f"{path}: {path.stat().st_size} bytes, sha256 {digest[:12]}; the manifest lists "
                            f"{entry.get('bytes')} bytes, sha256 {str(entry.get('sha256'))[:12]}")
        keys = []
        try:
            for sample in read_shard(str(path)):
                keys.append(sample["__key__"])
                try:
                    decode_sample(sample)
                except CorruptShard as exn:
                    problems.append(str(exn))
                checked += 1
        except CorruptShard as exn:
            problems.append(str(exn))
            continue
        expected = [sample_key(i) for i in entry.get("scenes", [])]
        if keys != expected:
            problems.append(f"{path}: holds samples {keys[:4]}{'...' if len(keys) > 4 else ''}; "
                            f"the manifest lists {expected[:4]}{'...' if len(expected) > 4 else ''}")
    return checked, problems


#: Frames a dynamic sample shows on the contact sheet, spread evenly over its sequence.
SEQUENCE_TILES = 6


def _depth_tile(depth: np.ndarray, label: str) -> tuple[str, np.ndarray]:
    valid = depth > 0
    lo, hi = (float(depth[valid].min()), float(depth[valid].max())) if valid.any() else (0.0, 1.0)
    return f"{label} {lo:.2f}-{hi:.2f}m", colorize(depth, lo, hi, ~valid)


def _sequence_tiles(dec) -> list[tuple[str, np.ndarray]]:
    """A dynamic sample over time: :data:`SEQUENCE_TILES` frames from first to last, then the
    depth of the first and the last frame (per-frame depth: a dynamic scene has one per frame)."""
    frames = dec.meta["frames"]
    shown = sorted(set(np.linspace(0, len(frames) - 1, min(SEQUENCE_TILES, len(frames))).round().astype(int)))
    tiles = [(f"t={frames[i]['time_s']:.2f}s F={frames[i]['focus_distance_m']:.2f}m", srgb8(dec.frames[i]))
             for i in shown]
    return tiles + [_depth_tile(dec.depth[i], f"depth t={frames[i]['time_s']:.2f}s") for i in (shown[0], shown[-1])]


def _sheet_row(sample: dict[str, Any], tile: int) -> list[tuple[str, np.ndarray]]:
    """Labelled [tile, tile, 3] uint8 images of one sample: frames, depth, CoC maps
    (or, for a dynamic sample, :func:`_sequence_tiles`)."""
    dec = decode_sample(sample)
    meta = dec.meta
    if len({fr["time_s"] for fr in meta["frames"]}) > 1:
        return [(label, _resize(im, tile)) for label, im in _sequence_tiles(dec)]
    ramp0 = sorted(
        (i for i, fr in enumerate(meta["frames"]) if fr["ramp"] == meta["frames"][0]["ramp"]),
        key=lambda i: meta["frames"][i]["focus_distance_m"],
    )
    tiles = [(f"F={meta['frames'][i]['focus_distance_m']:.2f}m", srgb8(dec.frames[i])) for i in ramp0]
    lm = meta["lens"]
    lens = lensmod.Lens(lm["model"], lm["focal_length_m"], lm["f_number"], lm["sensor_width_m"])
    tiles.append(_depth_tile(dec.depth[ramp0[0]] if meta["depth"]["per_frame"] else dec.depth[0], "depth"))
    for i in (ramp0[0], ramp0[-1]):
        focus = meta["frames"][i]["focus_distance_m"]
        d = dec.depth[i] if meta["depth"]["per_frame"] else dec.depth[0]
        coc = lensmod.coc_map_px(lens, d, focus, meta["image"]["width"])
        tiles.append((f"CoC F={focus:.2f} max {coc.max():.0f}px", colorize(coc, 0.0, max(float(coc.max()), 1.0), d <= 0)))
    return [(label, _resize(im, tile)) for label, im in tiles]


def _resize(image: np.ndarray, tile: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((tile, tile), Image.NEAREST))


def contact_sheet(data_dir: str | Path, out_png: str | Path, *, samples: int = 4, tile: int = 128) -> Path:
    """Write a PNG contact sheet of the ``samples`` lowest-indexed scenes; returns its path.

    Each row is one sample, labelled with its scene index and split, in index order: ramp-0 frames in focus order, colourised depth
    (viridis, near = dark), and CoC maps (pixels) of the nearest and farthest
    focus of that ramp; a dynamic sample's row shows frames over time and the
    depth at its start and end instead. Labels are drawn above every tile.

    Raises:
        CorruptShard: a sample shown does not decode (:func:`generator.dataset.sample.decode_sample`);
            no sheet is written then (nor ever half of one: :func:`generator.core.files.write_atomic`).
    """
    manifest = read_manifest(data_dir)
    wanted = set(sorted(i for shard in manifest["shards"] for i in shard["scenes"])[:samples])
    found = {}
    for path, shard in zip(manifest_shards(data_dir, manifest=manifest), manifest["shards"]):
        if wanted & set(shard["scenes"]):  # only the shards that hold a wanted scene are read
            for sample in read_shard(str(path)):
                if sample["__key__"] in {sample_key(i) for i in wanted}:
                    found[sample["__key__"]] = (f"scene {int(sample['__key__'])}\n{shard['split']}",
                                                _sheet_row(sample, tile))
    if not found:
        raise BadInput(f"{data_dir} holds no complete shard to draw")
    rows = [found[key] for key in sorted(found)]  # in scene-index order
    label_h, pad = 14, 4
    cols = max(len(r) for _, r in rows)
    sheet = Image.new("RGB", (cols * (tile + pad) + pad + 70, len(rows) * (tile + label_h + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (key, tiles) in enumerate(rows):
        y = pad + r * (tile + label_h + pad)
        draw.text((pad, y + label_h + tile // 2), key, fill="black")
        for c, (label, im) in enumerate(tiles):
            x = 70 + pad + c * (tile + pad)
            draw.text((x, y), label, fill="black")
            sheet.paste(Image.fromarray(im), (x, y + label_h))
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    write_atomic(out_png, buffer.getvalue())
    return out_png
