"""Throughput of the Gaussian-splat defocus renderer: one Gaussian per pixel, forward + backward.

The scene is a DFD-style frame: a pixel-aligned Gaussian per pixel (2D sigma 0.5 px before
the 0.3 px^2 low-pass) on a depth map between 1 and 3 m, seen through a thin lens focused
in between, its aperture chosen so the largest CoC is ``--max-coc`` pixels at the largest
size (CoC in pixels scales with the width). The loss touches colour, alpha and depth, and
gradients flow to every Gaussian parameter and the focus distance.

    python benchmarks/splat_throughput.py [--sizes 128 256] [--repeats 3] [--max-coc 8]
    python benchmarks/splat_throughput.py --sizes 256 --max-coc 40 --devices cuda --compare

``--compare``: per device and size, gsplat against the torch reference in one process on the
same scene: the time ratio (torch / gsplat, forward and forward + backward) and the largest
absolute difference of the images and of the gradients; where gsplat refuses (a CoC beyond
``gsplat_backend.GSPLAT_MAX_COC_PX``, or no CUDA), the refusal and the reference's times.

Each configuration runs in a fresh process so its peak memory is its own: CPU peak is the
growth of the process's peak RSS during the renders, CUDA peak is torch's max allocated.
Backends: torch on CPU; torch and gsplat on CUDA when present.
"""

from __future__ import annotations

import argparse
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context


def _scene(size: int, max_coc_px: float, coc_at_px: int, device: str):
    import torch

    from dfd_models.lens import LensParams, coc_px, intrinsics
    from dfd_models.splat import Camera, Gaussians

    gen = torch.Generator().manual_seed(0)
    centres = torch.arange(size, dtype=torch.float32) + 0.5
    v, u = torch.meshgrid(centres, centres, indexing="ij")
    # Depth map: a slanted plane with ripples, 1 to 3 m.
    depth = 2.0 + 0.8 * (u / size - 0.5) + 0.2 * torch.sin(v / 7.0) * torch.cos(u / 11.0)
    focus = torch.tensor(1.6)
    # Aperture so that the worst CoC in the frame is max_coc_px pixels at width coc_at_px.
    lens = LensParams("thin_lens", torch.tensor(0.05), torch.tensor(1.0), torch.tensor(0.036))
    worst = float(coc_px(lens, depth, focus, coc_at_px).max())
    lens = LensParams("thin_lens", lens.focal_length_m, torch.tensor(worst / max_coc_px), lens.sensor_width_m)
    camera = Camera(size, size)  # K from the lens: focal length v / p pixels
    f_px = float(intrinsics(lens, focus, size, size)[0, 0])
    z = depth.flatten()
    n = z.numel()
    means = torch.stack([(u.flatten() - size / 2) * z / f_px, (v.flatten() - size / 2) * z / f_px, z], -1)
    gaussians = Gaussians(
        means=means,
        scales=(0.5 * z / f_px)[:, None].expand(n, 3).clone(),
        quats=torch.tensor([1.0, 0.0, 0.0, 0.0]).expand(n, 4).clone(),
        opacities=torch.full((n,), 0.9),
        colors=torch.rand(n, 3, generator=gen),
    )
    to = {f: getattr(gaussians, f).to(device).requires_grad_() for f in gaussians.__dataclass_fields__}
    return Gaussians(**to), camera, focus.to(device).requires_grad_(), lens.to(device)


def _step(gaussians, camera, focus, lens, backend: str, backward: bool):
    """One render (and backward of a loss touching colour, alpha and depth)."""
    from dfd_models.splat import render_defocus

    out = render_defocus(gaussians, camera, focus, lens, backend=backend)
    if backward:
        (out.color.square().mean() + out.alpha.mean() + out.depth.mean()).backward()
    return out


def _times(scene, backend: str, repeats: int, cuda: bool) -> dict[bool, float]:
    """Best of ``repeats`` ms of a forward (False) and a forward + backward (True)."""
    import torch

    times = {}
    for backward in (False, True):
        runs = []
        for _ in range(repeats):
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            _step(*scene, backend, backward)
            if cuda:
                torch.cuda.synchronize()
            runs.append(time.perf_counter() - start)
        times[backward] = 1e3 * min(runs)
    return times


def _measure(size: int, device: str, backend: str, repeats: int, max_coc: float, coc_at: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    scene = _scene(size, max_coc, coc_at, device)
    cuda = device == "cuda"
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    try:
        out = _step(*scene, backend, True)  # warm-up
    except RuntimeError as exc:  # gsplat refuses (its CoC limit, no CUDA): say so, time nothing
        return dict(device=device, backend=backend, size=size, refused=str(exc))
    coc = float(out.coc_px.detach().abs().max())
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = _times(scene, backend, repeats, cuda)
    if cuda:
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    return dict(device=device, backend=backend, size=size, n=size * size, coc=coc,
                fwd=times[False], fwd_bwd=times[True], peak_mb=peak_mb)  # fmt: skip


def _compare(size: int, device: str, repeats: int, max_coc: float, coc_at: int, threads: int) -> dict:
    """gsplat against the torch reference on one scene: times, and the largest absolute differences
    of colour, alpha, depth and of every gradient; or gsplat's refusal and the reference's times."""
    import torch

    torch.set_num_threads(threads)
    cuda = device == "cuda"
    results = {}
    for backend in ("torch", "gsplat"):
        scene = _scene(size, max_coc, coc_at, device)
        try:
            out = _step(*scene, backend, True)
        except RuntimeError as exc:
            results["refused"] = str(exc)
            break
        leaves = [getattr(scene[0], f) for f in scene[0].__dataclass_fields__] + [scene[2]]
        grads = [x.grad.clone() for x in leaves]
        results[backend] = dict(out=out, grads=grads, coc=float(out.coc_px.detach().abs().max()),
                                times=_times(scene, backend, repeats, cuda))
    ref = results["torch"]
    row = dict(device=device, size=size, coc=ref["coc"], torch_fwd=ref["times"][False],
               torch_fwd_bwd=ref["times"][True])
    if "refused" in results:
        return dict(row, refused=results["refused"])
    fast = results["gsplat"]
    image = max(float((getattr(ref["out"], k) - getattr(fast["out"], k)).detach().abs().max())
                for k in ("color", "alpha"))
    both = (ref["out"].alpha > 0.5) & (fast["out"].alpha > 0.5)
    depth = float((ref["out"].depth - fast["out"].depth).detach()[both].abs().max()) if both.any() else float("nan")
    grad = max(float((a - b).abs().max() / a.abs().max().clamp_min(1e-30)) for a, b in zip(ref["grads"], fast["grads"]))
    return dict(row, gsplat_fwd=fast["times"][False], gsplat_fwd_bwd=fast["times"][True], image=image, depth=depth,
                grad=grad)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256], help="square image sizes, pixels")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per configuration (best is shown)")
    parser.add_argument("--max-coc", type=float, default=8.0, help="largest CoC at the largest size, pixels")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"], help="devices to try")
    parser.add_argument("--compare", action="store_true",
                        help="gsplat against the torch reference instead: time ratio and largest differences")
    args = parser.parse_args()

    import torch

    from dfd_models.splat import gsplat_backend

    threads = args.threads or torch.get_num_threads()
    coc_at = max(args.sizes)
    if args.compare:
        _print_comparison(args, threads, coc_at, gsplat_backend)
        return
    configs = []
    for device in args.devices:
        if device == "cuda" and not torch.cuda.is_available():
            print("cuda: not available, skipped")
            continue
        backends = ["torch"]
        if device == "cuda" and gsplat_backend._version() is not None:
            backends.append("gsplat")
        elif device == "cuda":
            print("gsplat: not installed, skipped")
        configs += [(size, device, backend) for backend in backends for size in args.sizes]

    print(f"torch {torch.__version__}, {threads} CPU threads, best of {args.repeats}")
    header = (
        f"{'device':6} {'backend':7} {'size':>9} {'gaussians':>9} {'max CoC px':>10} "
        f"{'fwd ms':>9} {'fwd+bwd ms':>10} {'peak MB':>8}"
    )
    print(header)
    print("-" * len(header))
    # A fresh process per configuration: peak memory then belongs to that configuration alone.
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
        for size, device, backend in configs:
            r = pool.submit(_measure, size, device, backend, args.repeats, args.max_coc, coc_at, threads).result()
            if "refused" in r:
                print(f"{r['device']:6} {r['backend']:7} {f'{size}x{size}':>9} refused: {r['refused']}")
                continue
            print(
                f"{r['device']:6} {r['backend']:7} {f'{size}x{size}':>9} {r['n']:>9} {r['coc']:>10.1f} "
                f"{r['fwd']:>9.1f} {r['fwd_bwd']:>10.1f} {r['peak_mb']:>8.0f}"
            )


def _print_comparison(args, threads: int, coc_at: int, gsplat_backend) -> None:
    """The ``--compare`` table: one line per (device, size), each measured in a fresh process."""
    import torch

    print(f"torch {torch.__version__}, gsplat {gsplat_backend._version() or 'not installed'}, {threads} CPU threads, "
          f"best of {args.repeats}; gsplat draws CoCs up to {gsplat_backend.GSPLAT_MAX_COC_PX:.1f} px")
    header = (f"{'device':6} {'size':>9} {'max CoC px':>10} {'torch fwd ms':>12} {'torch f+b ms':>12} "
              f"{'fwd x':>7} {'f+b x':>7} {'max|d img|':>10} {'max|d depth|':>12} {'max|d grad| rel':>15}")
    print(header)
    print("-" * len(header))
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
        for device in args.devices:
            if device == "cuda" and not torch.cuda.is_available():
                print("cuda: not available, skipped")
                continue
            for size in args.sizes:
                r = pool.submit(_compare, size, device, args.repeats, args.max_coc, coc_at, threads).result()
                line = (f"{device:6} {f'{size}x{size}':>9} {r['coc']:>10.1f} {r['torch_fwd']:>12.1f} "
                        f"{r['torch_fwd_bwd']:>12.1f}")
                if "refused" in r:
                    print(f"{line} gsplat refused: {r['refused']}")
                    continue
                fwd, fwd_bwd = r["torch_fwd"] / r["gsplat_fwd"], r["torch_fwd_bwd"] / r["gsplat_fwd_bwd"]
                print(f"{line} {fwd:>7.2f} {fwd_bwd:>7.2f} "
                      f"{r['image']:>10.2e} {r['depth']:>12.2e} {r['grad']:>15.2e}")


if __name__ == "__main__":
    main()
