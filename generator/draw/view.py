"""The camera's view over a sequence (:class:`View`), for placing things in it, and aiming lights.

Objects are placed by planar depth and image position, back-projected through the narrowest
view of the sequence (so they stay in frame in every frame, breathing included); the wall is
sized from the widest view, so it fills every frame. Metres, OpenCV camera frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from generator.core import lens as lensmod
from generator.recipe.recipe import Range
from generator.scene.spec import CameraSpec, Vec3, camera_to_world

#: Object centres are kept this fraction of the image size away from its borders.
IMAGE_MARGIN = 0.1


@dataclass(frozen=True)
class View:
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
    def of(cls, lens: lensmod.Lens, camera: CameraSpec, frames, width: int, height: int) -> "View":
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
