"""Drawing scenes: (recipe, scene index) -> :class:`~generator.scene.spec.SceneSpec`, deterministically.

Scene i depends only on the recipe and i: its seed comes from
``SeedSequence(entropy=recipe.seed, spawn_key=(i,))``, so any subset of scenes
can be drawn anywhere, in any order, and changing ``count`` changes no scene.
Every draw takes its ``np.random.Generator`` explicitly (:mod:`generator.draw.ranges`);
there is no global random state. The camera sits at the origin looking along world +Y
(the :class:`~generator.scene.spec.CameraSpec` default); things are placed through its
view (:mod:`generator.draw.view`); motion is drawn last, from a stream of its own
(:mod:`generator.draw.motion`), and so is the camera's sensor (:mod:`generator.draw.sensor`).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from generator.core import lens as lensmod
from generator.scene.assets import AssetFile, AssetFiles
from generator.draw.colour import blackbody_rgb, colour_ramp, tint
from generator.draw.motion import draw_camera_motion, draw_object_motion, draw_shutter
from generator.draw.sensor import draw_camera
from generator.draw.ranges import integer, pick, uniform
from generator.draw.view import IMAGE_MARGIN, View, aim_rotation
from generator.core.errors import BadInput
from generator.core.precision import float32
from generator.recipe.ramps import focus_ramp
from generator.recipe.recipe import (
    SPLITS,
    ApertureRecipe,
    MaterialsRecipe,
    Recipe,
    SceneRecipe,
    WorldRecipe,
)
from generator.scene.spec import (
    IMAGE_MATERIAL,
    MESH_SHAPE,
    CameraSpec,
    FrameSpec,
    LightSpec,
    MaterialSpec,
    ObjectSpec,
    RenderSpec,
    SceneSpec,
    Vec3,
    WorldSpec,
)

#: The wall overfills the widest view by this factor (per side), so no edge shows.
WALL_OVERFILL = 1.25
#: Smallest ratio of an object's shortest to longest axis (0.5: at most 2:1 boxes).
MIN_ASPECT = 0.5
#: Ranges of the deformations some objects get (see ObjectSpec): twist angle (rad),
#: taper factor, displacement strength (object units, the primitive's half-size is 1).
TWIST_RAD = (-math.pi / 2, math.pi / 2)
TAPER = (-0.7, 0.7)
DISPLACE = (0.05, 0.2)
#: Light ``size`` per kind (LightSpec): radius of point/spot (m), side of area (m), sun angle (rad).
LIGHT_SIZE = {"point": (0.02, 0.2), "spot": (0.02, 0.2), "area": (0.1, 0.5), "sun": (0.01, 0.1)}
#: Draws of a position per object before a non-overlapping object is left out.
PLACEMENT_TRIES = 50
#: Ranges of the shape parameters (see generator.render.blender.mesh.build_mesh): superquadric
#: exponents, extrusion corners and their radii, rock radius factors, blob bumps
#: (count, amplitude, angular width), rod and ring thickness (of the unit size).
SUPERQUADRIC_EXPONENT = (0.3, 2.0)
EXTRUSION_CORNERS = (3, 12)
EXTRUSION_RADIUS = (0.35, 1.0)
ROCK_RADIUS = (0.7, 1.3)
ROCK_VERTICES = 42
BLOB_BUMPS = (2, 6)
BLOB_AMPLITUDE = (0.2, 0.8)
BLOB_WIDTH = (0.1, 0.5)
THIN_RADIUS = (0.03, 0.12)


def _seed_sequence(recipe_seed: int, index: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(entropy=recipe_seed, spawn_key=(index,))


#: Children of a scene's SeedSequence with draws of their own, apart from the content's: the split
#: (:func:`scene_split`), and the optional sections, so that turning one on changes no other draw.
SPLIT_STREAM, MOTION_STREAM, APERTURE_STREAM, SHUTTER_STREAM, SENSOR_STREAM = 0, 1, 2, 3, 4


def _child_rng(recipe_seed: int, index: int, child: int) -> np.random.Generator:
    """A generator on child ``child`` of scene ``index``'s SeedSequence (what ``spawn`` gives as its ``child``-th)."""
    return np.random.default_rng(np.random.SeedSequence(entropy=recipe_seed, spawn_key=(index, child)))


def scene_seed(recipe_seed: int, index: int) -> int:
    """Seed of scene ``index`` (uint32), from ``SeedSequence(entropy=recipe_seed, spawn_key=(index,))``."""
    return int(_seed_sequence(recipe_seed, index).generate_state(1, dtype=np.uint32)[0])


def scene_split(recipe: Recipe, index: int) -> str:
    """Split (``train``/``val``/``test``) of scene ``index``.

    ``splits.order`` random (or left out): drawn from a child of the scene's
    SeedSequence, a stream separate from the scene content, so the recipe's
    fractions are honoured in expectation and a scene keeps its split whatever
    ``count`` is. ``contiguous``: scene ``index`` of ``count`` falls in the split
    whose cumulative fractions, times ``count`` and rounded, bound it, so train is
    scenes 0 .. round(train count) - 1, then val, then test.
    """
    fractions = np.array([getattr(recipe.splits, name) for name in SPLITS])
    edges = np.cumsum(fractions) / fractions.sum()
    if recipe.splits.order == "contiguous":
        ends = np.rint(edges * recipe.count).astype(int)
        return SPLITS[min(int(np.searchsorted(ends, index, side="right")), len(SPLITS) - 1)]
    draw = _child_rng(recipe.seed, index, SPLIT_STREAM).random()
    # side="right" never picks a split of fraction 0 (its edge equals the previous one).
    return SPLITS[min(int(np.searchsorted(edges, draw, side="right")), len(SPLITS) - 1)]


def check_scene_index(recipe: Recipe, index: int) -> None:
    """Refuse an ``index`` that is not a scene of ``recipe`` (scenes are 0 to ``count - 1``).

    Raises:
        BadInput: naming the recipe and its range of scenes.
    """
    if not 0 <= index < recipe.count:
        raise BadInput(f"scene {index} is not in recipe '{recipe.name}' (scenes 0 to {recipe.count - 1})")


def draw_scene(recipe: Recipe, index: int) -> SceneSpec:
    """Draw scene ``index`` of ``recipe``: a pure function of (recipe, index).

    The content is drawn from the scene's SeedSequence itself (128 bits of
    state) rather than from the 32-bit :func:`scene_seed`, so two scenes of a
    large dataset cannot share content through a seed collision. Every float of the spec is at
    float32 precision (:mod:`generator.core.precision`), so the spec is the same on every CPU.
    """
    seed = scene_seed(recipe.seed, index)
    rng = np.random.default_rng(_seed_sequence(recipe.seed, index))
    assets = AssetFiles.of(recipe.assets)
    lens = _draw_lens(rng, recipe)
    if recipe.lens.aperture is not None:
        lens = dataclasses.replace(lens, aperture=_draw_aperture(_child_rng(recipe.seed, index, APERTURE_STREAM),
                                                                 recipe.lens.aperture))
    frames = _draw_frames(rng, recipe)
    camera = CameraSpec()
    view = View.of(lens, camera, frames, recipe.image.width, recipe.image.height)
    scene = recipe.scene
    wall = _draw_wall(rng, scene, view, assets)
    objects = _draw_objects(rng, scene, view, assets)
    lights = tuple(_draw_light(rng, scene, view) for _ in range(integer(rng, scene.lights.count)))
    world = _draw_world(rng, scene.world, assets)
    if recipe.motion is not None:
        motion_rng = _child_rng(recipe.seed, index, MOTION_STREAM)
        duration = frames[-1].time_s
        objects = tuple(draw_object_motion(motion_rng, recipe.motion, o, scene, view, duration) for o in objects)
        frames, drift, turn = draw_camera_motion(motion_rng, recipe.motion.camera, camera, frames)
    shutter = None
    if recipe.shutter is not None:  # needs motion (a recipe rule)
        shutter = draw_shutter(_child_rng(recipe.seed, index, SHUTTER_STREAM), recipe.shutter, drift, turn)
    sensor, jpeg_quality = draw_camera(_child_rng(recipe.seed, index, SENSOR_STREAM), recipe, len(frames))
    render = RenderSpec(
        width=recipe.image.width,
        height=recipe.image.height,
        samples=recipe.image.samples,
        seed=seed % 2**31,  # Cycles' seed is a signed 32-bit int
        max_bounces=recipe.image.max_bounces,
        aif=recipe.outputs.aif,
        rgb=recipe.outputs.rgb,
        coc=recipe.outputs.coc,
        motion=recipe.outputs.motion,
        adaptive_threshold=recipe.image.adaptive_threshold,
        adaptive_min_samples=recipe.image.adaptive_min_samples,
        denoise=recipe.image.denoise,
        light_paths=recipe.image.light_paths,
        jpeg_quality=jpeg_quality,
    )
    return float32(SceneSpec(  # Blender's precision, whatever the CPU's float64 exp and sin (core/precision.py)
        index=index,
        seed=seed,
        split=scene_split(recipe, index),
        render=render,
        lens=lens,
        camera=camera,
        frames=frames,
        objects=(wall, *objects),
        lights=lights,
        world=world,
        shutter=shutter,
        sensor=sensor,
    ))


def shape_params(rng: np.random.Generator, shape: str) -> tuple[float, ...]:
    """Random parameters of a procedural shape (meaning: :func:`generator.render.blender.mesh.build_mesh`)."""
    if shape == "superquadric":
        return tuple(float(e) for e in rng.uniform(*SUPERQUADRIC_EXPONENT, 2))
    if shape == "extrusion":
        corners = int(rng.integers(EXTRUSION_CORNERS[0], EXTRUSION_CORNERS[1], endpoint=True))
        return tuple(float(r) for r in rng.uniform(*EXTRUSION_RADIUS, corners))
    if shape == "rock":
        return tuple(float(r) for r in rng.uniform(*ROCK_RADIUS, ROCK_VERTICES))
    if shape == "blob":
        bumps = int(rng.integers(BLOB_BUMPS[0], BLOB_BUMPS[1], endpoint=True))
        params = np.column_stack([rng.normal(size=(bumps, 3)), rng.uniform(*BLOB_AMPLITUDE, bumps), rng.uniform(*BLOB_WIDTH, bumps)])
        return tuple(float(p) for p in params.ravel())
    if shape in ("rod", "ring"):
        return (float(rng.uniform(*THIN_RADIUS)),)
    return ()


def _draw_lens(rng: np.random.Generator, recipe: Recipe) -> lensmod.Lens:
    """A lens drawn from the recipe's ranges (millimetres there, metres here)."""
    lens = recipe.lens
    return lensmod.Lens(
        model=lens.model,
        focal_length_m=uniform(rng, lens.focal_length_mm) / 1e3,
        f_number=uniform(rng, lens.f_number),
        sensor_width_m=uniform(rng, lens.sensor_width_mm) / 1e3,
    )


def _draw_aperture(rng: np.random.Generator, aperture: ApertureRecipe) -> lensmod.Aperture:
    """An aperture shape drawn from the recipe's ranges (degrees there, radians here)."""
    return lensmod.Aperture(
        blades=integer(rng, aperture.blades),
        rotation_rad=math.radians(uniform(rng, aperture.rotation_deg)),
        ratio=uniform(rng, aperture.ratio),
    )


def _draw_frames(rng: np.random.Generator, recipe: Recipe) -> tuple[FrameSpec, ...]:
    """``ramps`` x ``frames_per_ramp`` frames. Static scenes are at time 0; with ``motion``,
    frame k is at k / fps seconds (time runs on through all ramps, one frame per focus step)."""
    focus, motion = recipe.focus, recipe.motion
    frames = []
    for ramp in range(focus.ramps):
        distances = focus_ramp(focus.schedule, focus.frames_per_ramp, focus.near_m, focus.far_m, focus.distances_m, rng)
        for distance in distances:
            time_s = len(frames) / motion.fps if motion is not None else 0.0
            frames.append(FrameSpec(index=len(frames), ramp=ramp, time_s=time_s, focus_distance_m=float(distance)))
    return tuple(frames)


def _draw_material(
    rng: np.random.Generator,
    recipe: MaterialsRecipe,
    kinds: tuple[str, ...],
    metres_per_px: float,
    object_scale: float,
    textures: tuple[AssetFile, ...],
    textureless: float = 0.0,
) -> MaterialSpec:
    """A material whose texture period is ``recipe.texture_period_px`` pixels in the image
    (``image_period_px`` for an image texture).

    With probability ``textureless`` the surface is a plain colour (``diffuse``, no bump).
    The builder evaluates textures in object space (before the object's scale), so
    the period ``period_px * metres_per_px`` metres becomes ``object_scale / period``
    cycles per object unit, along the object's longest axis.
    """
    kind = "diffuse" if rng.random() < textureless else pick(rng, kinds)
    ramp = colour_ramp(rng, integer(rng, recipe.ramp_stops))
    period_px = recipe.image_period_px if kind == IMAGE_MATERIAL else recipe.texture_period_px
    period_m = uniform(rng, period_px) * metres_per_px
    return MaterialSpec(
        kind=kind,
        color_a=ramp[0][1:],
        color_b=ramp[-1][1:],
        scale=object_scale / period_m,
        detail=uniform(rng, recipe.detail),
        distortion=uniform(rng, recipe.distortion),
        roughness=uniform(rng, recipe.roughness),
        ramp=ramp if kind not in ("diffuse", IMAGE_MATERIAL) else (),
        metallic=uniform(rng, recipe.metallic),
        bump=uniform(rng, recipe.bump) if kind != "diffuse" else 0.0,
        image=pick(rng, textures).ref() if kind == IMAGE_MATERIAL else "",
        rotation=float(rng.uniform(0.0, 2 * math.pi)) if kind == IMAGE_MATERIAL else 0.0,
    )


def _draw_wall(rng: np.random.Generator, scene: SceneRecipe, view: View, assets: AssetFiles) -> ObjectSpec:
    """A textured plane facing the camera at the wall distance, overfilling the widest view.

    The plane primitive lies in its local XY with normal +Z; given the camera's
    rotation, its X and Y follow the image axes and its normal faces the camera.
    """
    distance = uniform(rng, scene.wall.distance_m)
    half_w = WALL_OVERFILL * view.width / 2 / view.wide_k[0, 0] * distance
    half_h = WALL_OVERFILL * view.height / 2 / view.wide_k[1, 1] * distance
    centre_px = view.wide_k[:2, 2]
    return ObjectSpec(
        name="wall",
        shape="plane",
        location=view.unproject(centre_px[0], centre_px[1], distance, view.wide_k),
        rotation=view.camera.rotation,
        scale=(half_w, half_h, 1.0),
        material=_draw_material(
            rng, scene.materials, scene.wall.materials, view.metres_per_px(distance), max(half_w, half_h),
            assets.textures,
        ),
    )


def bounding_radius(obj: ObjectSpec) -> float:
    """Radius (m) of a sphere about the object's origin that holds all of it.

    A unit-size shape lies in the cube of half-size 1 (radius sqrt 3), scaled
    by ``scale``; taper widens it by up to 1 + |taper|, displacement moves
    points by at most ``displace`` (object units) along their normals.
    """
    return max(obj.scale) * (math.sqrt(3.0) * (1.0 + abs(obj.taper)) + obj.displace)


def _draw_objects(rng: np.random.Generator, scene: SceneRecipe, view: View, assets: AssetFiles) -> tuple[ObjectSpec, ...]:
    """The foreground objects; with ``non_overlapping``, an object whose bounding sphere
    meets an earlier one's is drawn again at another place, and left out after
    :data:`PLACEMENT_TRIES` draws."""
    placed: list[ObjectSpec] = []
    for i in range(integer(rng, scene.objects.count)):
        obj = _draw_object(rng, scene, view, assets, f"object_{i:03d}")
        for _ in range(PLACEMENT_TRIES):
            if not scene.objects.non_overlapping or all(
                math.dist(obj.location, o.location) >= bounding_radius(obj) + bounding_radius(o) for o in placed
            ):
                placed.append(obj)
                break
            obj = dataclasses.replace(obj, location=_draw_position(rng, scene, view))
    return tuple(placed)


def _draw_position(rng: np.random.Generator, scene: SceneRecipe, view: View) -> Vec3:
    """World position of a random planar depth and image position (narrow view, margins kept)."""
    depth = uniform(rng, scene.objects.depth_m)
    u = rng.uniform(IMAGE_MARGIN, 1 - IMAGE_MARGIN) * view.width
    v = rng.uniform(IMAGE_MARGIN, 1 - IMAGE_MARGIN) * view.height
    return view.unproject(u, v, depth, view.narrow_k)


def _draw_object(rng: np.random.Generator, scene: SceneRecipe, view: View, assets: AssetFiles, name: str) -> ObjectSpec:
    """A random shape of random size and pose, its centre at a random depth and image position.

    ``size_m`` is the largest extent: every shape is 2 units across, so the
    largest per-axis scale is size / 2.
    """
    objects = scene.objects
    size = uniform(rng, objects.size_m)
    aspect = rng.uniform(MIN_ASPECT, 1.0, 3)
    scale = tuple(float(s) for s in size / 2 * aspect / aspect.max())
    location = _draw_position(rng, scene, view)
    depth = view.depth_of(location)
    deformation = {}
    if rng.random() < objects.deform_probability:
        kind, span = [("twist", TWIST_RAD), ("taper", TAPER), ("displace", DISPLACE)][int(rng.integers(3))]
        deformation[kind] = float(rng.uniform(*span))
    shape = pick(rng, objects.shapes)
    return ObjectSpec(
        name=name,
        shape=shape,
        location=location,
        rotation=tuple(float(a) for a in rng.uniform(0.0, 2 * math.pi, 3)),
        scale=scale,
        material=_draw_material(
            rng, scene.materials, scene.materials.families, view.metres_per_px(depth), size / 2, assets.textures,
            textureless=scene.materials.textureless_fraction,
        ),
        shape_params=shape_params(rng, shape),
        asset=pick(rng, assets.meshes).ref() if shape == MESH_SHAPE else "",
        **deformation,
    )


def _draw_light(rng: np.random.Generator, scene: SceneRecipe, view: View) -> LightSpec:
    """A light beside, above or behind the camera (never in front), aimed at a point among the objects.

    Positions are drawn in the camera frame (OpenCV: x right, y down, z forward)
    within a box scaled by the nearest wall distance, then moved to the world.
    Its colour is that of a black body at a temperature from ``temperature_k``.
    """
    kind = pick(rng, scene.lights.kinds)
    reach = scene.wall.distance_m.min
    position = reach * np.array([rng.uniform(-1.0, 1.0), rng.uniform(-1.0, 0.3), rng.uniform(-0.5, 0.0)])
    target = np.array([*rng.uniform(-0.2, 0.2, 2) * reach, uniform(rng, scene.objects.depth_m)])
    location, aim = view.to_world(position), view.to_world(target)
    return LightSpec(
        kind=kind,
        location=location,
        rotation=aim_rotation(np.subtract(aim, location)),
        energy=uniform(rng, getattr(scene.lights.energy, kind)),
        color=blackbody_rgb(uniform(rng, scene.lights.temperature_k)),
        size=float(rng.uniform(*LIGHT_SIZE[kind])),
    )


def _draw_world(rng: np.random.Generator, world: WorldRecipe, assets: AssetFiles) -> WorldSpec:
    """A world of a random kind: uniform near-white colour, sky (sun direction, turbidity) or environment map."""
    kind = pick(rng, world.kinds)
    strength = uniform(rng, world.strength)
    if kind == "sky":
        return WorldSpec(kind=kind, strength=strength, sun_elevation=math.radians(uniform(rng, world.sun_elevation_deg)),
                         sun_azimuth=float(rng.uniform(0.0, 2 * math.pi)), turbidity=uniform(rng, world.turbidity))
    if kind == "hdri":
        return WorldSpec(kind=kind, strength=strength, image=pick(rng, assets.environments).ref(),
                         rotation=float(rng.uniform(0.0, 2 * math.pi)))
    return WorldSpec(kind=kind, color=tint(rng, rng.uniform(0.3, 1.0)), strength=strength)
