"""Recipes: YAML files describing a dataset, validated into frozen dataclasses.

A recipe says how many scenes to draw and from which ranges (lens, focus,
objects, materials, lights), what to render and how to shard it. It is read
with :func:`generator.core.safe_yaml.load_yaml` and checked field by field by
:mod:`generator.core.schema` from the dataclass annotations below and their
:func:`~generator.core.schema.setting` checks (bounds, allowed names), so every error
names the dotted field path, the value given and what is allowed (DESIGN.md section 8).

Conventions:
    * lengths are metres (``_m``), except the photographers' millimetres for
      ``lens.focal_length_mm`` and ``lens.sensor_width_mm``;
    * a :class:`Range` is written as one number or as ``[min, max]``; scene
      values are drawn uniformly from it;
    * every list must be non-empty.

Typical use::

    recipe = load_recipe("small_obj", overrides=["image.width=64"])
    recipe.sha256  # changes with every override
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from generator.scene.places import AssetPlaces
from generator.core.limits import MAX_FRAMES, MAX_SCENE_PIXELS
from generator.core.errors import BadInput, RecipeError, brief
from generator.recipe.ramps import SCHEDULES
from generator.core.lens import LENS_MODELS, MAX_BLADES, MIN_BLADES, MIN_RATIO
from generator.core.safe_yaml import MAX_CHARS, load_yaml
from generator.core.schema import NOTHING, build, setting, to_plain
from generator.core.schema import apply_overrides as schema_overrides
from generator.scene.spec import IMAGE_MATERIAL, LIGHTS, LightPaths, MATERIALS, MESH_SHAPE, SHAPES, WORLDS

#: Procedural material families objects may use: everything but the unlit emitter.
SURFACE_MATERIALS = tuple(m for m in MATERIALS if m != "emission")
#: Families with a fine pattern; the wall must show defocus everywhere, so no
#: plain colour or smooth gradient there.
TEXTURED_MATERIALS = tuple(m for m in SURFACE_MATERIALS if m not in ("diffuse", "gradient"))
RGB_FORMATS = ("png8", "png16", "exr", "jpeg")
SPLITS = ("train", "val", "test")
#: Values of ``splits.order``.
SPLIT_ORDERS = ("random", "contiguous")

# Upper bounds: what one run may ask for, so a recipe from a stranger cannot make
# dfdgen hang or exhaust memory before (or inside) Blender. Each is far above any
# dataset made so far; raise one here if a real dataset needs it.
#: Scenes in one recipe.
MAX_SCENES = 10_000_000
#: Cycles samples per pixel.
MAX_SAMPLES = 65_536
#: Objects and lights per scene.
MAX_OBJECTS = 1000
MAX_LIGHTS = 64


class Range(NamedTuple):
    """A closed interval to draw from uniformly; YAML: a number (min == max) or ``[min, max]``."""

    min: float
    max: float


class IntRange(NamedTuple):
    """A closed interval of integers; YAML: an integer or ``[min, max]``."""

    min: int
    max: int


# Sections


@dataclass(frozen=True, kw_only=True)
class SplitsRecipe:
    """Fraction of scenes in each split; each >= 0, summing to 1.

    Attributes:
        order: how scenes get their split (:func:`generator.draw.scene.scene_split`):
            ``random`` (the default when left out) draws each scene's split, so it does
            not depend on ``count``; ``contiguous`` gives train the first scenes, then val,
            then test (the first round(train x count) scenes train, ...), as loaders that
            split by file index expect (FoD500's, see :mod:`generator.dataset.export`).
    """

    train: float = setting(0.8, ge=0, le=1)
    val: float = setting(0.1, ge=0, le=1)
    test: float = setting(0.1, ge=0, le=1)
    order: str | None = setting(None, choices=SPLIT_ORDERS)


@dataclass(frozen=True, kw_only=True)
class ImageRecipe:
    """Image size (pixels), Cycles samples per pixel, light bounces, and how samples are spent.

    Attributes:
        adaptive_threshold: Cycles' adaptive-sampling noise threshold; a pixel stops
            once its noise estimate is below it (0 = off: every pixel gets ``samples``).
        adaptive_min_samples: samples every pixel gets before adaptive sampling may stop
            it; 0 = ``samples // 4`` (see :func:`generator.render.blender.build.set_beauty_sampling`).
        denoise: run OpenImageDenoise on RGB frames; off by default, since a denoiser
            invents detail and alters the defocus blur the frames are for (a run warns).
        light_paths: Cycles' path settings (:class:`generator.scene.spec.LightPaths`), which change
            noise and cost, not the blur.
    """

    width: int = setting(ge=8, le=8192)
    height: int = setting(ge=8, le=8192)
    samples: int = setting(ge=1, le=MAX_SAMPLES)
    max_bounces: int = setting(4, ge=0, le=1024)
    adaptive_threshold: float = setting(0.0, ge=0, le=1)
    adaptive_min_samples: int = setting(0, ge=0, le=MAX_SAMPLES)
    denoise: bool = setting(False)
    light_paths: LightPaths = setting(LightPaths)


@dataclass(frozen=True, kw_only=True)
class ApertureRecipe:
    """The aperture's shape (:class:`generator.core.lens.Aperture`), rendered by Cycles; drawn per scene.

    Attributes:
        blades: number of blades: 0 (a disc), or a range within 3..16.
        rotation_deg: rotation of the blades, degrees.
        ratio: anamorphic squeeze (Cycles' ``aperture_ratio``; Blender's bounds, up to a sane 100):
            the blur's width is divided by it.
    """

    blades: IntRange = setting(ge=0, le=MAX_BLADES)
    rotation_deg: Range = setting(Range(0.0, 0.0), ge=-180, le=180)
    ratio: Range = setting(Range(1.0, 1.0), ge=MIN_RATIO, le=100)


@dataclass(frozen=True, kw_only=True)
class LensRecipe:
    """Lens model (see :mod:`generator.core.lens`) and ranges its values are drawn from, per scene.

    Attributes:
        model: ``thin_lens`` (physical lens, breathing) or ``blender`` (Blender's camera as is).
        focal_length_mm: f, millimetres.
        f_number: N.
        sensor_width_mm: sensor width, millimetres (fit horizontally).
        aperture: the aperture's shape; left out: a disc.
    """

    model: str = setting("thin_lens", choices=LENS_MODELS)
    focal_length_mm: Range = setting(gt=0)
    f_number: Range = setting(gt=0)
    sensor_width_mm: Range = setting(gt=0)
    aperture: ApertureRecipe | None = setting(None)


@dataclass(frozen=True, kw_only=True)
class FocusRecipe:
    """Focus sequence: ``ramps`` ramps of ``frames_per_ramp`` increasing focus distances.

    Attributes:
        schedule: see :func:`generator.recipe.ramps.focus_ramp`.
        near_m, far_m: first and last focus distance, metres (``diopter``, ``linear``, ``random``).
        distances_m: the exact focus distances of every ramp, metres (``list`` only).
    """

    ramps: int = setting(ge=1, le=MAX_FRAMES)
    frames_per_ramp: int = setting(ge=1, le=MAX_FRAMES)
    schedule: str = setting("diopter", choices=SCHEDULES)
    near_m: float | None = setting(None, gt=0)
    far_m: float | None = setting(None, gt=0)
    distances_m: tuple[float, ...] | None = setting(None, gt=0)


@dataclass(frozen=True, kw_only=True)
class ObjectsRecipe:
    """Foreground objects.

    Attributes:
        count: number of objects per scene.
        size_m: largest extent of an object, metres.
        depth_m: planar depth of an object's centre, metres.
        shapes: shape families to draw from (:data:`generator.scene.spec.SHAPES`, and
            ``mesh``: a file from ``assets.meshes``).
        deform_probability: chance that an object is twisted, tapered or displaced.
        non_overlapping: keep objects' bounding spheres apart (at time 0); an object
            that finds no free place in :data:`generator.draw.scene.PLACEMENT_TRIES`
            draws is left out.
    """

    count: IntRange = setting(IntRange(3, 8), ge=0, le=MAX_OBJECTS)
    size_m: Range = setting(Range(0.05, 0.2), gt=0)
    depth_m: Range = setting(Range(0.4, 1.2), gt=0)
    shapes: tuple[str, ...] = setting(SHAPES, choices=(*SHAPES, MESH_SHAPE))
    deform_probability: float = setting(0.5, ge=0, le=1)
    non_overlapping: bool = setting(False)


@dataclass(frozen=True, kw_only=True)
class WallRecipe:
    """Textured background wall facing the camera, filling the view.

    Attributes:
        distance_m: planar depth of the wall, metres.
        materials: material families of the wall (textured ones only, and ``image``:
            a file from ``assets.textures``).
    """

    distance_m: Range = setting(Range(2.0, 2.0), gt=0)
    materials: tuple[str, ...] = setting(TEXTURED_MATERIALS, choices=(*TEXTURED_MATERIALS, IMAGE_MATERIAL))


@dataclass(frozen=True, kw_only=True)
class MaterialsRecipe:
    """Procedural materials of the objects (and texture settings of the wall).

    Attributes:
        families: material families objects draw from (and ``image``: a file from
            ``assets.textures``, box-projected at a random scale and rotation).
        textureless_fraction: share of objects given a plain colour (``diffuse``, no
            bump) whatever ``families`` says: textureless surfaces are where depth
            from defocus has no cue, so a dataset should hold some.
        texture_period_px: size of one texture period in the image, pixels, at the
            surface's depth; small values give the fine texture defocus shows on.
        image_period_px: size of one repeat of an ``image`` texture in the image, pixels.
        ramp_stops: stops of the random colour ramp a pattern is mapped through.
        detail: texture detail (octaves) where the family has one.
        distortion: pattern distortion where the family has one.
        roughness: BSDF roughness.
        metallic: BSDF metallic.
        bump: strength of the bump mapping driven by the pattern (0 = smooth).
    """

    families: tuple[str, ...] = setting(SURFACE_MATERIALS, choices=(*SURFACE_MATERIALS, IMAGE_MATERIAL))
    textureless_fraction: float = setting(0.0, ge=0, le=1)
    texture_period_px: Range = setting(Range(3.0, 16.0), gt=0)
    image_period_px: Range = setting(Range(64.0, 256.0), gt=0)
    ramp_stops: IntRange = setting(IntRange(2, 2), ge=2, le=8)
    detail: Range = setting(Range(1.0, 8.0), ge=0, le=15)
    distortion: Range = setting(Range(0.0, 1.0), ge=0)
    roughness: Range = setting(Range(0.2, 0.9), ge=0, le=1)
    metallic: Range = setting(Range(0.0, 0.0), ge=0, le=1)
    bump: Range = setting(Range(0.0, 0.0), ge=0, le=1)


@dataclass(frozen=True, kw_only=True)
class LightEnergyRecipe:
    """Light energy per kind: W for point, spot and area lights, W/m^2 for the sun."""

    point: Range = setting(Range(20.0, 150.0), ge=0)
    spot: Range = setting(Range(30.0, 200.0), ge=0)
    area: Range = setting(Range(20.0, 150.0), ge=0)
    sun: Range = setting(Range(1.0, 4.0), ge=0)


@dataclass(frozen=True, kw_only=True)
class LightsRecipe:
    """Lights placed beside, above and behind the camera, aimed at the objects.

    Attributes:
        count: number of lights per scene (0: the world lights the scene alone).
        kinds: light kinds to draw from (:data:`generator.scene.spec.LIGHTS`).
        energy: energy range per kind.
        temperature_k: colour temperature, kelvin (the colour of a black body at it).
    """

    count: IntRange = setting(IntRange(1, 3), ge=0, le=MAX_LIGHTS)
    kinds: tuple[str, ...] = setting(LIGHTS, choices=LIGHTS)
    energy: LightEnergyRecipe = setting(LightEnergyRecipe)
    temperature_k: Range = setting(Range(6500.0, 6500.0), ge=1000, le=40000)


@dataclass(frozen=True, kw_only=True)
class WorldRecipe:
    """Background light.

    Attributes:
        kinds: world families (:data:`generator.scene.spec.WORLDS`): ``uniform`` colour,
            procedural ``sky``, ``hdri`` (a file from ``assets.environments``).
        strength: Blender's world strength.
        sun_elevation_deg: sun elevation of a ``sky``, degrees above the horizon.
        turbidity: haze of a ``sky`` (2 clear .. 10 hazy).
    """

    kinds: tuple[str, ...] = setting(("uniform",), choices=WORLDS)
    strength: Range = setting(Range(0.1, 0.6), ge=0)
    sun_elevation_deg: Range = setting(Range(5.0, 60.0), ge=-90, le=90)
    turbidity: Range = setting(Range(2.0, 6.0), ge=1, le=10)


@dataclass(frozen=True, kw_only=True)
class SceneRecipe:
    """What a scene holds: objects in front of a wall, their materials, lights and world."""

    objects: ObjectsRecipe = setting(ObjectsRecipe)
    wall: WallRecipe = setting(WallRecipe)
    materials: MaterialsRecipe = setting(MaterialsRecipe)
    lights: LightsRecipe = setting(LightsRecipe)
    world: WorldRecipe = setting(WorldRecipe)


@dataclass(frozen=True, kw_only=True)
class AssetsRecipe:
    """User asset folders (not searched recursively), kept as written: relative folders are relative
    to the folder of the recipe file (the ``recipes`` folder for a built-in recipe), and every folder
    must lie there or in a folder given with ``dfdgen render --assets-root``
    (:class:`generator.scene.assets.AssetPlaces`).

    Where the folders are looked up, :attr:`places`, is not a field: it is not in the recipe's
    YAML or sha256, so a recipe and its data give the same samples wherever they lie.

    Attributes:
        meshes: folders of ``.obj``/``.ply``/``.stl``/``.glb`` meshes (shape ``mesh``).
        textures: folders of ``.png``/``.jpg`` images (material ``image``).
        environments: folders of ``.exr``/``.hdr`` environment maps (world ``hdri``).
    """

    meshes: tuple[str, ...] | None = setting(None)
    textures: tuple[str, ...] | None = setting(None)
    environments: tuple[str, ...] | None = setting(None)

    @property
    def places(self) -> AssetPlaces:
        """Where the folders are looked up (:meth:`located`); the current folder, with no
        ``--assets-root``, for a section never located."""
        return self.__dict__.get("_places") or AssetPlaces.of(Path.cwd())

    def located(self, places: AssetPlaces) -> "AssetsRecipe":
        """These folders, looked up in ``places``. A copy: the frozen section keeps ``places``
        beside its fields (pickled with it to render workers), not as one."""
        out = copy.copy(self)
        object.__setattr__(out, "_places", places)
        return out


@dataclass(frozen=True, kw_only=True)
class ObjectMotionRecipe:
    """Objects' constant velocities.

    Attributes:
        moving_fraction: share of objects that move (the wall never does).
        speed_m_s: speed, m/s, in a random direction; reduced where needed so the
            object's centre stays in view and in the depth range all sequence long.
        angular_speed_rad_s: rate of change of the Euler angles, rad/s (random direction).
    """

    moving_fraction: float = setting(1.0, ge=0, le=1)
    speed_m_s: Range = setting(Range(0.0, 0.2), ge=0)
    angular_speed_rad_s: Range = setting(Range(0.0, 1.0), ge=0)


@dataclass(frozen=True, kw_only=True)
class CameraMotionRecipe:
    """Camera drift (constant velocity from the start pose) and per-frame jitter.

    Attributes:
        drift_m_s: translation speed, m/s, in a random direction.
        drift_rad_s: rate of change of the Euler angles, rad/s (random direction).
        jitter_m: standard deviation of a per-frame random offset of the position, metres.
        jitter_rad: standard deviation of a per-frame random offset of each Euler angle, radians.
    """

    drift_m_s: Range = setting(Range(0.0, 0.0), ge=0)
    drift_rad_s: Range = setting(Range(0.0, 0.0), ge=0)
    jitter_m: float = setting(0.0, ge=0)
    jitter_rad: float = setting(0.0, ge=0)


@dataclass(frozen=True, kw_only=True)
class MotionRecipe:
    """A dynamic scene: time advances 1/fps per frame through all ramps (DESIGN.md section 4).

    Attributes:
        fps: frames per second.
        objects: object velocities.
        camera: camera drift and jitter.
    """

    fps: float = setting(gt=0, le=10_000)
    objects: ObjectMotionRecipe = setting(ObjectMotionRecipe)
    camera: CameraMotionRecipe = setting(CameraMotionRecipe)


@dataclass(frozen=True, kw_only=True)
class ShutterRecipe:
    """A shutter open for a while: Cycles' motion blur over each frame's exposure, and its
    rolling shutter (DESIGN.md section 10, "Shutter"). Needs ``motion``; drawn once per scene
    (a camera locked during a focus sweep keeps its exposure).

    Attributes:
        exposure_s: how long each image row collects light, seconds; at most the frame
            interval 1 / ``motion.fps`` (a video camera cannot expose a row for longer).
        rolling_readout_s: time from the start of the top row's exposure to that of the
            bottom row's, seconds (0 = a global shutter); at most 1 / ``motion.fps``, the
            sensor being read out once per frame.
    """

    exposure_s: Range = setting(gt=0)
    rolling_readout_s: Range = setting(Range(0.0, 0.0), ge=0)


@dataclass(frozen=True, kw_only=True)
class NoiseRecipe:
    """Sensor noise: variance shot_gain * signal + read_variance in raw units (white level 1),
    with log(read_variance) = read_slope * log(shot_gain) + read_intercept + Normal(0, read_sigma)
    (natural logs; Brooks et al., CVPR 2019, fitted these on real cameras: the defaults).

    Attributes:
        shot_gain: shot-noise variance per unit of signal, drawn log-uniformly per scene (a
            camera's ISO: the gain grows with it).
        read_slope, read_intercept, read_sigma: the log-linear relation of the read-noise
            variance to the shot gain, and the spread of cameras about it.
    """

    shot_gain: Range = setting(Range(1e-4, 0.012), ge=1e-8, le=1)
    read_slope: float = setting(2.18, ge=0, le=5)
    read_intercept: float = setting(1.2, ge=-30, le=30)
    read_sigma: float = setting(0.26, ge=0, le=2)


@dataclass(frozen=True, kw_only=True)
class ExposureRecipe:
    """Exposure: one per sequence (a camera locked during a focus sweep), with an optional drift.

    Attributes:
        ev: exposure in stops, drawn per scene: radiance is scaled by 2**ev (0: Cycles' radiance
            1 is the white level).
        drift_ev: auto-exposure drift: the standard deviation, in stops, of each frame's step of
            a random walk from frame 0's exposure (0 = locked).
    """

    ev: Range = setting(Range(0.0, 0.0), ge=-10, le=10)
    drift_ev: float = setting(0.0, ge=0, le=2)


@dataclass(frozen=True, kw_only=True)
class WhiteBalanceRecipe:
    """The camera's white-balance gains relative to green, drawn per scene (defaults: Brooks et al.)."""

    red: Range = setting(Range(1.9, 2.4), ge=0.25, le=8)
    blue: Range = setting(Range(1.5, 1.9), ge=0.25, le=8)


@dataclass(frozen=True, kw_only=True)
class SensorRecipe:
    """The camera's sensor and image pipeline (:mod:`generator.scene.sensor`), applied to every frame.

    Attributes:
        noise: Poisson-Gaussian sensor noise; left out: none.
        exposure: the sequence's exposure and its drift.
        white_balance: the camera's white-balance gains.
        crosstalk: the sensor's colour crosstalk c, drawn per scene: the colour matrix is
            (1 + c) I - c/3 (:func:`generator.scene.sensor.crosstalk_matrix`).
        tone: strength of the S-shaped tone curve, drawn per scene (0 = none, 1 = smoothstep).
        vignetting: light lost in the image corners, drawn per scene (0 = none).
    """

    noise: NoiseRecipe | None = setting(None)
    exposure: ExposureRecipe = setting(ExposureRecipe)
    white_balance: WhiteBalanceRecipe = setting(WhiteBalanceRecipe)
    crosstalk: Range = setting(Range(0.5, 1.0), ge=0, le=3)
    tone: Range = setting(Range(0.0, 0.0), ge=0, le=1)
    vignetting: Range = setting(Range(0.0, 0.0), ge=0, le=0.9)


@dataclass(frozen=True, kw_only=True)
class OutputsRecipe:
    """Extra outputs: all-in-focus image, RGB encoding, per-frame CoC maps and motion vectors.

    Attributes:
        rgb: the frames' encoding: 8/16-bit sRGB PNG, linear EXR, or 8-bit sRGB JPEG.
        jpeg_quality: Pillow's JPEG quality, drawn per scene (``rgb: jpeg`` only; left out: 90).
        clean: also store each frame's clean radiance, before the ``sensor`` section's steps,
            as ``fNNN.clean.exr`` (needs a ``sensor`` section: without one every frame is clean).
    """

    aif: bool = setting(False)
    rgb: str = setting("png8", choices=RGB_FORMATS)
    coc: bool = setting(False)
    motion: bool = setting(False)
    jpeg_quality: IntRange | None = setting(None, ge=1, le=95)
    clean: bool | None = setting(None)


@dataclass(frozen=True, kw_only=True)
class ShardsRecipe:
    """A shard is closed when it holds ``max_samples`` samples or ``max_bytes`` bytes."""

    max_samples: int = setting(100, ge=1, le=1_000_000)
    max_bytes: int = setting(1_000_000_000, ge=1, le=10**12)


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """A validated recipe. Build with :func:`load_recipe` or :func:`recipe_from_dict`.

    Attributes:
        name: dataset name, used in shard file names (letters, digits, ``_``, ``-``; at most 64).
        seed: recipe seed; scene i depends only on (seed, i).
        count: number of scenes.
    """

    name: str = setting(pattern=r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")
    seed: int = setting(0, ge=0, le=2**63 - 1)
    count: int = setting(ge=1, le=MAX_SCENES)
    splits: SplitsRecipe = setting(SplitsRecipe)
    image: ImageRecipe = setting()
    lens: LensRecipe = setting()
    focus: FocusRecipe = setting()
    scene: SceneRecipe = setting(SceneRecipe)
    assets: AssetsRecipe = setting(AssetsRecipe)
    motion: MotionRecipe | None = setting(None)
    shutter: ShutterRecipe | None = setting(None)
    sensor: SensorRecipe | None = setting(None)
    outputs: OutputsRecipe = setting(OutputsRecipe)
    shards: ShardsRecipe = setting(ShardsRecipe)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of built-in types (ranges as ``[min, max]``), the canonical form."""
        return to_plain(self)

    def to_yaml(self) -> str:
        """Canonical YAML; :func:`recipe_from_dict` of it gives an equal recipe."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the canonical form (sorted-key JSON), so any changed value changes it."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _check_consistency(recipe: Recipe) -> None:
    """Rules that tie fields together (the validator checks each field alone)."""
    image, focus = recipe.image, recipe.focus
    frames = focus.ramps * focus.frames_per_ramp
    if frames > MAX_FRAMES:
        raise RecipeError("focus", {"ramps": focus.ramps, "frames_per_ramp": focus.frames_per_ramp},
                          f"at most {MAX_FRAMES} frames per scene (ramps x frames_per_ramp)")
    if image.width * image.height * frames > MAX_SCENE_PIXELS:
        raise RecipeError("image", {"width": image.width, "height": image.height},
                          f"at most {MAX_SCENE_PIXELS} pixels per scene over its {frames} frames "
                          f"(width x height x frames; about 4 GiB of float32 RGB)")
    splits = recipe.splits
    total = splits.train + splits.val + splits.test
    if not math.isclose(total, 1.0, abs_tol=1e-9):
        raise RecipeError("splits", to_plain(splits), f"fractions that sum to 1 (these sum to {total:g})")

    aperture = recipe.lens.aperture
    if aperture is not None and aperture.blades != (0, 0) and aperture.blades.min < MIN_BLADES:
        raise RecipeError("lens.aperture.blades", to_plain(aperture.blades),
                          f"0 (a disc), or blade counts within {MIN_BLADES}..{MAX_BLADES}")

    focus, longest_f_m = recipe.focus, recipe.lens.focal_length_mm.max / 1e3
    beyond_f = f"focus distances must exceed the largest focal length, {longest_f_m:g} m"
    if focus.schedule == "list":
        for unused in ("near_m", "far_m"):
            if getattr(focus, unused) is not None:
                raise RecipeError(f"focus.{unused}", getattr(focus, unused), "not used by schedule 'list'; remove it")
        if focus.distances_m is None:
            raise RecipeError("focus.distances_m", NOTHING, "required by schedule 'list'")
        if len(focus.distances_m) != focus.frames_per_ramp:
            raise RecipeError(
                "focus.distances_m", list(focus.distances_m), f"{focus.frames_per_ramp} distances (frames_per_ramp)"
            )
        for i, distance in enumerate(focus.distances_m):
            if i and distance <= focus.distances_m[i - 1]:
                raise RecipeError(f"focus.distances_m[{i}]", distance, "increasing distances")
            if distance <= longest_f_m:
                raise RecipeError(f"focus.distances_m[{i}]", distance, beyond_f)
    else:
        if focus.distances_m is not None:
            raise RecipeError("focus.distances_m", list(focus.distances_m), "only used by schedule 'list'; remove it")
        for needed in ("near_m", "far_m"):
            if getattr(focus, needed) is None:
                raise RecipeError(f"focus.{needed}", NOTHING, f"required by schedule '{focus.schedule}'")
        if focus.near_m <= longest_f_m:
            raise RecipeError("focus.near_m", focus.near_m, beyond_f)
        if focus.far_m <= focus.near_m:
            raise RecipeError("focus.far_m", focus.far_m, f"a distance beyond focus.near_m = {focus.near_m:g} m")

    objects, wall = recipe.scene.objects, recipe.scene.wall
    # An object's points lie within its largest extent of its centre; keep all of them
    # between the lens and the wall so neither the camera nor the wall cuts one.
    if objects.depth_m.max + objects.size_m.max >= wall.distance_m.min:
        raise RecipeError(
            "scene.objects.depth_m",
            list(objects.depth_m),
            f"objects in front of the wall: max depth + max size ({objects.size_m.max:g} m) "
            f"< nearest wall distance ({wall.distance_m.min:g} m)",
        )
    if objects.depth_m.min - objects.size_m.max <= longest_f_m:
        raise RecipeError(
            "scene.objects.depth_m",
            list(objects.depth_m),
            f"objects clear of the lens: min depth - max size ({objects.size_m.max:g} m) "
            f"> the largest focal length ({longest_f_m:g} m)",
        )

    _check_shutter(recipe)
    outputs = recipe.outputs
    if outputs.jpeg_quality is not None and outputs.rgb != "jpeg":
        raise RecipeError("outputs.jpeg_quality", list(outputs.jpeg_quality),
                          "only used by outputs.rgb 'jpeg'; remove it")
    if outputs.clean and recipe.sensor is None:
        raise RecipeError("outputs.clean", outputs.clean, "a sensor section (without one every frame is clean)")

    scene, assets = recipe.scene, recipe.assets
    for path, families, family, folder in (
        ("scene.objects.shapes", scene.objects.shapes, MESH_SHAPE, "meshes"),
        ("scene.materials.families", scene.materials.families, IMAGE_MATERIAL, "textures"),
        ("scene.wall.materials", scene.wall.materials, IMAGE_MATERIAL, "textures"),
        ("scene.world.kinds", scene.world.kinds, "hdri", "environments"),
    ):
        if family in families and getattr(assets, folder) is None:
            raise RecipeError(path, list(families), f"'{family}' needs folders in assets.{folder}")


def _check_shutter(recipe: Recipe) -> None:
    """A shutter needs motion (a still scene would render the same), and fits in a frame interval."""
    shutter = recipe.shutter
    if shutter is None:
        return
    if recipe.motion is None:
        raise RecipeError("shutter", to_plain(shutter), "only with a motion section (a still scene has nothing to blur)")
    interval_s = 1.0 / recipe.motion.fps
    for name in ("exposure_s", "rolling_readout_s"):
        value = getattr(shutter, name)
        if value.max > interval_s:
            raise RecipeError(f"shutter.{name}", to_plain(value),
                              f"at most the frame interval 1 / motion.fps = {interval_s:g} s")


# Public API


def _require_mapping(data: Any, source: str) -> None:
    if not isinstance(data, dict):
        raise BadInput(f"recipe {source} must be a YAML mapping of fields, got {type(data).__name__}")


def recipe_from_dict(data: dict[str, Any], source: str = "<dict>", places: AssetPlaces | None = None) -> Recipe:
    """Validate a recipe given as plain data (e.g. parsed YAML) into a :class:`Recipe`.

    Args:
        data: the recipe's fields.
        source: where ``data`` came from, for messages.
        places: where its asset folders are looked up (:func:`asset_places` of the recipe's
            file); None: the current folder, with no ``--assets-root``.

    Raises:
        BadInput: ``data`` is not a mapping.
        RecipeError: a field is unknown, missing, of the wrong type or out of range.
    """
    _require_mapping(data, source)
    recipe = build(Recipe, data, RecipeError, nonempty=True)
    _check_consistency(recipe)
    return recipe if places is None else dataclasses.replace(recipe, assets=recipe.assets.located(places))


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of recipe ``data`` with ``key.path=value`` overrides applied.

    Values are parsed as YAML (``lens.f_number=2.8``, ``lens.f_number=[1.4, 2.8]``,
    ``outputs.aif=true``). The key path must name a recipe field, even one the
    data leaves at its default.

    Raises:
        RecipeError: malformed override or a key path that is not a field.
    """
    return schema_overrides(Recipe, data, overrides, RecipeError, "lens.f_number=2.8")


def builtin_recipes() -> tuple[str, ...]:
    """Names of the recipes shipped in the package's ``recipes/`` directory."""
    return tuple(sorted(p.name.removesuffix(".yaml") for p in resources.files("recipes").iterdir() if p.name.endswith(".yaml")))


def _find(path: str | os.PathLike[str]) -> Path | Traversable:
    """A recipe file: the path itself, or a built-in recipe by name (``small_obj``)."""
    given = Path(path)
    if given.is_file():
        return given
    if given.exists():
        raise BadInput(f"recipe {given} is not a file")
    if len(given.parts) == 1 and given.suffix in ("", ".yaml"):
        builtin = resources.files("recipes") / f"{given.stem}.yaml"
        if builtin.is_file():
            return builtin
    raise BadInput(f"recipe {given} not found (not a file, nor a built-in recipe: {', '.join(builtin_recipes())})")


def asset_places(path: str | os.PathLike[str], asset_roots: Sequence[str | os.PathLike[str]] = ()) -> AssetPlaces:
    """Where the asset folders of recipe ``path`` (a file or a built-in recipe's name) may be: the
    folder that holds the file, and the folders ``asset_roots`` the user allows (``--assets-root``).

    Raises:
        BadInput: no such recipe.
    """
    return AssetPlaces.of(Path(str(_find(path))).parent, tuple(asset_roots))


#: Named quality presets (``dfdgen render --preset NAME``): overrides applied to any recipe before the
#: user's own ``--set``. ``preview`` is a first look in about a minute on 2 cores: 8 scenes at 128 px and
#: 32 samples per pixel (about 3 s a scene, benchmarks/render_throughput.py), split by index so that
#: even 8 scenes have train, val and test (5, 1 and 2).
PRESETS: dict[str, tuple[str, ...]] = {
    "preview": ("count=8", "image.width=128", "image.height=128", "image.samples=32",
                "splits.order=contiguous", "splits.train=0.6", "splits.val=0.2", "splits.test=0.2"),
}


def load_recipe(path: str | os.PathLike[str], overrides: Sequence[str] = (),
                asset_roots: Sequence[str | os.PathLike[str]] = (), preset: str | None = None) -> Recipe:
    """Read, override and validate a recipe.

    Args:
        path: a YAML file, or the name of a built-in recipe (see :func:`builtin_recipes`).
        overrides: ``key.path=value`` strings, applied before validation (``--set``), after ``preset``'s.
        preset: a name in :data:`PRESETS`, or None.
        asset_roots: folders outside the recipe's own that its asset folders may lie in
            (``dfdgen render --assets-root``; see :func:`asset_places`).

    Raises:
        BadInput: missing, unreadable or non-YAML file; or not a mapping; or an unknown preset.
        RecipeError: an invalid field or override.
    """
    if preset is not None and preset not in PRESETS:
        raise BadInput(f"unknown preset {brief(preset)}; pick from: {', '.join(PRESETS)}")
    file = _find(path)
    try:
        with file.open("r", encoding="utf-8") as stream:
            text = stream.read(MAX_CHARS + 1)
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"recipe {file} is not a readable text file: {brief(exc)}") from None
    data = load_yaml(text, f"recipe {file}")
    _require_mapping(data, str(file))
    overrides = [*PRESETS.get(preset, ()), *overrides]
    return recipe_from_dict(apply_overrides(data, overrides), source=str(file), places=asset_places(path, asset_roots))
