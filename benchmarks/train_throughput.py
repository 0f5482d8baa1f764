"""Training cost at the results table's size: steps/s of every network and of each sdgs variant, and
the splat re-rendering's forward + backward time per frame.

One process, one machine, the same batches for every row (read once from ``--shards``,
``--crop`` crops of batch ``--batch-size``), so the ratios compare like with like:

- steps/s: AdamW steps (forward, losses, backward, step) of each registered network with
  its default config, and of ``sdgs`` and ``sdgs_stack`` with each of the results table's ablation
  overrides (``benchmarks/results/experiments.py``); the ratio is to ``sdgs`` as built.
- splat ms: :func:`dfd_models.networks.sdgs.rerender` of the batch's stacks at their true
  depth (so the blur is the data's) into every frame, forward + backward, per rendered frame.

    python benchmarks/train_throughput.py --shards runs/results_table/data [--crop 32] [--batch-size 4]
        [--rows sdgs ddff]   # only these rows (at 256 px every row together takes an hour)
        [--device cuda]      # model and batches on that device (default cpu), timings synchronised
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from dfd_models.data import DataSection, make_loader, resolve_shards
from dfd_models.networks import MODELS, build_model, lens_from_batch
from dfd_models.networks.sdgs import SDGSConfig, _repeat_lens, rerender
from dfd_models.runtime import pick_device, to_device
from results.experiments import ABLATIONS


def _sync(device: torch.device) -> None:
    """Wait for the device's queued work, so a timing ends when the work does."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def steps_per_second(name: str, config: dict, batches: list[dict], steps: int,
                     device: torch.device = torch.device("cpu")) -> float:
    """AdamW steps per second of model ``name`` over ``batches`` in turn (after one untimed step),
    the model on ``device`` (the batches must be there already)."""
    torch.manual_seed(0)
    model = build_model(name, config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(batch: dict) -> None:
        optimizer.zero_grad(set_to_none=True)
        model.losses(batch, model(batch))["total"].backward()
        optimizer.step()

    step(batches[0])
    _sync(device)
    start = time.perf_counter()
    for i in range(steps):
        step(batches[i % len(batches)])
    _sync(device)
    return steps / (time.perf_counter() - start)


def splat_ms_per_frame(batches: list[dict], repeats: int, device: torch.device = torch.device("cpu")) -> float:
    """Forward + backward of sdgs' re-rendering at the true depth into every frame, ms per frame."""
    cfg = SDGSConfig()
    frames, seconds = 0, 0.0
    for batch in batches[:repeats]:
        b, t, _, h, w = batch["frames"].shape
        depth = batch["depth"].clamp_min(cfg.min_depth_m).repeat_interleave(t, 0).requires_grad_()
        colors = batch["frames"][:, 0].repeat_interleave(t, 0).requires_grad_()
        _sync(device)
        start = time.perf_counter()
        out = rerender(depth, colors, batch["K"][:, :1].expand(b, t, 3, 3).flatten(0, 1), batch["K"].flatten(0, 1),
                       batch["focus_m"].flatten(), _repeat_lens(lens_from_batch(batch), t),
                       scale_px=cfg.gaussian_scale_px, splat=cfg.splat, backend="torch")
        (out.color.sum() + out.depth.sum()).backward()
        _sync(device)
        seconds += time.perf_counter() - start
        frames += b * t
    return 1000 * seconds / frames


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=Path, required=True, help="dataset directory (its train split is read)")
    parser.add_argument("--crop", type=int, default=32, help="crop width and height, pixels")
    parser.add_argument("--batch-size", type=int, default=4, help="stacks per batch")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per row")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--rows", nargs="+", metavar="ROW", help="time only these rows (default: all; sdgs always)")
    parser.add_argument("--device", default="cpu", help="torch device of the models and batches: cpu, cuda, auto")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    rows = [(name, name, {}) for name, cls in sorted(MODELS.items()) if cls.trainable]
    rows += [(row.run, row.model, dict(row.config)) for row in ABLATIONS]
    if args.rows:
        unknown = sorted(set(args.rows) - {run for run, _, _ in rows})
        if unknown:
            parser.error(f"unknown rows {unknown}; the rows are {[run for run, _, _ in rows]}")
        rows = [row for row in rows if row[0] in {"sdgs", *args.rows}]
    if args.threads:
        torch.set_num_threads(args.threads)
    data = DataSection(shards=resolve_shards(args.shards, "train"), split=None, crop=[args.crop, args.crop],
                       batch_size=args.batch_size, workers=0, ramp=0, flip=False, shuffle=0)
    loader = make_loader(data, rank=0, world_size=1, seed=0)
    batches = [to_device(batch, device) for _, batch in zip(range(4), loader)]
    b, t, _, h, w = batches[0]["frames"].shape
    print(f"{len(batches)} batches of {b} stacks x {t} frames, {h}x{w} px, from {args.shards}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, on {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    rates = {run: steps_per_second(name, config, batches, args.steps, device) for run, name, config in rows}
    print(f"{'row':<22} {'steps/s':>8} {'x sdgs':>7}")
    for run, rate in rates.items():
        print(f"{run:<22} {rate:8.3f} {rate / rates['sdgs']:7.2f}")
    ms = splat_ms_per_frame(batches, repeats=len(batches), device=device)
    print(f"splat re-render at the true depth, forward + backward: {ms:.1f} ms per {h}x{w} frame "
          f"({ms * t:.0f} ms per stack of {t}; sdgs renders {t} frames per stack, "
          f"'render_frames: pair' {min(t, 2)})")
    if not math.isfinite(ms):
        raise SystemExit("splat timing failed")


if __name__ == "__main__":
    main()
