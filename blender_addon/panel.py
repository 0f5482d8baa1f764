"""The sidebar panel: 3D viewport, region UI (N panel), tab "DFD"."""

from __future__ import annotations

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
        layout.prop(settings, "lens_model")
        for name in core.LENS_RANGES:
            layout.prop(settings, name)
        spec = core.generated_spec(settings)
        if spec is not None:
            lens = spec.lens
            layout.label(text=f"This scene: f {lens.focal_length_m * 1e3:.1f} mm, N {lens.f_number:.2f}, "
                              f"sensor {lens.sensor_width_m * 1e3:.1f} mm")


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


CLASSES = (DFDGEN_PT_main, DFDGEN_PT_lens, DFDGEN_PT_focus, DFDGEN_PT_render)
register, unregister = bpy.utils.register_classes_factory(CLASSES)
