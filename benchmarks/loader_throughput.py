"""Focus stacks per second through the training pipeline vs. the raw read + decode bound.

The bound reads the same shards with the format's tar reader (``generator.dataset.format.read_shard``) and decodes the
members the pipeline decodes for one ramp (its frames with
``generator.dataset.pixels.decode_rgb``, one depth map, and the AIF image and CoC maps
when present, with ``read_exr_bytes``), in the same number of processes, with
no torch stages. The pipeline adds everything else: shuffle buffer, ramp
choice and focus sort, random crop and flip with K, tensors, batching and the
DataLoader. Goal: pipeline / bound >= 0.8 at each worker count, in stacks per
wall-clock second. CPU seconds (this process and its reaped workers) are shown
too: on a machine shared with other jobs they vary less than wall time.

Without ``--shards`` it writes synthetic shards (one ramp per scene, so the
pipeline decodes exactly the frames the bound decodes; a static ``blender``-lens
scene, so one depth map) into a temporary directory.

    python benchmarks/loader_throughput.py                     # synthetic, 256x256, 5 frames
    python benchmarks/loader_throughput.py --shards data/small_obj --split train --ramp 0
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from generator.core.lens import Lens
from generator.recipe.recipe import load_recipe
from generator.dataset.pixels import decode_rgb, read_exr_bytes
from generator.dataset.sample import encode_sample
from generator.dataset.format import AIF, META, coc_member, depth_member, frame_stem, read_shard, rgb_member
from generator.dataset.shards import DatasetDir
from generator.scene.spec import CameraSpec, FrameSpec, MaterialSpec, ObjectSpec, RenderSpec, SceneSpec


class _Rendered:
    def __init__(self, frames, depth):
        self.frames, self.depth, self.aif = frames, depth, None


def _synthetic_render(rng: np.random.Generator, frames: int, height: int, width: int) -> _Rendered:
    """Smooth colour fields plus grain (compresses like a render, unlike white noise)."""
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    images = []
    for _ in range(frames):
        k = rng.uniform(2, 12, size=(3, 2))
        phase = rng.uniform(0, 2 * np.pi, size=3)
        base = np.stack([0.5 + 0.4 * np.sin(k[c, 0] * x * 6 + k[c, 1] * y * 6 + phase[c]) for c in range(3)], -1)
        images.append((base + rng.normal(0, 0.02, base.shape)).clip(0, 1).astype(np.float32))
    depth = (1.0 + x + 0.5 * y).astype(np.float32)
    depth[: height // 8, : width // 8] = 0.0
    return _Rendered(images, [depth])


def write_synthetic(out: Path, scenes: int, per_shard: int, frames: int, height: int, width: int) -> Path:
    """Write ``scenes`` one-ramp scenes with the generator's encoder and shard writer."""
    recipe = load_recipe("small_obj", [f"count={scenes}", f"shards.max_samples={per_shard}"])
    dataset = DatasetDir(out, recipe, max_samples=per_shard)
    cube = ObjectSpec("cube", "cube", (0.0, 2.0, 0.0), (0.0, 0.0, 0.0), (0.3, 0.3, 0.3), MaterialSpec("checker"))
    rng = np.random.default_rng(0)
    for index in range(scenes):
        spec = SceneSpec(
            index=index,
            seed=index,
            split="train",
            render=RenderSpec(width=width, height=height, samples=1, seed=index),
            lens=Lens("blender", 0.05, 2.0, 0.036),
            camera=CameraSpec(),
            frames=tuple(FrameSpec(i, 0, 0.0, f) for i, f in enumerate(np.geomspace(0.5, 3.0, frames))),
            objects=(cube,),
        )
        dataset.add(index, "train", encode_sample(spec, _synthetic_render(rng, frames, height, width), recipe))
    dataset.finish()
    return out


def _raw_decode(url: str) -> int:
    """Read one shard with the format's tar reader and decode what the pipeline decodes, in a
    plain loop; returns its sample count."""
    from dfd_models.data.batch import reference_index

    count = 0
    for sample in read_shard(url):
        meta = json.loads(sample[META])
        stack = [f for f in meta["frames"] if f["ramp"] == meta["frames"][0]["ramp"]]
        images = [rgb_member(sample, frame_stem(f["index"])) for f in stack] + [rgb_member(sample, AIF)]
        for name in filter(None, images):
            decode_rgb(sample[name], name.rsplit(".", 1)[1])
        ref = stack[reference_index(len(stack))]["index"] if meta["depth"]["per_frame"] else None
        read_exr_bytes(sample[depth_member(ref)])["Z"]
        for name in [coc_member(f["index"]) for f in stack if coc_member(f["index"]) in sample]:
            read_exr_bytes(sample[name])["Y"]
        count += 1
    return count


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its reaped children, seconds."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _timed(run) -> tuple[int, float, float]:
    """(samples, wall seconds, CPU seconds) of ``run()``, which returns a sample count."""
    wall, cpu = time.perf_counter(), _cpu_seconds()
    count = run()
    return count, time.perf_counter() - wall, _cpu_seconds() - cpu


def bound(urls: list[str], processes: int) -> tuple[int, float, float]:
    """Read and decode every shard, shards spread over ``processes``."""
    if processes <= 1:
        return _timed(lambda: sum(_raw_decode(u) for u in urls))

    def run():
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            count = sum(pool.map(_raw_decode, urls, chunksize=1))
            pool.close()
            pool.join()
        return count

    return _timed(run)


def pipeline(shards, split, workers: int, args) -> tuple[int, float, float]:
    """One epoch of :func:`dfd_models.data.make_loader`, starting its workers included."""
    from dfd_models.data import DataSection, make_loader

    data = DataSection(shards=shards, split=split, crop=args.crop, batch_size=args.batch_size, workers=workers,
                       ramp=args.ramp, shuffle=args.shuffle)
    loader = make_loader(data, seed=0)
    return _timed(lambda: sum(batch["frames"].shape[0] for batch in loader))  # frames [B, T, 3, H, W]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", help="dataset directory (default: synthetic shards in a temp dir)")
    parser.add_argument("--split", default=None, help="split to read, e.g. train")
    parser.add_argument("--scenes", type=int, default=64, help="synthetic: number of scenes")
    parser.add_argument("--per-shard", type=int, default=4, help="synthetic: scenes per shard")
    parser.add_argument("--frames", type=int, default=5, help="synthetic: frames per stack")
    parser.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"), help="synthetic size")
    parser.add_argument("--crop", type=int, nargs=2, default=(192, 192), metavar=("H", "W"))
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--shuffle", type=int, default=16, help="shuffle buffer, samples")
    parser.add_argument("--ramp", default="random", help="ramp index or 'random'")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader worker counts")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    args.ramp = args.ramp if args.ramp == "random" else int(args.ramp)
    args.crop = tuple(args.crop)

    from dfd_models.data import resolve_shards

    with tempfile.TemporaryDirectory() as tmp:
        shards = args.shards or write_synthetic(Path(tmp) / "synthetic", args.scenes, args.per_shard, args.frames,
                                                *args.size)
        urls = resolve_shards(shards, args.split)
        print(f"shards: {shards} ({len(urls)} shards)")
        print(f"{'':26s} {'workers':>7s} {'stacks':>6s} {'wall s':>7s} {'stacks/s':>8s} {'ratio':>5s} "
              f"{'cpu s':>6s} {'cpu ratio':>9s}")
        ratios = []
        for workers in args.workers:
            processes = max(workers, 1)
            # alternate bound and pipeline runs (load on the machine drifts), keep the best of each
            runs = [(bound(urls, processes), pipeline(shards, args.split, workers, args)) for _ in range(args.repeats)]
            (n_b, t_b, c_b), (n_p, t_p, c_p) = (min(times, key=lambda r: r[1]) for times in zip(*runs))
            ratio, cpu_ratio = (n_p / t_p) / (n_b / t_b), (c_b / n_b) / (c_p / n_p)
            ratios.append(ratio)
            print(f"{'bound: tar read + decode':26s} {processes:7d} {n_b:6d} {t_b:7.2f} {n_b / t_b:8.2f} {'':5s} "
                  f"{c_b:6.2f}")
            print(f"{'pipeline: make_loader':26s} {workers:7d} {n_p:6d} {t_p:7.2f} {n_p / t_p:8.2f} {ratio:5.2f} "
                  f"{c_p:6.2f} {cpu_ratio:9.2f}")
        worst = min(ratios)
        print(f"pipeline / bound, stacks per wall second (worst): {worst:.2f}; "
              f"goal >= 0.80 {'met' if worst >= 0.8 else 'NOT met'}")


if __name__ == "__main__":
    main()
