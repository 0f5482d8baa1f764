"""Camera realism, measured (issue 29, part 6): the page ``docs/CAMERA_REALISM.md``.

1. **Noise.** A flat, evenly lit grey plane (:func:`generator.scene.calibration.grey_plane`) rendered once at full size, then
   photographed through the realistic recipe's camera at several exposures and a few shot gains
   across the recipe's range (the read noise from its log-linear relation): each stored frame,
   undone to raw with its metadata, against its clean frame, gives a (mean, variance) point per
   channel, and the line through them gives back the gain and the read noise.
2. **Aperture.** :func:`generator.scene.calibration.aperture_probe` for a few blade counts and
   rotations: the blade count, the corner direction and the blob's area measured from the pixels
   (:func:`generator.scene.calibration.measure_aperture`), beyond and in front of focus.
3. **Cost.** Seconds per frame of a whole sample (Cycles, read-back, encoding) of the same scenes
   with and without each step (blades, sensor noise and pipeline, JPEG; the shutter on the moving
   recipe), one variant after another per scene, so that a load change hits them alike.
4. **Learning.** The same small_obj scenes (recipe and seed) rendered twice, clean and through the
   realistic camera (:data:`CAMERA`: noise, JPEG, blades); ``ddff`` with the results page's flags
   trained on each, its checkpoint chosen on its own validation split, and scored on both test
   splits beside ``constant``, ``constant-objects`` and ``dff``, through ``benchmarks/results``'
   runner (``dfdgen train`` / ``eval`` subprocesses, reused with ``--reuse``).

    python benchmarks/camera_realism.py --out-dir runs/camera_realism          # the page's run
    python benchmarks/camera_realism.py --noise-size 32 --aperture-samples 64 --cost-scenes 1 \
        --scenes 10 --size 32 --steps 4 --out-dir /tmp/cr --page /tmp/cr/page.md   # smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from generator.core.lens import Aperture
from generator.dataset.sample import decode_sample, encode_sample
from generator.draw.scene import draw_scene
from generator.recipe.recipe import Recipe, load_recipe
from generator.scene.calibration import (aperture_errors, aperture_probe, fit_noise, grey_plane, measure_aperture,
                                         raw_noise_points)
from generator.scene.sensor import SensorSpec, to_raw
from generator.scene.spec import SceneSpec, ShutterSpec

#: The realistic camera: ``--set`` overrides on top of the clean recipe. Each section is drawn from a
#: child stream of its own, so the scenes (objects, lens, focus) stay those of the clean dataset.
CAMERA = ["lens.aperture.blades=[5, 9]", "lens.aperture.rotation_deg=[-90, 90]",
          "sensor.noise.shot_gain=[0.0001, 0.012]", "outputs.rgb=jpeg", "outputs.jpeg_quality=[75, 95]"]
#: The learning datasets' folders under ``--out-dir``, and whether each takes :data:`CAMERA`.
DATASETS = {"clean": False, "realistic": True}
#: Exposure levels of the noise measurement (frames of the grey plane, one render).
LEVELS = 8
#: Standard deviations of noise that a level keeps from 0 and 1, in raw and after the colour steps: a
#: clipped tail biases the variance low (beyond 3 sigma by under 1 %), and the lowest levels, where
#: the read noise shows, are the ones the margin removes.
MARGIN_SIGMA = 3.0
#: (blades, rotation in degrees) of the aperture measurement: odd and even counts, few and many.
APERTURES = [(3, 10.0), (5, -50.0), (6, 20.0), (8, 0.0), (9, 35.0)]
#: The steps whose cost is measured: name -> what a scene of the realistic recipe keeps of its camera.
COST_STEPS = ["clean", "blades", "sensor", "jpeg", "sensor + jpeg", "all"]
#: The shutter's rows on the moving recipe: exposure 20 ms, a rolling readout of 20 ms (1/2 frame at 25 fps).
SHUTTERS = {"instant": None, "global shutter": ShutterSpec(0.02), "rolling shutter": ShutterSpec(0.02, 0.02)}
#: The learning part's rows: the references every table shows, then the network (results_table run names).
LEARNING_RUNS = ["constant", "constant-objects", "dff", "ddff"]


# 1. Noise


def unclipped_exposures(radiance: float, sensor: SensorSpec, levels: int) -> tuple[float, ...]:
    """``levels`` exposures, geometric from the lowest to the highest at which a grey of ``radiance``
    keeps :data:`MARGIN_SIGMA` standard deviations of noise inside [0, 1] in raw (the ADC) and after
    white balance and the colour matrix (the processor clips there too); () where none does (a high
    gain with strong white-balance gains: its noise spans the range)."""
    balance, matrix = np.diag(sensor.white_balance), np.asarray(sensor.colour_matrix)
    grid = np.geomspace(2.0 ** -12, 4.0, 400)  # from far below any level to white clipped
    fits = []
    for exposure in grid:
        level = radiance * exposure  # grey stays grey through every step: the processed mean
        raw = to_raw(np.full((1, 1, 3), radiance), dataclasses.replace(sensor, exposure=(exposure,)), 0)[0, 0]
        variance = sensor.shot_gain * raw + sensor.read_variance
        # the noise after white balance and colour matrix: their covariance of the raw one
        shown = np.sqrt(np.diag(matrix @ balance @ np.diag(variance) @ balance @ matrix.T)).max()
        spread = MARGIN_SIGMA * np.sqrt(variance)
        fits.append(bool((raw - spread > 0).all() and (raw + spread < 1).all()
                         and MARGIN_SIGMA * shown < min(level, 1 - level)))
    inside = grid[np.array(fits)]
    return tuple(float(e) for e in np.geomspace(inside.min(), inside.max(), levels)) if inside.size else ()


def measure_noise(recipe: Recipe, size: int, gains: list[float], threads: int) -> tuple[float, list[dict]]:
    """The grey plane's clean radiance, and per shot gain of ``gains``: the declared gain and read noise
    (``recipe``'s first scene's camera, with that gain and the read noise of the recipe's log-linear
    relation at its centre), the exposures, and the measured gain and read noise with their standard
    errors (from the fit's covariance). The plane is rendered once; each camera photographs it
    through the sample encoder, as a render task would (:func:`encode_sample`)."""
    from generator.render.blender.render import render_scene

    probe = grey_plane(size, LEVELS)
    rendered = render_scene(probe, threads=threads)
    radiance = float(rendered.frames[0].mean())
    noise, camera = recipe.sensor.noise, draw_scene(recipe, 0).sensor
    rows = []
    for gain in gains:
        read = math.exp(noise.read_slope * math.log(gain) + noise.read_intercept)
        sensor = dataclasses.replace(camera, shot_gain=gain, read_variance=read, vignetting=0.0, clean=True)
        exposures = unclipped_exposures(radiance, sensor, LEVELS)
        row = dict(gain=gain, read=read, exposures=exposures)
        if exposures:
            spec = dataclasses.replace(probe, sensor=dataclasses.replace(sensor, exposure=exposures))
            decoded = decode_sample(encode_sample(spec, rendered, recipe))
            stored = SceneSpec.from_dict(decoded.meta["scene"]).sensor  # as a user would: from the metadata
            (gain_m, read_m), (gain_se, read_se) = fit_noise(*raw_noise_points(decoded.frames, decoded.clean, stored))
            row.update(measured_gain=gain_m, measured_read=read_m, gain_se=gain_se, read_se=read_se)
        rows.append(row)
    return radiance, rows


# 2. Aperture


def measure_apertures(samples: int, threads: int) -> list[dict]:
    """Per (blades, rotation) of :data:`APERTURES`, and per side of focus: the measured blade count,
    corner error (deg), area error (tolerances) and the harmonic's strength over the noise floor."""
    from generator.render.blender.render import render_scene

    rows = []
    for blades, rotation in APERTURES:
        aperture = Aperture(blades, math.radians(rotation), 1.0)
        spec = aperture_probe(aperture, samples=samples)
        for row in measure_aperture(spec, render_scene(spec, threads=threads).frames):
            corner, area = aperture_errors(aperture, row)
            rows.append(dict(blades=blades, rotation=rotation, side="beyond" if row["z"] > row["F"] else "in front",
                             coc_px=row["predicted"], measured=row["blades"], corner_error=corner, area=area,
                             strength=row["strength"], noise=row["noise"]))
    return rows


# 3. Cost


def without(spec: SceneSpec, step: str) -> SceneSpec:
    """A scene of the realistic recipe keeping only ``step`` of its camera (:data:`COST_STEPS`)."""
    blades = step in ("blades", "all")
    sensor = step in ("sensor", "sensor + jpeg", "all")
    jpeg = step in ("jpeg", "sensor + jpeg", "all")
    render = dataclasses.replace(spec.render, rgb="jpeg" if jpeg else "png8",
                                 jpeg_quality=spec.render.jpeg_quality if jpeg else None)
    lens = spec.lens if blades else dataclasses.replace(spec.lens, aperture=None)
    return dataclasses.replace(spec, lens=lens, sensor=spec.sensor if sensor else None, render=render)


def seconds_per_frame(spec: SceneSpec, recipe: Recipe, threads: int) -> float:
    """Wall time of one whole sample (Cycles, read-back and encoding) over its frames."""
    from generator.render.tasks import render_sample

    start = time.perf_counter()
    render_sample(spec, recipe, threads=threads)
    return (time.perf_counter() - start) / len(spec.frames)


def measure_cost(realistic: Recipe, moving: Recipe, scenes: int, threads: int) -> dict[str, list[float]]:
    """Per variant (:data:`COST_STEPS` on ``realistic``, :data:`SHUTTERS` on ``moving``), seconds per
    frame of each of ``scenes`` scenes, the variants of a scene rendered one after another, in reverse
    order every other scene (a variant's place in the sequence, e.g. the first after the previous
    scene's last, then costs every variant alike)."""
    seconds: dict[str, list[float]] = {name: [] for name in [*COST_STEPS, *SHUTTERS]}
    for index in range(scenes):
        order = 1 if index % 2 == 0 else -1
        spec = draw_scene(realistic, index)
        for step in COST_STEPS[::order]:
            seconds[step].append(seconds_per_frame(without(spec, step), realistic, threads))
        spec = draw_scene(moving, index)
        for name, shutter in list(SHUTTERS.items())[::order]:
            seconds[name].append(seconds_per_frame(dataclasses.replace(spec, shutter=shutter), moving, threads))
        print(f"cost, scene {index}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in seconds.items()), flush=True)
    return seconds


# 4. Learning


def render_datasets(args: argparse.Namespace) -> tuple[dict, float, int]:
    """The clean and the realistic datasets under ``--out-dir`` (resumed where done): the runner's
    :class:`Dataset` of each, by name, the wall time rendering them and the scenes found done."""
    from results.experiments import recipe_overrides
    from results.runner import Dataset

    from generator.render.pipeline import render_dataset

    datasets, reused, start = {}, 0, time.perf_counter()
    for name, camera in DATASETS.items():
        sets = recipe_overrides("small_obj", args.scenes, args.size, args.samples) + (CAMERA if camera else [])
        recipe = load_recipe("small_obj", sets)
        summary = render_dataset(recipe, args.out_dir / name, workers=args.render_workers)
        print(summary.line(), flush=True)
        reused += summary.skipped
        datasets[name] = Dataset("small_obj", 0, args.out_dir / name, sets, recipe)
    return datasets, time.perf_counter() - start, reused


def same_scenes(first: Path, second: Path) -> bool:
    """Whether two datasets hold the same scenes in the same splits with byte-identical depth maps (the
    camera sections change the frames only)."""
    import webdataset as wds

    def depth(folder: Path) -> dict:
        shards = sorted(str(p) for p in folder.glob("*.tar"))
        return {(Path(s["__url__"]).name.split("-")[1], s["__key__"]): s["f000.depth.exr"]
                for s in wds.WebDataset(shards, shardshuffle=False)}

    return depth(first) == depth(second)


def learn(settings, datasets: dict, out_dir: Path, reuse: bool) -> dict[str, list]:
    """Per test set (the datasets' names), the rows scored on it: the references (fitted once, on the
    clean training split: they read no frames but ``dff``, which learns nothing), then ``ddff`` trained
    on each dataset (``settings.seeds`` training seeds), each run's checkpoint chosen on the
    validation split of the data it trained on."""
    from results.experiments import table_rows
    from results.runner import RowResult, score_test, train_row

    from dfd_models.networks import MODELS

    trained = []  # (row as labelled on the page, its runs)
    for row in (r for r in table_rows(settings, ["ddff"]) if r.run in LEARNING_RUNS):
        trainable = MODELS[row.model].trainable
        for name in (DATASETS if trainable else ["clean"]):
            runs = [train_row(row, str(datasets[name].path),
                              out_dir / "runs" / name / (row.run + (f"-seed{seed}" if seed else "")), settings,
                              steps=settings.steps, lr=settings.lr_of(row) if trainable else None, seed=seed,
                              reuse=reuse)
                    for seed in range(settings.seeds if trainable else 1)]
            label = f"{row.label}, trained on {name} frames" if trainable else row.label
            trained.append((dataclasses.replace(row, label=label, run_name=f"{name}/{row.run}" if trainable else row.run),
                            runs))
    scored = {}
    for test in DATASETS:
        results = []
        for row, runs in trained:
            copies = [dataclasses.replace(run) for run in runs]  # one Run per test set: score_test fills it in
            for run in copies:
                folder = run.checkpoint.parent.parent / f"test-{test}"
                folder.mkdir(exist_ok=True)
                score_test(run, datasets[test].path, folder, reuse=reuse)
            results.append(RowResult(row, candidates=copies[:1], seeds=copies))
        scored[test] = results
    return scored


def verdict(results: list, a: str, b: str, region: str, metric: str) -> str:
    """Row ``a`` against row ``b`` (run names) on one test set: their means over training seeds ± half
    the range, and which is better where the gap exceeds both spreads."""
    from dfd_models.config import HIGHER_IS_BETTER

    rows = {r.row.run: r.test(region, metric) for r in results}
    (mean_a, half_a), (mean_b, half_b) = ((np.mean(v), (max(v) - min(v)) / 2) for v in (rows[a], rows[b]))
    gap = (mean_a - mean_b) * (1 if metric in HIGHER_IS_BETTER else -1)
    if len(rows[a]) < 2:
        call = "one training seed: no spread to judge by"
    elif abs(gap) > max(half_a, half_b):
        call = f"**`{a if gap > 0 else b}` better** beyond the spread"
    else:
        call = "within the spread of training seeds"
    return f"{mean_a:.3f} ± {half_a:.3f} vs {mean_b:.3f} ± {half_b:.3f}: {call}"


# The page


def _rel(measured: float, declared: float) -> str:
    return f"{measured / declared - 1:+.1%}"


def noise_section(radiance: float, rows: list[dict], size: int, camera: SensorSpec) -> list[str]:
    lines = ["## 1. Noise follows the declared model", "",
             f"A diffuse grey plane filling a {size}x{size} view, lit by a sun along the view axis (clean radiance "
             f"{radiance:.3f}, no texture, no bounces), rendered once and photographed through the realistic "
             f"recipe's first camera (white balance {', '.join(f'{g:.2f}' for g in camera.white_balance)}, colour "
             f"matrix of crosstalk {camera.colour_matrix[0][0] - camera.colour_matrix[0][1] - 1:.2f}, no tone curve, "
             f"no vignetting) at {LEVELS} exposures, stored as 16-bit PNG through the sample encoder. Each frame "
             "is undone to raw with its metadata and compared with its clean frame: per frame and channel one "
             "(mean, variance) point; the least-squares line through the points gives the gain (slope) and the "
             "read-noise variance (intercept). The exposures span the levels whose noise stays "
             f"{MARGIN_SIGMA:g} standard deviations inside the range the sensor and the processor clip to (a "
             "clipped tail would bias the variance). SE: the fit's standard error.", "",
             "| shot gain | measured | error | SE | read variance | measured | error | SE | exposures |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if not r["exposures"]:
            lines.append(f"| {r['gain']:.2e} | - | - | - | {r['read']:.2e} | - | - | - | none keeps its noise "
                         "unclipped |")
            continue
        lines.append(
            f"| {r['gain']:.2e} | {r['measured_gain']:.3e} | {_rel(r['measured_gain'], r['gain'])} | "
            f"{r['gain_se'] / r['gain']:.1%} | {r['read']:.2e} | {r['measured_read']:.2e} | "
            f"{_rel(r['measured_read'], r['read'])} | {r['read_se'] / r['read']:.1%} | "
            f"{r['exposures'][0]:.3g} to {r['exposures'][-1]:.3g} |")
    return lines + [""]


def aperture_section(rows: list[dict], samples: int) -> list[str]:
    ok = sum(r["measured"] == r["blades"] for r in rows)
    worst_corner = max(abs(r["corner_error"]) for r in rows if r["corner_error"] is not None)
    lines = ["## 2. A point of light out of focus renders as the polygon asked for", "",
             "`generator.scene.calibration.aperture_probe`: one small emissive disc on the axis, 0.5 m away, "
             f"through a 50 mm f/1 lens focused at 0.3 m (disc beyond focus) and 1.5 m (in front), 64x64 px, "
             f"{samples} samples; `measure_aperture` finds the blade count (the strongest angular harmonic), "
             "the direction of a corner and the blob's area from the pixels. The corner error is taken within "
             "half a blade period (in front of focus the polygon is turned by 180 degrees); the area error is "
             "the measured area's equal-area diameter against the CoC times the polygon's equal-area factor, in "
             "units of the CoC tolerance (`calibration.tolerances`: at most 1 holds).", "",
             f"Blade count right in {ok} of {len(rows)} blobs; the largest corner error {worst_corner:.2f} deg.", "",
             "| blades | rotation deg | disc | CoC px | blades measured | corner error deg | area error (tolerances) "
             "| harmonic / noise floor |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        corner = "-" if r["corner_error"] is None else f"{r['corner_error']:+.2f}"
        lines.append(f"| {r['blades']} | {r['rotation']:g} | {r['side']} | {r['coc_px']:.1f} | {r['measured']} | "
                     f"{corner} | {r['area']:.2f} | {r['strength']:.3f} / {r['noise']:.3f} |")
    return lines + [""]


def cost_section(seconds: dict[str, list[float]], scenes: int, size: int, samples: int, threads: int) -> list[str]:
    lines = ["## 3. What it costs", "",
             f"Seconds per frame of a whole sample (Cycles, read-back, encoding; the depth pass and the all-in-focus "
             f"image included, over the frames), {scenes} scenes of each recipe at {size}x{size} px, {samples} "
             f"samples, 5 frames, {threads} Cycles thread(s); a scene's variants rendered one after another, so "
             "that a load change on the shared machine hits them alike. The small_obj rows are the realistic "
             "recipe's scenes keeping only the named steps (blades: `lens.aperture`; sensor: noise and the image "
             "pipeline; jpeg: `outputs.rgb: jpeg` instead of png8); the shutter rows are `dynamic` scenes (20 ms "
             "exposure; rolling: 20 ms readout). Ratio: the summed time over that of the row it adds to; range: "
             "the ratio's lowest and highest over the scenes.", "",
             "| recipe | steps | s per frame | ratio | range |", "|---|---|---|---|---|"]
    for name, values in seconds.items():
        base = seconds["instant" if name in SHUTTERS else "clean"]
        per_scene = [v / b for v, b in zip(values, base)]
        lines.append(f"| {'dynamic' if name in SHUTTERS else 'small_obj'} | {name} | {np.mean(values):.3f} | "
                     f"{sum(values) / sum(base):.2f}x | {min(per_scene):.2f}-{max(per_scene):.2f} |")
    return lines + [""]


def learning_section(scored: dict[str, list], settings, render_s: float, reused: int, datasets: dict,
                     workers: int) -> list[str]:
    from results.report import _choices, _table, recipe_line, render_command

    from generator.dataset.format import read_manifest

    s = settings
    wall_s = sum(r.train_s for r in scored["clean"])  # every run's training (or fitting), as it was run
    manifest = read_manifest(datasets["clean"].path)
    counts = " / ".join(str(sum(m["samples"] for m in manifest["shards"] if m["split"] == split))
                        for split in ("train", "val", "test"))
    lines = ["## 4. What realism does to learning", "",
             f"**Budget.** {s.scenes} small_obj scenes (train / val / test: {counts}), rendered twice: clean (the "
             f"recipe as it is) and realistic (the same recipe and seed with `{' '.join(CAMERA)}`); "
             + ("the same scenes in the same splits, their depth maps byte-identical; "
                if same_scenes(datasets["clean"].path, datasets["realistic"].path) else
                "**the scenes differ between the two datasets**; ")
             + f"{s.size}x{s.size} px, 5 frames per stack, {s.samples} "
             f"Cycles samples. `ddff` trained {s.steps} steps of batch {s.batch_size} (AdamW, cosine, peak learning "
             f"rate {s.lr:g}, the results page's) on random {s.crop}x{s.crop} crops, as on the results page: regions "
             f"{s.regions}, depth_space {s.depth_space}, blur features; {s.seeds} training seed(s) per training set; "
             f"the checkpoint kept is the best of 10 validations on objects AbsRel, on the validation split of the "
             f"data it trained on. On {_device()}, {platform.machine()}, shared with other jobs; training and "
             f"fitting {wall_s:.0f} s, dataset render {render_s:.0f} s ({reused} scenes reused from an earlier run).", "",
             "Regions, metrics and references as on [the results page](RESULTS.md): a row is a result only where "
             "it beats `constant` on all pixels and `dff` on objects. The references read no training frames "
             "(`dff` learns nothing), so they are fitted once, on the clean training split. Cells with several "
             "training seeds give their mean ± half their range.", ""]
    for test, results in scored.items():
        lines += [f"### Scored on the {test} test split", "", *_table(results), ""]
    lines += ["### Trained on realistic against trained on clean frames", "",
              "| test split | objects AbsRel | objects delta1 | all AbsRel | all delta1 |", "|---|---|---|---|---|"]
    for test, results in scored.items():
        cells = [verdict(results, "realistic/ddff", "clean/ddff", region, metric)
                 for region, metric in (("objects", "abs_rel"), ("objects", "delta1"), ("all", "abs_rel"),
                                        ("all", "delta1"))]
        lines.append(f"| {test} | " + " | ".join(cells) + " |")
    lines += ["", "### Choices made on validation", "", *_choices(scored["clean"]), "", "### Data", "",
              *(recipe_line(d) + "\n" for d in datasets.values()),
              "Rendered in-process by `generator.render.pipeline.render_dataset`; the equivalent commands:", "",
              "```", *(render_command(d, workers) for d in datasets.values()), "```", "", "### Commands", ""]
    for i, r in enumerate(scored["clean"]):  # a row's training, then its scoring on each test split
        lines += [f"`{r.row.run}`:", "", "```", *(run.train_cmd for run in r.seeds),
                  *(run.eval_cmd for results in scored.values() for run in results[i].seeds), "```", ""]
    return lines


def _device() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--noise-size", type=int, default=512, help="grey plane's width and height, px")
    parser.add_argument("--gains", type=float, nargs="+", default=[1e-4, 1e-3, 4e-3, 1.2e-2],
                        help="shot gains measured (the recipe's range is 1e-4 to 0.012)")
    parser.add_argument("--aperture-samples", type=int, default=1024, help="Cycles samples of the aperture probe")
    parser.add_argument("--cost-scenes", type=int, default=4,
                        help="scenes per recipe timed (even: each order as often)")
    parser.add_argument("--scenes", type=int, default=160, help="scenes of each learning dataset")
    parser.add_argument("--size", type=int, default=64, help="learning datasets' (and timed scenes') width, px")
    parser.add_argument("--samples", type=int, default=64, help="Cycles samples of the learning datasets")
    parser.add_argument("--steps", type=int, default=600, help="training steps of ddff")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds of ddff per training set")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3e-4, help="ddff's peak learning rate (the results page's)")
    parser.add_argument("--threads", type=int, default=1, help="Cycles threads of the measurements (1: steady)")
    parser.add_argument("--render-workers", type=int, default=1, help="Blender workers of the datasets")
    parser.add_argument("--reuse", action="store_true", help="keep runs that finished the same train command")
    parser.add_argument("--out-dir", type=Path, default=Path("runs/camera_realism"), help="data and runs go here")
    parser.add_argument("--page", type=Path, default=Path("docs/CAMERA_REALISM.md"), help="the Markdown written")
    parser.add_argument("--cost-only", action="store_true",
                        help="measure only what each step costs and print its table (no page): a rerun on a quiet machine")
    args = parser.parse_args(argv)
    from results.experiments import Settings
    from results.report import git_commit, portable

    commit = git_commit()  # before the page is written
    settings = Settings(scenes=args.scenes, size=args.size, crop=args.size, samples=args.samples, steps=args.steps,
                        batch_size=args.batch_size, lr=args.lr, seeds=args.seeds, regions="objects",
                        depth_space="log", blur_features=True)
    base = ["focus.ramps=1", "focus.frames_per_ramp=5", f"image.width={args.size}", f"image.height={args.size}",
            f"image.samples={args.samples}", f"count={args.cost_scenes}"]
    realistic = load_recipe("small_obj", base + CAMERA)
    if args.cost_only:
        cost = measure_cost(realistic, load_recipe("dynamic", base), args.cost_scenes, args.threads)
        print("\n".join(cost_section(cost, args.cost_scenes, args.size, args.samples, args.threads)))
        return
    start = time.perf_counter()
    radiance, noise = measure_noise(realistic, args.noise_size, args.gains, args.threads)
    apertures = measure_apertures(args.aperture_samples, args.threads)
    cost = measure_cost(realistic, load_recipe("dynamic", base), args.cost_scenes, args.threads)
    measured_s = time.perf_counter() - start
    datasets, render_s, reused = render_datasets(args)
    scored = learn(settings, datasets, args.out_dir, args.reuse)
    command = shlex.join(sys.argv[1:] if argv is None else argv)
    lines = [
        "# Camera realism, measured", "",
        "Produced by `benchmarks/camera_realism.py` (issue 29, part 6): the sensor noise against its declared "
        "model, the aperture's polygon, what each camera step costs to render, and what training on realistic "
        "frames does to a supervised network. What the camera's noise saves (fewer Cycles samples) is measured "
        "for `recipes/phone.yaml` on its own. "
        f"Command: `python benchmarks/camera_realism.py {command}` (paths relative to its `--out-dir`, OUT); "
        f"parts 1-3 took {measured_s:.0f} s; dfdgen commit {commit}.", "",
        *noise_section(radiance, noise, args.noise_size, draw_scene(realistic, 0).sensor),
        *aperture_section(apertures, args.aperture_samples),
        *cost_section(cost, args.cost_scenes, args.size, args.samples, args.threads),
        *learning_section(scored, settings, render_s, reused, datasets, args.render_workers),
    ]
    args.page.parent.mkdir(parents=True, exist_ok=True)
    args.page.write_text(portable("\n".join(lines).rstrip() + "\n", args.out_dir))
    print(f"wrote {args.page}")


if __name__ == "__main__":
    main()
