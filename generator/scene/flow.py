"""Motion vectors: where the surface seen through each pixel is one frame later (DESIGN.md section 5).

Pure numpy, computed exactly rather than rendered: a pixel's planar depth and
its frame's K and camera pose give the surface point in the world; the
object-index map of the same depth render says which object it lies on; that
object's rigid motion between the two frames' times (:meth:`ObjectSpec.pose_at`)
moves it; the next frame's camera pose and K project it again. So the vectors
include object motion, camera motion and focus breathing (K changes with the
focus in the ``thin_lens`` model) — everything that moves a point between two
consecutive captured frames. Cycles' own vector pass would need keyframed motion
and its motion-blur machinery, and it is filtered across edges; this is a
point sample at the pixel centre, like the depth it comes from.
"""

from __future__ import annotations

import numpy as np

from generator.core import lens as lensmod
from generator.scene.spec import ObjectSpec, SceneSpec, camera_to_world, euler_xyz_matrix, world_to_camera

#: Channel names of a motion map: image motion right and down (pixels) and change of planar depth (metres).
CHANNELS = ("X", "Y", "Z")


def _object_to_world(obj: ObjectSpec, time_s: float) -> np.ndarray:
    """4x4 rigid pose (rotation, then translation) of ``obj`` at ``time_s``; scale is fixed, so it cancels."""
    location, rotation = obj.pose_at(time_s)
    pose = np.eye(4)
    pose[:3, :3] = euler_xyz_matrix(rotation)
    pose[:3, 3] = location
    return pose


def _apply(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``transform`` (4x4) applied to points [..., 3]."""
    return points @ transform[:3, :3].T + transform[:3, 3]


def forward_flow(spec: SceneSpec, frame: int, depth: np.ndarray, object_index: np.ndarray) -> np.ndarray:
    """Motion of every pixel's surface point from ``spec.frames[frame]`` to the next frame.

    Args:
        spec: the scene.
        frame: position in ``spec.frames`` of the first frame (not the last one).
        depth: that frame's planar depth [H, W], metres, 0 where no surface.
        object_index: the depth render's object index [H, W]: k >= 1 is
            ``spec.objects[k - 1]``, 0 nothing.

    Returns:
        float32 [H, W, 3]: (du, dv) in pixels (right, down; a pixel centre at
        (u, v) sees the point at (u + du, v + dv) in the next frame) and dz, the
        change of its planar depth in metres; 0 where ``depth`` is 0.
    """
    if not 0 <= frame < len(spec.frames) - 1:
        raise ValueError(f"frame {frame}: motion needs a next frame (the scene has {len(spec.frames)})")
    now, later = spec.frames[frame], spec.frames[frame + 1]
    height, width = depth.shape
    k_now = lensmod.intrinsics(spec.lens, now.focus_distance_m, width, height)
    k_later = lensmod.intrinsics(spec.lens, later.focus_distance_m, width, height)
    v, u = np.mgrid[0:height, 0:width] + 0.5  # pixel centres (DESIGN.md section 2)
    z = depth.astype(np.float64)
    camera_points = np.stack([(u - k_now[0, 2]) / k_now[0, 0] * z, (v - k_now[1, 2]) / k_now[1, 1] * z, z], axis=-1)
    world = _apply(camera_to_world(spec.camera_at(now)), camera_points)
    ids = np.rint(object_index).astype(np.int64)
    for k, obj in enumerate(spec.objects, start=1):
        on = ids == k
        if (any(obj.velocity) or any(obj.angular_velocity)) and on.any():
            motion = _object_to_world(obj, later.time_s) @ np.linalg.inv(_object_to_world(obj, now.time_s))
            world[on] = _apply(motion, world[on])
    x, y, z_later = np.moveaxis(_apply(world_to_camera(spec.camera_at(later)), world), -1, 0)
    valid = z > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        du = k_later[0, 0] * x / z_later + k_later[0, 2] - u
        dv = k_later[1, 1] * y / z_later + k_later[1, 2] - v
    flow = np.stack([du, dv, z_later - z], axis=-1)
    flow[~valid] = 0.0
    return flow.astype(np.float32)
