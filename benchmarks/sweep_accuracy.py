"""Depth of Cycles focal stacks without learning, at 64 px: the splat forward model and its search.

Renders ``--scenes`` small_obj scenes (the recipe's scenes 0..N-1, one ramp of 5 frames,
``--size`` px, ``--samples`` spp, all-in-focus image kept) into a temporary folder, and the
planes stack of the tests (tests/planes_stack.py: three textured planes and a wall, 5 frames),
then prints per stack and pooled over the small_obj stacks, object and all-pixel AbsRel and
delta1 of:

- ``constant``: the best constant depth of the stack (fitted to its own truth: a floor);
- ``dff``: classical depth from focus (:func:`dfd_models.focus.dff_depth`);
- ``sweep-old``: :func:`dfd_models.focus.defocus_sweep` as sdgs and ``dfd_sweep`` call it
  (Gaussian blur, 32 planes uniform in 1/z over 0.1-3 m, 9 px windows);
- ``sweep``: the splat-footprint sweep (``footprint="disc"``, hypotheses ``sweep_depths`` over
  the data's range, ``--window``);
- ``refined``: :func:`dfd_models.refine.refine_depth` from ``sweep``.

The data's range is the recipe's: nearest object depth / 1.1 to farthest wall distance x 1.1
(planes: 0.25-2 m). For the forward model it also prints, per stack: the per-pixel depth
scan (:func:`dfd_models.refine.depth_scan`, radiance = the true all-in-focus image on frame
0's grid, hypotheses 0.25-2.5 m at ratio 1.05) as the fraction of textured object pixels
whose minimum lies within delta1 of the truth, for the disc and the Gaussian footprints;
and the total re-rendering error of the refinement's forward model (the composite radiance)
at the true depth, at the sweep's and at the refined depth. Wall times are per stack on this
machine; the budget line says what ran.

    python benchmarks/sweep_accuracy.py [--scenes 6] [--size 64] [--samples 64] [--window 7]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from dfd_models.config import DataSection
from dfd_models.data import make_loader, reference_index
from dfd_models.focus import (
    defocus_sweep,
    dff_depth,
    focus_measure,
    gamma_encode,
    sweep_depths,
)
from dfd_models.metrics import RegionMetrics
from dfd_models.networks.base import lens_from_batch
from dfd_models.refine import depth_scan, forward_model, refine_depth
from generator.recipe.recipe import load_recipe
from generator.render.pipeline import render_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from planes_stack import on_frame, render_planes_stack  # noqa: E402

METHODS = ("constant", "dff", "sweep-old", "sweep", "refined")


def small_obj_stacks(count: int, size: int, samples: int, out: Path) -> tuple[dict, tuple[float, float]]:
    """The first ``count`` small_obj scenes as one batch, and the data's depth range (metres)."""
    recipe = load_recipe("small_obj", [
        f"count={count}", f"image.width={size}", f"image.height={size}", f"image.samples={samples}",
        "focus.ramps=1", "splits={train: 0.0, val: 0.0, test: 1.0}", "outputs.aif=true"])
    render_dataset(recipe, out, workers=1, progress=False)
    batch = next(iter(make_loader(DataSection.for_eval(out, batch_size=count))))
    scene = recipe.scene
    return batch, (scene.objects.depth_m.min / 1.1, scene.wall.distance_m.max * 1.1)


def score(depth: torch.Tensor, stack: dict) -> dict[str, tuple[float, float]]:
    """{region: (AbsRel, delta1)} of one stack's depth."""
    metrics = RegionMetrics()
    metrics.update(depth, stack["depth"], stack["valid"], stack["wall"])
    return {region: (m["abs_rel"], m["delta1"]) for region, m in metrics.compute().items()}


#: The per-pixel scan's hypotheses, metres (its range also clamps the true depth it holds).
SCAN_DEPTHS = sweep_depths(0.25, 2.5, 1.05)


def scan_pixels(stack: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The scan's truth and pixels on frame 0's grid (where the all-in-focus image lies): the true depth
    within the hypotheses, metres, and the flat indices of the textured object pixels.  # [1, 1, H, W], [P]"""
    K, ref = stack["K"], reference_index(stack["frames"].shape[1])
    depth = on_frame(stack["depth"], K, ref, 0).clamp(float(SCAN_DEPTHS[0]), float(SCAN_DEPTHS[-1]))
    objects = on_frame((stack["valid"] & ~stack["wall"]).float(), K, ref, 0) > 0.5
    textured = focus_measure(gamma_encode(stack["aif"], 1 / 2.2), window=3) > 1e-3
    return depth, (objects & textured).flatten().nonzero()[:, 0]


def scan_fraction(stack: dict, lens, footprint: str) -> float:
    """Textured object pixels whose per-pixel scan minimum lies within delta1 of the truth (frame 0's grid)."""
    depth, pixels = scan_pixels(stack)
    change = depth_scan(stack["frames"], stack["focus_m"], stack["K"], lens, 0, depth, pixels, SCAN_DEPTHS,
                        radiance=stack["aif"], footprint=footprint)
    best, truth = SCAN_DEPTHS[change.argmin(0)], depth.flatten()[pixels]
    return float((torch.maximum(best / truth, truth / best) < 1.25).float().mean())


def run(stack: dict, low: float, high: float, window: int) -> tuple[dict, dict, dict]:
    """(scores by method, seconds by method, forward-model checks) of one stack (B = 1)."""
    frames, focus, K = stack["frames"], stack["focus_m"], stack["K"]
    lens, ref = lens_from_batch(stack), reference_index(frames.shape[1])
    objects = stack["valid"] & ~stack["wall"]
    truth = stack["depth"][objects]
    scores, seconds, depths = {}, {}, {}
    start = time.perf_counter()
    constants = torch.linspace(0.2, 2.5, 231)
    best = min(constants.tolist(), key=lambda c: float(((c - truth).abs() / truth).mean()))
    depths["constant"] = torch.full_like(stack["depth"], best)
    seconds["constant"] = time.perf_counter() - start
    for name, call in (
        ("dff", lambda: dff_depth(frames, focus, K, ref)),
        ("sweep-old", lambda: defocus_sweep(frames, focus, K, lens, ref, min_depth_m=0.1, max_depth_m=3.0)[0]),
        ("sweep", lambda: defocus_sweep(frames, focus, K, lens, ref, min_depth_m=low, max_depth_m=high,
                                        window=window, footprint="disc", depths=sweep_depths(low, high))[0]),
        ("refined", lambda: refine_depth(frames, focus, K, lens, ref, depths["sweep"], min_depth_m=low,
                                         max_depth_m=high)),
    ):
        start = time.perf_counter()
        depths[name] = call()
        seconds[name] = time.perf_counter() - start
    for name in METHODS:
        scores[name] = score(depths[name], stack)
    start = time.perf_counter()
    checks = {f"scan {fp}": scan_fraction(stack, lens, fp) for fp in ("disc", "gaussian")}
    model = forward_model(frames, focus, K, lens, ref, min_depth_m=low, max_depth_m=high)  # refine_depth's
    for name, depth in (("truth", stack["depth"]), ("sweep", depths["sweep"]), ("refined", depths["refined"])):
        checks[f"error at {name}"] = float(model.error(depth.clamp(low, high)))
    seconds["checks"] = time.perf_counter() - start
    return scores, seconds, checks


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=6, help="small_obj scenes")
    parser.add_argument("--size", type=int, default=64, help="image width and height, pixels")
    parser.add_argument("--samples", type=int, default=64, help="Cycles samples per pixel")
    parser.add_argument("--window", type=int, default=7, help="the splat sweep's window, pixels")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        batch, (low, high) = small_obj_stacks(args.scenes, args.size, args.samples, Path(tmp))
    planes = render_planes_stack(size=args.size, samples=args.samples, frames=5)
    render_s = time.perf_counter() - start
    stacks = [("planes", planes, (0.25, 2.0))] + [
        (f"small_obj {key}", {k: (v[i : i + 1] if torch.is_tensor(v) else v) for k, v in batch.items()}, (low, high))
        for i, key in enumerate(batch["key"])]
    print(f"budget: {args.scenes} small_obj scenes + the planes stack, {args.size} px, {args.samples} spp, 5 frames, "
          f"rendered in {render_s:.0f} s; {torch.get_num_threads()} CPU threads; small_obj range "
          f"{low:.3f}-{high:.3f} m, sweep window {args.window}")
    pooled = {name: [] for name in METHODS}
    for label, stack, (lo, hi) in stacks:
        scores, seconds, checks = run(stack, lo, hi, args.window)
        print(f"\n{label}")
        for name in METHODS:
            (obj_rel, obj_d1), (all_rel, all_d1) = scores[name]["objects"], scores[name]["all"]
            print(f"  {name:10s} objects AbsRel {obj_rel:.3f} delta1 {obj_d1:.3f} | all AbsRel {all_rel:.3f} "
                  f"delta1 {all_d1:.3f} | {seconds[name]:5.1f} s")
            if label != "planes":
                pooled[name].append((obj_rel, obj_d1, all_rel, all_d1))
        print("  scan within delta1: disc {scan disc:.3f}, gaussian {scan gaussian:.3f}; error at truth "
              "{error at truth:.5f}, at sweep {error at sweep:.5f}, at refined {error at refined:.5f}".format(**checks)
              + f" ({seconds['checks']:.0f} s)")
    print(f"\nsmall_obj, mean over {args.scenes} stacks (objects AbsRel / delta1 | all AbsRel / delta1)")
    for name in METHODS:
        mean = torch.tensor(pooled[name]).mean(0).tolist()
        print(f"  {name:10s} {mean[0]:.3f} / {mean[1]:.3f} | {mean[2]:.3f} / {mean[3]:.3f}")
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
