"""How much depth one defocused image can give sdgs's networks, given labels: an upper bound.

``sdgs`` infers depth from a single image (its nearest-focus frame): its DefocusNet
estimates the CoC c of every pixel, and depth follows through the lens,
1/z = 1/F - c / k (:meth:`dfd_models.networks.sdgs.SDGS.depth`). Trained without
labels, it can do no better than the same DefocusNet trained *with* them. This script
trains that DefocusNet supervised on the true CoC of the input frame (L1, object pixels
weighted 10 : 1 against the wall; from the true depth through the lens, so it never
sees a self-supervised signal), keeps DepthNet untrained (depth = the lens's
inverse depth from c), and prints, on the test split's object pixels, CoC error,
AbsRel and the Pearson correlation of depth: the ceiling of ``sdgs`` on this data
at this budget. The same numbers on the training split show over-fitting.

The labels are warped for focus breathing: the shards hold depth on the reference frame's
grid (T // 2), frame 0 images the scene a few per cent larger or smaller, so the true depth,
valid and wall maps are resampled onto frame 0's grid (nearest neighbour, which keeps their
values; pixels outside the reference frame's view are not valid) before the CoC labels are
computed. Depth is scored as ``sdgs`` is: predicted on frame 0's grid, warped onto the
reference grid, against the shards' depth. ``--no-breathing-warp`` trains on the unwarped
labels, as before, to show what the warp changes.

    python benchmarks/single_image_bound.py --shards DIR [--steps 3000] [--batch-size 4] [--train-stacks N] \
        [--crop 64] [--blur-scales-px 0.5 1 2 4]

With ``--crop S`` each step trains on one random S x S window of the batch's images (the
lens's pixel pitch kept, so CoC in pixels is the full image's), the way ``dfdgen train``
trains at a dataset's full resolution on CPU; scores are over the whole images.

Everything else as ``sdgs`` is built (channels, blur features, lens code). Runs on
the CPU; a dataset of a few hundred 64 px stacks is held in memory whole.
"""

from __future__ import annotations

import argparse
import time

import torch

from dfd_models.config import DataSection
from dfd_models.data import make_loader, reference_index
from dfd_models.focus import warp_to_grid
from dfd_models.lens import coc_px
from dfd_models.metrics import RegionMetrics
from dfd_models.networks import build_model, lens_from_batch
from dfd_models.networks.sdgs import overlap_mask
from generator.dataset.format import read_manifest


#: Per-stack fields a sub-batch keeps (:func:`take`): what ``lens_from_batch`` and the loss read.
STACK_KEYS = ("focus_m", "lens_model", "focal_length_m", "f_number", "pixel_pitch_m")
#: Image fields, cut to a window by :func:`take`: ``label_*`` and ``coc_px`` on frame 0's grid, the
#: shards' depth, valid and wall on the reference grid (scored on whole images only).  # [N, ., H, W]
IMAGE_KEYS = ("frames", "label_valid", "label_wall", "coc_px", "depth", "valid", "wall")


def on_input_grid(batch: dict, warp: bool) -> tuple:
    """Depth (m), valid and wall masks on frame 0's grid: resampled from the reference frame's grid
    (nearest; outside the reference view not valid), or as stored when ``warp`` is False."""
    depth, valid, wall = batch["depth"], batch["valid"], batch["wall"]
    if not warp:
        return depth, valid, wall
    K = batch["K"].double()
    ref = reference_index(batch["frames"].shape[1])

    def moved(image):
        return warp_to_grid(image.double(), K[:, ref], K[:, 0], mode="nearest")

    inside = overlap_mask(K[:, ref], K[:, 0], *depth.shape[-2:])
    return moved(depth).float(), (moved(valid.float()) > 0.5) & inside, moved(wall.float()) > 0.5


def split_data(shards: str, split: str, warp: bool = True) -> dict:
    """Every stack of ``split``: frame 0 only (``frames`` [N, 1, 3, H, W]), its true CoC (``coc_px``,
    pixels) and the masks on frame 0's grid (:func:`on_input_grid`), and the stored depth, valid,
    wall and K to score on the reference grid."""
    count = sum(entry["samples"] for entry in read_manifest(shards)["shards"] if entry["split"] == split)
    batch = next(iter(make_loader(DataSection.for_eval(shards, split=split, batch_size=count))))
    depth, valid, wall = on_input_grid(batch, warp)
    coc = coc_px(lens_from_batch(batch), depth.clamp_min(1e-3), batch["focus_m"][:, 0], batch["frames"].shape[-1])
    return {**{key: batch[key] for key in STACK_KEYS + ("depth", "valid", "wall", "K")},
            "frames": batch["frames"][:, :1], "coc_px": coc, "label_valid": valid, "label_wall": wall}


def take(batch: dict, index, rows: slice = slice(None), cols: slice = slice(None)) -> dict:
    """Stacks ``index`` of ``batch`` with their images cut to ``rows`` x ``cols``. ``lens_from_batch``
    of the result keeps the pixel pitch, so CoC in pixels is the full image's."""
    return {**{key: batch[key][index] for key in STACK_KEYS + ("K",)},
            **{key: batch[key][index][..., rows, cols] for key in IMAGE_KEYS}}


def score(model, batch: dict, warp: bool = True) -> dict[str, float]:
    """CoC MAE (px, frame 0's grid) and, on the reference grid as ``sdgs`` predicts, depth AbsRel
    and Pearson on object pixels (valid, not the wall)."""
    model.eval()
    with torch.no_grad():
        image, focus, lens = batch["frames"][:, 0], batch["focus_m"][:, 0], lens_from_batch(batch)
        predicted = model.defocus(image, focus, lens)
        depth = 1 / model.depth(image, predicted, focus, lens)
    model.train()
    if warp:
        ref = reference_index(batch["K"].shape[1])
        depth = warp_to_grid(depth, batch["K"][:, 0].float(), batch["K"][:, ref].float())
    metrics = RegionMetrics()
    metrics.update(depth, batch["depth"], batch["valid"], batch["wall"])
    objects = metrics.compute()["objects"]
    mask = batch["label_valid"] & ~batch["label_wall"]
    return {"coc_mae_px": float((predicted[mask] - batch["coc_px"][mask]).abs().mean()), **objects}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", required=True, help="dataset directory (train and test splits)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (one-cycle)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-stacks", type=int, default=None,
                        help="train on the first N stacks of the train split only (how the bound grows with data)")
    parser.add_argument("--blur-scales-px", type=float, nargs="*", default=None,
                        help="sdgs config blur_scales_px (default: the model's); blur features should span the CoCs")
    parser.add_argument("--no-breathing-warp", dest="warp", action="store_false",
                        help="labels and scores on the stored grid, as before the warp (to compare)")
    parser.add_argument("--crop", type=int, default=None,
                        help="train on random S x S windows (S a multiple of 8; default: whole images)")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    train, test = split_data(args.shards, "train", args.warp), split_data(args.shards, "test", args.warp)
    config = {"splat_backend": "torch"}
    if args.blur_scales_px is not None:
        config["blur_scales_px"] = args.blur_scales_px
    model = build_model("sdgs", config)
    optimizer = torch.optim.AdamW(model.defocus_net.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=args.steps, pct_start=0.1)
    n, size = len(train["frames"]), train["frames"].shape[-1]
    if args.train_stacks is not None:
        if not 0 < args.train_stacks <= n:
            parser.error(f"--train-stacks must be in 1..{n} (the train split's stacks), got {args.train_stacks}")
        n = args.train_stacks
        train = take(train, slice(0, n))
    crop = args.crop or size
    if not (0 < crop <= size and crop % 8 == 0):
        parser.error(f"--crop must be a multiple of 8 in 8..{size} (the image size), got {args.crop}")
    print(f"{n} train / {len(test['frames'])} test stacks, {size} px, {crop} px windows; batch {args.batch_size}, "
          f"{args.steps} steps, "
          f"lr {args.lr:g}, blur scales {model.config.blur_scales_px} px, labels "
          f"{'warped for focus breathing' if args.warp else 'not warped'}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| step | test CoC MAE px | test AbsRel | test Pearson | train AbsRel | train Pearson | s |")
    print("|---|---|---|---|---|---|---|")
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        index = torch.randint(n, (args.batch_size,))  # drawn before the window, as in the runs DESIGN.md cites
        top, left = torch.randint(size - crop + 1, (2,)).tolist()
        batch = take(train, index, slice(top, top + crop), slice(left, left + crop))
        predicted = model.defocus(batch["frames"][:, 0], batch["focus_m"][:, 0], lens_from_batch(batch))
        weight = batch["label_valid"].float() * (1 + 9 * (~batch["label_wall"]).float())
        loss = (weight * (predicted - batch["coc_px"]).abs()).sum() / weight.sum().clamp_min(1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % max(1, args.steps // 4) == 0 or step == args.steps:
            te, tr = score(model, test, args.warp), score(model, train, args.warp)
            print(f"| {step} | {te['coc_mae_px']:.2f} | {te['abs_rel']:.3f} | {te['pearson']:.2f} | "
                  f"{tr['abs_rel']:.3f} | {tr['pearson']:.2f} | {time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
