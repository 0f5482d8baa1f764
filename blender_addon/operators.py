"""The panel's operators: each calls :mod:`.core` and reports a library error in Blender's UI.

A :class:`~generator.core.errors.DfdgenError` becomes an error report carrying the
CLI's message (a script calling the operator gets it as ``RuntimeError``),
never a traceback. Renders run as modal operators from the UI: one Cycles
render per timer event, progress in the status bar, Esc cancels (and nothing
is written); called from a script (or without a window), they run to the end.
"""

# No `from __future__ import annotations`: Blender reads the property annotations as objects.
import bpy
from bpy.props import IntProperty, StringProperty
from bpy_extras.io_utils import ExportHelper

from generator.core.errors import DfdgenError
from generator.dataset.format import sample_key

from . import core


class _Reporting:
    """``execute`` runs :meth:`run` and reports its message, or its library error as an error."""

    def execute(self, context):
        try:
            message = self.run(context, context.scene.dfdgen)
        except DfdgenError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, message)
        return {"FINISHED"}

    def run(self, context, settings) -> str:
        """Do the work and return a one-line message for the user."""
        raise NotImplementedError


def _describe(spec) -> str:
    return f"scene {spec.index} (seed {spec.seed}): {len(spec.objects)} objects, {len(spec.frames)} focus steps"


class DFDGEN_OT_load_recipe(_Reporting, bpy.types.Operator):
    bl_idname = "dfdgen.load_recipe"
    bl_label = "Reload recipe"
    bl_description = "Read the recipe again and set the panel's settings from it"
    bl_options = {"REGISTER", "UNDO"}

    def run(self, context, settings) -> str:
        return f"loaded recipe {core.load_settings(settings).name}"


class DFDGEN_OT_generate(_Reporting, bpy.types.Operator):
    bl_idname = "dfdgen.generate"
    bl_label = "Generate scene"
    bl_description = "Replace the generated scene (and nothing else) by the panel's (recipe, seed, scene)"
    bl_options = {"REGISTER", "UNDO"}

    def run(self, context, settings) -> str:
        return "generated " + _describe(core.generate(context.scene, settings))


class DFDGEN_OT_step_seed(_Reporting, bpy.types.Operator):
    bl_idname = "dfdgen.step_seed"
    bl_label = "Next seed"
    bl_options = {"REGISTER", "UNDO"}

    step: IntProperty(name="Step", description="Added to the seed (-1: the previous seed)", default=1)

    @classmethod
    def description(cls, _context, properties) -> str:
        which = "next" if properties.step >= 0 else "previous"
        return f"Generate the scene of the {which} recipe seed"

    def run(self, context, settings) -> str:
        old = settings.seed
        settings.seed = old + self.step
        try:
            spec = core.generate(context.scene, settings)
        except DfdgenError:
            settings.seed = old  # the panel keeps a seed the recipe accepts
            raise
        return "generated " + _describe(spec)


class _Rendering(_Reporting):
    """Runs a :class:`core.RenderJob` that :meth:`start` makes; :meth:`finish` uses its result."""

    def start(self, context, settings) -> core.RenderJob:
        """Check the input and make the job (raises DfdgenError before any render)."""
        raise NotImplementedError

    def finish(self, context, job: core.RenderJob) -> str:
        """Use ``job.result``; return the message for the user."""
        raise NotImplementedError

    def run(self, context, settings) -> str:
        job = self.start(context, settings)
        try:
            while job.step():
                pass
            return self.finish(context, job)
        finally:
            job.close()

    def invoke(self, context, _event):
        if context.window is None:  # no event loop to return to (background mode): run to the end
            return self.execute(context)
        try:
            self._job = self.start(context, context.scene.dfdgen)
        except DfdgenError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        manager = context.window_manager
        self._timer = manager.event_timer_add(0.01, window=context.window)
        manager.modal_handler_add(self)
        manager.progress_begin(0, self._job.total)
        self._show_progress(context)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC" and event.value == "PRESS":
            self._stop(context)
            self.report({"WARNING"}, f"{self.bl_label} cancelled; nothing written")
            return {"CANCELLED"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}  # the UI stays usable between renders
        try:
            if self._job.step():
                self._show_progress(context)
                return {"RUNNING_MODAL"}
            message = self.finish(context, self._job)
        except DfdgenError as exc:
            self._stop(context)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        except BaseException:
            self._stop(context)  # a failed render must not leave the timer or the private scene behind
            raise
        self._stop(context)
        self.report({"INFO"}, message)
        return {"FINISHED"}

    def _show_progress(self, context) -> None:
        context.window_manager.progress_update(self._job.done)
        context.workspace.status_text_set(
            f"dfdgen {self.bl_label.lower()}: {self._job.done} of {self._job.total} renders done (Esc cancels)"
        )

    def _stop(self, context) -> None:
        manager = context.window_manager
        manager.event_timer_remove(self._timer)
        manager.progress_end()
        context.workspace.status_text_set(None)
        self._job.close()


class DFDGEN_OT_render_preview(_Rendering, bpy.types.Operator):
    bl_idname = "dfdgen.render_preview"
    bl_label = "Render preview"
    bl_description = "Render the current focus step, small, with Cycles into the image 'dfdgen preview'"

    def start(self, context, settings) -> core.RenderJob:
        _, spec = core.synced_spec(context.scene, settings)
        self._step = min(max(core.focus_step(context.scene), 0), len(spec.frames) - 1)
        return core.RenderJob(core.preview_spec(spec, self._step, settings.preview_size, settings.preview_samples))

    def finish(self, context, job: core.RenderJob) -> str:
        image = core.show_preview(job.result.frames[0])
        for area in (context.screen.areas if context.screen else ()):  # none in background mode
            if area.type == "IMAGE_EDITOR":
                area.spaces.active.image = image
        return f"preview of focus step {self._step}: {image.size[0]} x {image.size[1]} px, image '{image.name}'"


class DFDGEN_OT_render_sample(_Rendering, bpy.types.Operator):
    bl_idname = "dfdgen.render_sample"
    bl_label = "Render sample"
    bl_description = "Render the scene as dfdgen render does and write it as a one-sample shard to the samples folder"

    def start(self, context, settings) -> core.RenderJob:
        self._recipe, self._spec = core.synced_spec(context.scene, settings)
        self._path = core.sample_path(settings, self._recipe, self._spec)
        return core.RenderJob(self._spec)

    def finish(self, context, job: core.RenderJob) -> str:
        path = core.write_sample(self._path, self._recipe, self._spec, job.result)
        return f"sample {sample_key(self._spec.index)} written to {path}"


class DFDGEN_OT_save_recipe(_Reporting, bpy.types.Operator, ExportHelper):
    bl_idname = "dfdgen.save_recipe"
    bl_label = "Save recipe"
    bl_description = "Write the panel's recipe as YAML that dfdgen render --recipe accepts"

    filename_ext = ".yaml"
    filter_glob: StringProperty(default="*.yaml;*.yml", options={"HIDDEN"})

    def run(self, context, settings) -> str:
        return f"recipe saved to {core.save_recipe(settings, self.filepath)}"


CLASSES = (
    DFDGEN_OT_load_recipe,
    DFDGEN_OT_generate,
    DFDGEN_OT_step_seed,
    DFDGEN_OT_render_preview,
    DFDGEN_OT_render_sample,
    DFDGEN_OT_save_recipe,
)
register, unregister = bpy.utils.register_classes_factory(CLASSES)
