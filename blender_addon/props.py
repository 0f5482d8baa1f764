"""The panel's settings, stored per scene as ``scene.dfdgen`` (saved with the .blend file).

Values are not range-checked here: the recipe validator checks them when an
operator runs, so a bad value gets the CLI's message (e.g. a negative seed).
"""

# No `from __future__ import annotations`: Blender reads the property annotations as objects.
import bpy
from bpy.props import (
    BoolProperty,
    EnumProperty,
    FloatProperty,
    FloatVectorProperty,
    IntProperty,
    IntVectorProperty,
    PointerProperty,
    StringProperty,
)

from generator.core.errors import DfdgenError
from generator.core.lens import LENS_MODELS
from generator.recipe.recipe import RGB_FORMATS, builtin_recipes

from . import core

#: Built-in recipes, offered beside "File"; the panel starts on small_obj when there is one.
_BUILTINS = builtin_recipes()
_LENS_HELP = {
    "thin_lens": "The physical thin lens: focus breathing, Cycles set per frame to render its exact blur",
    "blender": "Blender's camera as it is: no breathing (FoD500 style)",
}
_RGB_HELP = {
    "png8": "8-bit sRGB PNG",
    "png16": "16-bit sRGB PNG",
    "exr": "Linear float EXR",
    "jpeg": "8-bit sRGB JPEG, at a quality drawn per scene",
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


def _range(name: str, description: str, precision: int = 3):
    """A [min, max] recipe range (two numbers); ``precision``: decimals shown."""
    return FloatVectorProperty(name=name, description=description + " ([min, max]; drawn per scene)",
                               size=2, precision=precision)


def _switch(name: str, description: str):
    """Whether the recipe has an optional section."""
    return BoolProperty(name=name, description=description + " (off: the recipe leaves the section out)")


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
    use_aperture: _switch("Aperture", "A polygonal or squeezed aperture, rendered by Cycles")
    aperture_blades: IntVectorProperty(name="Blades", size=2, description="Number of blades: 0 (a disc) or 3 "
                                                                          "to 16 ([min, max]; drawn per scene)")
    aperture_rotation_deg: _range("Rotation (deg)", "Rotation of the blades, degrees")
    aperture_ratio: _range("Ratio", "Anamorphic squeeze: the blur's width is divided by it")
    use_shutter: _switch("Shutter", "Motion blur over each frame's exposure, and a rolling shutter")
    shutter_exposure_s: _range("Exposure (s)", "How long each image row collects light, seconds", precision=4)
    shutter_readout_s: _range("Readout (s)", "Rolling shutter: from the top row's start to the bottom row's, "
                                             "seconds (0: a global shutter)", precision=4)
    use_sensor: _switch("Sensor", "The camera's sensor and image pipeline, applied to every frame")
    use_noise: _switch("Noise", "Poisson-Gaussian sensor noise")
    noise_shot_gain: _range("Shot gain", "Shot-noise variance per unit of signal (drawn log-uniformly; "
                                         "the read noise follows from it)", precision=5)
    exposure_ev: _range("Exposure (EV)", "Exposure in stops: radiance times 2^EV")
    exposure_drift_ev: FloatProperty(name="Drift (EV)", precision=3,
                                     description="Auto-exposure drift: standard deviation of each frame's step, "
                                                 "stops (0: locked)")
    white_balance_red: _range("White balance red", "White-balance gain of red, relative to green")
    white_balance_blue: _range("White balance blue", "White-balance gain of blue, relative to green")
    crosstalk: _range("Crosstalk", "The sensor's colour crosstalk (the colour matrix undoes it)")
    tone: _range("Tone", "Strength of the S-shaped tone curve (0: none, 1: smoothstep)")
    vignetting: _range("Vignetting", "Light lost in the image corners (0: none)")
    rgb: EnumProperty(name="Frames", description="How the frames are encoded",
                      items=[(f, f, _RGB_HELP[f]) for f in RGB_FORMATS])
    jpeg_quality: IntVectorProperty(name="JPEG quality", size=2,
                                    description="Pillow's JPEG quality, 1 to 95 ([min, max]; drawn per scene)")
    clean: BoolProperty(name="Clean frames", description="Also store each frame's clean radiance, before the "
                                                         "sensor's steps, as EXR (needs the sensor)")
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
