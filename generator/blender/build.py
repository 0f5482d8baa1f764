"""Build a :class:`~generator.spec.SceneSpec` in Blender: geometry, materials, lights, world, render settings.

One direction only: spec -> bpy. Nothing here draws random numbers; every
value comes from the spec (procedural textures are deterministic functions of
object-space position). Geometry is built by :mod:`generator.blender.mesh`.
"""

from __future__ import annotations

from dataclasses import dataclass

import bpy

from generator.blender.camera import apply_camera, set_camera_pose
from generator.blender.mesh import build_mesh
from generator.spec import LightSpec, MaterialSpec, ObjectSpec, RenderSpec, SceneSpec, WorldSpec

# Material kind -> (Blender texture node, output socket holding the pattern in [0, 1]).
_PATTERN_NODES = {
    "noise": ("ShaderNodeTexNoise", "Factor"),
    "voronoi": ("ShaderNodeTexVoronoi", "Distance"),
    "checker": ("ShaderNodeTexChecker", "Factor"),
    "wave": ("ShaderNodeTexWave", "Factor"),
    "brick": ("ShaderNodeTexBrick", "Factor"),
    "magic": ("ShaderNodeTexMagic", "Factor"),
    "gradient": ("ShaderNodeTexGradient", "Factor"),
}


@dataclass
class BuiltScene:
    """A scene built from a spec: the bpy scene and the spec's camera object in it."""

    scene: bpy.types.Scene
    camera: bpy.types.Object


def build_scene(spec: SceneSpec, *, threads: int = 0) -> BuiltScene:
    """Reset Blender to an empty factory state and build ``spec`` in it.

    The camera is posed and set to frame 0 with depth of field on, so the scene
    as built (and as saved by :func:`generator.blender.render.save_blend`)
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
    for obj in spec.objects:
        collection.objects.link(_mesh_object(obj))
    for light in spec.lights:
        collection.objects.link(_light(light))
    camera = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
    collection.objects.link(camera)
    set_camera_pose(camera, spec.camera)
    apply_camera(camera, spec.lens, spec.frames[0].focus_distance_m, use_dof=True)
    scene.camera = camera  # the camera bpy.ops.render.render uses for this scene
    return BuiltScene(scene=scene, camera=camera)


# --------------------------------------------------------------------------- render settings


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
    """Sampling of RGB frames: exactly ``render.samples`` per pixel, no denoising, box pixel filter.

    - ``use_adaptive_sampling=False``: every pixel gets the same sample count,
      so noise does not depend on the image content.
    - ``use_denoising=False``: a denoiser blurs, and blur is the signal here.
    - ``pixel_filter_type='BOX'``: each pixel integrates the image over its own
      square, like a sensor pixel; Cycles fixes the box width at 1 px. A wider
      filter (Blackman-Harris, 1.5 px) would add blur on top of the defocus.
    - ``seed`` from the spec; ``max_bounces`` caps all light-path bounces.
    - ``sampling_pattern='TABULATED_SOBOL'``: set, not left to the scene: the
      factory startup scene has it, a scene made by ``bpy.data.scenes.new``
      (as the add-on renders in) has 'AUTOMATIC', which gives other pixels.
    """
    cycles = scene.cycles
    cycles.samples = render.samples
    cycles.seed = render.seed
    cycles.use_adaptive_sampling = False
    cycles.sampling_pattern = "TABULATED_SOBOL"
    cycles.use_denoising = False
    cycles.pixel_filter_type = "BOX"
    cycles.max_bounces = render.max_bounces


# --------------------------------------------------------------------------- world and lights


def _world(world: WorldSpec) -> bpy.types.World:
    """Uniform background: a Background shader of ``world.color`` and ``world.strength``."""
    out = bpy.data.worlds.new("world")
    nodes, links = out.node_tree.nodes, out.node_tree.links
    nodes.clear()
    background = nodes.new("ShaderNodeBackground")
    background.inputs["Color"].default_value = (*world.color, 1.0)
    background.inputs["Strength"].default_value = world.strength
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


# --------------------------------------------------------------------------- objects


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


# --------------------------------------------------------------------------- materials


def _material(spec: MaterialSpec, name: str) -> bpy.types.Material:
    """Node material for ``spec.kind``.

    ``emission``: a pure Emission shader (``color_a`` x ``emission_strength``), no
    reflection. ``diffuse``: Principled BSDF of ``color_a``. Patterns: a texture
    node on Object coordinates (object space, so ``scale`` is cycles per metre
    before the object's scale) whose [0, 1] output mixes ``color_a`` -> ``color_b``
    into the Principled BSDF base colour.
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
    links.new(bsdf.outputs["BSDF"], output.inputs["Surface"])
    if spec.kind == "diffuse":
        bsdf.inputs["Base Color"].default_value = (*spec.color_a, 1.0)
        return mat

    node_type, socket = _PATTERN_NODES[spec.kind]
    pattern = nodes.new(node_type)
    links.new(_pattern_coordinates(nodes, links, spec), pattern.inputs["Vector"])
    for input_name, value in (("Scale", spec.scale), ("Detail", spec.detail), ("Distortion", spec.distortion)):
        if input_name in pattern.inputs:
            pattern.inputs[input_name].default_value = value
    if spec.kind == "magic":
        pattern.turbulence_depth = min(10, max(0, round(spec.detail)))  # magic's "detail" is an integer depth

    mix = nodes.new("ShaderNodeMix")
    mix.data_type = "RGBA"
    mix.clamp_factor = True
    _socket(mix.inputs, "A_Color").default_value = (*spec.color_a, 1.0)
    _socket(mix.inputs, "B_Color").default_value = (*spec.color_b, 1.0)
    links.new(pattern.outputs[socket], _socket(mix.inputs, "Factor_Float"))
    links.new(_socket(mix.outputs, "Result_Color"), bsdf.inputs["Base Color"])
    return mat


def _socket(sockets, identifier: str) -> bpy.types.NodeSocket:
    """The socket with this identifier: the Mix node has several sockets per name (one per data type)."""
    return next(s for s in sockets if s.identifier == identifier)


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
