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
from generator.draw.sensor import DEFAULT_JPEG_QUALITY
from generator.recipe.recipe import (
    ApertureRecipe,
    IntRange,
    NoiseRecipe,
    Range,
    Recipe,
    SensorRecipe,
    ShutterRecipe,
    asset_places,
    load_recipe,
    recipe_from_dict,
)
from generator.dataset.sample import encode_sample
from generator.dataset.format import sample_key, sample_tar
from generator.core.safe_yaml import load_yaml
from generator.core.schema import set_value, to_plain
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
#: The recipe fields the panel edits: setting -> the field's dotted key, in the recipe's order.
#: A setting of two numbers is a [min, max] range.
FIELDS = {
    "seed": "seed",
    "lens_model": "lens.model",
    "focal_length_mm": "lens.focal_length_mm",
    "f_number": "lens.f_number",
    "sensor_width_mm": "lens.sensor_width_mm",
    "aperture_blades": "lens.aperture.blades",
    "aperture_rotation_deg": "lens.aperture.rotation_deg",
    "aperture_ratio": "lens.aperture.ratio",
    "shutter_exposure_s": "shutter.exposure_s",
    "shutter_readout_s": "shutter.rolling_readout_s",
    "noise_shot_gain": "sensor.noise.shot_gain",
    "exposure_ev": "sensor.exposure.ev",
    "exposure_drift_ev": "sensor.exposure.drift_ev",
    "white_balance_red": "sensor.white_balance.red",
    "white_balance_blue": "sensor.white_balance.blue",
    "crosstalk": "sensor.crosstalk",
    "tone": "sensor.tone",
    "vignetting": "sensor.vignetting",
    "rgb": "outputs.rgb",
    "jpeg_quality": "outputs.jpeg_quality",
    "clean": "outputs.clean",
}
#: The optional sections the panel switches on and off: setting -> section, outer sections first.
#: A section switched off is left out of the recipe, as the recipe leaves it out when it has none.
SWITCHES = {
    "use_aperture": "lens.aperture",
    "use_shutter": "shutter",
    "use_sensor": "sensor",
    "use_noise": "sensor.noise",
}


# Settings -> recipe -> spec


def recipe_source(settings) -> str:
    """The recipe the panel names: a built-in recipe's name or a file's absolute path."""
    if settings.recipe != FILE:
        return settings.recipe
    if not settings.recipe_file:
        raise BadInput("no recipe file chosen (Recipe file)")
    return bpy.path.abspath(settings.recipe_file)


def load_settings(settings) -> Recipe:
    """Read the panel's recipe and set the panel's fields (:data:`FIELDS`) and switches
    (:data:`SWITCHES`) from it.

    The recipe's canonical YAML is kept in the settings: the panel works on
    that copy until the recipe is chosen again or reloaded.

    Raises:
        BadInput, RecipeError: the recipe cannot be read or is invalid (the CLI's messages).
    """
    source = recipe_source(settings)
    recipe = load_recipe(source)
    settings.base_recipe = recipe.to_yaml()
    settings.loaded_source = source
    data = recipe.to_dict()
    left_out = _left_out(data)
    for name, key in FIELDS.items():
        value = _given(data, key, left_out)
        if value is None:  # a shutter's values without motion: nothing the recipe could use
            settings.property_unset(name)
        elif _is_range(_rna(settings, name)) and not isinstance(value, list):
            setattr(settings, name, [value, value])
        else:
            setattr(settings, name, value)
    for name, section in SWITCHES.items():
        setattr(settings, name, _given(data, section) is not None)
    return recipe


def _within(key: str, section: str) -> bool:
    return key == section or key.startswith(section + ".")


def _given(data: dict, key: str, left_out: dict[str, object] | None = None) -> object:
    """The value of the dotted ``key`` in plain recipe ``data``; where a part on its way is left
    out, the part's value in ``left_out`` (None when it has none there)."""
    node, parts = data, key.split(".")
    for depth, part in enumerate(parts):
        node = node[part] if part in node else (left_out or {}).get(".".join(parts[: depth + 1]))
        if node is None:
            return None
    return node


def _left_out(data: dict) -> dict[str, object]:
    """What the panel shows for the optional parts that plain recipe ``data`` leaves out.

    For the JPEG quality and the clean frames, what the recipe means without them. For a
    section, the values it starts from when switched on: the recipe's defaults; a disc for
    the aperture's blades, so that switching it on changes nothing until a value is edited;
    half the frame interval for the shutter's exposure (film's 180-degree shutter), which
    needs the recipe's motion to say what a frame interval is.
    """
    parts: dict[str, object] = {
        "lens.aperture": to_plain(ApertureRecipe(blades=IntRange(0, 0))),
        "sensor": to_plain(SensorRecipe()),
        "sensor.noise": to_plain(NoiseRecipe()),
        "outputs.jpeg_quality": to_plain(DEFAULT_JPEG_QUALITY),
        "outputs.clean": False,
    }
    if "motion" in data:
        half_frame_s = 0.5 / data["motion"]["fps"]
        parts["shutter"] = to_plain(ShutterRecipe(exposure_s=Range(half_frame_s, half_frame_s)))
    return parts


def _rna(settings, name: str) -> bpy.types.Property:
    return settings.bl_rna.properties[name]


def _is_range(rna: bpy.types.Property) -> bool:
    """Whether a setting holds a [min, max] range (two numbers; enum and bool settings have no ``is_array``)."""
    return getattr(rna, "is_array", False)


def switches_in(section: str) -> dict[str, str]:
    """The switches (setting -> section) of the optional sections within the recipe's ``section``."""
    return {switch: inner for switch, inner in SWITCHES.items() if inner != section and _within(inner, section)}


def fields_in(section: str) -> tuple[str, ...]:
    """The panel's settings of the recipe's ``section``, less those of the switched sections
    within it (each drawn under its own switch)."""
    inner = switches_in(section).values()
    return tuple(name for name, key in FIELDS.items()
                 if _within(key, section) and not any(_within(key, s) for s in inner))


def has_motion(settings) -> bool:
    """Whether the loaded recipe has a ``motion`` section (a shutter has nothing to blur without one)."""
    return "motion" in _top_keys(settings.base_recipe)


@functools.lru_cache(maxsize=4)
def _top_keys(base_recipe: str) -> frozenset[str]:
    return frozenset(load_yaml(base_recipe, "the loaded recipe")) if base_recipe else frozenset()


def _number(value: float) -> float:
    """A panel value (float32) as the shortest decimal that reads back as it (2.8, not 2.799999952)."""
    return float(np.format_float_positional(np.float32(value), unique=True))


def panel_fields(settings, data: dict) -> dict[str, object]:
    """The panel's values (key path -> value) of the fields that differ from the recipe ``data``
    (its canonical plain form, :meth:`Recipe.to_dict`); a section or JPEG quality the panel
    leaves out but ``data`` has gets None (left out).

    Fields the user left alone give none, so an untouched panel is exactly the
    recipe (same sha256). Floats are compared as float32, the precision of
    Blender's float properties. A section switched on that ``data`` lacks gets all
    its fields (some, e.g. the aperture's blades, have no default).
    """
    out: dict[str, object] = {}
    for name, section in SWITCHES.items():
        # Outer sections first: a section within one already left out goes with it.
        if not getattr(settings, name) and _given(data, section) is not None \
                and not any(_within(section, gone) for gone in out):
            out[section] = None
    jpeg = settings.rgb == "jpeg"
    if not jpeg and "jpeg_quality" in data["outputs"]:  # the validator refuses a quality without JPEG
        out["outputs.jpeg_quality"] = None
    left_out = _left_out(data)
    for name, key in FIELDS.items():
        switched = [(switch, s) for switch, s in SWITCHES.items() if _within(key, s)]
        if not all(getattr(settings, switch) for switch, _ in switched) or (key == "outputs.jpeg_quality" and not jpeg):
            continue
        rna, panel = _rna(settings, name), getattr(settings, name)
        panel = list(panel) if _is_range(rna) else panel
        if any(_given(data, s) is None for _, s in switched) or _differs(rna, panel, _given(data, key, left_out)):
            out[key] = [_written(rna, v) for v in panel] if _is_range(rna) else _written(rna, panel)
    return out


def _differs(rna: bpy.types.Property, panel: object, given: object) -> bool:
    if _is_range(rna) and not isinstance(given, list):
        given = [given, given]
    if rna.type == "FLOAT":
        return bool(np.any(np.float32(panel) != np.float32(given)))
    return panel != given


def _written(rna: bpy.types.Property, value: object) -> object:
    return _number(value) if rna.type == "FLOAT" else value


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
