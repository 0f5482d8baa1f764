"""Drive the installed dfdgen extension inside Blender (bpy), for tests/test_addon.py.

Usage: ``python addon_session.py CONFIG.json``; writes what it saw as JSON to
``config["result"]``; the test makes the comparisons with the CLI.

Runs in its own process, because installing an extension changes Blender's
user folders and Python's import state for good: ``BLENDER_USER_RESOURCES``
(set by the caller) points Blender's user folders (preferences, extension
repositories, the extensions' site-packages) into a temporary folder, and the
development environment leaves the import path before the extension is
installed, so the add-on can only import what its zip bundles, plus bpy and
numpy, which Blender ships.
"""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import bpy
import numpy  # noqa: F401  (Blender ships numpy: imported before the environment's site-packages leave)

# Drop the environment's site-packages (not bpy's own script folders inside it), the
# folders PYTHONPATH adds (a checkout run in place of the installed one) and the editable
# install's finder (both would find the repository's generator).
_PYTHONPATH = {p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p}
sys.path[:] = [p for p in sys.path if Path(p).name != "site-packages" and p not in _PYTHONPATH]
sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("__editable__")]

import addon_utils  # noqa: E402  (Blender's own module, importable after bpy)

CONFIG = json.loads(Path(sys.argv[1]).read_text())
REPO = "dfdgen_test"
OPERATORS = ("load_recipe", "generate", "step_seed", "render_preview", "render_sample", "save_recipe")
result: dict = {}


def handler_counts() -> dict[str, int]:
    """Number of functions in each of Blender's handler lists."""
    return {name: len(getattr(bpy.app.handlers, name)) for name in dir(bpy.app.handlers)
            if isinstance(getattr(bpy.app.handlers, name), list)}


def registered() -> dict:
    """What the add-on registers, as seen from Blender."""
    return {
        "classes": sorted(name for name in dir(bpy.types) if name.startswith("DFDGEN_")),
        "scene_property": hasattr(bpy.types.Scene, "dfdgen"),
        "operators": sorted(name for name in OPERATORS if name in dir(bpy.ops.dfdgen)),
    }


def data_counts() -> dict[str, int]:
    """Datablocks in the file, per kind: a leak shows as a count that grows."""
    kinds = ("objects", "meshes", "materials", "lights", "cameras", "worlds", "collections", "actions",
             "scenes", "images")
    return {kind: len(getattr(bpy.data, kind)) for kind in kinds}


def run(operator: str, *how: str, **kwargs) -> dict:
    """Call ``bpy.ops.dfdgen.<operator>`` (``how``: e.g. 'INVOKE_DEFAULT', as a button does);
    its result, or the error it reported (as the UI shows it)."""
    try:
        return {"result": sorted(getattr(bpy.ops.dfdgen, operator)(*how, **kwargs))}
    except RuntimeError as exc:  # bpy.ops turns an ERROR report into RuntimeError("Error: <message>")
        return {"error": str(exc).removeprefix("Error: ").strip()}


class FakeLayout:
    """Stands in for ``UILayout`` in a panel's ``draw``: records what is shown and offered."""

    def __init__(self, shown: list, offered: list):
        self.shown, self.offered = shown, offered

    def prop(self, data, name, **_kwargs):
        self.shown.append((data, name))

    def operator(self, idname, **_kwargs):
        properties = types.SimpleNamespace()
        self.offered.append((idname, properties))
        return properties

    def label(self, **_kwargs):
        pass

    def row(self, **_kwargs):
        return self

    column = box = row


class FakePanel:
    """Stands in for a panel in its ``draw``: ``layout``, and the panel class's attributes and methods."""

    def __init__(self, panel: type, layout: FakeLayout):
        self.panel, self.layout = panel, layout

    def __getattr__(self, name):
        value = getattr(self.panel, name)
        return types.MethodType(value, self) if isinstance(value, types.FunctionType) else value


def check_draw() -> dict:
    """Draw every dfdgen panel; which shown properties and offered operators (and their arguments) are missing."""
    shown, offered = [], []
    context = types.SimpleNamespace(scene=bpy.context.scene)
    for panel in (getattr(bpy.types, name) for name in registered()["classes"] if "_PT_" in name):
        fake = FakePanel(panel, FakeLayout(shown, offered))
        if hasattr(panel, "draw_header"):  # a section's switch
            fake.draw_header(context)
        fake.draw(context)
    missing_props = [name for data, name in shown if name not in data.bl_rna.properties]
    missing_ops = []
    for idname, properties in offered:
        module, name = idname.split(".")
        try:
            rna = getattr(getattr(bpy.ops, module), name).get_rna_type()
        except KeyError:
            missing_ops.append(idname)
            continue
        missing_ops += [f"{idname}.{arg}" for arg in vars(properties) if arg not in rna.properties]
    return {"props": sorted({name for _, name in shown}), "operators": sorted({i for i, _ in offered}),
            "missing_props": missing_props, "missing_operators": missing_ops}


def panel_value(name: str):
    """A panel setting as JSON (a range as a list)."""
    value = getattr(bpy.context.scene.dfdgen, name)
    return value if isinstance(value, (bool, int, float, str)) else list(value)


def camera_values(scene) -> dict:
    data = scene.camera.data
    return {"frame": scene.frame_current, "lens_mm": data.lens, "fstop": data.dof.aperture_fstop,
            "focus_distance_m": data.dof.focus_distance, "use_dof": data.dof.use_dof}


# Install
handlers_before = handler_counts()
bpy.ops.preferences.extension_repo_add(name=REPO, type="LOCAL", use_custom_directory=True,
                                       custom_directory=CONFIG["repo_dir"])
repo = next(r for r in bpy.context.preferences.extensions.repos if r.name == REPO)
bpy.ops.extensions.package_install_files(filepath=CONFIG["zip"], repo=repo.module, enable_on_install=True)
module = f"bl_ext.{repo.module}.dfdgen"
result["enabled"] = module in bpy.context.preferences.addons
import generator  # noqa: E402  (now from the extension's wheel)
import OpenEXR  # noqa: E402
import PIL  # noqa: E402
import yaml  # noqa: E402

result["imported_from"] = {m.__name__: m.__file__ for m in (generator, yaml, PIL, OpenEXR)}
result["registered"] = registered()

# A user's scene: their own object and material, which Generate must leave alone
scene = bpy.context.scene
user_mesh = bpy.data.meshes.new("user_mesh")
user_mesh.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [], [(0, 1, 2)])
user_mesh.materials.append(bpy.data.materials.new("user_material"))
user_object = bpy.data.objects.new("user_object", user_mesh)
scene.collection.objects.link(user_object)

settings = scene.dfdgen
result["draw_before_generate"] = check_draw()
settings.recipe = "FILE"
settings.recipe_file = CONFIG["recipe"]
settings.scene_index = CONFIG["index"]
result["loaded_seed"] = settings.seed

# Operators
result["generate"] = run("generate")
result["generated_objects"] = sorted(o.name for o in settings.collection.all_objects)
counts = data_counts()
result["next_seed"] = run("step_seed", step=1)
result["seed_after_next"] = settings.seed
result["previous_seed"] = run("step_seed", step=-1)
result["seed_after_previous"] = settings.seed
result["previous_at_zero"] = run("step_seed", step=-1)
result["seed_after_refused"] = settings.seed
result["leaked"] = {k: v - counts[k] for k, v in data_counts().items() if v != counts[k]}
run("step_seed", step=1)
settings.f_number = CONFIG["f_number"]
result["generate_changed"] = run("generate")
result["user_survives"] = {
    "object": "user_object" in bpy.data.objects and user_object.name in scene.collection.objects,
    "mesh": user_object.data == user_mesh, "material": user_mesh.materials[0].name == "user_material",
}
result["spec_json"] = settings.spec_json
result["frame_range"] = [scene.frame_start, scene.frame_end]
result["steps"] = []
for step in range(len(json.loads(settings.spec_json)["frames"])):
    settings.focus_step = step
    result["steps"].append({"step": settings.focus_step, **camera_values(scene)})
result["step_clamped"] = (setattr(settings, "focus_step", 99), settings.focus_step)[1]
# Scrubbing the timeline (not the panel) moves the camera through the keyframed ramp too.
scene.frame_set(1)
result["scrubbed"] = camera_values(scene)

settings.focus_step = 1
settings.preview_size, settings.preview_samples = CONFIG["preview_size"], 2
result["render_preview"] = run("render_preview")
# As a button calls it: invoke, which in background mode (no window to run a modal loop in) renders at once.
result["render_preview_invoked"] = run("render_preview", "INVOKE_DEFAULT")
image = bpy.data.images["dfdgen preview"]
pixels = numpy.array(image.pixels[:], dtype=numpy.float32).reshape(image.size[1], image.size[0], 4)
result["preview"] = {"size": list(image.size), "rgb_max": float(pixels[..., :3].max()),
                     "rgb_std": float(pixels[..., :3].std())}

settings.sample_dir = CONFIG["sample_dir"]
counts = data_counts()
result["render_sample"] = run("render_sample")
result["render_leaked"] = {k: v - counts[k] for k, v in data_counts().items() if v != counts[k]}
result["samples_written"] = sorted(p.name for p in Path(CONFIG["sample_dir"]).iterdir())
result["save_recipe"] = run("save_recipe", filepath=CONFIG["saved_recipe"])

# A render job closed before its last step: nothing written, nothing left in the file.
core = sys.modules[f"{module}.core"]
counts = data_counts()
job = core.RenderJob(generator.scene.spec.SceneSpec.from_dict(json.loads(settings.spec_json)))
job.step()
job.close()
result["cancelled_job"] = {"done": job.done, "total": job.total, "result": job.result is not None,
                           "leaked": {k: v - counts[k] for k, v in data_counts().items() if v != counts[k]}}

# Bad input: the CLI's messages, nothing changed
errors = {}
spec_before = settings.spec_json
settings.scene_index = 99
errors["scene_index"] = run("generate")
settings.scene_index = CONFIG["index"]
settings.f_number = (3.0, 1.0)
errors["f_number"] = run("generate")
settings.f_number = CONFIG["f_number"]
settings.sample_dir = str(Path(CONFIG["sample_dir"]) / "missing")
errors["sample_dir"] = run("render_sample")
settings.sample_dir = CONFIG["sample_dir"]
errors["save_into_missing_folder"] = run("save_recipe", filepath=str(Path(CONFIG["sample_dir"]) / "no" / "r.yaml"))
settings.recipe_file = CONFIG["missing_recipe"]
errors["recipe_file"] = run("generate")
settings.recipe_file = CONFIG["recipe"]
result["errors"] = errors
result["unchanged_by_errors"] = settings.spec_json == spec_before
result["samples_after_errors"] = sorted(p.name for p in Path(CONFIG["sample_dir"]).iterdir())

result["draw_after_generate"] = check_draw()

# A dynamic recipe: scrubbing the timeline plays the motion too
settings.recipe_file, settings.scene_index = CONFIG["dynamic_recipe"], 0
result["generate_dynamic"] = run("generate")
result["dynamic_spec"] = settings.spec_json
result["dynamic_steps"] = []
for step in range(len(json.loads(settings.spec_json)["frames"])):
    scene.frame_set(1 + step)
    result["dynamic_steps"].append({
        "camera": [list(scene.camera.location), list(scene.camera.rotation_euler)],
        "objects": {o.name: [list(o.location), list(o.rotation_euler)] for o in settings.collection.objects
                    if o.type == "MESH"},
        **camera_values(scene),
    })

# Untouched, a recipe without the camera's sections saves with its bytes
result["save_dynamic"] = run("save_recipe", filepath=CONFIG["dynamic_saved"])

# The camera's settings (issue 29): loaded, saved untouched, edited, refused, switched off, switched on
camera = CONFIG["camera"]
settings.recipe_file = camera["recipe"]
result["camera_load"] = run("load_recipe")
result["camera_loaded"] = {name: panel_value(name) for name in camera["loaded"]}
result["camera_save_untouched"] = run("save_recipe", filepath=camera["untouched"])
for name, value in camera["edits"].items():
    setattr(settings, name, value)
result["camera_generate"] = run("generate")
result["camera_spec"] = settings.spec_json
result["camera_save"] = run("save_recipe", filepath=camera["saved"])
result["camera_draw"] = check_draw()
settings.aperture_blades = (2, 2)
result["camera_blades_2"] = run("generate")
result["camera_unchanged_by_error"] = settings.spec_json == result["camera_spec"]
settings.aperture_blades = camera["edits"]["aperture_blades"]
settings.use_noise = False
result["camera_save_no_noise"] = run("save_recipe", filepath=camera["no_noise"])
settings.use_aperture = settings.use_shutter = settings.use_sensor = settings.clean = False
settings.rgb = "png8"
result["camera_save_off"] = run("save_recipe", filepath=camera["off"])
# The tiny recipe has none of the sections: switched on, they start from the recipe's defaults
settings.recipe_file = CONFIG["recipe"]
run("load_recipe")
result["tiny_switches"] = {name: panel_value(name) for name in ("use_aperture", "use_shutter", "use_sensor",
                                                                "use_noise", "rgb", "clean")}
settings.use_aperture, settings.aperture_blades, settings.use_sensor = True, (6, 6), True
settings.rgb = "jpeg"
result["tiny_save_on"] = run("save_recipe", filepath=camera["on"])

# Unregister, register again
addon_utils.disable(module, default_set=True)
result["after_unregister"] = {**registered(), "handlers_unchanged": handler_counts() == handlers_before}
addon_utils.enable(module, default_set=True)
result["after_register_again"] = registered()
result["generate_after_reregister"] = run("generate")

Path(CONFIG["result"]).write_text(json.dumps(result, indent=1))
