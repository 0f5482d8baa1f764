"""Frames per second at equal quality: dfdgen's renderer against a naive Blender loop (issue 7).

One scene of a recipe is saved with ``dfdgen render --save-blend`` and its
focus stack (one ramp of ``--frames`` frames) is rendered several ways, in one
process (bpy imported once, outside every timing):

- reference: dfdgen's renderer at ``--reference-samples`` with another Cycles
  seed, no denoiser: the "converged" image. Its own noise is independent of
  the contestants' (the same seed would share their first samples and flatter
  them), and it limits the PSNR any contestant can show.
- naive: per frame, a fresh Blender scene: open the .blend, focus the camera,
  Cycles' default sampling (adaptive, threshold 0.01, OpenImageDenoise) at
  ``--naive-samples`` (Cycles' default is 4096), render, write an EXR.
- naive-fixed: the same with a fixed ``--naive-fixed-samples`` and OpenImageDenoise.
- dfdgen: :func:`generator.render_tasks.render_sample`, what ``dfdgen render`` runs
  per scene (build once, persistent data, depth with DoF off, every frame changing only
  the camera, no denoiser) at each of ``--samples``; with ``--adaptive T`` also
  adaptive sampling at threshold T (recipe ``image.adaptive_threshold``).
- dfdgen with each naive loop's own sampling and OpenImageDenoise (recipe
  ``image.denoise``): the same pixels' quality, so the ratio is what the
  pipeline alone gains (no reload, no rebuild per frame).

s/frame is wall time per focus frame (dfdgen's includes building the scene,
depth maps and encoding the sample, which the naive loop does not make).
PSNR is on sRGB values in [0, 1] (what the dataset stores, before 8-bit
rounding), averaged over frames, against the reference. "Equal PSNR": dfdgen's
s/frame where its PSNR reaches the naive loop's, interpolated in log(samples)
between the two dfdgen sample counts around it; the ratio is naive s/frame
over that (frames/s of dfdgen over the naive loop's at equal PSNR).

The defaults are scaled for 2 CPU cores and a few minutes: 32 x 32 px,
3 frames, naive capped at 1024 samples (not 4096), reference 4096 samples.
A recipe whose ramps repeat (small_obj: 5 ramps of a static scene) delivers
each distinct view's frame that many times from one render, where a naive loop
renders every frame of the sequence. The ratios above are per rendered view
(one ramp here); a last line per ratio scales it by the recipe's repeats, per
frame the dataset holds.

    python benchmarks/render_quality_speed.py [--size 32] [--frames 3] [--samples 64 128 ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bpy
import numpy as np
import OpenEXR

from generator.blender.camera import apply_camera
from generator.render_tasks import render_sample
from generator.recipe import load_recipe
from generator.codec import linear_to_srgb
from generator.draw import sample_scene
from generator.spec import SceneSpec
from quiet import results_stream


def psnr(frames: list[np.ndarray], reference: list[np.ndarray]) -> float:
    """Mean over frames of 10 log10(1 / MSE), dB; images are sRGB in [0, 1]."""
    return float(np.mean([10 * math.log10(1.0 / np.mean((a - b) ** 2)) for a, b in zip(frames, reference)]))


def with_render(spec: SceneSpec, **changes) -> SceneSpec:
    return dataclasses.replace(spec, render=dataclasses.replace(spec.render, **changes))


def dfdgen_way(spec: SceneSpec, recipe) -> tuple[list[np.ndarray], float]:
    """sRGB frames and wall seconds per frame of dfdgen's renderer (render + encode)."""
    start = time.perf_counter()
    _, rendered = render_sample(spec, recipe)
    seconds = time.perf_counter() - start
    return [linear_to_srgb(f) for f in rendered.frames], seconds / len(spec.frames)


def naive_way(spec: SceneSpec, blend: Path, out: Path, samples: int, adaptive: bool) -> tuple[list[np.ndarray], float]:
    """sRGB frames and wall seconds per frame of the naive loop: a fresh scene from the .blend per frame."""
    seconds, paths = 0.0, []
    for frame in spec.frames:
        path = out / f"naive_{frame.index:03d}.exr"
        start = time.perf_counter()
        bpy.ops.wm.open_mainfile(filepath=str(blend))
        scene = bpy.context.scene
        apply_camera(scene.camera, spec.lens, frame.focus_distance_m, use_dof=True)
        cycles = scene.cycles
        cycles.samples = samples
        cycles.use_adaptive_sampling = adaptive
        cycles.adaptive_threshold = 0.01  # Cycles' defaults
        cycles.adaptive_min_samples = 0
        cycles.use_denoising = True
        cycles.denoiser = "OPENIMAGEDENOISE"
        settings = scene.render.image_settings
        settings.file_format = "OPEN_EXR"
        settings.color_depth = "32"
        scene.render.filepath = str(path)
        scene.render.use_file_extension = False
        bpy.ops.render.render(write_still=True)
        seconds += time.perf_counter() - start
        paths.append(path)
    frames = []
    for path in paths:
        with OpenEXR.File(str(path)) as exr:
            channels = exr.parts[0].channels
            rgb = channels["RGBA"].pixels[..., :3] if "RGBA" in channels else np.dstack(
                [channels[c].pixels for c in "RGB"])
        frames.append(linear_to_srgb(rgb))
    return frames, seconds / len(spec.frames)


def seconds_at(psnr_goal: float, points: list[tuple[int, float, float]]) -> float | None:
    """dfdgen s/frame at ``psnr_goal``: interpolated in log(samples) between the (samples, psnr, s/frame)
    points around it; None if no point reaches it."""
    points = sorted(points)
    for (n0, p0, s0), (n1, p1, s1) in zip(points, points[1:]):
        if p0 < psnr_goal <= p1:
            t = (psnr_goal - p0) / (p1 - p0)
            samples = math.exp(math.log(n0) + t * (math.log(n1) - math.log(n0)))
            return s0 + (s1 - s0) * (samples - n0) / (n1 - n0)  # time is linear in samples
    return points[0][2] if points and points[0][1] >= psnr_goal else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="small_obj")
    parser.add_argument("--scene", type=int, default=0)
    parser.add_argument("--size", type=int, default=32, help="image width and height, pixels")
    parser.add_argument("--frames", type=int, default=3, help="focus frames (one ramp)")
    parser.add_argument("--samples", type=int, nargs="+", default=[64, 128, 256, 512, 1024, 2048],
                        help="dfdgen sample counts")
    parser.add_argument("--adaptive", type=float, default=None, metavar="T",
                        help="also dfdgen with adaptive sampling at threshold T")
    parser.add_argument("--naive-samples", type=int, default=1024, help="naive loop, adaptive (Cycles: 4096)")
    parser.add_argument("--naive-fixed-samples", type=int, default=128, help="naive loop, fixed count")
    parser.add_argument("--reference-samples", type=int, default=4096)
    args = parser.parse_args()
    out = results_stream()

    overrides = [f"image.width={args.size}", f"image.height={args.size}", "focus.ramps=1",
                 f"focus.frames_per_ramp={args.frames}", "outputs.aif=false", f"count={args.scene + 1}"]
    recipe = load_recipe(args.recipe, overrides)
    full = load_recipe(args.recipe)
    repeats = full.focus.ramps if full.motion is None else 1  # a dynamic scene renders every frame
    spec = sample_scene(recipe, args.scene)
    with tempfile.TemporaryDirectory() as tmp:
        blend = Path(tmp) / "scene.blend"
        subprocess.run([sys.executable, "-c", "from generator.cli import main; main()", "render", "--recipe", args.recipe,
                        *[a for o in overrides for a in ("--set", o)], "--save-blend", str(blend),
                        "--scene", str(args.scene)], check=True, capture_output=True)
        print(f"{args.recipe} scene {args.scene}, {args.size}x{args.size} px, {args.frames} frames; "
              f"reference {args.reference_samples} samples (another seed)", file=out)
        reference, _ = dfdgen_way(with_render(spec, samples=args.reference_samples, seed=spec.render.seed + 1), recipe)
        rows = []
        for samples, adaptive in ((args.naive_samples, True), (args.naive_fixed_samples, False)):
            name = f"naive {samples}" + (" adaptive 0.01" if adaptive else "") + " + OIDN"
            frames, naive_seconds = naive_way(spec, blend, Path(tmp), samples, adaptive)
            rows.append((name, naive_seconds, psnr(frames, reference)))
            print(f"{name:<36} {naive_seconds:8.3f} s/frame {rows[-1][2]:6.2f} dB", file=out)
            # The naive settings through dfdgen's pipeline (recipe image.denoise): the pipeline's own gain.
            same = {"samples": samples, "denoise": True, "adaptive_threshold": 0.01 if adaptive else 0.0}
            frames, seconds = dfdgen_way(with_render(spec, **same), recipe)
            print(f"{'  dfdgen, same settings':<36} {seconds:8.3f} s/frame {psnr(frames, reference):6.2f} dB  "
                  f"frames/s ratio {naive_seconds / seconds:.2f}", file=out)
        variants = [("dfdgen", {})] + ([(f"dfdgen adaptive {args.adaptive}", {"adaptive_threshold": args.adaptive})]
                                      if args.adaptive else [])
        curves = {}
        for label, changes in variants:
            curves[label] = []
            for samples in args.samples:
                frames, seconds = dfdgen_way(with_render(spec, samples=samples, **changes), recipe)
                curves[label].append((samples, psnr(frames, reference), seconds))
                print(f"{label + f' {samples}':<36} {seconds:8.3f} s/frame {curves[label][-1][1]:6.2f} dB", file=out)
    print(file=out)
    for name, naive_seconds, naive_psnr in rows:
        for label, points in curves.items():
            seconds = seconds_at(naive_psnr, points)
            if seconds is None:
                print(f"{label} does not reach {name}'s {naive_psnr:.2f} dB within {max(args.samples)} samples",
                      file=out)
            else:
                ratio = naive_seconds / seconds
                print(f"at {naive_psnr:.2f} dB ({name}): {label} {seconds:.3f} s/frame, "
                      f"frames/s ratio {label}/naive = {ratio:.2f}", file=out)
                if repeats > 1:
                    print(f"  per dataset frame ({args.recipe}: {repeats} ramps of one static view, "
                          f"rendered once by dfdgen, {repeats} times by the naive loop): {ratio * repeats:.2f}",
                          file=out)


if __name__ == "__main__":
    main()
