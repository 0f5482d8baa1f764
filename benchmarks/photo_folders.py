"""A dataset's focal stacks as the folders a phone's focus bracket gives ``dfdgen predict``.

    python benchmarks/photo_folders.py DATASET OUT [--split test]

Per scene of the split, ``OUT/KEY/`` (KEY: the sample key) holds ``IMG_0001.jpg`` ... (the first focus
ramp's frames in increasing focus, the sample's own JPEG bytes: what the recipe's camera wrote, not
re-encoded), ``focus.yaml`` (each frame's focus distance in metres, by file name, as a user writes
it) and ``camera.yaml`` (the scene's lens, for ``dfdgen predict --camera``; predict reads only the
images and the focus file of a folder). A recipe whose frames are not JPEG (``outputs.rgb``) is
refused: its frames are not what a phone stores. Nothing here is needed to predict on real photos;
it makes rendered stacks look like them, for tests and for scoring a model the way a user runs it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from generator.core.errors import BadInput
from generator.dataset.format import manifest_shards, read_shard
from generator.dataset.sample import read_metadata


def write_folders(dataset: Path, out: Path, split: str = "test") -> list[Path]:
    """Write one folder per scene of ``split`` (module docstring); return them in shard order.

    Raises:
        BadInput: not a dfdgen dataset, or frames that are not JPEG.
    """
    folders = []
    for shard in manifest_shards(dataset, split):
        for sample in read_shard(str(shard)):
            meta = read_metadata(sample)
            first = [f for f in meta["frames"] if f["ramp"] == 0]
            first.sort(key=lambda f: f["focus_distance_m"])
            folder = out / sample["__key__"]
            folder.mkdir(parents=True)
            focus = {}
            for n, frame in enumerate(first, 1):
                member = f"f{frame['index']:03d}.jpg"
                if member not in sample:
                    raise BadInput(f"{shard}: sample {sample['__key__']} has no {member}: its frames are not JPEG "
                                   "(outputs.rgb: jpeg, as in recipes/phone.yaml)")
                name = f"IMG_{n:04d}.jpg"
                (folder / name).write_bytes(sample[member])
                focus[name] = frame["focus_distance_m"]
            lens = meta["lens"]
            camera = {"focal_length_mm": lens["focal_length_m"] * 1e3, "f_number": lens["f_number"],
                      "sensor_width_mm": lens["sensor_width_m"] * 1e3, "model": lens["model"]}
            (folder / "focus.yaml").write_text(yaml.safe_dump(focus))
            (folder / "camera.yaml").write_text(yaml.safe_dump(camera))
            folders.append(folder)
    return folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    folders = write_folders(args.dataset, args.out, args.split)
    print(f"{len(folders)} stack folders in {args.out}")


if __name__ == "__main__":
    main()
