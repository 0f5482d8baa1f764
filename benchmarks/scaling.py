"""Scenes per second of the local and the Ray executor on this machine, for 1 and 2 workers (issue 7).

Each configuration renders the same ``--scenes`` small_obj scenes (``--size``
px, ``--samples`` samples, one ramp of ``--frames`` frames, all-in-focus
image) with :func:`generator.render.pipeline.render_dataset` into a fresh folder;
scenes/s = scenes / wall time of that call. Worker start-up and Blender's
import are inside it for both executors. Ray's local instance (every core,
no dashboard) is started before and stopped after each Ray configuration,
outside the timing: a cluster outlives a run. Cycles threads per worker are
the cores shared evenly among the workers, for both, and Ray's workers get
this process's niceness (Ray's default is 15), as the local workers do.

Ratios are measured within one run (the machine is shared, absolute times are noisy).

    python benchmarks/scaling.py [--scenes 8] [--workers 1 2] [--size 64] [--samples 16]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from generator.recipe.recipe import load_recipe


def scenes_per_second(recipe, executor: str, workers: int) -> float:
    """Scenes/s of one ``render_dataset`` call of ``recipe`` (scenes rendered / wall seconds).

    Imports here, not at the top: local workers are spawned and re-import this
    script, and must not pay for ray, webdataset and torch (as they do not under the CLI).
    """
    import ray

    from generator.render.pipeline import render_dataset
    from generator.render.ray_executor import LOCAL_OBJECT_STORE_BYTES

    if executor == "ray":
        # Ray runs its workers at nice 15 (so its own daemons stay responsive); the local
        # workers run at this process's. On a shared machine that alone would decide the ratio.
        os.environ["RAY_worker_niceness"] = str(os.nice(0))
        ray.init(num_cpus=os.cpu_count(), object_store_memory=LOCAL_OBJECT_STORE_BYTES, include_dashboard=False,
                 logging_level="WARNING")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            summary = render_dataset(recipe, Path(tmp), workers=workers, executor=executor, progress=False)
    finally:
        if executor == "ray":
            ray.shutdown()
    if summary.failed:
        raise RuntimeError(f"{executor} x {workers}: scenes failed: {summary.failed}")
    return summary.rendered / summary.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--size", type=int, default=64, help="image width and height, pixels")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--frames", type=int, default=3, help="focus frames per scene (one ramp)")
    args = parser.parse_args()

    recipe = load_recipe("small_obj", [
        f"image.width={args.size}", f"image.height={args.size}", f"image.samples={args.samples}",
        "focus.ramps=1", f"focus.frames_per_ramp={args.frames}", f"count={args.scenes}"])
    print(f"small_obj, {args.scenes} scenes of {args.size}x{args.size} px, {args.samples} samples, "
          f"{args.frames} frames + AIF; {os.cpu_count()} cores")
    print(f"{'workers':>7} {'local scenes/s':>14} {'ray scenes/s':>12} {'ray/local':>9}")
    rates = {}
    for workers in args.workers:
        rates[workers] = {executor: scenes_per_second(recipe, executor, workers) for executor in ("local", "ray")}
        local, remote = rates[workers]["local"], rates[workers]["ray"]
        print(f"{workers:>7} {local:>14.3f} {remote:>12.3f} {remote / local:>9.2f}", flush=True)
    first, last = args.workers[0], args.workers[-1]
    if last != first:
        for executor in ("local", "ray"):
            print(f"{executor}: {last} workers / {first} = {rates[last][executor] / rates[first][executor]:.2f}")


if __name__ == "__main__":
    main()
