"""The panel's settings, stored per scene as ``scene.dfdgen`` (saved with the .blend file).

Values are not range-checked here: the recipe validator checks them when an
operator runs, so a bad value gets the CLI's message (e.g. a negative seed).
"""

# No `from __future__ import annotations`: Blender reads the property annotations as objects.
import bpy
from bpy.props import EnumProperty, FloatVectorProperty, IntProperty, PointerProperty, StringProperty

from generator.core.errors import DfdgenError
from generator.core.lens import LENS_MODELS
from generator.recipe.recipe import builtin_recipes

from . import core

#: Built-in recipes, offered beside "File"; the panel starts on small_obj when there is one.
_BUILTINS = builtin_recipes()
_LENS_HELP = {
    "thin_lens": "The physical thin lens: focus breathing, Cycles set per frame to render its exact blur",
    "blender": "Blender's camera as it is: no breathing (FoD500 style)",
}


def _reload(settings, _context) -> None:
    """A newly chosen recipe fills the panel's fields at once, so edits made next apply to it."""
    try:
        core.load_settings(settings)
    except DfdgenError:
        # An update callback cannot report; the next operator loads again and reports the error.
        pass


def _get_step(settings) -> int:
    return core.focus_step(settings.id_data)


def _set_step(settings, value: int) -> None:
    core.set_focus_step(settings.id_data, value)


def _range(name: str, description: str):
    """A [min, max] recipe range (two numbers) of the lens section."""
    return FloatVectorProperty(name=name, description=description + " ([min, max]; drawn per scene)",
                               size=2, precision=3)


class DFDGEN_PG_settings(bpy.types.PropertyGroup):
    """Recipe, scene and render settings of the dfdgen panel, and what was generated."""

    recipe: EnumProperty(
        name="Recipe",
        description="A built-in recipe, or a recipe YAML file",
        items=[*((name, name, f"Built-in recipe {name}") for name in _BUILTINS),
               (core.FILE, "File", "A recipe YAML file")],
        default="small_obj" if "small_obj" in _BUILTINS else core.FILE,
        update=_reload,
    )
    recipe_file: StringProperty(name="Recipe file", description="Recipe YAML file", subtype="FILE_PATH",
                                update=_reload)
    seed: IntProperty(name="Seed", description="Recipe seed: scene i depends only on (seed, i)", soft_min=0)
    scene_index: IntProperty(name="Scene", description="Scene index i in the recipe (0 to count - 1)", soft_min=0)
    lens_model: EnumProperty(name="Model", description="How Blender's camera renders the lens",
                             items=[(m, m, _LENS_HELP[m]) for m in LENS_MODELS])
    focal_length_mm: _range("Focal length (mm)", "Focal length f, millimetres")
    f_number: _range("F-number", "F-number N")
    sensor_width_mm: _range("Sensor width (mm)", "Sensor width, millimetres")
    focus_step: IntProperty(name="Focus step", description="Focus step shown (the timeline is at frame 1 + step)",
                            get=_get_step, set=_set_step, min=0)
    preview_size: IntProperty(name="Preview size (px)", description="Longer side of the preview, pixels",
                              default=128, min=8, max=4096)
    preview_samples: IntProperty(name="Preview samples", description="Cycles samples per pixel of the preview",
                                 default=16, min=1, max=4096)
    sample_dir: StringProperty(name="Samples folder", description="Folder that Render sample writes to",
                               subtype="DIR_PATH")
    # What the panel works on; not shown.
    loaded_source: StringProperty(description="Built-in name or file path of the loaded recipe")
    base_recipe: StringProperty(description="Canonical YAML of the loaded recipe")
    spec_json: StringProperty(description="SceneSpec (JSON) of the generated scene")
    collection: PointerProperty(type=bpy.types.Collection, description="Collection of the generated scene")
    world: PointerProperty(type=bpy.types.World, description="World of the generated scene")


_register, _unregister = bpy.utils.register_classes_factory((DFDGEN_PG_settings,))


def register() -> None:
    _register()
    bpy.types.Scene.dfdgen = PointerProperty(type=DFDGEN_PG_settings)


def unregister() -> None:
    del bpy.types.Scene.dfdgen
    _unregister()
