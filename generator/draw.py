"""Drawing scenes: (recipe, scene index) -> :class:`~generator.spec.SceneSpec`, deterministically.

Scene i depends only on the recipe and i: its seed comes from
``SeedSequence(entropy=recipe.seed, spawn_key=(i,))``, so any subset of scenes
can be drawn anywhere, in any order, and changing ``count`` changes no scene.
Every sampler takes its ``np.random.Generator`` explicitly; there is no global
random state.

Geometry: the camera sits at the origin looking along world +Y (the
:class:`~generator.spec.CameraSpec` default). Objects are placed by planar depth
and image position, back-projected through the narrowest view of the sequence
(so they stay in frame in every frame, breathing included); the wall is sized
from the widest view, so it fills every frame.

Motion (a recipe's ``motion`` section) is drawn last, from a stream of its own
(a child of the scene's SeedSequence), so adding motion to a recipe changes no
object, light or world of its scenes: they only start to move.
"""

from __future__ import annotations

import colorsys
import dataclasses
import math
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from generator import lens as lensmod
from generator.assets import AssetFile, AssetFiles
from generator.errors import BadInput
from generator.focus import focus_ramp
from generator.recipe import (
    SPLITS,
    CameraMotionRecipe,
    IntRange,
    MaterialsRecipe,
    MotionRecipe,
    Range,
    Recipe,
    SceneRecipe,
    WorldRecipe,
)
from generator.spec import (
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
    camera_to_world,
)

#: Object centres are kept this fraction of the image size away from its borders.
IMAGE_MARGIN = 0.1
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
#: Ranges of the shape parameters (see generator.blender.mesh.build_mesh): superquadric
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
    (stream,) = _seed_sequence(recipe.seed, index).spawn(1)
    draw = np.random.default_rng(stream).random()
    # side="right" never picks a split of fraction 0 (its edge equals the previous one).
    return SPLITS[min(int(np.searchsorted(edges, draw, side="right")), len(SPLITS) - 1)]


def check_scene_index(recipe: Recipe, index: int) -> None:
    """Refuse an ``index`` that is not a scene of ``recipe`` (scenes are 0 to ``count - 1``).

    Raises:
        BadInput: naming the recipe and its range of scenes.
    """
    if not 0 <= index < recipe.count:
        raise BadInput(f"scene {index} is not in recipe '{recipe.name}' (scenes 0 to {recipe.count - 1})")


def sample_scene(recipe: Recipe, index: int) -> SceneSpec:
    """Draw scene ``index`` of ``recipe``: a pure function of (recipe, index).

    The content is drawn from the scene's SeedSequence itself (128 bits of
    state) rather than from the 32-bit :func:`scene_seed`, so two scenes of a
    large dataset cannot share content through a seed collision.
    """
    seed = scene_seed(recipe.seed, index)
    rng = np.random.default_rng(_seed_sequence(recipe.seed, index))
    assets = AssetFiles.of(recipe.assets)
    lens = _sample_lens(rng, recipe)
    frames = _sample_frames(rng, recipe)
    camera = CameraSpec()
    view = _View.of(lens, camera, frames, recipe.image.width, recipe.image.height)
    scene = recipe.scene
    wall = _sample_wall(rng, scene, view, assets)
    objects = _sample_objects(rng, scene, view, assets)
    lights = tuple(_sample_light(rng, scene, view) for _ in range(_integer(rng, scene.lights.count)))
    world = _sample_world(rng, scene.world, assets)
    if recipe.motion is not None:
        (motion_stream,) = _seed_sequence(recipe.seed, index).spawn(2)[1:]
        motion_rng = np.random.default_rng(motion_stream)
        duration = frames[-1].time_s
        objects = tuple(_sample_object_motion(motion_rng, recipe.motion, o, scene, view, duration) for o in objects)
        frames = _sample_camera_motion(motion_rng, recipe.motion.camera, camera, frames)
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
    )
    return SceneSpec(
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
    )


# --- drawing primitives -------------------------------------------------------------


def _uniform(rng: np.random.Generator, span: Range) -> float:
    return float(rng.uniform(span.min, span.max))


def _integer(rng: np.random.Generator, span: IntRange) -> int:
    return int(rng.integers(span.min, span.max, endpoint=True))


#: What :func:`_pick` draws: a name, an asset file.
T = TypeVar("T")


def _pick(rng: np.random.Generator, items: tuple[T, ...]) -> T:
    return items[int(rng.integers(len(items)))]


def _tint(rng: np.random.Generator, value: float) -> Vec3:
    """A near-white linear RGB colour (each channel 80-100 %) times ``value``."""
    return tuple(float(value * c) for c in 1.0 - rng.uniform(0.0, 0.2, 3))


def _colour_ramp(rng: np.random.Generator, stops: int) -> tuple[tuple[float, float, float, float], ...]:
    """A random colour ramp: ``stops`` (position, r, g, b) stops from 0 to 1, alternately bright
    and dark (which comes first is random) so the pattern has contrast; linear RGB."""
    first_bright = rng.random() < 0.5
    positions = [0.0, *np.sort(rng.random(stops - 2)).tolist(), 1.0]
    ramp = []
    for i, position in enumerate(positions):
        value = rng.uniform(0.6, 1.0) if (i % 2 == 0) == first_bright else rng.uniform(0.02, 0.3)
        ramp.append((float(position), *map(float, colorsys.hsv_to_rgb(rng.random(), rng.random(), value))))
    return tuple(ramp)


# Multi-lobe Gaussian fit of the CIE 1931 2-degree colour matching functions (Wyman,
# Sloan and Shirley, JCGT 2013): per function, lobes of (weight, mean nm, sigma below, sigma above).
_CMF_LOBES = (
    ((1.056, 599.8, 37.9, 31.0), (0.362, 442.0, 16.0, 26.7), (-0.065, 501.1, 20.4, 26.2)),
    ((0.821, 568.8, 46.9, 40.5), (0.286, 530.9, 16.3, 31.1)),
    ((1.217, 437.0, 11.8, 36.0), (0.681, 459.0, 26.0, 13.8)),
)
# CIE XYZ -> linear sRGB (D65), IEC 61966-2-1.
_XYZ_TO_SRGB = np.array([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]])


def blackbody_rgb(kelvin: float) -> Vec3:
    """Linear sRGB colour of a black body at ``kelvin``, brightest channel 1.

    Planck's law integrated against the CIE colour matching functions over
    380-780 nm, converted from XYZ to linear sRGB; out-of-gamut negatives clipped.
    """
    nm = np.arange(380.0, 781.0, 5.0)
    radiance = 1.0 / (nm**5 * np.expm1(1.4387769e7 / (nm * kelvin)))  # c2 = hc/k in nm K
    xyz = []
    for lobes in _CMF_LOBES:
        cmf = sum(w * np.exp(-0.5 * ((nm - mu) / np.where(nm < mu, lo, hi)) ** 2) for w, mu, lo, hi in lobes)
        xyz.append((cmf * radiance).sum())
    rgb = np.clip(_XYZ_TO_SRGB @ np.array(xyz), 0.0, None)
    return tuple(float(c) for c in rgb / rgb.max())


def shape_params(rng: np.random.Generator, shape: str) -> tuple[float, ...]:
    """Random parameters of a procedural shape (meaning: :func:`generator.blender.mesh.build_mesh`)."""
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


def _direction(rng: np.random.Generator) -> np.ndarray:
    """A unit vector, uniform on the sphere."""
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


# --- lens, frames, view -------------------------------------------------------------


def _sample_lens(rng: np.random.Generator, recipe: Recipe) -> lensmod.Lens:
    """A lens drawn from the recipe's ranges (millimetres there, metres here)."""
    lens = recipe.lens
    return lensmod.Lens(
        model=lens.model,
        focal_length_m=_uniform(rng, lens.focal_length_mm) / 1e3,
        f_number=_uniform(rng, lens.f_number),
        sensor_width_m=_uniform(rng, lens.sensor_width_mm) / 1e3,
    )


def _sample_frames(rng: np.random.Generator, recipe: Recipe) -> tuple[FrameSpec, ...]:
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


@dataclass(frozen=True)
class _View:
    """The camera's view over a sequence, for placing things in it.

    Attributes:
        width, height: image size, pixels.
        narrow_k: intrinsics of the frame with the narrowest field of view
            (longest effective focal length): a point inside it is in every frame.
        wide_k: intrinsics of the frame with the widest field of view.
        camera: the camera pose.
        cam_to_world: 4x4 OpenCV camera -> world transform of ``camera``.
    """

    width: int
    height: int
    narrow_k: np.ndarray
    wide_k: np.ndarray
    camera: CameraSpec
    cam_to_world: np.ndarray

    @classmethod
    def of(cls, lens: lensmod.Lens, camera: CameraSpec, frames, width: int, height: int) -> "_View":
        ks = [lensmod.intrinsics(lens, f.focus_distance_m, width, height) for f in frames]
        focal_px = [k[0, 0] for k in ks]
        narrow, wide = ks[int(np.argmax(focal_px))], ks[int(np.argmin(focal_px))]
        return cls(width, height, narrow, wide, camera, camera_to_world(camera))

    def to_world(self, point_cam: np.ndarray) -> Vec3:
        """World position of a point in the OpenCV camera frame, metres."""
        return tuple(float(c) for c in (self.cam_to_world @ np.append(point_cam, 1.0))[:3])

    def unproject(self, u: float, v: float, depth_m: float, k: np.ndarray) -> Vec3:
        """World position of pixel (u, v) at planar depth ``depth_m`` through intrinsics ``k``."""
        return self.to_world(depth_m * np.array([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], 1.0]))

    def to_camera(self, point_world) -> np.ndarray:
        """OpenCV camera coordinates of a world point, metres."""
        return (np.linalg.inv(self.cam_to_world) @ np.append(point_world, 1.0))[:3]

    def depth_of(self, point_world) -> float:
        """Planar depth of a world point, metres."""
        return float(self.to_camera(point_world)[2])

    def fraction_inside(self, start: np.ndarray, step: np.ndarray, depth_m: Range) -> float:
        """Largest s in [0, 1] with start + s * step (camera coordinates) inside the placement
        region: depth in ``depth_m`` and image position inside the margins of the narrow view.

        Every bound is linear in camera coordinates (a u bound fx x + (cx - u) z >= 0, ...),
        so s is the smallest of the per-bound limits; ``start`` must be inside.
        """
        k, low, high = self.narrow_k, IMAGE_MARGIN, 1 - IMAGE_MARGIN
        # Rows a with the region a . p <= b.
        rows = [
            ((0.0, 0.0, -1.0), -depth_m.min), ((0.0, 0.0, 1.0), depth_m.max),
            ((-k[0, 0], 0.0, low * self.width - k[0, 2]), 0.0), ((k[0, 0], 0.0, k[0, 2] - high * self.width), 0.0),
            ((0.0, -k[1, 1], low * self.height - k[1, 2]), 0.0), ((0.0, k[1, 1], k[1, 2] - high * self.height), 0.0),
        ]
        fraction = 1.0
        for a, b in rows:
            rate = float(np.dot(a, step))
            if rate > 0:
                fraction = min(fraction, max(0.0, (b - float(np.dot(a, start))) / rate))
        return fraction

    def metres_per_px(self, depth_m: float) -> float:
        """Size of one pixel on a fronto-parallel surface at ``depth_m`` (narrow view), metres."""
        return depth_m / self.narrow_k[0, 0]


# --- scene content ------------------------------------------------------------------


def _sample_material(
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
    kind = "diffuse" if rng.random() < textureless else _pick(rng, kinds)
    ramp = _colour_ramp(rng, _integer(rng, recipe.ramp_stops))
    period_px = recipe.image_period_px if kind == IMAGE_MATERIAL else recipe.texture_period_px
    period_m = _uniform(rng, period_px) * metres_per_px
    return MaterialSpec(
        kind=kind,
        color_a=ramp[0][1:],
        color_b=ramp[-1][1:],
        scale=object_scale / period_m,
        detail=_uniform(rng, recipe.detail),
        distortion=_uniform(rng, recipe.distortion),
        roughness=_uniform(rng, recipe.roughness),
        ramp=ramp if kind not in ("diffuse", IMAGE_MATERIAL) else (),
        metallic=_uniform(rng, recipe.metallic),
        bump=_uniform(rng, recipe.bump) if kind != "diffuse" else 0.0,
        image=_pick(rng, textures).ref() if kind == IMAGE_MATERIAL else "",
        rotation=float(rng.uniform(0.0, 2 * math.pi)) if kind == IMAGE_MATERIAL else 0.0,
    )


def _sample_wall(rng: np.random.Generator, scene: SceneRecipe, view: _View, assets: AssetFiles) -> ObjectSpec:
    """A textured plane facing the camera at the wall distance, overfilling the widest view.

    The plane primitive lies in its local XY with normal +Z; given the camera's
    rotation, its X and Y follow the image axes and its normal faces the camera.
    """
    distance = _uniform(rng, scene.wall.distance_m)
    half_w = WALL_OVERFILL * view.width / 2 / view.wide_k[0, 0] * distance
    half_h = WALL_OVERFILL * view.height / 2 / view.wide_k[1, 1] * distance
    centre_px = view.wide_k[:2, 2]
    return ObjectSpec(
        name="wall",
        shape="plane",
        location=view.unproject(centre_px[0], centre_px[1], distance, view.wide_k),
        rotation=view.camera.rotation,
        scale=(half_w, half_h, 1.0),
        material=_sample_material(
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


def _sample_objects(rng: np.random.Generator, scene: SceneRecipe, view: _View, assets: AssetFiles) -> tuple[ObjectSpec, ...]:
    """The foreground objects; with ``non_overlapping``, an object whose bounding sphere
    meets an earlier one's is drawn again at another place, and left out after
    :data:`PLACEMENT_TRIES` draws."""
    placed: list[ObjectSpec] = []
    for i in range(_integer(rng, scene.objects.count)):
        obj = _sample_object(rng, scene, view, assets, f"object_{i:03d}")
        for _ in range(PLACEMENT_TRIES):
            if not scene.objects.non_overlapping or all(
                math.dist(obj.location, o.location) >= bounding_radius(obj) + bounding_radius(o) for o in placed
            ):
                placed.append(obj)
                break
            obj = dataclasses.replace(obj, location=_sample_position(rng, scene, view))
    return tuple(placed)


def _sample_position(rng: np.random.Generator, scene: SceneRecipe, view: _View) -> Vec3:
    """World position of a random planar depth and image position (narrow view, margins kept)."""
    depth = _uniform(rng, scene.objects.depth_m)
    u = rng.uniform(IMAGE_MARGIN, 1 - IMAGE_MARGIN) * view.width
    v = rng.uniform(IMAGE_MARGIN, 1 - IMAGE_MARGIN) * view.height
    return view.unproject(u, v, depth, view.narrow_k)


def _sample_object(rng: np.random.Generator, scene: SceneRecipe, view: _View, assets: AssetFiles, name: str) -> ObjectSpec:
    """A random shape of random size and pose, its centre at a random depth and image position.

    ``size_m`` is the largest extent: every shape is 2 units across, so the
    largest per-axis scale is size / 2.
    """
    objects = scene.objects
    size = _uniform(rng, objects.size_m)
    aspect = rng.uniform(MIN_ASPECT, 1.0, 3)
    scale = tuple(float(s) for s in size / 2 * aspect / aspect.max())
    location = _sample_position(rng, scene, view)
    depth = view.depth_of(location)
    deformation = {}
    if rng.random() < objects.deform_probability:
        kind, span = [("twist", TWIST_RAD), ("taper", TAPER), ("displace", DISPLACE)][int(rng.integers(3))]
        deformation[kind] = float(rng.uniform(*span))
    shape = _pick(rng, objects.shapes)
    return ObjectSpec(
        name=name,
        shape=shape,
        location=location,
        rotation=tuple(float(a) for a in rng.uniform(0.0, 2 * math.pi, 3)),
        scale=scale,
        material=_sample_material(
            rng, scene.materials, scene.materials.families, view.metres_per_px(depth), size / 2, assets.textures,
            textureless=scene.materials.textureless_fraction,
        ),
        shape_params=shape_params(rng, shape),
        asset=_pick(rng, assets.meshes).ref() if shape == MESH_SHAPE else "",
        **deformation,
    )


def _sample_light(rng: np.random.Generator, scene: SceneRecipe, view: _View) -> LightSpec:
    """A light beside, above or behind the camera (never in front), aimed at a point among the objects.

    Positions are drawn in the camera frame (OpenCV: x right, y down, z forward)
    within a box scaled by the nearest wall distance, then moved to the world.
    Its colour is that of a black body at a temperature from ``temperature_k``.
    """
    kind = _pick(rng, scene.lights.kinds)
    reach = scene.wall.distance_m.min
    position = reach * np.array([rng.uniform(-1.0, 1.0), rng.uniform(-1.0, 0.3), rng.uniform(-0.5, 0.0)])
    target = np.array([*rng.uniform(-0.2, 0.2, 2) * reach, _uniform(rng, scene.objects.depth_m)])
    location, aim = view.to_world(position), view.to_world(target)
    return LightSpec(
        kind=kind,
        location=location,
        rotation=aim_rotation(np.subtract(aim, location)),
        energy=_uniform(rng, getattr(scene.lights.energy, kind)),
        color=blackbody_rgb(_uniform(rng, scene.lights.temperature_k)),
        size=float(rng.uniform(*LIGHT_SIZE[kind])),
    )


def _sample_world(rng: np.random.Generator, world: WorldRecipe, assets: AssetFiles) -> WorldSpec:
    """A world of a random kind: uniform near-white colour, sky (sun direction, turbidity) or environment map."""
    kind = _pick(rng, world.kinds)
    strength = _uniform(rng, world.strength)
    if kind == "sky":
        return WorldSpec(kind=kind, strength=strength, sun_elevation=math.radians(_uniform(rng, world.sun_elevation_deg)),
                         sun_azimuth=float(rng.uniform(0.0, 2 * math.pi)), turbidity=_uniform(rng, world.turbidity))
    if kind == "hdri":
        return WorldSpec(kind=kind, strength=strength, image=_pick(rng, assets.environments).ref(),
                         rotation=float(rng.uniform(0.0, 2 * math.pi)))
    return WorldSpec(kind=kind, color=_tint(rng, rng.uniform(0.3, 1.0)), strength=strength)


# --- motion -------------------------------------------------------------------------


def _sample_object_motion(
    rng: np.random.Generator, motion: MotionRecipe, obj: ObjectSpec, scene: SceneRecipe, view: _View, duration_s: float
) -> ObjectSpec:
    """``obj`` with constant linear and angular velocities (with probability ``moving_fraction``).

    The speed is cut, when needed, to the largest that keeps the centre inside the
    placement region (image margins in the narrow view, the depth range) until
    ``duration_s``: the region is convex (linear in camera coordinates) and holds
    the start, so the whole straight path stays in it.
    """
    if rng.random() >= motion.objects.moving_fraction:
        return obj
    velocity = _direction(rng) * _uniform(rng, motion.objects.speed_m_s)
    angular = _direction(rng) * _uniform(rng, motion.objects.angular_speed_rad_s)
    start = view.to_camera(obj.location)
    step = view.to_camera(np.add(obj.location, velocity * duration_s)) - start
    velocity = velocity * view.fraction_inside(start, step, scene.objects.depth_m)
    return dataclasses.replace(obj, velocity=tuple(map(float, velocity)), angular_velocity=tuple(map(float, angular)))


def _sample_camera_motion(
    rng: np.random.Generator, motion: CameraMotionRecipe, camera: CameraSpec, frames: tuple[FrameSpec, ...]
) -> tuple[FrameSpec, ...]:
    """``frames`` with their camera poses: ``camera`` moved by a constant drift (linear and
    Euler-angle rates) plus independent Gaussian jitter per frame; unchanged without camera motion."""
    drift = _direction(rng) * _uniform(rng, motion.drift_m_s)
    turn = _direction(rng) * _uniform(rng, motion.drift_rad_s)
    if not (drift.any() or turn.any() or motion.jitter_m or motion.jitter_rad):
        return frames
    out = []
    for frame in frames:
        location = np.add(camera.location, drift * frame.time_s) + rng.normal(0.0, motion.jitter_m, 3)
        rotation = np.add(camera.rotation, turn * frame.time_s) + rng.normal(0.0, motion.jitter_rad, 3)
        pose = CameraSpec(location=tuple(map(float, location)), rotation=tuple(map(float, rotation)))
        out.append(dataclasses.replace(frame, camera=pose))
    return tuple(out)


def aim_rotation(direction: np.ndarray) -> Vec3:
    """Blender XYZ Euler angles (radians) turning local -Z (where lights shine) to ``direction``.

    Local X is kept horizontal (perpendicular to world Z) so the result is unique.
    """
    back = -np.asarray(direction, dtype=np.float64) / np.linalg.norm(direction)  # local +Z
    up = np.array([0.0, 0.0, 1.0]) if abs(back[2]) < 0.999 else np.array([0.0, 1.0, 0.0])
    x_axis = np.cross(up, back)
    x_axis /= np.linalg.norm(x_axis)
    rot = np.column_stack([x_axis, np.cross(back, x_axis), back])
    # Inverse of spec.euler_xyz_matrix: R = Rz(c) Ry(b) Rx(a).
    return (
        float(math.atan2(rot[2, 1], rot[2, 2])),
        float(math.asin(-np.clip(rot[2, 0], -1.0, 1.0))),
        float(math.atan2(rot[1, 0], rot[0, 0])),
    )
