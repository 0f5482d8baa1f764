"""``dfdgen train``, ``dfdgen eval`` and ``dfdgen predict``: thin click commands over
:mod:`dfd_models.train`, :mod:`dfd_models.evaluate` and :mod:`dfd_models.predict`.

:mod:`generator.cli` adds them to the ``dfdgen`` group. This module imports no
torch: each command imports its library module when it runs, so ``dfdgen
render`` and ``--help`` work without the training dependencies. Errors and warnings
are reported as ``dfdgen render``'s (:func:`generator.core.errors.library_errors`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from generator.core.errors import library_errors, warnings_as_messages
from generator.core.files import write_atomic

#: Metric keys in the order the table shows them (others follow).
_TABLE_ORDER = ("abs_rel", "sq_rel", "rmse", "rmse_log", "mae", "mse", "inv_mae", "inv_rmse", "delta1", "delta2",
                "delta3", "accuracy", "pearson", "mse_norm", "rms_norm", "n_pixels")


def _model_rows() -> list[tuple[str, str]]:
    """(name, first line of its docstring) of every registered model, for ``dfdgen train --help``.

    Imports the registry (and torch) only when called; without torch, one row says so.
    """
    try:
        from dfd_models.networks import MODELS
    except ImportError as exc:
        return [("(none)", f"the models need the training dependencies (torch): {exc}")]
    rows = []
    for name in sorted(MODELS):
        lines = (MODELS[name].__doc__ or "").strip().splitlines()
        rows.append((name, lines[0].replace(" (module docstring)", "") if lines else ""))
    return rows


class _TrainCommand(click.Command):
    """A command whose help ends with the registered models (listed when the help is shown,
    so importing this module imports no torch)."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Models (--model)"):
            formatter.write_dl(_model_rows())
        super().format_epilog(ctx, formatter)


def _is_main_process() -> bool:
    """Whether this is rank 0 of a torchrun launch (or no launch): the one that prints."""
    return os.environ.get("RANK", "0") == "0"


@click.command(cls=_TrainCommand)
@click.option("--shards", metavar="DIR",
              help="Dataset directory, or a shard pattern (data/x-train-{000000..000003}.tar); local files, "
                   "unless a URL or pipe:CMD is written here  [config: data.shards].")
@click.option("--skip-corrupt", is_flag=True, default=None,
              help="Skip corrupt samples with a one-line warning each, instead of stopping  "
                   "[config: data.skip_corrupt].")
@click.option("--model", "model_name", metavar="NAME",
              help="Registered model (listed below), e.g. sdgs  [config: model.name].")
@click.option("--out", "run_dir", required=True, type=click.Path(file_okay=False, path_type=Path), metavar="RUN",
              help="Run directory: config.yaml, ckpt/, tb/.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), metavar="YAML",
              help="Training config file (see dfd_models.config).")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="Override a config key, e.g. --set optim.lr=3e-4 (repeatable; YAML values).")
@click.option("--max-steps", type=click.IntRange(min=1), metavar="N", help="Optimizer steps  [config: train.max_steps].")
@click.option("--epochs", type=click.IntRange(min=1), metavar="E", help="Epochs  [config: train.epochs].")
@click.option("--seed", type=click.IntRange(min=0), metavar="S", help="Seed  [config: train.seed].")
@click.option("--coc-head", is_flag=True, default=None,
              help="Also predict each frame's CoC, supervised by the shards' CoC (supervised models)  "
                   "[config: model.config.coc_head].")
@click.option("--resume", is_flag=True, help="Continue the run in RUN from its last checkpoint.")
def train(shards, skip_corrupt, model_name, run_dir, config_path, overrides, max_steps, epochs, seed, coc_head,
          resume):
    """Train a depth model on focal-stack shards; checkpoints and TensorBoard logs go to RUN.

    The config is the defaults, then --config, then --set, then the options
    above. Unless set, the crop and batch size are chosen for the device and the
    data's image size (on a CPU: 64 px crops, batch 4, sdgs 2), said in one
    line and recorded in RUN/config.yaml; e.g. --set 'data.crop=[32, 32]' --set
    data.batch_size=2 makes steps cheaper. Under torchrun (torchrun
    --nproc-per-node 4 --no-python dfdgen train ...) every process trains on its
    share of the shards (DDP) and rank 0 writes RUN. Ctrl-C stops (exit status 130); --resume continues from
    RUN/ckpt/last.pt with the run's saved config.
    """
    from dfd_models.config import read_yaml
    from dfd_models.run_dir import run_config
    from dfd_models.train import train as run_training
    from generator.core.errors import BadInput, brief
    from generator.dataset.format import is_url

    settings = {"model.name": model_name, "data.shards": None if shards is None else str(shards),
                "data.skip_corrupt": skip_corrupt,
                "train.max_steps": max_steps, "train.epochs": epochs, "train.seed": seed,
                "model.config.coc_head": coc_head}
    with library_errors(), warnings_as_messages():
        base = read_yaml(config_path) if config_path is not None else None
        data = (base or {}).get("data")
        if shards is None and isinstance(data, dict) and is_url(data.get("shards")):
            raise BadInput(f"config {config_path}: data.shards names a URL or pipe ({brief(data['shards'])}); "
                           "a config file is data, so only --shards on the command line may do that")
        config = run_config(run_dir, base, overrides, settings, resume=resume)
        try:
            summary = run_training(config, run_dir, resume=resume)
        except KeyboardInterrupt:
            click.echo(f"interrupted: run `dfdgen train --out {run_dir} --resume` to continue "
                       "from the last checkpoint", err=True)
            click.get_current_context().exit(130)
    if _is_main_process():
        loss = summary.last_losses.get("total")
        done = f"trained {config.model.name} to step {summary.steps}" if summary.steps else f"fitted {config.model.name}"
        click.echo(f"{done} in {summary.seconds:.1f} s" + (f", loss {loss:.4g}" if loss is not None else ""))
        click.echo(f"checkpoint: {summary.last_checkpoint}")
        if summary.best_checkpoint is not None:
            click.echo(f"best on validation ({config.train.best_metric}): {summary.best_checkpoint}")


@click.command(name="eval")
@click.option("--shards", required=True, metavar="DIR",
              help="Dataset directory, or a shard pattern; local files, unless a URL or pipe:CMD is written here.")
@click.option("--skip-corrupt", is_flag=True,
              help="Skip corrupt samples with a one-line warning each (the metrics cover the rest), "
                   "instead of stopping.")
@click.option("--checkpoint", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              metavar="CKPT", help="A checkpoint of dfdgen train (e.g. RUN/ckpt/last.pt).")
@click.option("--split", default="test", show_default=True, help="Split to evaluate.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), metavar="PATH",
              help="Also write the results as JSON.")
@click.option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True, metavar="B")
@click.option("--workers", type=click.IntRange(min=0), default=2, show_default=True, metavar="K",
              help="Loader worker processes.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--max-depth", "max_depth_m", type=click.FloatRange(min=0, min_open=True), metavar="M",
              help="Depth (m) the normalised metrics divide by.  [default: the data recipe's farthest wall]")
def eval_(shards, skip_corrupt, checkpoint, split, json_path, batch_size, workers, device, max_depth_m):
    """Depth metrics of a checkpoint over a whole split (full frames), side by side for every
    valid pixel (all) and for the valid pixels off the background wall (objects)."""
    from dfd_models.evaluate import evaluate

    with library_errors(), warnings_as_messages():
        result = evaluate(checkpoint, shards, split=split, batch_size=batch_size, workers=workers,
                          device=device, max_depth_m=max_depth_m, skip_corrupt=skip_corrupt)
    regions = result["regions"]
    click.echo(f"{result['model']} step {result['step']} on {result['samples']} samples of split {split!r}:")
    click.echo("  " + f"{'metric':<10}" + "".join(f" {region:>12}" for region in regions))
    for name in sorted(regions["all"], key=lambda k: (_TABLE_ORDER + (k,)).index(k)):
        cells = [_cell(name, None if values is None else values.get(name)) for values in regions.values()]
        click.echo(f"  {name:<10}" + "".join(f" {cell:>12}" for cell in cells))
    click.echo(f"  objects are {100 * result['objects_fraction']:.1f} % of the valid pixels")
    for region, reason in result["absent_regions"].items():
        click.echo(f"  {region}: not scored, {reason}")
    if json_path is not None:
        with library_errors():
            json_path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(json_path, (json.dumps(result, indent=2) + "\n").encode("utf-8"))
        click.echo(f"wrote {json_path}")


def _cell(name: str, value: float | None) -> str:
    """One value of the eval table: ``-`` for none, the pixel count as an integer, else 6 digits."""
    if value is None:
        return "-"
    return f"{value:.0f}" if name == "n_pixels" else f"{value:.6g}"


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path),
                metavar="STACK_DIR... | FRAME...")
@click.option("--checkpoint", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              metavar="CKPT", help="A checkpoint of dfdgen train.")
@click.option("--focus-distance", "focus_m", multiple=True, type=click.FloatRange(min=0, min_open=True), metavar="M",
              help="Focus distance of each FRAME, metres: once per frame, in the frames' order (not with "
                   "STACK_DIR, whose focus file gives them).")
@click.option("--camera", "camera_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              metavar="YAML", help="Camera file: focal_length_mm, f_number, sensor_width_mm, model (each optional).")
@click.option("--lens-model", type=click.Choice(["thin_lens", "blender"]),
              help="Lens model.  [default: the camera file's, else the training data's, else thin_lens]")
@click.option("--lens-focal-length-mm", "focal_length_mm", type=click.FloatRange(min=0, min_open=True), metavar="F",
              help="Focal length, mm (the real one, not the 35 mm equivalent).")
@click.option("--f-number", type=click.FloatRange(min=0, min_open=True), metavar="N", help="F-number.")
@click.option("--sensor-width-mm", type=click.FloatRange(min=0, min_open=True), metavar="W",
              help="Sensor width the image's width spans, mm.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("predictions"),
              show_default=True, metavar="DIR", help="Output directory (created if missing).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
def predict(inputs, checkpoint, focus_m, camera_file, lens_model, focal_length_mm, f_number, sensor_width_mm,
            out_dir, device):
    """One depth map per focal stack: NAME.depth.exr (channel Z, float32 metres) and NAME.depth.png
    (viridis, with a colour bar labelled in metres) in DIR.

    \b
    A stack is either
      STACK_DIR: a folder of frames (*.png, *.jpg, *.jpeg sRGB; *.exr linear) and a
        focus file (metres, one per frame), NAME = the folder's name; several folders
        are several stacks;
      FRAME... with --focus-distance once per frame: one stack, NAME = the stem of
        the nearest-focused frame (one frame: a single-image prediction).
    The frames are sorted by focus distance and given to the model together.

    \b
    Focus file, in STACK_DIR (one of):
      focus.yaml   [0.30, 0.37, 0.48, 0.69, 1.20]    in the frames' name order, or
                   IMG_0001.jpg: 0.30                 by frame file name
      focus.txt    one distance per line, in the frames' name order (# comments)
    Name order is natural: f2.jpg before f10.jpg.

    \b
    The lens, per value: the options above, else --camera, else the frames' EXIF
    (FocalLength, FNumber; sensor width from FocalPlaneXResolution or
    FocalLengthIn35mmFilm), else the checkpoint's training data where it had one
    value. A camera file (YAML):
      focal_length_mm: 4.25
      f_number: 1.8
      sensor_width_mm: 5.6
      model: thin_lens
    Frames that differ in size or share a focus distance, and focus files that do
    not match their frames, are refused (exit status 2); nothing is written unless
    every stack is predicted.
    """
    from dfd_models.predict import predict_stacks

    with library_errors():
        done = predict_stacks(checkpoint, inputs, focus_m, out_dir, camera=camera_file, lens_model=lens_model,
                              focal_length_mm=focal_length_mm, f_number=f_number, sensor_width_mm=sensor_width_mm,
                              device=device)
    for result in done:
        stack, lens, src = result.stack, result.lens, result.sources
        near, far = result.depth_range_m
        click.echo(f"{stack.name}: {len(stack.frames)} frame(s) focused at "
                   f"{stack.focus_m[0]:g}-{stack.focus_m[-1]:g} m; "
                   f"lens {lens.model} ({src['model']}), f {lens.focal_length_m * 1e3:.4g} mm "
                   f"({src['focal_length_mm']}), f/{lens.f_number:.3g} ({src['f_number']}), "
                   f"sensor {lens.sensor_width_m * 1e3:.4g} mm ({src['sensor_width_mm']}); "
                   f"depth {near:.3g}-{far:.3g} m")
        click.echo(f"wrote {result.paths[0]} and {result.paths[1].name}")


#: The commands :mod:`generator.cli` adds to ``dfdgen``.
COMMANDS = (train, eval_, predict)
