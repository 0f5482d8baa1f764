"""The sidebar panel: 3D viewport, region UI (N panel), tab "DFD"."""

from __future__ import annotations

import math

import bpy

from . import core
from .operators import (
    DFDGEN_OT_generate,
    DFDGEN_OT_load_recipe,
    DFDGEN_OT_render_preview,
    DFDGEN_OT_render_sample,
    DFDGEN_OT_save_recipe,
    DFDGEN_OT_step_seed,
)


class _DfdPanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "DFD"


class DFDGEN_PT_main(_DfdPanel, bpy.types.Panel):
    """Recipe, seed and scene; Generate."""

    bl_label = "dfdgen"

    def draw(self, context):
        layout, settings = self.layout, context.scene.dfdgen
        layout.prop(settings, "recipe")
        if settings.recipe == core.FILE:
            layout.prop(settings, "recipe_file")
        layout.operator(DFDGEN_OT_load_recipe.bl_idname, icon="FILE_REFRESH")
        row = layout.row(align=True)
        row.operator(DFDGEN_OT_step_seed.bl_idname, text="", icon="TRIA_LEFT").step = -1
        row.prop(settings, "seed")
        row.operator(DFDGEN_OT_step_seed.bl_idname, text="", icon="TRIA_RIGHT").step = 1
        layout.prop(settings, "scene_index")
        layout.operator(DFDGEN_OT_generate.bl_idname, icon="SCENE_DATA")
        spec = core.generated_spec(settings)
        if spec is not None:
            layout.label(text=f"Scene {spec.index}, {spec.split}: {len(spec.objects)} objects, "
                              f"{len(spec.lights)} lights")


class DFDGEN_PT_lens(_DfdPanel, bpy.types.Panel):
    """The recipe's lens ranges (editable) and the generated scene's drawn lens."""

    bl_label = "Lens"
    bl_parent_id = "DFDGEN_PT_main"

    def draw(self, context):
        layout, settings = self.layout, context.scene.dfdgen
        if not settings.base_recipe:  # nothing to edit before the recipe's values are in the panel
            layout.label(text="Generate or Reload to load the recipe's lens")
            return
        for name in core.fields_in("lens"):
            layout.prop(settings, name)
        spec = core.generated_spec(settings)
        if spec is not None:
            lens = spec.lens
            layout.label(text=f"This scene: f {lens.focal_length_m * 1e3:.1f} mm, N {lens.f_number:.2f}, "
                              f"sensor {lens.sensor_width_m * 1e3:.1f} mm")


class _RecipePanel(_DfdPanel):
    """Settings of the recipe, shown once its values are in the panel: before, there is nothing to edit."""

    bl_parent_id = "DFDGEN_PT_main"

    @classmethod
    def poll(cls, context):
        return bool(context.scene.dfdgen.base_recipe)


class _SectionPanel(_RecipePanel):
    """An optional section of the recipe, switched on and off in the header (collapsed at first)."""

    bl_options = {"DEFAULT_CLOSED"}
    #: The switch (a setting of :data:`core.SWITCHES`) and the recipe section whose fields it draws.
    switch = section = ""

    def draw_header(self, context):
        self.layout.prop(context.scene.dfdgen, self.switch, text="")

    def draw(self, context):
        layout, settings = self.layout, context.scene.dfdgen
        layout.active = getattr(settings, self.switch)
        for name in core.fields_in(self.section):
            layout.prop(settings, name)
        for switch, inner in core.switches_in(self.section).items():
            box = layout.box()
            box.active = getattr(settings, switch)
            box.prop(settings, switch)
            for name in core.fields_in(inner):
                box.prop(settings, name)
        spec = core.generated_spec(settings)
        if spec is not None:
            layout.label(text="This scene: " + self.drawn(spec))

    def drawn(self, spec) -> str:
        """What the generated scene drew from the section."""
        raise NotImplementedError


class DFDGEN_PT_aperture(_SectionPanel, bpy.types.Panel):
    """The aperture's shape: blades, their rotation, the anamorphic ratio."""

    bl_label = "Aperture"
    bl_parent_id = "DFDGEN_PT_lens"
    switch, section = "use_aperture", "lens.aperture"

    def drawn(self, spec) -> str:
        aperture = spec.lens.aperture
        if aperture is None:
            return "a disc"
        shape = f"{aperture.blades} blades" if aperture.blades else "a disc"
        return f"{shape}, rotation {math.degrees(aperture.rotation_rad):.1f} deg, ratio {aperture.ratio:.2f}"


class DFDGEN_PT_shutter(_SectionPanel, bpy.types.Panel):
    """Exposure time and rolling readout; only for a recipe with motion (a still scene has nothing to blur)."""

    bl_label = "Shutter"
    switch, section = "use_shutter", "shutter"

    @classmethod
    def poll(cls, context):
        return core.has_motion(context.scene.dfdgen)

    def drawn(self, spec) -> str:
        shutter = spec.shutter
        if shutter is None:
            return "every frame an instant"
        return f"exposure {shutter.exposure_s:.4g} s, readout {shutter.rolling_readout_s:.4g} s"


class DFDGEN_PT_sensor(_SectionPanel, bpy.types.Panel):
    """The camera's sensor and image pipeline: exposure, white balance, crosstalk, tone, vignetting, noise."""

    bl_label = "Sensor"
    switch, section = "use_sensor", "sensor"

    def drawn(self, spec) -> str:
        sensor = spec.sensor
        if sensor is None:
            return "an ideal sensor"
        return (f"EV {math.log2(sensor.exposure[0]):+.2f}, shot gain {sensor.shot_gain:.3g}, "
                f"read variance {sensor.read_variance:.3g}")


class DFDGEN_PT_output(_RecipePanel, bpy.types.Panel):
    """How the frames are encoded, and whether the clean frames are kept."""

    bl_label = "Output"

    def draw(self, context):
        layout, settings = self.layout, context.scene.dfdgen
        layout.prop(settings, "rgb")
        if settings.rgb == "jpeg":  # the recipe has a JPEG quality only with JPEG frames
            layout.prop(settings, "jpeg_quality")
        row = layout.row()
        row.active = settings.use_sensor  # clean frames differ from the frames only after a sensor
        row.prop(settings, "clean")


class DFDGEN_PT_focus(_DfdPanel, bpy.types.Panel):
    """The generated scene's focus distances, and the step shown."""

    bl_label = "Focus ramp"
    bl_parent_id = "DFDGEN_PT_main"

    def draw(self, context):
        layout, settings = self.layout, context.scene.dfdgen
        spec = core.generated_spec(settings)
        if spec is None:
            layout.label(text="Generate a scene to see its focus ramp")
            return
        layout.prop(settings, "focus_step")
        column = layout.column(align=True)
        current = core.focus_step(context.scene)
        for frame in spec.frames:
            icon = "RIGHTARROW" if frame.index == current else "BLANK1"
            column.label(text=f"{frame.index}: ramp {frame.ramp}, {frame.focus_distance_m:.3f} m", icon=icon)


class DFDGEN_PT_render(_DfdPanel, bpy.types.Panel):
    """Preview, sample and recipe output."""

    bl_label = "Render"
    bl_parent_id = "DFDGEN_PT_main"

    def draw(self, context):
        layout, settings = self.layout, context.scene.dfdgen
        layout.prop(settings, "preview_size")
        layout.prop(settings, "preview_samples")
        layout.operator(DFDGEN_OT_render_preview.bl_idname, icon="RENDER_STILL")
        layout.prop(settings, "sample_dir")
        layout.operator(DFDGEN_OT_render_sample.bl_idname, icon="RENDER_RESULT")
        layout.operator(DFDGEN_OT_save_recipe.bl_idname, icon="FILE_TICK")


#: Registered in this order, which is the order Blender shows them in.
CLASSES = (DFDGEN_PT_main, DFDGEN_PT_lens, DFDGEN_PT_aperture, DFDGEN_PT_shutter, DFDGEN_PT_sensor,
           DFDGEN_PT_output, DFDGEN_PT_focus, DFDGEN_PT_render)
register, unregister = bpy.utils.register_classes_factory(CLASSES)
