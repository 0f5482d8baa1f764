"""Build a :class:`~generator.scene.spec.SceneSpec` in Blender: geometry, materials, lights, world, render settings.

One direction only: spec -> bpy. Nothing here draws random numbers; every
value comes from the spec (procedural textures are deterministic functions of
object-space position). Geometry is built by :mod:`generator.render.blender.mesh`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import bpy
import numpy as np
from bpy_extras import anim_utils

from generator.render.blender.camera import FOCUS_DATA_PATHS, apply_camera, set_camera_pose
from generator.render.blender.mesh import build_mesh
from generator.scene.spec import (IMAGE_MATERIAL, LightSpec, MaterialSpec, ObjectSpec, RenderSpec, SceneSpec, WorldSpec,
                            asset_file)

# Material kind -> (Blender texture node, output socket holding the pattern in [0, 1]).
_PATTERN_NODES = {
    "noise": ("ShaderNodeTexNoise", "Factor"),
    "voronoi": ("ShaderNodeTexVoronoi", "Distance"),
    "checker": ("ShaderNodeTexChecker", "Factor"),
    "wave": ("ShaderNodeTexWave", "Factor"),
    "brick": ("ShaderNodeTexBrick", "Factor"),
    "magic": ("ShaderNodeTexMagic", "Factor"),
    "gradient": ("ShaderNodeTexGradient", "Factor"),
    IMAGE_MATERIAL: ("ShaderNodeTexImage", "Color"),
}
#: Height of the bump map, as a fraction of the texture period (1 / ``MaterialSpec.scale``
#: object units): the pattern's [0, 1] value lifts the surface by at most this much.
BUMP_HEIGHT_PERIODS = 0.1
#: Blend width of the box projection of image textures (0 = hard seams between the six sides).
IMAGE_BOX_BLEND = 0.2


@dataclass
class BuiltScene:
    """A scene built from a spec: the bpy scene and the spec's camera object in it."""

    scene: bpy.types.Scene
    camera: bpy.types.Object
    objects: dict[str, bpy.types.Object] = field(default_factory=dict)  # spec name -> object (names may clash in a user's file)


def build_scene(spec: SceneSpec, *, threads: int = 0) -> BuiltScene:
    """Reset Blender to an empty factory state and build ``spec`` in it.

    The camera is posed and set to frame 0 with depth of field on, so the scene
    as built (and as saved by :func:`generator.render.blender.render.save_blend`)
    renders frame 0. ``threads`` is the Cycles CPU thread count (0 = all cores).
    """
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.data.scenes[0]
    scene.name = f"dfdgen_{spec.index:08d}"
    return build_into(scene, scene.collection, spec, threads=threads)


def build_into(
    scene: bpy.types.Scene, collection: bpy.types.Collection, spec: SceneSpec, *, threads: int = 0
) -> BuiltScene:
    """Build ``spec`` into an existing ``scene``, leaving everything else in the file as it is.

    The spec's objects, lights and camera are linked to ``collection`` (which
    must be in ``scene``); the scene gets the spec's render settings, a new
    world and the new camera as its active camera. The Blender add-on builds
    into its own collection of the user's scene this way; :func:`build_scene`
    into an empty scene.
    """
    configure_render(scene, spec.render, threads)
    scene.world = _world(spec.world)
    objects = {obj.name: _mesh_object(obj) for obj in spec.objects}
    for k, obj in enumerate(objects.values(), start=1):
        obj.pass_index = k  # the object-index pass names spec.objects[k - 1] (generator.scene.flow)
        collection.objects.link(obj)
    for light in spec.lights:
        collection.objects.link(_light(light))
    camera = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
    collection.objects.link(camera)
    set_camera_pose(camera, spec.camera_at(spec.frames[0]))
    apply_camera(camera, spec.lens, spec.frames[0].focus_distance_m, use_dof=True)
    scene.camera = camera  # the camera bpy.ops.render.render uses for this scene
    built = BuiltScene(scene=scene, camera=camera, objects=objects)
    pose_objects(built, spec, spec.frames[0].time_s)
    return built


def pose_objects(built: BuiltScene, spec: SceneSpec, time_s: float) -> None:
    """Move the spec's moving objects to their poses at ``time_s`` seconds (:meth:`ObjectSpec.pose_at`).

    Set directly, not keyframed: each frame is an instant (no motion blur), and
    persistent data then only refits the moved objects' BVH between renders.
    """
    for obj_spec, obj in _moving(built, spec):
        obj.location, obj.rotation_euler = obj_spec.pose_at(time_s)


def _moving(built: BuiltScene, spec: SceneSpec) -> list[tuple[ObjectSpec, bpy.types.Object]]:
    """(spec, Blender object) of every object that moves (a velocity or an angular velocity)."""
    return [(o, built.objects[o.name]) for o in spec.objects if any(o.velocity) or any(o.angular_velocity)]


@contextmanager
def exposure(built: BuiltScene, spec: SceneSpec, time_s: float) -> Iterator[None]:
    """Renders inside see the exposure centred on ``time_s`` seconds (``spec.shutter``), motion-blurred
    by Cycles; without a shutter they see the instant, as set by :func:`pose_objects`.

    Cycles blurs what Blender evaluates at sub-frames of the timeline, so for the renders the
    moving objects get two LINEAR keys, at timeline frames c - 1 and c + 1 (c = the current
    frame), holding their poses at ``time_s`` -/+ ``window_s`` (:attr:`ShutterSpec.window_s`),
    and ``motion_blur_shutter`` = 1 frame with ``motion_blur_position='CENTER'``: sub-frame
    c + s then shows the poses at ``time_s + s * window_s``, s in [-1/2, 1/2], exactly where
    they move linearly (:meth:`ObjectSpec.pose_at`; Euler rates are interpolated by Cycles
    between its 3 motion steps, close for the small turns of one exposure). The camera gets the
    same two keys: its frame's pose (jitter included) moved by the shutter's camera drift and turn.

    Rolling shutter: ``rolling_shutter_type='TOP'`` gives image row r (0 at the top, H rows) the
    part [y (1 - d), y (1 - d) + d] of the window, y = (r + 1) / H (measured: Cycles takes the
    row's index, not its centre) and d = ``rolling_shutter_duration``; d = exposure / window
    makes every row's exposure ``exposure_s`` long and the rows start ``rolling_readout_s`` /
    H apart. The window is moved earlier by half a row's step so that row r is exposed centred
    on ``time_s + ((r + 1/2) / H - 1/2) * rolling_readout_s``: the rows are symmetric about the
    image's middle line, which sees ``time_s``. The keys and motion blur are removed on leaving,
    so depth and all-in-focus renders stay instants.
    """
    shutter = spec.shutter
    if shutter is None:
        yield
        return
    scene, centre = built.scene, built.scene.frame_current
    middle_s = time_s - shutter.rolling_readout_s / (2 * spec.render.height)
    moving = _moving(built, spec)
    camera = built.camera
    still = tuple(camera.location), tuple(camera.rotation_euler)  # the frame's pose (set_camera_pose)
    camera_moves = any(shutter.camera_velocity_m_s) or any(shutter.camera_turn_rad_s)
    keyed = [o for _, o in moving] + ([camera] if camera_moves else [])
    # A viewer's keys (keyframe_sequence, in the add-on) would mix into the exposure's: set aside.
    viewer = {obj: _set_aside(obj) for obj in keyed}
    for frame, time in ((centre - 1, middle_s - shutter.window_s), (centre + 1, middle_s + shutter.window_s)):
        for obj_spec, obj in moving:
            obj.location, obj.rotation_euler = obj_spec.pose_at(time)
        if camera_moves:
            camera.location = np.add(still[0], np.multiply(shutter.camera_velocity_m_s, time - time_s))
            camera.rotation_euler = np.add(still[1], np.multiply(shutter.camera_turn_rad_s, time - time_s))
        for obj in keyed:
            obj.keyframe_insert("location", frame=frame)
            obj.keyframe_insert("rotation_euler", frame=frame)
    for obj in keyed:
        for key in _keys(obj):
            key.interpolation = "LINEAR"
    r = scene.render
    r.use_motion_blur = True
    r.motion_blur_shutter = 1.0
    r.motion_blur_position = "CENTER"
    scene.cycles.rolling_shutter_type = "TOP" if shutter.rolling_readout_s > 0 else "NONE"
    scene.cycles.rolling_shutter_duration = shutter.exposure_s / shutter.window_s
    try:
        yield
    finally:
        r.use_motion_blur = False
        scene.cycles.rolling_shutter_type = "NONE"
        for obj in keyed:
            action = obj.animation_data.action
            obj.animation_data_clear()
            bpy.data.actions.remove(action)  # not left behind, one per object and frame
            _put_back(obj, viewer[obj])
        for obj_spec, obj in moving:
            obj.location, obj.rotation_euler = obj_spec.pose_at(time_s)  # back to the instant
        if camera_moves:
            camera.location, camera.rotation_euler = still


def _set_aside(obj: bpy.types.Object) -> tuple[bpy.types.Action, bpy.types.ActionSlot] | None:
    """``obj``'s action and slot, detached from it (None: it has none)."""
    animation = obj.animation_data
    if animation is None or animation.action is None:
        return None
    held = animation.action, animation.action_slot
    obj.animation_data_clear()
    return held


def _put_back(obj: bpy.types.Object, held: tuple[bpy.types.Action, bpy.types.ActionSlot] | None) -> None:
    """Attach an action :func:`_set_aside` detached, with its slot."""
    if held is not None:
        animation = obj.animation_data_create()
        animation.action, animation.action_slot = held


def _keys(datablock: bpy.types.ID) -> list[bpy.types.Keyframe]:
    """Every keyframe of ``datablock``'s action."""
    animation = datablock.animation_data
    curves = anim_utils.action_get_channelbag_for_slot(animation.action, animation.action_slot).fcurves
    return [key for curve in curves for key in curve.keyframe_points]


def keyframe_sequence(built: BuiltScene, spec: SceneSpec, first_frame: int) -> None:
    """Keyframe the spec's frames on the timeline, for a viewer: frame ``i`` at timeline frame ``first_frame + i``.

    Per frame: the camera's focus values (:data:`FOCUS_DATA_PATHS`, from
    :func:`apply_camera`, depth of field on), and where things move, the
    camera pose and the moving objects' poses at the frame's time. Keys are
    constant, so each timeline frame shows one frame exactly and scrubbing
    plays the focus sweep (and the motion). Renders do not use these keys:
    they set every value per frame (:mod:`generator.render.blender.render`).
    """
    cameras = [spec.camera_at(frame) for frame in spec.frames]
    moving = _moving(built, spec)
    animated = {built.camera.data, *([built.camera] if len(set(cameras)) > 1 else []), *(o for _, o in moving)}
    for i, (frame, camera) in enumerate(zip(spec.frames, cameras)):
        set_camera_pose(built.camera, camera)
        pose_objects(built, spec, frame.time_s)
        apply_camera(built.camera, spec.lens, frame.focus_distance_m, use_dof=True)
        for path in FOCUS_DATA_PATHS:
            built.camera.data.keyframe_insert(path, frame=first_frame + i)
        for obj in animated - {built.camera.data}:
            obj.keyframe_insert("location", frame=first_frame + i)
            obj.keyframe_insert("rotation_euler", frame=first_frame + i)
    for datablock in animated:
        for key in _keys(datablock):
            key.interpolation = "CONSTANT"


# Render settings


def configure_render(scene: bpy.types.Scene, render: RenderSpec, threads: int) -> None:
    """Cycles on the CPU with settings that keep pixels physical and reproducible.

    - ``render.use_persistent_data``: keep the BVH and shaders between the
      renders of one scene, which differ only in the camera.
    - ``view_settings.view_transform='Standard'``: no AgX tone curve; frames are
      stored as linear radiance and encoded by the sample writer.
    - ``film_transparent=False``: the world colour is part of the image.
    - ``use_stamp*`` off: no text burnt into pixels or metadata.
    - ``use_compositing``/``use_sequencer`` off: nothing post-processes the render.
    - ``threads_mode``: ``'FIXED'`` with ``threads`` when > 0, else ``'AUTO'``
      (the result does not depend on it; DESIGN.md section 3).
    """
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    set_beauty_sampling(scene, render)
    scene.cycles.use_animated_seed = False

    r = scene.render
    r.resolution_x, r.resolution_y = render.width, render.height
    r.resolution_percentage = 100
    r.pixel_aspect_x = r.pixel_aspect_y = 1.0
    r.use_border = False
    r.film_transparent = False
    r.use_motion_blur = False
    r.use_persistent_data = True
    r.use_compositing = False
    r.use_sequencer = False
    r.dither_intensity = 0.0  # no noise added when Blender itself writes 8-bit images
    r.threads_mode = "FIXED" if threads > 0 else "AUTO"
    if threads > 0:
        r.threads = threads
    r.use_stamp = False
    for name in dir(r):
        if name.startswith("use_stamp_"):
            setattr(r, name, False)

    view = scene.view_settings
    view.view_transform = "Standard"
    view.look = "None"
    view.exposure = 0.0
    view.gamma = 1.0


def set_beauty_sampling(scene: bpy.types.Scene, render: RenderSpec) -> None:
    """Sampling of RGB frames: ``render.samples`` per pixel, box pixel filter, no denoising by default.

    - ``use_adaptive_sampling`` only when ``render.adaptive_threshold`` > 0 (by
      default every pixel gets the same sample count, so noise does not depend
      on the image content). ``adaptive_min_samples`` 0 becomes ``samples // 4``,
      not Cycles' automatic count (a few dozen): a small bright highlight far
      out of focus is seen through only part of the aperture, and a pixel that
      has not met it yet looks converged; a quarter of the budget finds it first.
    - ``use_denoising`` = ``render.denoise`` (OpenImageDenoise), off by default:
      a denoiser blurs and invents detail, and blur is the signal here.
    - ``pixel_filter_type='BOX'``: each pixel integrates the image over its own
      square, like a sensor pixel; Cycles fixes the box width at 1 px. A wider
      filter (Blackman-Harris, 1.5 px) would add blur on top of the defocus.
    - ``seed`` from the spec; ``max_bounces`` caps all light-path bounces, and
      ``render.light_paths`` sets the rest (every one set, so a scene made by
      ``bpy.data.scenes.new`` renders as the factory scene does).
    - The denoiser's guides are albedo and normal: Cycles takes them from the same
      lens-sampled camera rays as the colour, so they carry the same blur.
    - ``sampling_pattern='TABULATED_SOBOL'``: set, not left to the scene: the
      factory startup scene has it, a scene made by ``bpy.data.scenes.new``
      (as the add-on renders in) has 'AUTOMATIC', which gives other pixels.
    """
    cycles = scene.cycles
    cycles.samples = render.samples
    cycles.seed = render.seed
    cycles.use_adaptive_sampling = render.adaptive_threshold > 0
    cycles.adaptive_threshold = render.adaptive_threshold
    cycles.adaptive_min_samples = render.adaptive_min_samples or max(1, render.samples // 4)
    cycles.sampling_pattern = "TABULATED_SOBOL"
    cycles.use_denoising = render.denoise
    cycles.denoiser = "OPENIMAGEDENOISE"
    cycles.denoising_input_passes = "RGB_ALBEDO_NORMAL"
    cycles.denoising_prefilter = "ACCURATE"
    cycles.denoising_quality = "HIGH"
    cycles.pixel_filter_type = "BOX"
    cycles.max_bounces = render.max_bounces
    paths = render.light_paths
    cycles.diffuse_bounces = paths.diffuse_bounces
    cycles.glossy_bounces = paths.glossy_bounces
    cycles.transmission_bounces = paths.transmission_bounces
    cycles.transparent_max_bounces = paths.transparent_bounces
    cycles.sample_clamp_direct = paths.clamp_direct
    cycles.sample_clamp_indirect = paths.clamp_indirect
    cycles.blur_glossy = paths.filter_glossy
    cycles.caustics_reflective = cycles.caustics_refractive = paths.caustics
    cycles.use_light_tree = paths.light_tree
    cycles.use_guiding = paths.path_guiding


#: Width (pixels) of the Gaussian pixel filter used for depth: Cycles' minimum.
#: With one sample per pixel, the camera ray then passes within 0.005 px of the
#: pixel centre (integer + 0.5, DESIGN.md section 2), so depth is a point sample
#: there, not an average across an edge. (Cycles fixes the box filter at 1 px,
#: leaving where a lone sample lands to its sampler.)
DEPTH_FILTER_WIDTH_PX = 0.01


def set_depth_sampling(scene: bpy.types.Scene) -> None:
    """One sample at the pixel centre, no bounces: only the camera ray's hit matters.

    Cycles writes the Z pass from a pixel's first sample, so one sample per
    pixel through a :data:`DEPTH_FILTER_WIDTH_PX` Gaussian filter gives the
    planar depth of the surface seen through the pixel centre.
    """
    cycles = scene.cycles
    cycles.samples = 1
    cycles.use_adaptive_sampling = False  # the recipe's RGB settings must not reach depth
    cycles.use_denoising = False
    cycles.pixel_filter_type = "GAUSSIAN"
    cycles.filter_width = DEPTH_FILTER_WIDTH_PX
    cycles.max_bounces = 0


# World and lights


def _world(world: WorldSpec) -> bpy.types.World:
    """The world: a Background shader of ``world.strength`` whose colour is

    - ``uniform``: ``world.color``;
    - ``sky``: a Hosek-Wilkie sky texture (an analytic model, evaluated per ray:
      no precomputed table) with the sun at ``sun_elevation``/``sun_azimuth``;
    - ``hdri``: the environment map ``world.image`` (equirectangular), turned
      by ``world.rotation`` about world Z.
    """
    out = bpy.data.worlds.new("world")
    nodes, links = out.node_tree.nodes, out.node_tree.links
    nodes.clear()
    background = nodes.new("ShaderNodeBackground")
    background.inputs["Strength"].default_value = world.strength
    if world.kind == "sky":
        sky = nodes.new("ShaderNodeTexSky")
        sky.sky_type = "HOSEK_WILKIE"
        sky.turbidity = world.turbidity
        sky.sun_direction = (
            math.cos(world.sun_elevation) * math.cos(world.sun_azimuth),
            math.cos(world.sun_elevation) * math.sin(world.sun_azimuth),
            math.sin(world.sun_elevation),
        )
        links.new(sky.outputs["Color"], background.inputs["Color"])
    elif world.kind == "hdri":
        environment = nodes.new("ShaderNodeTexEnvironment")
        environment.image = bpy.data.images.load(asset_file(world.image, "environment map"), check_existing=True)
        environment.interpolation = "Linear"
        mapping = nodes.new("ShaderNodeMapping")
        mapping.inputs["Rotation"].default_value = (0.0, 0.0, world.rotation)
        links.new(nodes.new("ShaderNodeTexCoord").outputs["Generated"], mapping.inputs["Vector"])
        links.new(mapping.outputs["Vector"], environment.inputs["Vector"])
        links.new(environment.outputs["Color"], background.inputs["Color"])
    else:
        background.inputs["Color"].default_value = (*world.color, 1.0)
    links.new(background.outputs["Background"], nodes.new("ShaderNodeOutputWorld").inputs["Surface"])
    return out


def _light(spec: LightSpec) -> bpy.types.Object:
    """A light object. ``size`` is the radius (m) of point and spot lights, the side (m)
    of an area light, and the angular diameter (radians) of the sun."""
    data = bpy.data.lights.new(f"light_{spec.kind}", type=spec.kind.upper())
    data.energy = spec.energy
    data.color = spec.color
    if spec.kind == "area":
        data.size = spec.size
    elif spec.kind == "sun":
        data.angle = spec.size
    else:
        data.shadow_soft_size = spec.size
    obj = bpy.data.objects.new(data.name, data)
    obj.rotation_mode = "XYZ"
    obj.location = spec.location
    obj.rotation_euler = spec.rotation
    return obj


# Objects


def _mesh_object(spec: ObjectSpec) -> bpy.types.Object:
    """A mesh object: geometry from :func:`build_mesh`, its material, then the spec's transform."""
    mesh = build_mesh(spec)
    mesh.materials.append(_material(spec.material, f"{spec.name}_material"))
    obj = bpy.data.objects.new(spec.name, mesh)
    obj.rotation_mode = "XYZ"
    obj.location = spec.location
    obj.rotation_euler = spec.rotation
    obj.scale = spec.scale
    return obj


# Materials


def _material(spec: MaterialSpec, name: str) -> bpy.types.Material:
    """Node material for ``spec.kind``.

    ``emission``: a pure Emission shader (``color_a`` x ``emission_strength``), no
    reflection. ``diffuse``: Principled BSDF of ``color_a``. Patterns: a texture
    node on Object coordinates (object space, so ``scale`` is cycles per metre
    before the object's scale) whose [0, 1] output goes through a Color Ramp
    (``spec.ramp``, linear interpolation; ``color_a`` -> ``color_b`` without one)
    into the Principled BSDF base colour. ``image``: the image file, box-projected
    (:func:`_image_coordinates`), as the base colour. Every textured kind drives a
    Bump node of strength ``spec.bump`` (none at 0) with its pattern; ``metallic``
    and ``roughness`` go to the BSDF.
    """
    mat = bpy.data.materials.new(name)
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    nodes.clear()
    output = nodes.new("ShaderNodeOutputMaterial")
    if spec.kind == "emission":
        emission = nodes.new("ShaderNodeEmission")
        emission.inputs["Color"].default_value = (*spec.color_a, 1.0)
        emission.inputs["Strength"].default_value = spec.emission_strength
        links.new(emission.outputs["Emission"], output.inputs["Surface"])
        return mat

    bsdf = nodes.new("ShaderNodeBsdfPrincipled")
    bsdf.inputs["Roughness"].default_value = spec.roughness
    bsdf.inputs["Metallic"].default_value = spec.metallic
    links.new(bsdf.outputs["BSDF"], output.inputs["Surface"])
    if spec.kind == "diffuse":
        bsdf.inputs["Base Color"].default_value = (*spec.color_a, 1.0)
        return mat

    node_type, socket = _PATTERN_NODES[spec.kind]
    pattern = nodes.new(node_type)
    if spec.kind == IMAGE_MATERIAL:
        pattern.image = bpy.data.images.load(asset_file(spec.image, "image texture"), check_existing=True)
        pattern.projection = "BOX"
        pattern.projection_blend = IMAGE_BOX_BLEND
        links.new(_image_coordinates(nodes, links, spec), pattern.inputs["Vector"])
        links.new(pattern.outputs[socket], bsdf.inputs["Base Color"])
    else:
        links.new(_pattern_coordinates(nodes, links, spec), pattern.inputs["Vector"])
        for input_name, value in (("Scale", spec.scale), ("Detail", spec.detail), ("Distortion", spec.distortion)):
            if input_name in pattern.inputs:
                pattern.inputs[input_name].default_value = value
        if spec.kind == "magic":
            pattern.turbulence_depth = min(10, max(0, round(spec.detail)))  # magic's "detail" is an integer depth
        ramp = nodes.new("ShaderNodeValToRGB")
        stops = spec.ramp or ((0.0, *spec.color_a), (1.0, *spec.color_b))
        for position, *_ in stops[1:-1]:
            ramp.color_ramp.elements.new(position)
        for element, (position, *rgb) in zip(ramp.color_ramp.elements, stops):  # elements are kept sorted
            element.position, element.color = position, (*rgb, 1.0)
        links.new(pattern.outputs[socket], ramp.inputs["Fac"])
        links.new(ramp.outputs["Color"], bsdf.inputs["Base Color"])
    if spec.bump > 0:
        bump = nodes.new("ShaderNodeBump")
        bump.inputs["Strength"].default_value = spec.bump
        bump.inputs["Distance"].default_value = BUMP_HEIGHT_PERIODS / spec.scale
        links.new(pattern.outputs[socket], bump.inputs["Height"])
        links.new(bump.outputs["Normal"], bsdf.inputs["Normal"])
    return mat


def _image_coordinates(nodes, links, spec: MaterialSpec) -> bpy.types.NodeSocket:
    """Object coordinates turned by ``spec.rotation`` about each axis and multiplied by
    ``spec.scale``: the image repeats ``scale`` times per object unit."""
    mapping = nodes.new("ShaderNodeMapping")
    mapping.inputs["Rotation"].default_value = (spec.rotation,) * 3
    mapping.inputs["Scale"].default_value = (spec.scale,) * 3
    links.new(nodes.new("ShaderNodeTexCoord").outputs["Object"], mapping.inputs["Vector"])
    return mapping.outputs["Vector"]


def _pattern_coordinates(nodes, links, spec: MaterialSpec) -> bpy.types.NodeSocket:
    """Object-space texture coordinates for the pattern node.

    The gradient node has no ``Scale`` and clamps to [0, 1], which would leave
    most of an object flat; it gets fract(position x scale) instead, a sawtooth
    repeating every 1 / scale metres.
    """
    coords = nodes.new("ShaderNodeTexCoord").outputs["Object"]
    if spec.kind != "gradient":
        return coords
    scaled = nodes.new("ShaderNodeVectorMath")
    scaled.operation = "SCALE"
    scaled.inputs["Scale"].default_value = spec.scale
    links.new(coords, scaled.inputs[0])
    fract = nodes.new("ShaderNodeVectorMath")
    fract.operation = "FRACTION"
    links.new(scaled.outputs["Vector"], fract.inputs[0])
    return fract.outputs["Vector"]
