"""What a newcomer waits for: seconds per scene of ``dfdgen render`` at a preset and at the recipe's
full quality, through the same pipeline the command runs (worker start-up, Blender, encoding, shards).

README command 1 renders ``--preset preview``; the README quotes both figures from this script:

    python benchmarks/first_render.py [--recipe small_obj] [--preset preview] [--scenes 2]

Each row renders ``--scenes`` scenes into a temporary folder with one worker on all cores; the
``full/preset`` ratio is measured within the run (the machine is shared, absolute times are noisy).
"""

from __future__ import annotations

import argparse
import tempfile
import time

from generator.render.pipeline import render_dataset
from generator.recipe.recipe import PRESETS, load_recipe


def seconds_per_scene(recipe_name: str, preset: str | None, scenes: int) -> float:
    """Wall seconds per scene of rendering ``scenes`` scenes of the recipe (at ``preset``, or as it is)."""
    recipe = load_recipe(recipe_name, [f"count={scenes}"], preset=preset)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        render_dataset(recipe, tmp, progress=False)
        return (time.perf_counter() - start) / scenes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="small_obj")
    parser.add_argument("--preset", default="preview", choices=sorted(PRESETS))
    parser.add_argument("--scenes", type=int, default=2, help="scenes rendered per row")
    args = parser.parse_args()
    preset = load_recipe(args.recipe, preset=args.preset)
    full = load_recipe(args.recipe)
    print(f"{args.recipe}, {args.scenes} scenes per row, one worker")
    print(f"{'quality':>10} {'size':>9} {'samples':>7} {'frames':>6} {'s/scene':>8}")
    rows = {}
    for name, recipe, chosen in ((args.preset, preset, args.preset), ("full", full, None)):
        rows[name] = seconds_per_scene(args.recipe, chosen, args.scenes)
        frames = recipe.focus.ramps * recipe.focus.frames_per_ramp
        print(f"{name:>10} {recipe.image.width:>4}x{recipe.image.height:<4} {recipe.image.samples:>7} {frames:>6} "
              f"{rows[name]:>8.1f}")
    print(f"full/{args.preset} = {rows['full'] / rows[args.preset]:.1f}x; "
          f"{preset.count} {args.preset} scenes take about {preset.count * rows[args.preset]:.0f} s")


if __name__ == "__main__":
    main()
