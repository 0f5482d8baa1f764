"""What a camera's noise saves: the Cycles samples per pixel at which Cycles' own noise hides under the
sensor noise a recipe declares (issue 29, part 6, "What it saves"), and the seconds per frame they cost
against the 256 samples the clean recipes need.

    python benchmarks/phone_samples.py [--recipe phone] [--scenes 2] [--samples 8 16 32 64 128 256]

Each scene of the recipe (its own size, lights and focus bracket) is rendered at every sample count
twice, with two Cycles seeds. Cycles' noise variance at a sample count is half the mean squared
difference of the two renders, taken to the sensor's raw units by the scene's own exposure, white
balance and colour matrix (:func:`generator.scene.sensor.to_raw`, linear, so it maps the noise as it
maps the signal), over the raw values within a factor 1.5 of mid-grey (0.18 of the white level) in
the renders at the largest count. The sensor's variance there is that of the quietest camera the
recipe declares: its lowest shot gain g, shot_gain * 0.18 + read variance, the read variance from g
by the recipe's log-linear relation (its median camera). The recipe's samples are the fewest whose
Cycles variance is at most a third of that: the camera's noise then carries at least three quarters
of each frame's noise, so more samples change little of what a network sees.

Seconds per frame are those of :func:`shutter_cost.timed_render` (Cycles and the read-back, no
encoding), summed over both seeds and all scenes, the sample counts interleaved per scene so that a
load change on a shared machine hits every count alike.
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np

from generator.draw.scene import draw_scene
from generator.recipe.recipe import NoiseRecipe, load_recipe
from generator.scene.sensor import to_raw
from generator.scene.spec import with_render
from quiet import results_stream
from shutter_cost import timed_render

#: Mid-grey, as a share of the white level.
MID_GREY = 0.18
#: The clean recipes' samples per pixel (recipes/small_obj.yaml, large_obj.yaml, fod500.yaml).
CLEAN_SAMPLES = 256


def mid_grey_variance(noise: NoiseRecipe, shot_gain: float) -> float:
    """The sensor's noise variance at mid-grey (raw units) for ``shot_gain``, with the read variance of
    the recipe's median camera (log-linear relation, no spread)."""
    return shot_gain * MID_GREY + math.exp(noise.read_slope * math.log(shot_gain) + noise.read_intercept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="phone")
    parser.add_argument("--scenes", type=int, default=2)
    parser.add_argument("--samples", type=int, nargs="+", default=[8, 16, 32, 64, 128, CLEAN_SAMPLES])
    parser.add_argument("--threads", type=int, default=1, help="Cycles threads")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override")
    args = parser.parse_args()
    sys.stdout = results_stream()  # Blender's log on fd 1 goes to /dev/null, the table to stdout
    recipe = load_recipe(args.recipe, [f"count={args.scenes}", "outputs.aif=false", *args.set])
    noise = recipe.sensor.noise
    gain = noise.shot_gain.min
    sensor_variance = mid_grey_variance(noise, gain)
    counts = sorted(args.samples)

    squared = {n: [] for n in counts}  # per count, the raw noise variances of the mid-grey values
    seconds = dict.fromkeys(counts, 0.0)
    for index in range(args.scenes):
        spec = with_render(draw_scene(recipe, index), aif=False)
        raws = {}
        for n in counts:
            pair = []
            for seed in (spec.render.seed, spec.render.seed + 1):
                rendered, per_frame = timed_render(with_render(spec, samples=n, seed=seed), args.threads)
                seconds[n] += per_frame / 2
                pair.append([to_raw(f, spec.sensor, i) for i, f in enumerate(rendered.frames)])
            raws[n] = pair
        top = raws[counts[-1]]
        grey = [abs(np.log(np.maximum((a + b) / 2, 1e-9) / MID_GREY)) <= math.log(1.5) for a, b in zip(*top)]
        for n in counts:
            squared[n] += [((a - b)[g] ** 2 / 2) for a, b, g in zip(*raws[n], grey)]

    print(f"{recipe.name}, {args.scenes} scene(s) x {len(spec.frames)} frames, {recipe.image.width}x"
          f"{recipe.image.height} px, {args.threads} thread(s); two seeds per count")
    print(f"sensor at mid-grey, quietest camera (shot gain {gain:.3g}): variance {sensor_variance:.3g} "
          "(raw units, white level 1)")
    print(f"{'samples':>8} {'Cycles var':>11} {'x sensor':>9} {'s/frame':>8} {'x ' + str(counts[-1]):>7}")
    variance = {n: float(np.concatenate(squared[n]).mean()) for n in counts}
    for n in counts:
        print(f"{n:>8} {variance[n]:>11.3g} {variance[n] / sensor_variance:>9.3f} "
              f"{seconds[n] / args.scenes:>8.3f} {seconds[n] / seconds[counts[-1]]:>7.3f}")
    print(f"{sum(v.size for v in squared[counts[-1]])} mid-grey raw values")
    # Monte Carlo variance falls as 1 / samples: the count each camera needs, from the largest count measured
    top = counts[-1]
    for label, g in (("quietest", gain), ("noisiest", noise.shot_gain.max)):
        third = mid_grey_variance(noise, g) / 3
        print(f"{label} camera (shot gain {g:.3g}): 1/3 of its mid-grey variance {third:.3g}, reached at about "
              f"{top * variance[top] / third:.0f} samples (variance x samples constant)")
    enough = [n for n in counts if variance[n] <= sensor_variance / 3]
    if not enough:
        print(f"no count up to {top} brings Cycles' variance to 1/3 of the quietest camera's")
        return
    n = enough[0]
    print(f"fewest samples with Cycles' variance <= 1/3 of the quietest camera's: {n}, {seconds[n] / args.scenes:.3f} "
          f"s per frame; {CLEAN_SAMPLES} samples (the clean recipes'): "
          + (f"{seconds[CLEAN_SAMPLES] / seconds[n]:.2f}x its time" if CLEAN_SAMPLES in seconds else "not measured"))

if __name__ == "__main__":
    main()
