"""Scene sampling: (recipe, scene index) -> :class:`~generator.spec.SceneSpec`, deterministically.

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
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np

from generator import lens as lensmod
from generator.errors import BadInput
from generator.focus import focus_ramp
from generator.recipe import SPLITS, IntRange, MaterialsRecipe, Range, Recipe, SceneRecipe
from generator.spec import (
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


def _seed_sequence(recipe_seed: int, index: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(entropy=recipe_seed, spawn_key=(index,))


def scene_seed(recipe_seed: int, index: int) -> int:
    """Seed of scene ``index`` (uint32), from ``SeedSequence(entropy=recipe_seed, spawn_key=(index,))``."""
    return int(_seed_sequence(recipe_seed, index).generate_state(1, dtype=np.uint32)[0])


def scene_split(recipe: Recipe, index: int) -> str:
    """Split (``train``/``val``/``test``) of scene ``index``.

    Drawn from a child of the scene's SeedSequence, a stream separate from the
    scene content, so the recipe's fractions are honoured in expectation and a
    scene keeps its split whatever ``count`` is.
    """
    (stream,) = _seed_sequence(recipe.seed, index).spawn(1)
    draw = np.random.default_rng(stream).random()
    fractions = np.array([getattr(recipe.splits, name) for name in SPLITS])
    edges = np.cumsum(fractions) / fractions.sum()
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
    lens = _sample_lens(rng, recipe)
    frames = _sample_frames(rng, recipe)
    camera = CameraSpec()
    view = _View.of(lens, camera, frames, recipe.image.width, recipe.image.height)
    scene = recipe.scene
    wall = _sample_wall(rng, scene, view)
    n_objects = _integer(rng, scene.objects.count)
    objects = tuple(_sample_object(rng, scene, view, f"object_{i:03d}") for i in range(n_objects))
    lights = tuple(_sample_light(rng, scene, view) for _ in range(_integer(rng, scene.lights.count)))
    world = WorldSpec(color=_tint(rng, rng.uniform(0.3, 1.0)), strength=_uniform(rng, scene.world.strength))
    render = RenderSpec(
        width=recipe.image.width,
        height=recipe.image.height,
        samples=recipe.image.samples,
        seed=seed % 2**31,  # Cycles' seed is a signed 32-bit int
        max_bounces=recipe.image.max_bounces,
        aif=recipe.outputs.aif,
        rgb=recipe.outputs.rgb,
        coc=recipe.outputs.coc,
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


def _pick(rng: np.random.Generator, names: tuple[str, ...]) -> str:
    return names[int(rng.integers(len(names)))]


def _tint(rng: np.random.Generator, value: float) -> Vec3:
    """A near-white linear RGB colour (each channel 80-100 %) times ``value``."""
    return tuple(float(value * c) for c in 1.0 - rng.uniform(0.0, 0.2, 3))


def _two_colours(rng: np.random.Generator) -> tuple[Vec3, Vec3]:
    """Two random linear RGB colours, one bright and one dark, so the pattern has contrast."""
    bright = colorsys.hsv_to_rgb(rng.random(), rng.random(), rng.uniform(0.6, 1.0))
    dark = colorsys.hsv_to_rgb(rng.random(), rng.random(), rng.uniform(0.02, 0.3))
    pair = (tuple(map(float, bright)), tuple(map(float, dark)))
    return pair if rng.random() < 0.5 else pair[::-1]


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
    """``ramps`` x ``frames_per_ramp`` frames of a static scene (time 0)."""
    focus = recipe.focus
    frames = []
    for ramp in range(focus.ramps):
        distances = focus_ramp(focus.schedule, focus.frames_per_ramp, focus.near_m, focus.far_m, focus.distances_m, rng)
        for distance in distances:
            frames.append(FrameSpec(index=len(frames), ramp=ramp, time_s=0.0, focus_distance_m=float(distance)))
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

    def metres_per_px(self, depth_m: float) -> float:
        """Size of one pixel on a fronto-parallel surface at ``depth_m`` (narrow view), metres."""
        return depth_m / self.narrow_k[0, 0]


# --- scene content ------------------------------------------------------------------


def _sample_material(
    rng: np.random.Generator, recipe: MaterialsRecipe, kinds: tuple[str, ...], metres_per_px: float, object_scale: float
) -> MaterialSpec:
    """A procedural material whose texture period is ``recipe.texture_period_px`` pixels in the image.

    The builder evaluates textures in object space (before the object's scale), so
    the period ``period_px * metres_per_px`` metres becomes ``object_scale / period``
    cycles per object unit, along the object's longest axis.
    """
    color_a, color_b = _two_colours(rng)
    period_m = _uniform(rng, recipe.texture_period_px) * metres_per_px
    return MaterialSpec(
        kind=_pick(rng, kinds),
        color_a=color_a,
        color_b=color_b,
        scale=object_scale / period_m,
        detail=_uniform(rng, recipe.detail),
        distortion=_uniform(rng, recipe.distortion),
        roughness=_uniform(rng, recipe.roughness),
    )


def _sample_wall(rng: np.random.Generator, scene: SceneRecipe, view: _View) -> ObjectSpec:
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
            rng, scene.materials, scene.wall.materials, view.metres_per_px(distance), max(half_w, half_h)
        ),
    )


def _sample_object(rng: np.random.Generator, scene: SceneRecipe, view: _View, name: str) -> ObjectSpec:
    """A random shape of random size and pose, its centre at a random depth and image position.

    ``size_m`` is the largest extent: primitives are 2 units across, so the
    largest per-axis scale is size / 2.
    """
    objects = scene.objects
    size = _uniform(rng, objects.size_m)
    aspect = rng.uniform(MIN_ASPECT, 1.0, 3)
    scale = tuple(float(s) for s in size / 2 * aspect / aspect.max())
    depth = _uniform(rng, objects.depth_m)
    u = rng.uniform(IMAGE_MARGIN, 1 - IMAGE_MARGIN) * view.width
    v = rng.uniform(IMAGE_MARGIN, 1 - IMAGE_MARGIN) * view.height
    deformation = {}
    if rng.random() < objects.deform_probability:
        kind, span = [("twist", TWIST_RAD), ("taper", TAPER), ("displace", DISPLACE)][int(rng.integers(3))]
        deformation[kind] = float(rng.uniform(*span))
    return ObjectSpec(
        name=name,
        shape=_pick(rng, objects.shapes),
        location=view.unproject(u, v, depth, view.narrow_k),
        rotation=tuple(float(a) for a in rng.uniform(0.0, 2 * math.pi, 3)),
        scale=scale,
        material=_sample_material(rng, scene.materials, scene.materials.families, view.metres_per_px(depth), size / 2),
        **deformation,
    )


def _sample_light(rng: np.random.Generator, scene: SceneRecipe, view: _View) -> LightSpec:
    """A light beside, above or behind the camera (never in front), aimed at a point among the objects.

    Positions are drawn in the camera frame (OpenCV: x right, y down, z forward)
    within a box scaled by the nearest wall distance, then moved to the world.
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
        color=_tint(rng, 1.0),
        size=float(rng.uniform(*LIGHT_SIZE[kind])),
    )


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
