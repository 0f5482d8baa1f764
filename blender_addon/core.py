"""What the panel's operators do, without the UI: settings -> recipe -> SceneSpec -> Blender.

Everything comes from the bundled :mod:`generator`, the code the CLI runs:
the recipe is validated by :mod:`generator.recipe.recipe` (so errors read as they
do on the command line), the scene is :func:`generator.draw.scene.draw_scene`
of (recipe, seed, index), it is built by :func:`generator.render.blender.build.build_into`
and rendered by :func:`generator.render.blender.render.render_views`, and samples are
encoded by :func:`generator.dataset.sample.encode_sample`. Hence a panel sample has
the bytes of the CLI's.

Two kinds of scene:

- the *generated* scene: the spec built into the collection :data:`COLLECTION`
  of the user's scene, with the focus sequence keyframed on the timeline, to
  look at; "Generate" replaces it and nothing else;
- a *private* scene per render (:class:`RenderJob`), holding the spec alone, so
  the user's own objects and settings never reach a preview or a sample.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import tempfile
from pathlib import Path

import bpy
import numpy as np

from generator.render.blender.build import build_into, keyframe_sequence
from generator.render.blender.render import RenderedScene, render_count, render_views
from generator.core.errors import BadInput, OutputError, RecipeError
from generator.core.files import output_file, write_atomic
from generator.recipe.recipe import Recipe, asset_places, load_recipe, recipe_from_dict
from generator.dataset.sample import encode_sample
from generator.dataset.format import sample_key, sample_tar
from generator.core.safe_yaml import load_yaml
from generator.core.schema import set_value
from generator.draw.scene import check_scene_index, draw_scene
from generator.scene.spec import SceneSpec

#: Name of the collection the generated scene is built into (Blender may add a suffix).
COLLECTION = "dfdgen"
#: Name of the private scene a render runs in.
RENDER_SCENE = "dfdgen render"
#: Name of the image that shows the preview.
PREVIEW_IMAGE = "dfdgen preview"
#: Timeline frame of the first focus step; step i is at frame FIRST_FRAME + i.
FIRST_FRAME = 1
#: Value of the ``recipe`` setting that means "the file in ``recipe_file``".
FILE = "FILE"
#: Lens fields of the panel, each a [min, max] range of the recipe's ``lens`` section.
LENS_RANGES = ("focal_length_mm", "f_number", "sensor_width_mm")


# Settings -> recipe -> spec


def recipe_source(settings) -> str:
    """The recipe the panel names: a built-in recipe's name or a file's absolute path."""
    if settings.recipe != FILE:
        return settings.recipe
    if not settings.recipe_file:
        raise BadInput("no recipe file chosen (Recipe file)")
    return bpy.path.abspath(settings.recipe_file)


def load_settings(settings) -> Recipe:
    """Read the panel's recipe and set the panel's seed and lens fields from it.

    The recipe's canonical YAML is kept in the settings: the panel works on
    that copy until the recipe is chosen again or reloaded.

    Raises:
        BadInput, RecipeError: the recipe cannot be read or is invalid (the CLI's messages).
    """
    source = recipe_source(settings)
    recipe = load_recipe(source)
    settings.base_recipe = recipe.to_yaml()
    settings.loaded_source = source
    settings.seed = recipe.seed
    settings.lens_model = recipe.lens.model
    for name in LENS_RANGES:
        setattr(settings, name, getattr(recipe.lens, name))
    return recipe


def _number(value: float) -> float:
    """A panel value (float32) as the shortest decimal that reads back as it (2.8, not 2.799999952)."""
    return float(np.format_float_positional(np.float32(value), unique=True))


def panel_fields(settings, data: dict) -> dict[str, object]:
    """The panel's values (key path -> value) of the fields that differ from the recipe ``data``
    (its canonical plain form, :meth:`Recipe.to_dict`).

    Fields the user left alone give none, so an untouched panel is exactly the
    recipe (same sha256). Floats are compared as float32, the precision of
    Blender's float properties.
    """
    lens, out = data["lens"], {}
    if settings.seed != data["seed"]:
        out["seed"] = settings.seed
    if settings.lens_model != lens["model"]:
        out["lens.model"] = settings.lens_model
    for name in LENS_RANGES:
        panel, given = tuple(getattr(settings, name)), lens[name]
        if np.any(np.float32(panel) != np.float32(given if isinstance(given, list) else [given, given])):
            out[f"lens.{name}"] = [_number(panel[0]), _number(panel[1])]
    return out


def current_recipe(settings) -> Recipe:
    """The recipe the panel describes: its recipe (loaded first if another one is chosen) plus its
    fields, validated once, with the errors ``dfdgen render --recipe ... --set ...`` gives.

    Raises:
        BadInput, RecipeError: the recipe or a panel field is invalid.
    """
    if settings.loaded_source != recipe_source(settings) or not settings.base_recipe:
        load_settings(settings)
    data = load_yaml(settings.base_recipe, settings.loaded_source)
    for key, value in panel_fields(settings, data).items():
        set_value(Recipe, data, key, value, RecipeError)
    return recipe_from_dict(data, source=settings.loaded_source, places=asset_places(settings.loaded_source))


def current_spec(settings) -> tuple[Recipe, SceneSpec]:
    """(recipe, scene) of the panel: ``draw_scene(recipe, index)``, as ``dfdgen render`` draws it.

    Raises:
        BadInput: the scene index is not in the recipe; RecipeError: see :func:`current_recipe`.
    """
    recipe = current_recipe(settings)
    check_scene_index(recipe, settings.scene_index)
    return recipe, draw_scene(recipe, settings.scene_index)


@functools.lru_cache(maxsize=4)
def _parse_spec(text: str) -> SceneSpec:
    return SceneSpec.from_dict(json.loads(text))


def generated_spec(settings) -> SceneSpec | None:
    """The spec of the generated scene (kept as JSON in the settings), or None before the first Generate."""
    return _parse_spec(settings.spec_json) if settings.spec_json else None


# The generated scene


def remove_with_dependents(seeds: set[bpy.types.ID]) -> None:
    """Remove ``seeds`` and every datablock that only they use (objects, meshes, materials, actions, ...).

    A datablock that anything else uses too (the user's object, a material the
    user assigned elsewhere) stays; so do datablocks nothing uses.
    """
    users = bpy.data.user_map()
    for datablock, used_by in users.items():
        if isinstance(datablock, bpy.types.Object):
            # A scene lists every object of its view layers among the object's users; what
            # holds an object is its collections (the scene itself only for its master collection).
            used_by -= {u for u in used_by
                        if isinstance(u, bpy.types.Scene) and datablock.name not in u.collection.objects}
    owned = set(seeds)
    grew = True
    while grew:
        grew = False
        for datablock, used_by in users.items():
            if datablock not in owned and used_by and used_by <= owned:
                owned.add(datablock)
                grew = True
    bpy.data.batch_remove(owned)


def clear_generated(scene: bpy.types.Scene, settings) -> None:
    """Remove the generated collection with everything only it holds, and the generated world.

    The scene's references (active camera, world, the settings' pointers) are
    dropped first, so that they do not count as other users.
    """
    collection, world = settings.collection, settings.world
    settings.collection = settings.world = None
    settings.spec_json = ""
    if collection is not None and scene.camera is not None and scene.camera.name in collection.all_objects:
        scene.camera = None
    if world is not None and scene.world == world:
        scene.world = None
    seeds = {collection} if collection is not None else set()
    if world is not None and not bpy.data.user_map(subset=[world])[world]:
        seeds.add(world)
    remove_with_dependents(seeds)


def generate(scene: bpy.types.Scene, settings) -> SceneSpec:
    """Replace the generated scene by the panel's: build it into a fresh :data:`COLLECTION`.

    The scene also gets the spec's render settings, world and camera (active),
    its frame range becomes the focus sequence (step i at frame
    ``FIRST_FRAME + i``, keyframed) and it is put at the first step.
    Errors are raised before anything is changed.
    """
    _, spec = current_spec(settings)
    clear_generated(scene, settings)
    collection = bpy.data.collections.new(COLLECTION)
    scene.collection.children.link(collection)
    built = build_into(scene, collection, spec)
    keyframe_sequence(built, spec, FIRST_FRAME)
    scene.frame_start, scene.frame_end = FIRST_FRAME, FIRST_FRAME + len(spec.frames) - 1
    scene.frame_set(FIRST_FRAME)
    settings.collection, settings.world, settings.spec_json = collection, scene.world, spec.to_json()
    return spec


def focus_step(scene: bpy.types.Scene) -> int:
    """The focus step the timeline is at (its frame minus :data:`FIRST_FRAME`)."""
    return scene.frame_current - FIRST_FRAME


def set_focus_step(scene: bpy.types.Scene, step: int) -> None:
    """Move the timeline to focus step ``step`` (clamped to the generated sequence); the keyframes set the camera."""
    spec = generated_spec(scene.dfdgen)
    if spec is not None:
        scene.frame_set(FIRST_FRAME + min(max(step, 0), len(spec.frames) - 1))


def synced_spec(scene: bpy.types.Scene, settings) -> tuple[Recipe, SceneSpec]:
    """(recipe, spec) of the panel, regenerating the viewport's scene first if the settings changed since."""
    recipe, spec = current_spec(settings)
    if spec.to_json() != settings.spec_json or settings.collection is None:
        step = focus_step(scene)
        generate(scene, settings)
        set_focus_step(scene, step)
    return recipe, spec


# Renders


class RenderJob:
    """Render a spec in a private scene, one Cycles render per :meth:`step`.

    Nothing of the user's file takes part, and :meth:`close` removes the
    private scene and all it holds again. A job that is closed before its last
    step leaves nothing behind (the caller writes output only from :attr:`result`).

    Attributes:
        total: Cycles renders to do; done: renders done; result: the render, after the last step.
    """

    def __init__(self, spec: SceneSpec):
        self.scene = bpy.data.scenes.new(RENDER_SCENE)
        self.scratch = tempfile.TemporaryDirectory(prefix="dfdgen-")
        self.total, self.done, self.result = render_count(spec), 0, None
        try:
            built = build_into(self.scene, self.scene.collection, spec)
        except BaseException:
            self.close()
            raise
        self.steps = render_views(built, spec, Path(self.scratch.name))

    def step(self) -> bool:
        """Do the next render; False when all are done (:attr:`result` is then set)."""
        try:
            self.done = next(self.steps)
            return True
        except StopIteration as stop:
            self.result: RenderedScene = stop.value
            return False

    def close(self) -> None:
        """Remove the private scene, everything built in it, and the scratch folder."""
        if hasattr(self, "steps"):
            self.steps.close()
        world = self.scene.world
        self.scene.world = None
        remove_with_dependents({self.scene, *([world] if world is not None else [])})
        self.scratch.cleanup()


def preview_spec(spec: SceneSpec, step: int, size_px: int, samples: int) -> SceneSpec:
    """``spec`` reduced to focus step ``step``, at most ``size_px`` on its longer side, ``samples`` per pixel.

    The field of view stays (the sensor is fitted to the width), so the preview
    frames what the sample frames.
    """
    render = spec.render
    scale = min(1.0, size_px / max(render.width, render.height))
    small = dataclasses.replace(render, width=max(1, round(render.width * scale)),
                                height=max(1, round(render.height * scale)), samples=samples, aif=False, coc=False)
    return dataclasses.replace(spec, render=small, frames=(spec.frames[step],))


def show_preview(rgb: np.ndarray) -> bpy.types.Image:
    """Put a linear RGB render (float32 [H, W, 3]) into the float image :data:`PREVIEW_IMAGE`."""
    height, width, _ = rgb.shape
    image = bpy.data.images.get(PREVIEW_IMAGE)
    if image is None:
        image = bpy.data.images.new(PREVIEW_IMAGE, width, height, float_buffer=True, alpha=False)
    elif tuple(image.size) != (width, height):
        image.scale(width, height)
    rgba = np.ones((height, width, 4), dtype=np.float32)
    rgba[..., :3] = rgb
    image.pixels.foreach_set(rgba[::-1].ravel())  # Blender's rows go bottom-up
    image.update()
    return image


def sample_path(settings, recipe: Recipe, spec: SceneSpec) -> Path:
    """Where "Render sample" writes: ``SAMPLES/{recipe}-{key}.tar`` (a one-sample shard), checked before rendering.

    Raises:
        BadInput: no folder chosen; OutputError: the folder does not exist, or the path is a folder.
    """
    if not settings.sample_dir:
        raise BadInput("no folder chosen for samples (Samples folder)")
    folder = Path(bpy.path.abspath(settings.sample_dir))
    if not folder.is_dir():
        raise OutputError(f"samples folder {folder} does not exist")
    return output_file(folder / f"{recipe.name}-{sample_key(spec.index)}.tar")


def write_sample(path: Path, recipe: Recipe, spec: SceneSpec, rendered: RenderedScene) -> Path:
    """Encode a rendered scene as the CLI does and write it atomically as a one-sample tar at ``path``."""
    write_atomic(path, sample_tar(encode_sample(spec, rendered, recipe)))
    return path


def save_recipe(settings, path: str) -> Path:
    """Write the panel's recipe as canonical YAML (``dfdgen render --recipe PATH`` reads it back equal).

    Raises:
        OutputError: ``path`` is a folder or its folder is missing; BadInput, RecipeError: see :func:`current_recipe`.
    """
    target = output_file(bpy.path.abspath(path))
    write_atomic(target, current_recipe(settings).to_yaml().encode("utf-8"))
    return target
