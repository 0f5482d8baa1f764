"""A network trained on ``recipes/phone.yaml`` against classical depth from focus (``dff``), both run the way a
user runs them on their phone's photos: ``dfdgen predict`` on folders of the camera's JPEG frames with a
focus.yaml and a camera file (``dfdgen export --format stacks``), scored against the true depth of the held-out scenes.

    python benchmarks/phone_predict.py [--out runs/phone_predict] [--scenes 60] [--size 128 96] [--samples 32]
        [--model defocusnet] [--steps 300]

Renders ``--scenes`` phone scenes at ``--size`` (``dfdgen render``; splits 80/10/10 as the recipe), trains
``--model`` on the train split for ``--steps`` steps (its checkpoint best on the val split) at the results table's learning rate for it
(``dfdgen train``; crop and batch sized by ``train``'s auto sizing), fits ``dff`` on the same split, writes
the test split as photo folders and predicts every folder with both checkpoints (the library call behind
``dfdgen predict``, one folder at a time with its own camera file). Prints AbsRel and delta1 over the
objects (valid pixels off the wall) and over all valid pixels, pooled over the test folders, against the
true depth of each stack's reference frame (the grid ``predict`` returns). Every step's command is reused
when its output exists, so a rerun only scores.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import torch

from dfd_models.data.batch import reference_index, wall_mask
from dfd_models.metrics import RegionMetrics
from dfd_models.predict import predict_stacks
from generator.dataset.format import manifest_shards, read_shard
from generator.dataset.pixels import read_exr_bytes
from generator.dataset.sample import decode_sample
from results.experiments import ROWS

DFDGEN = [sys.executable, "-c", "from generator.cli import main; main()"]


def dfdgen(*args) -> None:
    """Run a ``dfdgen`` command; its output goes to this one's stderr."""
    subprocess.run([*DFDGEN, *map(str, args)], check=True, stdout=sys.stderr)


def truth(dataset: Path, split: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per sample key: (true depth, wall mask) of its first ramp's reference frame.  # [1, 1, H, W] each"""
    found = {}
    for shard in manifest_shards(dataset, split):
        for sample in read_shard(str(shard)):
            decoded = decode_sample(sample)
            frames = sorted((f for f in decoded.meta["frames"] if f["ramp"] == 0), key=lambda f: f["focus_distance_m"])
            position = [f["index"] for f in decoded.meta["frames"]].index(frames[reference_index(len(frames))]["index"])
            depth = decoded.depth[position] if decoded.meta["depth"]["per_frame"] else decoded.depth[0]
            wall = wall_mask(depth, decoded.meta["depth"].get("wall_m"))
            found[sample["__key__"]] = (torch.from_numpy(depth)[None, None], torch.from_numpy(wall)[None, None])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/phone_predict"))
    parser.add_argument("--scenes", type=int, default=60)
    parser.add_argument("--size", type=int, nargs=2, default=[128, 96], metavar=("WIDTH", "HEIGHT"))
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--model", default="defocusnet")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a dfdgen train override")
    args = parser.parse_args()
    data, photos = args.out / "data", args.out / "photos"
    if not (data / "manifest.json").exists():
        dfdgen("render", "--recipe", "phone", "--out", data,
               *[a for o in (f"count={args.scenes}", f"image.width={args.size[0]}", f"image.height={args.size[1]}",
                             f"image.samples={args.samples}") for a in ("--set", o)])
    # the results table's rate for the model where it has one, else train's default
    lr = next(row.lr for row in ROWS if row.model == args.model and row.run == args.model)
    trained = ["--max-steps", args.steps, "--set", f"optim.warmup_steps={args.steps // 10}",
               *(["--set", f"optim.lr={lr:g}"] if lr is not None else []), *[a for o in args.set for a in ("--set", o)]]
    checkpoints = {}
    # the network's checkpoint best on validation, as the README's workflow uses; the references (the
    # training median of all pixels and of the objects', and dff) are fitted in one step
    fitted = ["--max-steps", 1]
    rows = ((args.model, args.model, trained, "best.pt"), ("constant", "constant", fitted, "last.pt"),
            ("constant-objects", "constant", [*fitted, "--set", "model.config.region=objects"], "last.pt"),
            ("dff", "dff", fitted, "last.pt"))
    for row, model, extra, name in rows:
        run = args.out / "runs" / row
        checkpoints[row] = run / "ckpt" / name
        if not checkpoints[row].exists():
            dfdgen("train", "--shards", data, "--model", model, "--out", run, *extra)
    if not photos.exists():
        dfdgen("export", data, "--format", "stacks", "--out", photos)
    folders = sorted(p for p in (photos / "test").iterdir() if p.is_dir())
    gt = truth(data, "test")

    print(f"phone, {args.scenes} scenes at {args.size[0]}x{args.size[1]} px, {args.samples} samples; "
          f"{args.model} {args.steps} steps (lr {lr or 'default'}{''.join(', ' + o for o in args.set)}); {len(folders)} test photo folders through dfdgen predict")
    print(f"{'model':>16} {'objects AbsRel':>15} {'delta1':>7} {'all AbsRel':>11} {'delta1':>7}")
    for model, checkpoint in checkpoints.items():
        metrics = RegionMetrics()
        for folder in folders:
            out = args.out / "predictions" / model
            predict_stacks(checkpoint, [folder], [], out, camera=folder / "camera.yaml")
            depth = read_exr_bytes((out / f"{folder.name}.depth.exr").read_bytes())["Z"]
            true, wall = gt[folder.name]
            metrics.update(torch.from_numpy(depth)[None, None], true, wall=wall)
        scores = metrics.compute()
        print(f"{model:>16} {scores['objects']['abs_rel']:>15.3f} {scores['objects']['delta1']:>7.3f} "
              f"{scores['all']['abs_rel']:>11.3f} {scores['all']['delta1']:>7.3f}")


if __name__ == "__main__":
    main()
