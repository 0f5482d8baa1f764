"""Motion of a drawn scene (a recipe's ``motion`` section): object velocities and the camera's path.

Drawn last, from a stream of its own (a child of the scene's SeedSequence), so adding motion to
a recipe changes no object, light or world of its scenes: they only start to move. The shutter
has a stream of its own too, so adding one changes no motion either.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from generator.recipe.recipe import CameraMotionRecipe, MotionRecipe, SceneRecipe, ShutterRecipe
from generator.draw.ranges import direction, uniform
from generator.scene.spec import CameraSpec, FrameSpec, ObjectSpec, ShutterSpec, Vec3
from generator.draw.view import View


def draw_object_motion(
    rng: np.random.Generator, motion: MotionRecipe, obj: ObjectSpec, scene: SceneRecipe, view: View, duration_s: float
) -> ObjectSpec:
    """``obj`` with constant linear and angular velocities (with probability ``moving_fraction``).

    The speed is cut, when needed, to the largest that keeps the centre inside the
    placement region (image margins in the narrow view, the depth range) until
    ``duration_s``: the region is convex (linear in camera coordinates) and holds
    the start, so the whole straight path stays in it.
    """
    if rng.random() >= motion.objects.moving_fraction:
        return obj
    velocity = direction(rng) * uniform(rng, motion.objects.speed_m_s)
    angular = direction(rng) * uniform(rng, motion.objects.angular_speed_rad_s)
    start = view.to_camera(obj.location)
    step = view.to_camera(np.add(obj.location, velocity * duration_s)) - start
    velocity = velocity * view.fraction_inside(start, step, scene.objects.depth_m)
    return dataclasses.replace(obj, velocity=tuple(map(float, velocity)), angular_velocity=tuple(map(float, angular)))


def draw_camera_motion(
    rng: np.random.Generator, motion: CameraMotionRecipe, camera: CameraSpec, frames: tuple[FrameSpec, ...]
) -> tuple[tuple[FrameSpec, ...], Vec3, Vec3]:
    """``frames`` with their camera poses: ``camera`` moved by a constant drift (linear and
    Euler-angle rates) plus independent Gaussian jitter per frame; unchanged without camera motion.
    Also the drift (metres per second) and the turn (radians per second), which a shutter blurs."""
    drift = direction(rng) * uniform(rng, motion.drift_m_s)
    turn = direction(rng) * uniform(rng, motion.drift_rad_s)
    rates = tuple(map(float, drift)), tuple(map(float, turn))
    if not (drift.any() or turn.any() or motion.jitter_m or motion.jitter_rad):
        return (frames, *rates)
    out = []
    for frame in frames:
        location = np.add(camera.location, drift * frame.time_s) + rng.normal(0.0, motion.jitter_m, 3)
        rotation = np.add(camera.rotation, turn * frame.time_s) + rng.normal(0.0, motion.jitter_rad, 3)
        pose = CameraSpec(location=tuple(map(float, location)), rotation=tuple(map(float, rotation)))
        out.append(dataclasses.replace(frame, camera=pose))
    return (tuple(out), *rates)


def draw_shutter(rng: np.random.Generator, shutter: ShutterRecipe, camera_velocity_m_s: Vec3,
                 camera_turn_rad_s: Vec3) -> ShutterSpec:
    """The scene's exposure and rolling readout (seconds), uniform in the recipe's ranges, with the
    camera's drift (m/s) and turn (rad/s) that the exposure blurs."""
    return ShutterSpec(exposure_s=uniform(rng, shutter.exposure_s), rolling_readout_s=uniform(rng, shutter.rolling_readout_s),
                       camera_velocity_m_s=camera_velocity_m_s, camera_turn_rad_s=camera_turn_rad_s)
