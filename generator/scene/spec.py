"""SceneSpec: one scene as plain, JSON-serialisable data (no bpy, no randomness).

A spec is drawn by :mod:`generator.draw.scene` and built by
:mod:`generator.render.blender.build`; the builder never draws random numbers, so the
spec alone decides every pixel (with the Cycles seed it carries).

Coordinates: Blender world frame (metres, Z up). Rotations are Blender XYZ
Euler angles in radians. The camera looks along its local -Z with +Y up
(Blender); :func:`world_to_camera` converts to the OpenCV camera frame of the
data contract (x right, y down, z forward).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from generator.core import lens as lensmod
from generator.core.errors import BadInput, SpecError, brief
from generator.core.schema import build, setting
from generator.scene.sensor import SensorSpec

Vec3 = tuple[float, float, float]

#: Procedural object families the builder knows: unit primitives, superquadrics,
#: extruded star polygons, low-poly rocks, smooth blobs and thin rods and rings
#: (their parameters in ``ObjectSpec.shape_params``, see :mod:`generator.render.blender.mesh`).
SHAPES = (
    "cube", "uv_sphere", "ico_sphere", "cylinder", "cone", "torus", "plane", "monkey",
    "superquadric", "extrusion", "rock", "blob", "rod", "ring",
)
#: Shape of an object whose geometry is a user mesh file (``ObjectSpec.asset``).
MESH_SHAPE = "mesh"
#: Procedural material families; "emission" is an unlit emitter, "diffuse" a plain colour.
MATERIALS = ("noise", "voronoi", "checker", "wave", "brick", "magic", "gradient", "diffuse", "emission")
#: Material family of a user image texture (``MaterialSpec.image``).
IMAGE_MATERIAL = "image"
LIGHTS = ("point", "sun", "area", "spot")
#: World families: uniform colour, procedural sky (Hosek-Wilkie), user environment map.
WORLDS = ("uniform", "sky", "hdri")


@dataclass(frozen=True)
class AssetRef:
    """A user asset file as a scene records it: which recipe folder, which file in it, its content.

    Never a host path, so a sample's bytes do not depend on where the data lies (the
    same recipe, seed and files give the same bytes in any folder, on any machine).

    Attributes:
        folder: the recipe field that names the file's folder, e.g. ``assets.meshes[0]``.
        file: the file's path inside that folder (its name: folders are not searched recursively).
        sha256: hex SHA-256 of the file's bytes.
        host_path: where the file is on this host (absolute, links followed), for the builder
            (:func:`asset_file`). Not part of the scene: left out of :meth:`SceneSpec.to_dict`
            and of comparisons, and empty in a spec read back from a sample.
    """

    folder: str
    file: str
    sha256: str
    host_path: str = field(default="", compare=False)


#: The field of :class:`AssetRef` that :meth:`SceneSpec.to_dict` leaves out.
_HOST_ONLY = "host_path"
#: Fields added after samples were first written, which :meth:`SceneSpec.to_dict` leaves out
#: while None (off), so the scenes of recipes without them keep their bytes.
_LEFT_OUT_WHEN_NONE = frozenset({"aperture", "shutter", "sensor", "jpeg_quality"})


def _plain_items(items: list[tuple[str, Any]]) -> dict[str, Any]:
    """A dataclass's fields for :meth:`SceneSpec.to_dict`: no host paths, no optional field that is off."""
    return {k: v for k, v in items if k != _HOST_ONLY and not (k in _LEFT_OUT_WHEN_NONE and v is None)}


def _no_asset() -> Any:
    """An asset field, empty without an asset (a procedural shape or material, a world without a map):
    the empty string, as before assets were recorded as :class:`AssetRef`, so the scenes of recipes
    without assets keep their bytes."""
    return setting("", choices=("",))


def asset_file(ref: AssetRef | str, what: str) -> str:
    """The file on this host of the asset ``ref`` (``what`` it is, for the message).

    Raises:
        BadInput: ``ref`` names no file here (a spec read back from a sample records none: draw
            the scene from its recipe instead).
    """
    if not isinstance(ref, AssetRef) or not ref.host_path:
        raise BadInput(f"the {what} of this scene spec is not a file on this host ({brief(ref)}); "
                       f"draw the scene from its recipe to build it")
    return ref.host_path


@dataclass(frozen=True)
class MaterialSpec:
    """A procedural material.

    Attributes:
        kind: one of :data:`MATERIALS`.
        color_a, color_b: linear RGB in [0, 1] mixed by the texture pattern.
        scale: texture frequency, cycles per metre of object space (Blender's ``Scale``).
        detail: texture detail / octaves where the family has one.
        distortion: pattern distortion where the family has one.
        roughness: principled BSDF roughness in [0, 1].
        emission_strength: W/m^2-ish Blender emission strength (``emission`` only).
        ramp: colour ramp the pattern's [0, 1] value is mapped through, as
            (position, r, g, b) stops in increasing position (linear RGB);
            empty: ``color_a`` at 0 to ``color_b`` at 1.
        metallic: principled BSDF metallic in [0, 1].
        bump: strength in [0, 1] of the bump mapping driven by the pattern (0 = smooth).
        image: the image file of an ``image`` material (:class:`AssetRef`; ``""`` for other kinds).
        rotation: rotation of the image texture about each projection axis, radians.
    """

    kind: str
    color_a: Vec3 = (0.8, 0.8, 0.8)
    color_b: Vec3 = (0.1, 0.1, 0.1)
    scale: float = 10.0
    detail: float = 2.0
    distortion: float = 0.0
    roughness: float = 0.5
    emission_strength: float = 0.0
    ramp: tuple[tuple[float, float, float, float], ...] = ()
    metallic: float = 0.0
    bump: float = 0.0
    image: AssetRef | str = _no_asset()
    rotation: float = 0.0


@dataclass(frozen=True)
class ObjectSpec:
    """A mesh object.

    Attributes:
        name: unique object name in the scene.
        shape: one of :data:`SHAPES` or :data:`MESH_SHAPE`; every shape has unit size
            (largest half-extent 1 m) before ``scale``.
        location: world position of the object's origin at time 0, metres.
        rotation: XYZ Euler angles at time 0, radians.
        scale: per-axis scale (so a sphere of radius r has scale (r, r, r)).
        twist: simple-deform twist angle, radians (0 = none).
        taper: simple-deform taper factor (0 = none).
        displace: displacement strength along normals, object units (0 = none).
        material: the surface.
        shape_params: the shape's parameters (see :func:`generator.render.blender.mesh.build_mesh`).
        asset: the mesh file of a ``mesh`` object (:class:`AssetRef`; ``""`` for other shapes).
        velocity: linear velocity of the origin, m/s (world frame).
        angular_velocity: rate of change of the XYZ Euler angles, rad/s.
    """

    name: str
    shape: str
    location: Vec3
    rotation: Vec3
    scale: Vec3
    material: MaterialSpec
    twist: float = 0.0
    taper: float = 0.0
    displace: float = 0.0
    shape_params: tuple[float, ...] = ()
    asset: AssetRef | str = _no_asset()
    velocity: Vec3 = (0.0, 0.0, 0.0)
    angular_velocity: Vec3 = (0.0, 0.0, 0.0)

    def pose_at(self, time_s: float) -> tuple[Vec3, Vec3]:
        """(location m, XYZ Euler rotation rad) at ``time_s`` seconds: constant velocities from time 0."""
        location = tuple(float(p + v * time_s) for p, v in zip(self.location, self.velocity))
        rotation = tuple(float(r + w * time_s) for r, w in zip(self.rotation, self.angular_velocity))
        return location, rotation


@dataclass(frozen=True)
class LightSpec:
    """A light. ``energy`` is Blender's power (W) or irradiance (W/m^2 for ``sun``)."""

    kind: str
    location: Vec3
    rotation: Vec3
    energy: float
    color: Vec3 = (1.0, 1.0, 1.0)
    size: float = 0.1


@dataclass(frozen=True)
class WorldSpec:
    """The world (background) light.

    Attributes:
        kind: one of :data:`WORLDS`.
        color: linear RGB of a ``uniform`` world.
        strength: Blender's background strength (multiplies every kind).
        sun_elevation, sun_azimuth: sun direction of a ``sky``, radians (azimuth
            about world Z from +X).
        turbidity: atmospheric turbidity of a ``sky`` (2 clear .. 10 hazy).
        image: environment map file of an ``hdri`` world (:class:`AssetRef`; ``""`` for other kinds).
        rotation: rotation of the ``hdri`` map about world Z, radians.
    """

    kind: str = "uniform"
    color: Vec3 = (0.05, 0.05, 0.05)
    strength: float = 1.0
    sun_elevation: float = 0.5
    sun_azimuth: float = 0.0
    turbidity: float = 3.0
    image: AssetRef | str = _no_asset()
    rotation: float = 0.0


@dataclass(frozen=True)
class CameraSpec:
    """Camera pose in the world (Blender convention: looks along local -Z)."""

    location: Vec3 = (0.0, 0.0, 0.0)
    rotation: Vec3 = (math.pi / 2, 0.0, 0.0)  # looking along world +Y, Z up


@dataclass(frozen=True)
class FrameSpec:
    """One focus frame: its place in the sequence, scene time (s) and focus distance (metres, planar).

    ``camera`` is the camera pose of this frame when the camera moves (drift,
    jitter); ``None`` means the scene's :attr:`SceneSpec.camera`.
    """

    index: int
    ramp: int
    time_s: float
    focus_distance_m: float
    camera: CameraSpec | None = None


@dataclass(frozen=True)
class ShutterSpec:
    """The shutter of every frame of a moving scene (DESIGN.md section 10, "Shutter").

    Each image row collects light for ``exposure_s`` seconds; the rows start one after
    another from the top, the bottom row ``rolling_readout_s`` seconds after the top one
    (0: a global shutter). Row r of H (0 at the top) is exposed centred on
    ``time_s + ((r + 1/2) / H - 1/2) * rolling_readout_s``: the image's middle line (the whole
    image, with a global shutter) is centred on the frame's ``time_s``, the instant its depth,
    pose, CoC and motion vectors refer to. The camera moves through the exposure at the scene's
    camera drift (its jitter is one offset per frame, held through the exposure).

    Attributes:
        exposure_s: each row's exposure, seconds.
        rolling_readout_s: the bottom row's start after the top row's, seconds (0: global shutter).
        camera_velocity_m_s: the camera's drift, metres per second (world frame).
        camera_turn_rad_s: the camera's Euler-angle rates, radians per second.
    """

    exposure_s: float
    rolling_readout_s: float = 0.0
    camera_velocity_m_s: Vec3 = (0.0, 0.0, 0.0)
    camera_turn_rad_s: Vec3 = (0.0, 0.0, 0.0)

    @property
    def window_s(self) -> float:
        """Seconds from the top row's first light to the bottom row's last."""
        return self.exposure_s + self.rolling_readout_s


@dataclass(frozen=True, kw_only=True)
class LightPaths:
    """Cycles light-path settings of RGB frames: they change noise, cost and shading, never the blur.

    Defocus is decided by the camera ray alone (where it leaves the aperture and
    what it hits); these settings act on the paths after that first hit, so they
    trade noise against cost (and, for clamping and filter-glossy, a little bias in
    shading) without moving a CoC. ``benchmarks/render_quality_speed.py`` measures
    each one's noise per second and its CoC; the defaults are its best measured
    (docs/RENDER_QUALITY.md, small_obj at 256 px): Cycles' factory values but the
    light tree, which is off: with the recipes' 1-3 lights it costs 25 % more time
    per frame and gives 18 % more noise (1.73x less noise per second without it).
    Bounce counts, clamping, filter-glossy and caustics changed neither noise nor
    time measurably (direct light dominates these scenes), path guiding cost 55 %
    more time for no less noise; none moved the CoC. Per-type bounce counts are
    capped by ``image.max_bounces``.

    Attributes:
        diffuse_bounces, glossy_bounces, transmission_bounces: bounces per BSDF type.
        transparent_bounces: transparent-surface bounces (alpha; no object is transparent today).
        clamp_direct, clamp_indirect: largest value of one sample's direct / indirect
            light (linear radiance; 0 = no clamping): removes fireflies, darkens highlights.
        filter_glossy: Cycles' "filter glossy" roughness added to glossy bounces after
            a diffuse or rough one (0 = off): fewer caustic fireflies.
        caustics: reflective and refractive caustics.
        light_tree: Cycles' many-light sampling tree (off: see above).
        path_guiding: Cycles' path guiding (CPU only; a GPU renders without it).
    """

    diffuse_bounces: int = setting(4, ge=0, le=1024)
    glossy_bounces: int = setting(4, ge=0, le=1024)
    transmission_bounces: int = setting(12, ge=0, le=1024)
    transparent_bounces: int = setting(8, ge=0, le=1024)
    clamp_direct: float = setting(0.0, ge=0)
    clamp_indirect: float = setting(10.0, ge=0)
    filter_glossy: float = setting(1.0, ge=0, le=10)
    caustics: bool = setting(True)
    light_tree: bool = setting(False)
    path_guiding: bool = setting(False)


@dataclass(frozen=True)
class RenderSpec:
    """Cycles settings that change pixels.

    Attributes:
        width, height: image size, pixels.
        samples: Cycles samples per pixel for RGB frames.
        seed: Cycles sampling seed.
        max_bounces: total light bounces.
        aif: also render the all-in-focus image (camera of frame 0, DoF off).
        rgb: RGB encoding, ``png8`` | ``png16`` | ``exr`` (linear) | ``jpeg`` (8-bit sRGB).
        coc: also store per-frame CoC maps (pixels) computed from depth.
        motion: also store per-frame motion vectors to the next frame (:mod:`generator.scene.flow`).
        adaptive_threshold: adaptive-sampling noise threshold, 0 = off (fixed ``samples``).
        adaptive_min_samples: samples before adaptive sampling may stop a pixel, 0 = ``samples // 4``.
        denoise: OpenImageDenoise on RGB frames (albedo and normal guides).
        light_paths: bounces per type, clamping, caustics and the other path settings.
        jpeg_quality: Pillow's JPEG quality (1-95) for ``rgb: jpeg``; else None.
    """

    width: int
    height: int
    samples: int
    seed: int
    max_bounces: int = 4
    aif: bool = False
    rgb: str = "png8"
    coc: bool = False
    motion: bool = False
    adaptive_threshold: float = 0.0
    adaptive_min_samples: int = 0
    denoise: bool = False
    light_paths: LightPaths = LightPaths()
    jpeg_quality: int | None = None


def with_render(spec: SceneSpec, **changes) -> SceneSpec:
    """``spec`` with some of its :class:`RenderSpec` fields changed."""
    return dataclasses.replace(spec, render=dataclasses.replace(spec.render, **changes))


@dataclass(frozen=True)
class SceneSpec:
    """Everything needed to render one scene's focal-stack sequence.

    ``sensor``: the camera's noise and image pipeline (:class:`generator.scene.sensor.SensorSpec`),
    applied to the rendered frames; None: frames are stored as Cycles renders them.
    """

    index: int
    seed: int
    split: str
    render: RenderSpec
    lens: lensmod.Lens
    camera: CameraSpec
    frames: tuple[FrameSpec, ...]
    objects: tuple[ObjectSpec, ...]
    lights: tuple[LightSpec, ...] = ()
    world: WorldSpec = field(default_factory=WorldSpec)
    shutter: ShutterSpec | None = None  # None: every frame is an instant
    sensor: SensorSpec | None = None

    @property
    def depth_per_frame(self) -> bool:
        """True when each frame needs its own depth map (DESIGN.md section 5).

        Breathing (``thin_lens``) changes K with the focus, so the planar depth
        map in pixel coordinates differs per frame; so does any motion.
        """
        return self.lens.model != "blender" or len({f.time_s for f in self.frames}) > 1

    def camera_at(self, frame: FrameSpec) -> CameraSpec:
        """The camera pose of ``frame``."""
        return frame.camera or self.camera

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of built-in types (tuples become lists), without host paths (:class:`AssetRef`)
        and without optional fields that are off (:data:`_LEFT_OUT_WHEN_NONE`)."""
        scene = dataclasses.asdict(self, dict_factory=_plain_items)
        return json.loads(json.dumps(scene))

    def to_json(self) -> str:
        """Canonical JSON (sorted keys), the form compared across processes."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SceneSpec":
        """Inverse of :meth:`to_dict`, checked field by field (:func:`generator.core.schema.build`).

        Raises:
            SpecError: a missing, unknown or mistyped field.
        """
        return build(cls, data, SpecError)


def euler_xyz_matrix(rotation: Vec3) -> np.ndarray:
    """3x3 rotation of Blender's XYZ Euler mode: R = Rz @ Ry @ Rx (radians)."""
    x, y, z = rotation
    cx, sx, cy, sy, cz, sz = math.cos(x), math.sin(x), math.cos(y), math.sin(y), math.cos(z), math.sin(z)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


# Blender camera axes (x right, y up, looking -z) -> OpenCV (x right, y down, z forward).
_BLENDER_TO_OPENCV = np.diag([1.0, -1.0, -1.0])


def world_to_camera(camera: CameraSpec) -> np.ndarray:
    """4x4 world -> OpenCV camera transform (metres)."""
    rot = euler_xyz_matrix(camera.rotation)
    out = np.eye(4)
    out[:3, :3] = _BLENDER_TO_OPENCV @ rot.T
    out[:3, 3] = -out[:3, :3] @ np.asarray(camera.location, dtype=np.float64)
    return out


def camera_to_world(camera: CameraSpec) -> np.ndarray:
    """4x4 OpenCV camera -> world transform (metres); inverse of :func:`world_to_camera`."""
    return np.linalg.inv(world_to_camera(camera))
