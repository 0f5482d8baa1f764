"""``dfdgen`` command line: a thin click layer over the library (DESIGN.md section 9).

Each command parses options, calls one library function and turns the
library's :class:`~generator.core.errors.DfdgenError` into a click error with the
same message and exit status (2 bad input, 1 other). Commands of other
packages live in their own modules, found through :data:`COMMAND_GROUP`.

Keep module-level imports light here and in command modules: render workers
are spawned processes that re-import the main script, i.e. this module.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import click

from generator import __version__
from generator.core.errors import EXIT_SCENES_FAILED, library_errors, printable, warnings_as_messages
from generator.recipe.recipe import PRESETS, builtin_recipes
from generator.render.options import DEVICES, EXECUTORS, RenderOptions


class OutPath(click.Path):
    """``click.Path`` (as :class:`pathlib.Path`) that refuses an empty name, which pathlib
    would read as the current folder."""

    def __init__(self, **kwargs):
        super().__init__(path_type=Path, **kwargs)

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.strip():
            self.fail("an empty name; give a folder or file name", param, ctx)
        return super().convert(value, param, ctx)


@click.group(name="dfdgen", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="dfdgen")
def main() -> None:
    """Physically exact synthetic focal stacks with Blender, and depth-from-defocus training on them."""


@main.command()
@click.option("--recipe", "recipe_path", required=True, metavar="PATH|NAME",
              help=f"Recipe YAML file, or the name of a built-in recipe ({', '.join(builtin_recipes())}).")
@click.option("--preset", type=click.Choice(sorted(PRESETS)),
              help="A quality preset applied before --set: preview = 8 scenes, 128 px, 32 samples "
                   "(about a minute on 2 cores).")
@click.option("--out", "out_dir", type=OutPath(file_okay=False), metavar="DIR",
              help="Output directory.  [default: data/<recipe name>, data/<recipe name>-<preset> with --preset]")
@click.option("-n", "count", type=click.IntRange(min=1), metavar="N", help="Number of scenes (overrides the recipe's count).")
@click.option("--workers", type=click.IntRange(min=1), default=RenderOptions.workers, show_default=True, metavar="K",
              help="Worker processes, each running its own Blender (with --executor ray: scenes in flight).")
@click.option("--threads", type=click.IntRange(min=0), default=RenderOptions.threads, show_default=True, metavar="T",
              help="Cycles threads per worker; 0 = the cores shared evenly among the workers.")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="Override a recipe field, e.g. --set image.width=64 (repeatable).")
@click.option("--overwrite", is_flag=True, help="Replace the data of another recipe in --out (other files stay).")
@click.option("--recycle-every", type=click.IntRange(min=1), default=RenderOptions.recycle_every, show_default=True, metavar="N",
              help="Scenes a worker renders before it is replaced (bounds memory).")
@click.option("--executor", type=click.Choice(EXECUTORS), default=RenderOptions.executor, show_default=True,
              help="Render in local worker processes, or as Ray tasks (pip install 'dfdgen[ray]').")
@click.option("--ray-address", metavar="ADDR",
              help="Ray cluster for --executor ray: auto, HOST:PORT or ray://HOST:PORT.  [default: a local Ray]")
@click.option("--device", type=click.Choice(DEVICES), default=RenderOptions.device, show_default=True,
              help="Cycles device; gpu = OptiX, else CUDA, else the CPU with a warning.")
@click.option("--save-blend", type=click.Path(dir_okay=False, path_type=Path), metavar="PATH",
              help="Only build one scene and save it as a .blend file (no dataset is rendered).")
@click.option("--scene", "scene_index", type=click.IntRange(min=0), metavar="I",
              help="Scene index for --save-blend.  [default: 0]")
@click.option("--assets-root", "asset_roots", multiple=True, type=click.Path(exists=True, file_okay=False),
              metavar="PATH", help="Let the recipe's asset folders lie in PATH too; by default they must lie "
                                   "in the recipe file's folder (repeatable).")
def render(recipe_path, preset, out_dir, count, workers, threads, overrides, overwrite, recycle_every,
           executor, ray_address, device, save_blend, scene_index, asset_roots):
    """Render a recipe's focal stacks into WebDataset shards in DIR.

    A rerun with the same recipe resumes where the last run stopped; Ctrl-C
    keeps the finished shards (exit status 130).
    """
    # Imported here, not at the top: every spawned render worker re-imports the
    # main script (this module), and the pipeline pulls in webdataset and torch.
    from generator.render.pipeline import render_dataset, save_scene_blend
    from generator.recipe.recipe import load_recipe

    if scene_index is not None and save_blend is None:
        raise click.UsageError("--scene is only used with --save-blend")
    with library_errors():
        recipe = load_recipe(recipe_path, [*overrides, *([f"count={count}"] if count else [])], asset_roots, preset)
        if save_blend is not None:
            path = save_scene_blend(recipe, scene_index or 0, save_blend)
            click.echo(f"saved scene {scene_index or 0} of {recipe.name} to {path}")
            return
        out_dir = out_dir or Path("data") / (recipe.name + (f"-{preset}" if preset else ""))
        try:
            with warnings_as_messages():
                summary = render_dataset(recipe, out_dir, workers=workers, threads=threads,
                                         overwrite=overwrite, recycle_every=recycle_every,
                                         executor=executor, ray_address=ray_address, device=device)
        except KeyboardInterrupt:
            click.echo(f"interrupted: finished shards kept in {out_dir}; run the same command to resume", err=True)
            click.get_current_context().exit(130)
    click.echo(f"data in {summary.out_dir}")
    click.echo(summary.line())
    if summary.failed:
        for index, reason in summary.failed:  # a reason may be a traceback: its last line says what
            click.echo(f"scene {index} failed: {printable((reason.strip().splitlines() or [''])[-1])}", err=True)
        scenes = ", ".join(str(i) for i, _ in summary.failed[:20]) + (", ..." if len(summary.failed) > 20 else "")
        click.echo(f"Error: {len(summary.failed)} scenes failed ({scenes}); the manifest in {summary.out_dir} "
                   f"records why (exit status {EXIT_SCENES_FAILED})", err=True)
        click.get_current_context().exit(EXIT_SCENES_FAILED)


@main.command()
@click.argument("data_dir", type=click.Path(file_okay=False, path_type=Path), metavar="DIR")
@click.option("--sheet", type=click.Path(dir_okay=False, path_type=Path), metavar="PNG",
              help="Also write a contact sheet (frames, colourised depth, CoC maps) to this PNG.")
@click.option("--samples", type=click.IntRange(min=1), default=4, show_default=True,
              help="Samples on the contact sheet.")
@click.option("--verify", is_flag=True,
              help="Also check every shard against the manifest (size, sha256, scenes) and decode every "
                   "member; exit 1 naming each problem.")
def inspect(data_dir, sheet, samples, verify):
    """Summarise a rendered dataset: counts, lens, focus, depth and CoC ranges."""
    from generator.dataset.inspection import contact_sheet, summarize
    from generator.dataset.inspection import verify as verify_dataset
    from generator.dataset.format import MANIFEST

    with library_errors():
        if verify:
            checked, problems = verify_dataset(data_dir)
            for problem in problems:
                click.echo(f"Error: {printable(problem)}", err=True)
            if problems:
                click.get_current_context().exit(1)
            click.echo(f"verified {checked} samples: every shard matches {data_dir / MANIFEST}")
        click.echo(summarize(data_dir).text())
        if sheet is not None:
            click.echo(f"contact sheet: {contact_sheet(data_dir, sheet, samples=samples)}")


@main.command()
@click.argument("data_dir", type=click.Path(file_okay=False, path_type=Path), metavar="DIR")
@click.option("--format", "fmt", type=click.Choice(["fod500", "stacks"]), required=True,
              help="Layout to write: fod500 = {n:06d}_{k:02d}All.tif frames and {n:06d}Dpt.exr depth, "
                   "train scenes first, then val, then test (the loaders split by index); stacks = "
                   "SPLIT/KEY/ folders of frames (IMG_0001.jpg ..., as stored), focus.yaml and camera.yaml, "
                   "which dfdgen predict reads like a camera's focus bracket.")
@click.option("--out", "out_dir", type=OutPath(), required=True, metavar="OUT",
              help="New (or empty) folder to write.")
@click.option("--force", is_flag=True,
              help="Export even where the lens, focus distances or image size differ from what the "
                   "FoD500 loaders assume.")
@click.option("--skip-corrupt", is_flag=True,
              help="Leave out corrupt samples with a one-line warning each (later scenes are numbered on "
                   "without a gap), instead of stopping.")
def export(data_dir, fmt, out_dir, force, skip_corrupt):
    """Export a rendered dataset DIR to another layout that existing depth-from-focus code reads."""
    from generator.dataset.export import INDEX_FILE, export_dataset

    with library_errors(), warnings_as_messages():
        ranges = export_dataset(data_dir, out_dir, fmt, force=force, skip_corrupt=skip_corrupt)
    count = sum(last - first + 1 for first, last in ranges.values())
    click.echo(f"exported {count} scenes to {out_dir} ({fmt})")
    if fmt == "stacks":
        click.echo(f"one folder per stack: {out_dir}/SPLIT/KEY (frames, focus.yaml, camera.yaml), "
                   f"for dfdgen predict; scenes listed in {INDEX_FILE}")
    else:
        click.echo("indices: " + ", ".join(f"{split} {first:06d}-{last:06d}" for split, (first, last) in ranges.items())
                   + f" (scene of each index: {INDEX_FILE})")


@main.group()
def addon() -> None:
    """The Blender add-on (a sidebar panel to build, preview and render scenes)."""


@addon.command("build")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("dist"), show_default=True,
              metavar="DIR", help="Folder for the extension zip (created if missing).")
@click.option("--platform", "platforms", multiple=True, metavar="NAME",
              help="Blender platform to bundle wheels for, e.g. windows-x64 (repeatable).  [default: this machine's]")
def addon_build(out_dir, platforms):
    """Build the add-on as a Blender extension zip, and validate it with Blender's own tool.

    Install the zip in Blender: Edit > Preferences > Get Extensions > Install from Disk.
    """
    from generator.extension import build_extension

    with library_errors():
        built = build_extension(out_dir, platforms)
    click.echo(f"extension for {', '.join(built.platforms)}: {built.path} "
               f"({built.path.stat().st_size / 1e6:.1f} MB, wheels: {', '.join(built.wheels)})")


#: Entry-point group through which other packages add commands (a sequence of
#: click commands per entry point; dfd_models declares its train/eval/predict in
#: pyproject.toml), so generator never imports them by name. Each command module
#: imports its heavy libraries (torch) only when a command runs, so the CLI, and
#: the render workers that re-import it, stay light (tests/test_cli_bad_input.py checks).
COMMAND_GROUP = "dfdgen.commands"

for _entry in entry_points(group=COMMAND_GROUP):
    for _command in _entry.load():
        main.add_command(_command)
