"""Render settings against the defocus they must keep: quality, noise, CoC and depth from focus per second.

One scene of a recipe (``--scene``), one focus ramp of ``--frames`` frames at
``--size`` px (default 256, the datasets' size), is rendered with each setting
below, in one process (bpy imported once, outside every timing). Each row gives:

- s/frame: wall seconds per focus frame of :func:`generator.render.tasks.render_sample`
  (what ``dfdgen render`` runs per scene: build once, depth, every frame, encoding);
  for the naive loop, of its own per-frame loop.
- PSNR against the reference (the recipe's settings at ``--reference-samples`` with
  another Cycles seed, no denoiser), sRGB in [0, 1], pooled over frames, per region
  (from the true depth and each frame's focus): **in focus** (CoC < 1 px), **out of
  focus** (CoC >= 3 px) and **edges** (within 2 px of a depth step of more than 5 %),
  the first two without edge pixels.
- noise: RMS (sRGB) of the difference between two renders with different seeds,
  over sqrt 2: the noise of one render, biased or not (light-path rows only).
- CoC: the largest error of :mod:`generator.scene.calibration`'s disc probes (both lens
  models, CoC 5-57 px; emissive discs, and lit discs for light-path rows) rendered
  with the row's setting, in units of the tolerance (max(3 %, 0.5 px)): <= 1 holds.
- plane blur: the disc diameter fitted between the all-in-focus image and each
  defocused frame of a checker plane (:func:`generator.scene.calibration.plane_probe`,
  64 px, CoC 4.8 and 2.1 px) rendered with the row's setting, against the same at
  ``--reference-samples``, in the same tolerance: a denoiser that erases the
  faint texture left by the blur reads as more blur here.
- DFF: AbsRel of classical depth from focus (:func:`dfd_models.focus.dff_depth`)
  on the row's frames against the true depth, on object pixels (not the wall),
  and that over the same on the reference's frames ("x ref"; 1.05 = 5 % worse).

Rows: ``samples`` (dfdgen's sampling at each of ``--samples``), ``denoise``
(OpenImageDenoise with albedo and normal guides at each of ``--denoise-samples``),
``adaptive`` (adaptive thresholds at ``--adaptive-samples`` with min samples
1/16 and 1/4 of it), ``light_paths`` (each :class:`generator.scene.spec.LightPaths`
change at ``--light-path-samples``, against Cycles' factory settings), and ``naive``: per
frame a fresh scene opened from a .blend, focused, and rendered with Cycles'
defaults (adaptive 0.01 up to ``--naive-samples`` samples, OpenImageDenoise,
Blackman-Harris filter), or a fixed ``--naive-fixed-samples`` with
OpenImageDenoise. Equal-quality lines then compare: per naive row, dfdgen's
cheapest row (among samples and denoise rows) whose PSNR on all pixels reaches
the naive loop's and whose CoC holds, and its frames/s over the naive loop's,
per rendered view and per dataset frame (a recipe whose ramps repeat a static
view renders each view once and stores it per ramp).

    python benchmarks/render_quality_speed.py [--recipe small_obj] [--size 256] [--groups samples denoise ...]
        [--markdown docs/RENDER_QUALITY.md]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bpy
import numpy as np
import torch

from dfd_models.data.batch import reference_index, wall_mask
from dfd_models.focus import dff_depth
from generator.render.blender.camera import apply_camera
from generator.render.blender.render import render_scene
from generator.scene.calibration import coc_error, coc_probes, fit_blur_px, measure_coc, plane_probe, tolerances
from generator.core.display import linear_to_srgb
from generator.dataset.metadata import wall_depth_m
from generator.dataset.pixels import read_exr_bytes
from generator.draw.scene import draw_scene
from generator.core.lens import coc_map_px, intrinsics
from generator.recipe.recipe import load_recipe
from generator.render.tasks import render_sample
from generator.scene.spec import LightPaths, SceneSpec, with_render
from quiet import results_stream

GROUPS = ("naive", "samples", "denoise", "adaptive", "light_paths")
#: Region thresholds: CoC (px) below which a pixel is in focus, at or above which it is out of focus.
IN_FOCUS_PX, OUT_OF_FOCUS_PX = 1.0, 3.0
#: A depth step of more than this share between neighbours is an edge; pixels within EDGE_PX of one.
EDGE_STEP, EDGE_PX = 0.05, 2
#: Cycles' factory light paths (what dfdgen rendered with before issue 17), the light-path rows' baseline:
#: :class:`LightPaths`' defaults are the factory values but the light tree.
CYCLES_FACTORY = dataclasses.replace(LightPaths(), light_tree=True)
#: Light-path changes measured against :data:`CYCLES_FACTORY` (field -> value).
LIGHT_PATH_ROWS = (
    ("Cycles factory light paths", {}),
    ("diffuse/glossy bounces 2", {"diffuse_bounces": 2, "glossy_bounces": 2}),
    ("diffuse/glossy bounces 1", {"diffuse_bounces": 1, "glossy_bounces": 1}),
    ("transmission bounces 0", {"transmission_bounces": 0}),
    ("clamp indirect 1", {"clamp_indirect": 1.0}),
    ("no clamp", {"clamp_indirect": 0.0}),
    ("no filter glossy", {"filter_glossy": 0.0}),
    ("no caustics", {"caustics": False}),
    ("no light tree", {"light_tree": False}),
    ("path guiding", {"path_guiding": True}),
)


@dataclasses.dataclass
class Row:
    group: str
    setting: str
    samples: str
    seconds: float
    psnr: dict[str, float]
    coc: float | None = None
    blur: float | None = None
    dff: float | None = None
    noise: float | None = None


def regions(spec: SceneSpec, depths: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Per frame, boolean [H, W] masks ``all``, ``in focus``, ``out of focus``, ``edges`` (module docstring)."""
    out = []
    for k, frame in enumerate(spec.frames):
        depth = depths[k if len(depths) > 1 else 0]
        valid = depth > 0
        logd = np.log(np.where(valid, depth, 1.0))
        step = np.zeros(depth.shape, dtype=bool)
        step[:, 1:] |= np.abs(np.diff(logd, axis=1)) > math.log1p(EDGE_STEP)
        step[1:, :] |= np.abs(np.diff(logd, axis=0)) > math.log1p(EDGE_STEP)
        step[:, :-1] |= step[:, 1:].copy()
        step[:-1, :] |= step[1:, :].copy()
        edges = step.copy()
        for _ in range(EDGE_PX):  # dilate by one px (4-neighbourhood) per pass
            grown = edges.copy()
            grown[1:] |= edges[:-1]
            grown[:-1] |= edges[1:]
            grown[:, 1:] |= edges[:, :-1]
            grown[:, :-1] |= edges[:, 1:]
            edges = grown
        coc = coc_map_px(spec.lens, depth, frame.focus_distance_m, spec.render.width)
        out.append({"all": np.ones(depth.shape, dtype=bool), "in focus": valid & ~edges & (coc < IN_FOCUS_PX),
                    "out of focus": valid & ~edges & (coc >= OUT_OF_FOCUS_PX), "edges": edges})
    return out


def psnr_by_region(frames, reference, masks) -> dict[str, float]:
    """10 log10(1 / MSE) per region, dB, pooled over frames; images are sRGB in [0, 1]."""
    result = {}
    for name in masks[0]:
        se = sum(float(((a - b) ** 2).mean(axis=2)[m[name]].sum()) for a, b, m in zip(frames, reference, masks))
        n = sum(int(m[name].sum()) for m in masks)
        result[name] = 10 * math.log10(1.0 / (se / n)) if n and se > 0 else float("nan")
    return result


def dff_abs_rel(spec: SceneSpec, frames: list[np.ndarray], depths: list[np.ndarray]) -> float:
    """AbsRel of classical depth from focus against the true depth of the middle frame, on object pixels."""
    order = sorted(range(len(spec.frames)), key=lambda k: spec.frames[k].focus_distance_m)
    ref = reference_index(len(order))
    stack = torch.from_numpy(np.stack([frames[k] for k in order])).permute(0, 3, 1, 2)[None]  # [1, T, 3, H, W]
    focus = torch.tensor([[spec.frames[k].focus_distance_m for k in order]], dtype=torch.float64)
    K = torch.from_numpy(np.stack([intrinsics(spec.lens, spec.frames[k].focus_distance_m, spec.render.width,
                                              spec.render.height) for k in order]))[None].float()
    pred = dff_depth(stack.float(), focus.float(), K, ref)[0, 0].numpy()
    truth = depths[order[ref] if len(depths) > 1 else 0]
    objects = (truth > 0) & ~wall_mask(truth[..., None], wall_depth_m(spec))[..., 0]
    return float(np.mean(np.abs(pred[objects] - truth[objects]) / truth[objects]))


def probe_error(render_changes: dict, lit: bool, size_samples: int) -> float:
    """Largest CoC error (in tolerances) of the calibration discs rendered with ``render_changes``."""
    worst = 0.0
    for model in ("thin_lens", "blender"):
        for spec in coc_probes(model, lit=lit):
            spec = with_render(spec, **{**render_changes, "samples": size_samples})
            worst = max([worst] + [coc_error(r) for r in measure_coc(spec, render_scene(spec).frames)])
    return worst


#: The textured-plane probe: size (px), plane depth (m) and focus distances (m): CoCs of 4.8 and 2.1 px.
PLANE_SIZE, PLANE_DEPTH_M, PLANE_FOCUS_M = 64, 1.0, (0.4, 0.6)


def plane_blurs(changes: dict) -> list[float]:
    """Blur diameters (px) fitted to :func:`generator.scene.calibration.plane_probe`'s frames rendered with ``changes``."""
    spec = with_render(plane_probe(PLANE_SIZE, PLANE_DEPTH_M, PLANE_FOCUS_M), **changes)
    result = render_scene(spec)
    return [fit_blur_px(result.aif, frame, 3 * PLANE_SIZE / 16) for frame in result.frames]


def dfdgen_frames(spec: SceneSpec, recipe) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    """sRGB frames, depth maps and wall seconds per frame of dfdgen's renderer (render + encode)."""
    start = time.perf_counter()
    _, rendered = render_sample(spec, recipe)
    seconds = (time.perf_counter() - start) / len(spec.frames)
    return [linear_to_srgb(f) for f in rendered.frames], rendered.depth, seconds


def naive_frames(spec: SceneSpec, blend: Path, out: Path, samples: int, adaptive: bool) -> tuple[list, float]:
    """sRGB frames and wall seconds per frame of the naive loop: a fresh scene from the .blend per frame,
    Cycles' defaults but the sample cap, OpenImageDenoise on."""
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
        cycles.pixel_filter_type = "BLACKMAN_HARRIS"
        cycles.filter_width = 1.5
        settings = scene.render.image_settings
        settings.file_format = "OPEN_EXR"
        settings.color_depth = "32"
        scene.render.filepath = str(path)
        scene.render.use_file_extension = False
        bpy.ops.render.render(write_still=True)
        seconds += time.perf_counter() - start
        paths.append(path)
    frames = [linear_to_srgb(np.dstack([channels[c] for c in "RGB"]))
              for channels in (read_exr_bytes(path.read_bytes()) for path in paths)]
    return frames, seconds / len(spec.frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="small_obj")
    parser.add_argument("--scene", type=int, default=0)
    parser.add_argument("--size", type=int, default=256, help="image width and height, pixels")
    parser.add_argument("--frames", type=int, default=5, help="focus frames (one ramp)")
    parser.add_argument("--groups", nargs="+", choices=GROUPS, default=list(GROUPS))
    parser.add_argument("--samples", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--denoise-samples", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--adaptive", type=float, nargs="+", default=[0.01, 0.03], help="adaptive thresholds")
    parser.add_argument("--adaptive-samples", type=int, default=128, help="the adaptive rows' sample cap")
    parser.add_argument("--light-path-samples", type=int, default=32)
    parser.add_argument("--naive-samples", type=int, default=1024, help="naive loop, adaptive (Cycles: 4096)")
    parser.add_argument("--naive-fixed-samples", type=int, default=128, help="naive loop, fixed count")
    parser.add_argument("--reference-samples", type=int, default=1024)
    parser.add_argument("--probe-samples", type=int, default=64,
                        help="samples of the CoC probes of rows with more (the probes converge sooner)")
    parser.add_argument("--markdown", type=Path, help="also write the table and the command here")
    args = parser.parse_args()
    out = results_stream()

    overrides = [f"image.width={args.size}", f"image.height={args.size}", "focus.ramps=1",
                 f"focus.frames_per_ramp={args.frames}", "outputs.aif=false", f"count={args.scene + 1}"]
    recipe = load_recipe(args.recipe, overrides)
    full = load_recipe(args.recipe)
    repeats = full.focus.ramps if full.motion is None else 1  # a dynamic scene renders every frame
    spec = draw_scene(recipe, args.scene)
    base = spec.render
    print(f"{args.recipe} scene {args.scene}, {args.size}x{args.size} px, {args.frames} frames; reference "
          f"{args.reference_samples} samples (another seed); recipe samples {full.image.samples}", file=out)
    reference, depths, _ = dfdgen_frames(with_render(spec, samples=args.reference_samples, seed=base.seed + 1), recipe)
    masks = regions(spec, depths)
    dff_reference = dff_abs_rel(spec, reference, depths)
    print(f"reference: DFF object AbsRel {dff_reference:.4f}", file=out)
    plane_reference = plane_blurs({"samples": args.reference_samples})
    print(f"textured plane, {args.reference_samples} samples: blur " + ", ".join(f"{b:.2f}" for b in plane_reference)
          + " px", file=out)
    rows: list[Row] = []

    def measure(group: str, setting: str, samples: str, frames, seconds: float, probe: dict | None,
                lit: bool = False, noise: float | None = None) -> Row:
        row = Row(group, setting, samples, seconds, psnr_by_region(frames, reference, masks), noise=noise,
                  dff=dff_abs_rel(spec, frames, depths) / dff_reference)
        if probe is not None:
            samples = min(probe.get("samples", base.samples), args.probe_samples)
            row.coc = probe_error(probe, lit, samples)
            if not lit:
                fits = plane_blurs({k: v for k, v in {**probe, "samples": samples}.items() if k != "light_paths"})
                row.blur = max(tolerances(a, b) for a, b in zip(fits, plane_reference))
        rows.append(row)
        print(format_row(row), file=out, flush=True)
        return row

    def dfdgen_row(group: str, setting: str, changes: dict, lit: bool = False, two_seeds: bool = False) -> Row:
        frames, _, seconds = dfdgen_frames(with_render(spec, **changes), recipe)
        noise = None
        if two_seeds:
            other, _, _ = dfdgen_frames(with_render(spec, seed=base.seed + 2, **changes), recipe)
            noise = float(np.sqrt(np.mean([((a - b) ** 2).mean() for a, b in zip(frames, other)]) / 2))
        samples = str(changes.get("samples", base.samples))
        if changes.get("adaptive_threshold"):
            samples = f"{changes.get('adaptive_min_samples')}-{samples}"
        return measure(group, setting, samples, frames, seconds, changes, lit=lit, noise=noise)

    print(header(), file=out)
    if "naive" in args.groups:
        with tempfile.TemporaryDirectory() as tmp:
            blend = Path(tmp) / "scene.blend"
            subprocess.run([sys.executable, "-c", "from generator.cli import main; main()", "render", "--recipe",
                            args.recipe, *[a for o in overrides for a in ("--set", o)], "--save-blend", str(blend),
                            "--scene", str(args.scene)], check=True, capture_output=True)
            for samples, adaptive in ((args.naive_samples, True), (args.naive_fixed_samples, False)):
                frames, seconds = naive_frames(spec, blend, Path(tmp), samples, adaptive)
                label = "naive: Cycles defaults, OIDN" + (", adaptive 0.01" if adaptive else "")
                measure("naive", label, f"{'<=' if adaptive else ''}{samples}", frames, seconds, None)
    for samples in args.samples if "samples" in args.groups else ():
        dfdgen_row("samples", "dfdgen", {"samples": samples, "denoise": False})
    for samples in args.denoise_samples if "denoise" in args.groups else ():
        dfdgen_row("denoise", "dfdgen + OIDN (albedo, normal)", {"samples": samples, "denoise": True})
    for threshold in args.adaptive if "adaptive" in args.groups else ():
        for share in (16, 4):
            dfdgen_row("adaptive", f"dfdgen adaptive {threshold}",
                       {"samples": args.adaptive_samples, "adaptive_threshold": threshold,
                        "adaptive_min_samples": max(1, args.adaptive_samples // share), "denoise": False})
    for label, change in LIGHT_PATH_ROWS if "light_paths" in args.groups else ():
        paths = dataclasses.replace(CYCLES_FACTORY, **change)
        dfdgen_row("light_paths", label, {"samples": args.light_path_samples, "denoise": False,
                                          "light_paths": paths}, lit=True, two_seeds=True)
    summary = equal_quality(rows, repeats, args.recipe)
    for line in summary:
        print(line, file=out)
    if args.markdown:
        # an absolute path (the page's own, --markdown) is quoted by its name: no machine's paths in docs/
        command = "python benchmarks/render_quality_speed.py " + " ".join(
            Path(a).name if os.path.isabs(a) else a for a in sys.argv[1:])
        write_markdown(args.markdown, args, command, rows, summary, dff_reference)


def header() -> str:
    return ("| group | setting | samples | s/frame | PSNR all | in focus | out of focus | edges | noise | "
            "CoC err (tol.) | plane blur err (tol.) | DFF x ref |\n|---|---|---|---|---|---|---|---|---|---|---|---|")


def format_row(row: Row) -> str:
    def opt(value, fmt):
        return "-" if value is None else format(value, fmt)

    p = row.psnr
    return (f"| {row.group} | {row.setting} | {row.samples} | {row.seconds:.2f} | {p['all']:.2f} | {p['in focus']:.2f} "
            f"| {p['out of focus']:.2f} | {p['edges']:.2f} | {opt(row.noise, '.4f')} | {opt(row.coc, '.2f')} "
            f"| {opt(row.blur, '.2f')} "
            f"| {opt(row.dff, '.3f')} |")


def equal_quality(rows: list[Row], repeats: int, recipe: str) -> list[str]:
    """Per naive row: dfdgen's cheapest row (samples or denoise) that reaches its PSNR with the CoC held."""
    lines = []
    candidates = [r for r in rows if r.group in ("samples", "denoise") and r.coc is not None and r.coc <= 1
                  and r.blur is not None and r.blur <= 1]
    for naive in (r for r in rows if r.group == "naive"):
        good = [r for r in candidates if r.psnr["all"] >= naive.psnr["all"]]
        if not good:
            lines.append(f"- no dfdgen row with the CoC and the plane's blur held reaches {naive.setting} {naive.samples}'s "
                         f"{naive.psnr['all']:.2f} dB")
            continue
        best = min(good, key=lambda r: r.seconds)
        ratio = naive.seconds / best.seconds
        line = (f"- at {naive.setting} {naive.samples}'s {naive.psnr['all']:.2f} dB: {best.setting} {best.samples} "
                f"({best.psnr['all']:.2f} dB, CoC error {best.coc:.2f} tol., blur {best.blur:.2f} tol.) renders {ratio:.2f}x the naive "
                f"loop's frames/s per rendered view")
        if repeats > 1:
            line += f", {ratio * repeats:.2f}x per dataset frame ({recipe}: {repeats} ramps of one static view)"
        lines.append(line)
    dff_rows = [r for r in rows if r.group in ("samples", "denoise") and r.dff is not None]
    for group in ("samples", "denoise"):
        within = sorted((r for r in dff_rows if r.group == group and r.dff <= 1.05), key=lambda r: r.seconds)
        if within:
            lines.append(f"- DFF error within 5 % of the reference's: {within[0].setting} from {within[0].samples} "
                         f"samples ({within[0].dff:.3f} x ref)")
    return lines


def write_markdown(path: Path, args, command: str, rows: list[Row], summary: list[str], dff_reference: float) -> None:
    machine = f"CPU ({os.cpu_count()} cores), {platform.machine()}"
    text = [f"## {args.recipe}, {args.size} x {args.size} px", "",
            f"Scene {args.scene}, one ramp of {args.frames} frames; reference {args.reference_samples} samples "
            f"(another seed, no denoiser), whose classical DFF object AbsRel is {dff_reference:.4f}; on {machine}. "
            f"Command: `{command}`.", "", header()]
    text += [format_row(r) for r in rows] + [""] + summary + [""]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write("\n".join(text) + "\n")


if __name__ == "__main__":
    main()
