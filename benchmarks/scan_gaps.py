"""What keeps the per-pixel depth scan from the truth on small_obj stacks: the forward model's gaps, one at a time.

The scan (:func:`dfd_models.refine.depth_scan`: the splat re-rendering error as a function of one
pixel's depth, every other pixel at the truth, radiance = the true all-in-focus image, disc
footprint, hypotheses 0.25-2.5 m at ratio 1.05) should have its minimum within delta1 of the true
depth on at least 90 % of the textured object pixels (issue 31). This renders the first
``--scenes`` small_obj scenes (one ramp of 5 frames, ``--size`` px) at ``--samples`` and at
``--high-samples`` spp, and prints that fraction per scene and its mean as one thing changes at a
time:

- ``cycles``: Cycles' frames;
- ``own frames``, ``own frames, 8 bit``: frames the forward model itself renders from the true
  depth and image (float, then quantised as the shards store them): the scan and its hypotheses
  alone;
- ``CoC x s``: the lens's CoC scaled by s (f-number / s): is the lens right;
- ``splat std s``: the splats' std on screen (pixels; the model's is 0.399);
- ``low-pass s``: frames blurred by a Gaussian of std s, splats widened to match (noise against cue);
- ``HIGH spp``: the same scenes rendered with less Monte Carlo noise;
- ``free CoC``: each frame's own minimum (``by_frame``) and the depth that fits those CoCs through
  the lens best (L1): what a renderer drawing each frame with its own predicted CoC would find,
  against the joint scan through one depth (the same pixels, both sample counts);
- ``occlusion``: a brute-force scan on ``--occlusion-pixels`` random pixels of the
  ``--occlusion-scenes`` scenes at ``--high-samples``: the layers summed (the model), composited
  front to back (``over``), and composited over a hidden background (the wall's radiance and depth
  diffused under the objects from the true wall mask: a diagnostic, which no estimate gives yet).

    python benchmarks/scan_gaps.py [--scenes 8] [--samples 64] [--high-samples 1024] [--occlusion-scenes 0 2 4]

About 25 minutes on 2 CPU cores with the defaults (the brute-force scans take most).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from dfd_models.focus import focus_measure, gamma_encode, gaussian_blur, sweep_depths
from dfd_models.networks.base import lens_from_batch
from dfd_models.refine import depth_scan, forward_model, rest_of_coc
from dfd_models.splat import render_planes

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from planes_stack import on_frame  # noqa: E402
from sweep_accuracy import small_obj_stacks  # noqa: E402

#: The scan's hypotheses (metres) and the splats' std on screen (pixels).
DEPTHS = sweep_depths(0.25, 2.5, 1.05)
SPLAT_PX = 1 / math.sqrt(2 * math.pi)


@dataclasses.dataclass
class Stack:
    """One scene's stack on the scan's source grid (frame 0's, where the all-in-focus image lies)."""

    batch: dict
    depth: torch.Tensor  # true depth, metres, clamped to the hypotheses  # [1, 1, H, W]
    wall: torch.Tensor  # [1, 1, H, W] bool
    pixels: torch.Tensor  # flat indices of the textured object pixels  # [P]


def stacks_of(batch: dict) -> list[Stack]:
    """Each stack of a loader batch, its truth and its textured object pixels on frame 0's grid."""
    out = []
    for i in range(len(batch["frames"])):
        one = {k: (v[i : i + 1] if torch.is_tensor(v) else v) for k, v in batch.items()}
        K, ref = one["K"], one["frames"].shape[1] // 2
        depth = on_frame(one["depth"], K, ref, 0).clamp(float(DEPTHS[0]), float(DEPTHS[-1]))
        objects = on_frame((one["valid"] & ~one["wall"]).float(), K, ref, 0) > 0.5
        textured = focus_measure(gamma_encode(one["aif"], 1 / 2.2), window=3) > 1e-3
        wall = on_frame(one["wall"].float(), K, ref, 0) > 0.5
        out.append(Stack(one, depth, wall, (objects & textured).flatten().nonzero()[:, 0]))
    return out


def within(best: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Whether each depth lies within delta1 (1.25) of the truth.  # [P] bool"""
    return torch.maximum(best / truth, truth / best) < 1.25


def scan(stack: Stack, frames: torch.Tensor | None = None, lens=None, splat_px: float = SPLAT_PX,
         by_frame: bool = False) -> torch.Tensor:
    """The exact scan of every textured object pixel.  # [D, P] ([D, T, P] by frame)"""
    b = stack.batch
    return depth_scan(b["frames"] if frames is None else frames, b["focus_m"], b["K"],
                      lens_from_batch(b) if lens is None else lens, 0, stack.depth, stack.pixels, DEPTHS,
                      radiance=b["aif"], splat_px=splat_px, by_frame=by_frame)


def fraction(stack: Stack, change: torch.Tensor) -> float:
    return float(within(DEPTHS[change.argmin(0)], stack.depth.flatten()[stack.pixels]).float().mean())


def own_frames(stack: Stack, bits: bool) -> torch.Tensor:
    """The stack as the forward model renders it from the true depth and image (8-bit sRGB-like if ``bits``)."""
    b = stack.batch
    model = forward_model(b["frames"], b["focus_m"], b["K"], lens_from_batch(b), 0, min_depth_m=0.25 / 1.01,
                          max_depth_m=2.5 * 1.01, radiance=b["aif"], node_ratio=1.01)
    frames = model.render(stack.depth)
    return (gamma_encode(frames.clamp(0, 1), 1 / 2.2) * 255).round().div(255).pow(2.2) if bits else frames


def free_coc(stack: Stack) -> tuple[torch.Tensor, torch.Tensor]:
    """(joint scan within delta1, free-CoC fit within delta1) per pixel.  # [P] bool each"""
    b, truth = stack.batch, stack.depth.flatten()[stack.pixels]
    change = scan(stack, by_frame=True)  # [D, T, P]
    coc = rest_of_coc(lens_from_batch(b), DEPTHS[None], b["focus_m"], b["frames"].shape[-1], sharp=True)[0]  # [T, D]
    best = coc.gather(1, change.argmin(0))  # [T, P]: each frame's own least-error CoC
    fitted = DEPTHS[(coc[:, :, None] - best[:, None, :]).abs().sum(0).argmin(0)]
    return within(DEPTHS[change.sum(1).argmin(0)], truth), within(fitted, truth)


def render_layers(model, depth: torch.Tensor, blend: str, hidden: tuple | None) -> torch.Tensor:
    """Every frame from splats on their nearest layer: summed, or composited front to back (``over``),
    with the ``hidden`` splats (depth, colour and alpha) behind.  # [1, T, 3, H, W]"""
    logs = model.nodes.log()

    def node(d):
        return ((d.log() - logs[0]) / (logs[1] - logs[0])).round().clamp(0, len(logs) - 1).long()

    index = node(depth)
    used = torch.unique(index if hidden is None else torch.cat([index.flatten(), node(hidden[0]).flatten()]))
    colors = (index == used.reshape(1, -1, 1, 1)).to(depth)[:, :, None] * model.layer[:, None]
    if hidden is not None:
        colors = colors + (node(hidden[0]) == used.reshape(1, -1, 1, 1)).to(depth)[:, :, None] * hidden[1][:, None]
    gy, gx = model.operators
    layers = render_planes(colors, (gy[:, :, used], gx[:, :, used]), per_layer=True)  # [1, L, T, 4, H, W]
    if blend == "sum":
        out = layers.sum(1)
    else:
        alpha = layers[:, :, :, 3:].clamp(0, 1)
        out = (layers * torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha[:, :-1]], 1), 1)).sum(1)
    return out[:, :, :3] / out[:, :, 3:].clamp_min(1e-4)


def hidden_wall(stack: Stack) -> tuple[torch.Tensor, torch.Tensor]:
    """The wall's radiance and depth diffused under the objects (true wall mask): splats behind them."""
    known = stack.wall.float()
    colour, depth = stack.batch["aif"] * known, stack.depth * known
    for _ in range(200):
        count = F.avg_pool2d(known, 3, 1, 1, count_include_pad=False)
        fill = (known == 0) & (count > 0)
        colour = torch.where(fill, F.avg_pool2d(colour, 3, 1, 1, count_include_pad=False) / count.clamp_min(1e-6),
                             colour)
        depth = torch.where(fill, F.avg_pool2d(depth, 3, 1, 1, count_include_pad=False) / count.clamp_min(1e-6), depth)
        known = torch.where(fill, torch.ones_like(known), known)
    alpha = (~stack.wall).float()
    return depth.clamp(float(DEPTHS[0]), float(DEPTHS[-1])), torch.cat([colour, torch.ones_like(alpha)], 1) * alpha


def brute_scan(stack: Stack, pixels: torch.Tensor, blend: str, hidden: tuple | None) -> torch.Tensor:
    """The scan by re-rendering every frame whole, pixels far enough apart moved together.  # [D, P]"""
    b = stack.batch
    lens = lens_from_batch(b)
    model = forward_model(b["frames"], b["focus_m"], b["K"], lens, 0, min_depth_m=0.25 / 1.01,
                          max_depth_m=2.5 * 1.01, radiance=b["aif"], node_ratio=1.01)
    reach = float(rest_of_coc(lens, DEPTHS[[0, -1]][None], b["focus_m"], b["frames"].shape[-1], sharp=True).max()) / 2
    radius = math.ceil(reach) + 2
    target = gamma_encode(b["frames"], model.gamma)

    def error_map(depth):  # [1, 1, H, W]: each pixel's error summed over the frames
        residual = gamma_encode(render_layers(model, depth, blend, hidden), model.gamma) - target
        return (residual.abs().mean(2) * model.cover[:, :, 0]).sum(1, keepdim=True)

    held, width = error_map(stack.depth), b["frames"].shape[-1]
    rows, cols = (pixels // width).tolist(), (pixels % width).tolist()
    out, left = torch.zeros(len(DEPTHS), len(pixels)), list(range(len(pixels)))
    while left:  # windows that do not overlap change independently
        group = []
        for i in left:
            if all(max(abs(rows[i] - rows[j]), abs(cols[i] - cols[j])) > 2 * radius + 1 for j in group):
                group.append(i)
        left = [i for i in left if i not in group]
        for d, z in enumerate(DEPTHS.tolist()):
            moved = stack.depth.clone()
            moved.view(-1)[pixels[group]] = z
            window = F.avg_pool2d(error_map(moved) - held, 2 * radius + 1, 1, radius, count_include_pad=False)
            out[d, group] = (window * (2 * radius + 1) ** 2).flatten()[pixels[group]]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=8, help="small_obj scenes (the recipe's first N)")
    parser.add_argument("--size", type=int, default=64, help="image width and height, pixels")
    parser.add_argument("--samples", type=int, default=64, help="Cycles samples per pixel")
    parser.add_argument("--high-samples", type=int, default=1024, help="the same scenes with less noise")
    parser.add_argument("--occlusion-scenes", type=int, nargs="*", default=[0, 2, 4])
    parser.add_argument("--occlusion-pixels", type=int, default=40, help="random pixels per scene (seed 0)")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    start = time.perf_counter()
    data = {}
    for samples in (args.samples, args.high_samples):
        with tempfile.TemporaryDirectory() as tmp:
            data[samples] = stacks_of(small_obj_stacks(args.scenes, args.size, samples, Path(tmp))[0])
    print(f"budget: small_obj scenes 0-{args.scenes - 1}, {args.size} px, 5 frames, {args.samples} and "
          f"{args.high_samples} spp, rendered in {time.perf_counter() - start:.0f} s; "
          f"{sum(len(s.pixels) for s in data[args.samples])} textured object pixels; {torch.get_num_threads()} threads")
    print("\nfraction of textured object pixels whose scan minimum lies within delta1 of the truth")
    print("| forward model / frames | mean | per scene |\n|---|---|---|")

    def row(label: str, values: list[float]) -> None:
        print(f"| {label} | {sum(values) / len(values):.3f} | {' '.join(f'{v:.2f}' for v in values)} |", flush=True)

    low = data[args.samples]
    row(f"cycles, {args.samples} spp", [fraction(s, scan(s)) for s in low])
    row("own frames", [fraction(s, scan(s, own_frames(s, bits=False))) for s in low])
    row("own frames, 8 bit", [fraction(s, scan(s, own_frames(s, bits=True))) for s in low])
    for factor in (0.8, 0.9, 1.1, 1.25):
        row(f"CoC x {factor}", [fraction(s, scan(s, lens=dataclasses.replace(
            lens_from_batch(s.batch), f_number=lens_from_batch(s.batch).f_number / factor))) for s in low])
    for std in (0.2, 0.3, 0.5, 0.6):
        row(f"splat std {std} px", [fraction(s, scan(s, splat_px=std)) for s in low])
    for sigma in (0.5, 0.8):
        row(f"low-pass {sigma} px", [fraction(s, scan(
            s, gaussian_blur(s.batch["frames"][0], sigma)[None], splat_px=math.hypot(SPLAT_PX, sigma))) for s in low])
    row(f"cycles, {args.high_samples} spp", [fraction(s, scan(s)) for s in data[args.high_samples]])

    print("\nrendering each frame with its own free CoC (what a predicted CoC per frame would minimise)")
    print("| frames | textured object pixels | joint scan through depth | free CoC, depth fitted |\n|---|---|---|---|")
    for samples in (args.samples, args.high_samples):
        joint, free = (torch.cat(x) for x in zip(*(free_coc(s) for s in data[samples])))
        print(f"| cycles, {samples} spp | {len(joint)} | {float(joint.float().mean()):.3f} | "
              f"{float(free.float().mean()):.3f} |", flush=True)

    print(f"\nocclusion: brute-force scans, {args.occlusion_pixels} random pixels per scene, {args.high_samples} spp")
    print("| scene | exact scan (sum) | sum | over | over a hidden wall | s |\n|---|---|---|---|---|---|")
    for index in args.occlusion_scenes:
        stack, tic = data[args.high_samples][index], time.perf_counter()
        pick = torch.randperm(len(stack.pixels), generator=torch.Generator().manual_seed(0))[:args.occlusion_pixels]
        pixels, truth = stack.pixels[pick], stack.depth.flatten()[stack.pixels[pick]]

        def share(change):
            return float(within(DEPTHS[change.argmin(0)], truth).float().mean())

        exact = share(depth_scan(stack.batch["frames"], stack.batch["focus_m"], stack.batch["K"],
                                 lens_from_batch(stack.batch), 0, stack.depth, pixels, DEPTHS,
                                 radiance=stack.batch["aif"]))
        shares = [share(brute_scan(stack, pixels, blend, hidden)) for blend, hidden in
                  (("sum", None), ("over", None), ("over", hidden_wall(stack)))]
        print(f"| {index} | {exact:.3f} | {' | '.join(f'{v:.3f}' for v in shares)} | "
              f"{time.perf_counter() - tic:.0f} |", flush=True)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
