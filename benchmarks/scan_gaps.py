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
  front to back (``over``: a layer is hidden by the layers at least two nodes nearer, since a splat
  splits its weight between two neighbouring nodes), and composited over a hidden background (the
  wall's radiance and depth diffused under the objects from the true wall mask: a diagnostic);
- ``refine``: :func:`dfd_models.refine.refine_depth` from the disc sweep (the layers summed), against
  the same refinement composited front to back over a background estimated from the sweep's depth
  (the largest depth within the CoC's reach; the radiance diffused into the pixels in front of it),
  object AbsRel / delta1 at ``--samples``;
- ``resolution``: the ``cycles`` row again with the same scenes rendered at each of ``--sizes`` px
  (at ``--samples``): the same blur spans more pixels. Not in the default parts: at 256 px the scan
  alone takes about 25 minutes.

    python benchmarks/scan_gaps.py [--scenes 8] [--samples 64] [--high-samples 1024] [--occlusion-scenes 0 2 4]
        [--parts scan free occlusion refine resolution] [--sizes 64 128 256]

About 30 minutes on 2 CPU cores with the defaults (the brute-force scans take most).
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

from dfd_models.data.batch import reference_index
from dfd_models.focus import defocus_sweep, gamma_encode, gaussian_blur, sweep_depths
from dfd_models.metrics import DELTA_BASE, RegionMetrics, delta_ratio
from dfd_models.networks.base import lens_from_batch
from dfd_models.refine import (
    depth_scan,
    descend,
    forward_model,
    layer_weights,
    refine_depth,
    rest_of_coc,
)
from dfd_models.splat import render_planes
from generator.core.display import srgb_to_linear
from generator.dataset.pixels import srgb8

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from planes_stack import on_frame  # noqa: E402
from sweep_accuracy import SCAN_DEPTHS, scan_pixels, small_obj_stacks  # noqa: E402

#: What the script can measure (``--parts``), and what it measures unless told (``resolution`` is slow).
DEFAULT_PARTS = ("scan", "free", "occlusion", "refine")
PARTS = (*DEFAULT_PARTS, "resolution")
#: The scan's hypotheses (metres) and the splats' std on screen (pixels).
DEPTHS = SCAN_DEPTHS
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
        depth, pixels = scan_pixels(one)
        wall = on_frame(one["wall"].float(), one["K"], reference_index(one["frames"].shape[1]), 0) > 0.5
        out.append(Stack(one, depth, wall, pixels))
    return out


def rendered_stacks(scenes: int, size: int, samples: int) -> tuple[list[Stack], tuple[float, float]]:
    """The first ``scenes`` small_obj scenes rendered at ``size`` px and ``samples`` spp (in a temporary
    folder), as :func:`stacks_of` gives them, and the data's depth range, metres."""
    with tempfile.TemporaryDirectory() as tmp:
        batch, depth_range = small_obj_stacks(scenes, size, samples, Path(tmp))
    return stacks_of(batch), depth_range


def per_scene(values: list[float]) -> str:
    """A table's "mean | per scene" cells of per-scene shares."""
    return f"{sum(values) / len(values):.3f} | {' '.join(f'{v:.2f}' for v in values)}"


def within(best: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Whether each depth lies within delta1 (1.25) of the truth.  # [P] bool"""
    return delta_ratio(best, truth) < DELTA_BASE


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
    """The stack as the forward model renders it from the true depth and image (in 8-bit sRGB, as the
    shards store frames, if ``bits``)."""
    b = stack.batch
    model = forward_model(b["frames"], b["focus_m"], b["K"], lens_from_batch(b), 0, min_depth_m=0.25 / 1.01,
                          max_depth_m=2.5 * 1.01, radiance=b["aif"], node_ratio=1.01)
    frames = model.render(stack.depth)
    if not bits:
        return frames
    codes = srgb8(frames.movedim(2, -1).numpy())  # as the png8 encoding stores them
    return torch.from_numpy(srgb_to_linear(codes / 255.0)).to(frames).movedim(-1, 2)


def free_coc(stack: Stack) -> tuple[torch.Tensor, torch.Tensor]:
    """(joint scan within delta1, free-CoC fit within delta1) per pixel.  # [P] bool each"""
    b, truth = stack.batch, stack.depth.flatten()[stack.pixels]
    change = scan(stack, by_frame=True)  # [D, T, P]
    coc = rest_of_coc(lens_from_batch(b), DEPTHS[None], b["focus_m"], b["frames"].shape[-1], sharp=True)[0]  # [T, D]
    best = coc.gather(1, change.argmin(0))  # [T, P]: each frame's own least-error CoC
    fitted = DEPTHS[(coc[:, :, None] - best[:, None, :]).abs().sum(0).argmin(0)]
    return within(DEPTHS[change.sum(1).argmin(0)], truth), within(fitted, truth)


def render_layers(model, depth: torch.Tensor, blend: str, hidden: tuple | None) -> torch.Tensor:
    """Every frame from the splats of ``model.layer`` at ``depth``, each splitting its weight between the
    two layers around its depth (:func:`dfd_models.refine.render_depth`): summed, or composited front to
    back (``over``; a layer is hidden by those at least two nodes nearer, never by its own splats'
    other half), with the ``hidden`` splats (depth, colour and alpha) among them.  # [1, T, 3, H, W]"""
    colors = layer_weights(depth, model.nodes)[:, :, None] * model.layer[:, None]  # [1, L, 4, H, W]
    if hidden is not None:
        colors = colors + layer_weights(hidden[0], model.nodes)[:, :, None] * hidden[1][:, None]
    used = colors.detach()[0, :, 3].flatten(1).amax(1) > 0
    gy, gx = model.operators
    layers = render_planes(colors[:, used], (gy[:, :, used], gx[:, :, used]), per_layer=True)  # [1, L', T, 4, H, W]
    if blend == "sum":
        out = layers.sum(1)
    else:  # the layers used are consecutive nodes or apart: "two nodes nearer" counts nodes, not list places
        nodes = used.nonzero()[:, 0]
        alpha = layers[:, :, :, 3:].clamp(0, 1)
        clear = torch.log1p(-alpha.clamp(max=1 - 1e-6))  # log transmittance of each layer
        nearer = (nodes[None, :] <= nodes[:, None] - 2).to(alpha)  # [L', L']: layer j hides layer i
        out = (layers * torch.einsum("ij,bjtchw->bitchw", nearer, clear).exp()).sum(1)
    return out[:, :, :3] / out[:, :, 3:].clamp_min(1e-4)


def diffused(colour: torch.Tensor, depth: torch.Tensor, known: torch.Tensor, steps: int) -> tuple:
    """Colour and depth diffused from the ``known`` pixels into the others, 3 x 3 means, ``steps`` times;
    and where they reached.  # [1, 3, H, W], [1, 1, H, W], [1, 1, H, W] float"""
    known = known.float()
    colour, depth = colour * known, depth * known
    for _ in range(steps):
        count = F.avg_pool2d(known, 3, 1, 1, count_include_pad=False)
        fill = (known == 0) & (count > 0)
        colour = torch.where(fill, F.avg_pool2d(colour, 3, 1, 1, count_include_pad=False) / count.clamp_min(1e-6),
                             colour)
        depth = torch.where(fill, F.avg_pool2d(depth, 3, 1, 1, count_include_pad=False) / count.clamp_min(1e-6), depth)
        known = torch.where(fill, torch.ones_like(known), known)
    return colour, depth, known


def hidden_wall(stack: Stack) -> tuple[torch.Tensor, torch.Tensor]:
    """The wall's radiance and depth diffused under the objects (true wall mask): splats behind them."""
    colour, depth, _ = diffused(stack.batch["aif"], stack.depth, stack.wall, 200)
    alpha = (~stack.wall).float()
    return depth.clamp(float(DEPTHS[0]), float(DEPTHS[-1])), torch.cat([colour, torch.ones_like(alpha)], 1) * alpha


def estimated_background(model, depth: torch.Tensor, reach_px: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Splats for what a depth map's nearer surfaces hide: where a pixel lies 10 % in front of the
    largest depth within ``reach_px``, that depth's radiance diffused from the pixels not in front."""
    radius = math.ceil(reach_px) + 1
    far = F.max_pool2d(depth, 2 * radius + 1, 1, radius)
    front = depth < far / 1.1
    colour, behind, reached = diffused(model.layer[:, :3], depth, ~front, radius + 2)
    alpha = (front & (reached > 0)).float()
    return torch.where(reached > 0, behind, far), torch.cat([colour, torch.ones_like(alpha)], 1) * alpha


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


def refine_over(batch: dict, start: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """:func:`dfd_models.refine.refine_depth`'s search (:func:`~dfd_models.refine.descend`) on the layers
    composited front to back over :func:`estimated_background` of ``start``.  # [1, 1, H, W] m"""
    frames, focus, K, lens = batch["frames"], batch["focus_m"], batch["K"], lens_from_batch(batch)
    model = forward_model(frames, focus, K, lens, reference_index(frames.shape[1]), min_depth_m=low, max_depth_m=high)
    reach = float(rest_of_coc(lens, torch.tensor([[low, high]]), focus, frames.shape[-1]).max()) / 2
    hidden = estimated_background(model, start, reach)
    target = gamma_encode(frames, model.gamma)

    def error(depth):
        residual = gamma_encode(render_layers(model, depth, "over", hidden), model.gamma) - target
        return (residual.abs().mean(2, keepdim=True) * model.cover).sum() / model.cover.sum()

    return descend(error, start, min_depth_m=low, max_depth_m=high)


def object_scores(depth: torch.Tensor, batch: dict) -> tuple[float, float]:
    metrics = RegionMetrics()
    metrics.update(depth, batch["depth"], batch["valid"], batch["wall"])
    objects = metrics.compute()["objects"]
    return objects["abs_rel"], objects["delta1"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=8, help="small_obj scenes (the recipe's first N)")
    parser.add_argument("--size", type=int, default=64, help="image width and height, pixels")
    parser.add_argument("--samples", type=int, default=64, help="Cycles samples per pixel")
    parser.add_argument("--high-samples", type=int, default=1024, help="the same scenes with less noise")
    parser.add_argument("--occlusion-scenes", type=int, nargs="*", default=[0, 2, 4])
    parser.add_argument("--occlusion-pixels", type=int, default=40, help="random pixels per scene (seed 0)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(DEFAULT_PARTS), help="what to measure")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256],
                        help="image widths and heights of the resolution part, pixels")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    start = time.perf_counter()
    data, parts = {}, set(args.parts)
    at_size = parts - {"resolution"}  # the parts that read the --size stacks
    counts = [args.samples] if at_size else []
    if at_size - {"refine"}:  # refine alone needs no quiet stacks
        counts.append(args.high_samples)
    for samples in counts:
        data[samples], (low, high) = rendered_stacks(args.scenes, args.size, samples)
    if data:
        print(f"budget: small_obj scenes 0-{args.scenes - 1}, {args.size} px, 5 frames, "
              f"{' and '.join(str(n) for n in data)} spp, rendered in {time.perf_counter() - start:.0f} s; "
              f"{sum(len(s.pixels) for s in data[args.samples])} textured object pixels at {args.samples} spp; "
              f"{torch.get_num_threads()} threads")
    if "scan" in parts:
        scan_table(data[args.samples], args.samples, data[args.high_samples], args.high_samples)
    if "free" in parts:
        free_table(data)
    if "occlusion" in parts:
        occlusion_table(data[args.high_samples], args.high_samples, args.occlusion_scenes, args.occlusion_pixels)
    if "refine" in parts:
        refine_table(data[args.samples], args.samples, low, high)
    if "resolution" in parts:
        resolution_table(args.scenes, args.sizes, args.samples)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


def scan_table(stacks: list[Stack], samples: int, quiet: list[Stack], quiet_samples: int) -> None:
    """The scan's share within delta1 as one thing changes at a time (module docstring)."""
    print("\nfraction of textured object pixels whose scan minimum lies within delta1 of the truth")
    print("| forward model / frames | mean | per scene |\n|---|---|---|")

    def row(label: str, values: list[float]) -> None:
        print(f"| {label} | {per_scene(values)} |", flush=True)

    row(f"cycles, {samples} spp", [fraction(s, scan(s)) for s in stacks])
    row("own frames", [fraction(s, scan(s, own_frames(s, bits=False))) for s in stacks])
    row("own frames, 8 bit", [fraction(s, scan(s, own_frames(s, bits=True))) for s in stacks])
    for factor in (0.8, 0.9, 1.1, 1.25):
        row(f"CoC x {factor}", [fraction(s, scan(s, lens=dataclasses.replace(
            lens_from_batch(s.batch), f_number=lens_from_batch(s.batch).f_number / factor))) for s in stacks])
    for std in (0.2, 0.3, 0.5, 0.6):
        row(f"splat std {std} px", [fraction(s, scan(s, splat_px=std)) for s in stacks])
    for sigma in (0.5, 0.8):
        row(f"low-pass {sigma} px", [fraction(s, scan(s, gaussian_blur(s.batch["frames"][0], sigma)[None],
                                                      splat_px=math.hypot(SPLAT_PX, sigma))) for s in stacks])
    row(f"cycles, {quiet_samples} spp", [fraction(s, scan(s)) for s in quiet])


def free_table(data: dict[int, list[Stack]]) -> None:
    """The scan through one depth against each frame's own free CoC, pooled over the pixels."""
    print("\nrendering each frame with its own free CoC (what a predicted CoC per frame would minimise)")
    print("| frames | textured object pixels | joint scan through depth | free CoC, depth fitted |\n|---|---|---|---|")
    for samples, stacks in data.items():
        joint, free = (torch.cat(x) for x in zip(*(free_coc(s) for s in stacks)))
        print(f"| cycles, {samples} spp | {len(joint)} | {float(joint.float().mean()):.3f} | "
              f"{float(free.float().mean()):.3f} |", flush=True)


def occlusion_table(stacks: list[Stack], samples: int, scenes: list[int], count: int) -> None:
    """Brute-force scans of ``count`` random pixels per scene: summed, over, over a hidden wall."""
    print(f"\nocclusion: brute-force scans, {count} random pixels per scene, {samples} spp")
    print("| scene | exact scan (sum) | sum | over | over a hidden wall | s |\n|---|---|---|---|---|---|")
    for index in scenes:
        stack, tic = stacks[index], time.perf_counter()
        pick = torch.randperm(len(stack.pixels), generator=torch.Generator().manual_seed(0))[:count]
        pixels, truth = stack.pixels[pick], stack.depth.flatten()[stack.pixels[pick]]

        def share(change, truth=truth):
            return float(within(DEPTHS[change.argmin(0)], truth).float().mean())

        exact = share(depth_scan(stack.batch["frames"], stack.batch["focus_m"], stack.batch["K"],
                                 lens_from_batch(stack.batch), 0, stack.depth, pixels, DEPTHS,
                                 radiance=stack.batch["aif"]))
        shares = [share(brute_scan(stack, pixels, blend, hidden)) for blend, hidden in
                  (("sum", None), ("over", None), ("over", hidden_wall(stack)))]
        print(f"| {index} | {exact:.3f} | {' | '.join(f'{v:.3f}' for v in shares)} | "
              f"{time.perf_counter() - tic:.0f} |", flush=True)


def resolution_table(scenes: int, sizes: list[int], samples: int) -> None:
    """The ``cycles`` row of :func:`scan_table` with the scenes rendered at each size (pixels)."""
    print(f"\nthe scan at each image size: small_obj scenes 0-{scenes - 1}, {samples} spp, "
          f"{torch.get_num_threads()} threads")
    print("| size | mean | per scene | textured object pixels | render s | scan s |\n|---|---|---|---|---|---|")
    for size in sizes:
        tic = time.perf_counter()
        stacks = rendered_stacks(scenes, size, samples)[0]
        rendered = time.perf_counter() - tic
        values = [fraction(s, scan(s)) for s in stacks]
        print(f"| {size} px | {per_scene(values)} | {sum(len(s.pixels) for s in stacks)} | {rendered:.0f} | "
              f"{time.perf_counter() - tic - rendered:.0f} |", flush=True)


def refine_table(stacks: list[Stack], samples: int, low: float, high: float) -> None:
    """Object AbsRel / delta1 of the disc sweep, refined summed, refined over an estimated background."""
    print(f"\nrefinement from the disc sweep, {samples} spp (objects AbsRel / delta1; range {low:.3f}-{high:.3f} m)")
    print("| scene | sweep | refined, layers summed | refined, over an estimated background |\n|---|---|---|---|")
    pooled = []
    for index, stack in enumerate(stacks):
        b = stack.batch
        frames, focus, K, lens = b["frames"], b["focus_m"], b["K"], lens_from_batch(b)
        ref = reference_index(frames.shape[1])
        sweep = defocus_sweep(frames, focus, K, lens, ref, min_depth_m=low, max_depth_m=high, window=7,
                              footprint="disc", depths=sweep_depths(low, high))[0]
        depths = (sweep, refine_depth(frames, focus, K, lens, ref, sweep, min_depth_m=low, max_depth_m=high),
                  refine_over(b, sweep, low, high))
        pooled.append([object_scores(d, b) for d in depths])
        print(f"| {index} | {' | '.join(f'{a:.3f} / {d:.3f}' for a, d in pooled[-1])} |", flush=True)
    mean = torch.tensor(pooled).mean(0).tolist()
    print(f"| mean | {' | '.join(f'{a:.3f} / {d:.3f}' for a, d in mean)} |")


if __name__ == "__main__":
    main()
