"""A render worker's memory over a long run: resident set size after 20 and after 200 tiny scenes (issue 7).

One worker process (spawned like every render worker, recycling off, so one
Blender does every scene) runs :func:`generator.render.tasks.render_task` for
``--scenes`` scenes of a tiny small_obj recipe and reports its RSS
(``VmRSS`` of ``/proc/self/status``) after each. Memory is bounded when
RSS(last) / RSS(20th) stays near 1; the goal is <= 1.2. (Production runs
also replace a worker every ``--recycle-every`` scenes; this measures without.)

    python benchmarks/worker_memory.py [--scenes 200] [--early 20]
"""

from __future__ import annotations

import argparse
import functools

from generator.render.tasks import render_task
from generator.render.scheduler import ProcessPool, run_tasks
from generator.recipe.recipe import Recipe, load_recipe


def rss_bytes() -> int:
    """Resident set size of this process, bytes."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024  # reported in kB


def render_then_rss(recipe: Recipe, index: int) -> int:
    """Worker task: render and encode scene ``index`` (the sample is dropped), then the worker's RSS, bytes."""
    render_task(recipe, index)
    return rss_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=200)
    parser.add_argument("--early", type=int, default=20, help="the scene count RSS is compared with")
    args = parser.parse_args()

    recipe = load_recipe("small_obj", [
        "image.width=32", "image.height=32", "image.samples=4", "focus.ramps=1", "focus.frames_per_ramp=2",
        "scene.objects.count=[1, 4]", f"count={args.scenes}"])
    results = run_tasks(functools.partial(render_then_rss, recipe), range(args.scenes),
                        ProcessPool(1, recycle_every=args.scenes + 1))
    rss = []
    for result in results:
        if result.error:
            raise RuntimeError(f"scene {result.index}: {result.error}")
        rss.append(result.sample)
    early, last = rss[args.early - 1], rss[-1]
    print(f"one worker, {args.scenes} scenes of 32x32 px, 4 samples, 2 frames + AIF + depth, no recycling")
    for n in sorted({1, args.early // 2, args.early, args.scenes // 2, args.scenes}):
        print(f"RSS after {n:>4} scenes: {rss[n - 1] / 2**20:8.1f} MiB")
    print(f"RSS after {args.scenes} / after {args.early} = {last / early:.3f}  (goal <= 1.2)")


if __name__ == "__main__":
    main()
