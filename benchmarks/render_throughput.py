"""Render throughput and pipeline overhead of small_obj scenes, or of other recipes to compare.

For each image size, in one process (bpy imported once, outside the timing):

- frames/s: focus frames delivered per wall-clock second for the whole scene
  (renders/s counts distinct focus frames: the repeated ramps of a static scene
  share one render, since Cycles with a fixed seed would give the same bytes)
  (sampling the spec, building it in Blender, depth, AIF, frames, encoding the
  sample, writing it into a shard);
- overhead = that total wall time / the time spent inside Cycles' render calls
  (``RenderedScene.cycles_seconds``) for the same images. 1.00 means every
  second went into Cycles; the goal is <= 1.10 at 256 x 256, 64 samples;
- encode s: time spent encoding the sample after the last render, on the
  render thread (:func:`generator.render.tasks.render_sample`, what ``dfdgen
  render`` runs: images are encoded on a background thread while the next view
  renders). ``--encoding background inline`` measures both ways in one run;
  ``inline`` encodes every image after the last render.

The first scene of each size is a warm-up (kernel and texture caches), the
next ``--scenes`` are measured. Ratios are measured within one run, since the
machine is shared and absolute times are noisy.

With several ``--recipe``s (or ``--device``s, ``--encoding``s), each size is
measured for each (same size, samples and ramps) and the last column gives its
frames/s relative to the first row's: ``--device cpu gpu`` gives GPU / CPU
frames/s (a machine without a GPU says so in the header and renders the gpu
rows on the CPU); ``--recipe small_obj dynamic`` shows what motion costs (a
dynamic scene renders every frame and depth map, a static one only the
distinct focus distances).

``--coc-probe``: before the throughput rows, each device renders
:mod:`generator.scene.calibration`'s CoC probes (discs of known CoC, 5-57 px, both lens
models, ``--probe-samples`` samples) and prints the largest CoC error in units of
the tolerance (max(3 %, 0.5 px)): <= 1 holds, so a device's frames/s counts only
where its blur is right (a GPU renders other pixels than the CPU).

    python benchmarks/render_throughput.py [--recipe small_obj dynamic] [--sizes 128 256] [--samples 64] [--scenes 2]
        [--encoding background inline] [--device cpu gpu] [--coc-probe]
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

from generator.render.blender.device import gpu_backend
from generator.render.blender.render import render_scene
from generator.scene.calibration import coc_error, coc_probes, measure_coc
from generator.render.options import DEVICES
from generator.render.tasks import render_sample
from generator.recipe.recipe import load_recipe
from generator.draw.scene import draw_scene
from generator.dataset.shards import DatasetDir
from generator.scene.spec import with_render


def probe_error(device: str, samples: int, threads: int) -> float:
    """Largest CoC error (in tolerances, <= 1 holds) of the calibration discs rendered on ``device``."""
    worst = 0.0
    for model in ("thin_lens", "blender"):
        for spec in coc_probes(model):
            spec = with_render(spec, samples=samples)
            frames = render_scene(spec, threads=threads, device=device).frames
            worst = max([worst] + [coc_error(row) for row in measure_coc(spec, frames)])
    return worst


def measure(recipe_name: str, size: int, samples: int, scenes: int, ramps: int, threads: int,
            device: str = "cpu", background_encoding: bool = True) -> dict[str, float]:
    """Wall, Cycles and encoding seconds of rendering ``scenes`` scenes of a recipe into a shard."""
    recipe = load_recipe(recipe_name, [
        f"image.width={size}", f"image.height={size}", f"image.samples={samples}",
        f"focus.ramps={ramps}", f"count={scenes + 1}", "splits={train: 1.0, val: 0.0, test: 0.0}",
    ])
    render_scene(draw_scene(recipe, 0), threads=threads, device=device)  # warm-up
    with tempfile.TemporaryDirectory() as tmp:
        out = DatasetDir(Path(tmp), recipe, max_samples=recipe.shards.max_samples,
                         max_bytes=recipe.shards.max_bytes)
        cycles = frames = renders = encode = 0.0
        start = time.perf_counter()
        for index in range(1, scenes + 1):
            spec = draw_scene(recipe, index)
            begin = time.perf_counter()
            sample, rendered = render_sample(spec, recipe, threads=threads, device=device,
                                             background_encoding=background_encoding)
            encode += time.perf_counter() - begin - rendered.total_seconds
            out.add(index, spec.split, sample)
            if not 0 < rendered.cycles_seconds <= rendered.total_seconds:  # the ratio would mean nothing
                raise RuntimeError(f"render time accounting is off: {rendered.cycles_seconds} s in Cycles "
                                   f"of {rendered.total_seconds} s in total")
            cycles += rendered.cycles_seconds
            frames += len(spec.frames)
            renders += len({(f.time_s, f.focus_distance_m) for f in spec.frames})
        out.finish()
        wall = time.perf_counter() - start
    return {"frames": frames, "renders": renders, "wall": wall, "cycles": cycles, "encode": encode}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", nargs="+", default=["small_obj"],
                        help="recipes to measure; the ratio column compares each with the first")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--scenes", type=int, default=2, help="measured scenes per size")
    parser.add_argument("--ramps", type=int, default=5, help="focus ramps per scene (5 frames each)")
    parser.add_argument("--threads", type=int, default=0, help="Cycles threads, 0 = all cores")
    parser.add_argument("--encoding", nargs="+", choices=["background", "inline"], default=["background"],
                        help="where images are encoded: on a thread while the next view renders, or after the last")
    parser.add_argument("--device", nargs="+", choices=DEVICES, default=["cpu"],
                        help="Cycles devices (gpu: OptiX, else CUDA); --device cpu gpu gives GPU / CPU frames/s")
    parser.add_argument("--coc-probe", action="store_true",
                        help="first render the calibration CoC probes on each device and print the largest error")
    parser.add_argument("--probe-samples", type=int, default=64, help="samples of the CoC probes")
    args = parser.parse_args()

    backend = {"cpu": "CPU", "gpu": gpu_backend() or "none: CPU"}
    print(f"{', '.join(args.recipe)}: {args.samples} samples, {args.ramps} ramps x 5 frames, "
          f"{args.scenes} scenes per size, devices {', '.join(f'{d} ({backend[d]})' for d in args.device)}")
    for device in args.device if args.coc_probe else ():
        error = probe_error(device, args.probe_samples, args.threads)
        print(f"CoC probe on {device}: largest error {error:.2f} tolerances ({'held' if error <= 1 else 'NOT held'}; "
              f"{args.probe_samples} samples, CoC 5-57 px)")
    print(f"{'recipe':>12} {'device':>6} {'encoding':>10} {'size':>9} {'frames':>6} {'renders':>7} {'wall s':>8} "
          f"{'cycles s':>8} {'encode s':>8} {'frames/s':>8} {'renders/s':>9} {'overhead':>8} {'ratio':>6}")
    for size in args.sizes:
        first = None
        for name, device, encoding in itertools.product(args.recipe, args.device, args.encoding):
            m = measure(name, size, args.samples, args.scenes, args.ramps, args.threads, device,
                        background_encoding=encoding == "background")
            rate = m["frames"] / m["wall"]
            first = first or rate
            print(f"{name:>12} {device:>6} {encoding:>10} {size:>4}x{size:<4} {m['frames']:>6.0f} {m['renders']:>7.0f} "
                  f"{m['wall']:>8.2f} {m['cycles']:>8.2f} {m['encode']:>8.3f} {rate:>8.2f} "
                  f"{m['renders'] / m['wall']:>9.2f} {m['wall'] / m['cycles']:>8.3f} {rate / first:>6.2f}")


if __name__ == "__main__":
    main()
