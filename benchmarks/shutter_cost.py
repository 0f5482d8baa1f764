"""What the shutter costs: Cycles seconds per focus frame without motion blur, with a global shutter
and with a rolling one, on the same scenes of a moving recipe (ratios measured within one run).

    python benchmarks/shutter_cost.py [--recipe dynamic] [--scenes 3] [--size 64] [--samples 16]

Each scene is drawn once with the shutter (so every row renders the same objects, moving alike)
and rendered three ways, one after another, so that a load change on the shared machine hits all
three alike. A frame's time runs from the end of the depth renders (:class:`RenderListener.depth_pass`)
to the last image handed over, divided by the frames: Cycles plus the EXR read-back, and for the
shutter the keys set and removed; no all-in-focus image, no encoding.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from generator.draw.scene import draw_scene
from generator.recipe.recipe import load_recipe
from generator.render.blender.render import RenderedScene, render_scene
from generator.scene.spec import SceneSpec, ShutterSpec, with_render


class _Clock:
    """A render listener that notes when depth is done and when the last image came."""

    def depth_pass(self, depth, object_index) -> None:
        self.start = time.perf_counter()

    def image(self, rgb, frames) -> None:
        self.end = time.perf_counter()


def timed_render(spec: SceneSpec, threads: int) -> tuple[RenderedScene, float]:
    """``spec`` rendered, and its seconds per focus frame (the module docstring says what they cover)."""
    clock = _Clock()
    rendered = render_scene(spec, threads=threads, listener=clock)
    return rendered, (clock.end - clock.start) / len(spec.frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="dynamic")
    parser.add_argument("--scenes", type=int, default=3)
    parser.add_argument("--size", type=int, default=64, help="image width and height, px")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--frames", type=int, default=5, help="focus frames per scene (one ramp)")
    parser.add_argument("--exposure", type=float, default=0.02, help="exposure, s")
    parser.add_argument("--readout", type=float, default=0.02, help="rolling readout of the third row, s")
    parser.add_argument("--threads", type=int, default=1, help="Cycles threads")
    args = parser.parse_args()
    recipe = load_recipe(args.recipe, [
        f"count={args.scenes}", f"image.width={args.size}", f"image.height={args.size}", f"image.samples={args.samples}",
        "focus.ramps=1", f"focus.frames_per_ramp={args.frames}", "outputs.aif=false", "outputs.motion=false",
        f"shutter.exposure_s={args.exposure}",
    ])
    rows = {"instant": None, "global": ShutterSpec(args.exposure), "rolling": ShutterSpec(args.exposure, args.readout)}
    seconds = {name: 0.0 for name in rows}
    for index in range(args.scenes):
        spec = with_render(draw_scene(recipe, index), aif=False)
        for name, shutter in rows.items():
            seconds[name] += timed_render(dataclasses.replace(spec, shutter=shutter), args.threads)[1]
    print(f"{args.recipe}, {args.scenes} scenes x {args.frames} frames, {args.size} px, {args.samples} samples, "
          f"{args.threads} thread(s); exposure {args.exposure} s, readout {args.readout} s")
    for name in rows:
        print(f"{name:>8}: {seconds[name] / args.scenes:.3f} s per frame, "
              f"{seconds[name] / seconds['instant']:.2f}x the instant")


if __name__ == "__main__":
    main()
