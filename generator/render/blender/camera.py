"""The one place where lens values become Blender camera settings.

Every number comes from :func:`generator.core.lens.blender_camera` (DESIGN.md
section 3): this module only names the Blender properties they go to, so the
CoC and K recorded in the metadata are, by construction, the ones rendered.
"""

from __future__ import annotations

import bpy

from generator.core.lens import BlenderCamera, Lens, blender_camera
from generator.scene.spec import CameraSpec

#: Near clip, metres. Blender's default 0.1 m would cut away objects that a
#: close-focus recipe places nearer than that; 1 mm is far below any focus distance.
CLIP_START_M = 1e-3
#: Far clip, metres. Anything farther is treated as sky (depth 0) by the renderer.
CLIP_END_M = 1e5


def set_camera_pose(cam_obj: bpy.types.Object, camera: CameraSpec) -> None:
    """Place the camera: ``location`` (metres) and XYZ Euler ``rotation_euler`` (radians).

    The same convention as :func:`generator.scene.spec.world_to_camera`, which derives
    the recorded extrinsics from this pose.
    """
    cam_obj.rotation_mode = "XYZ"
    cam_obj.location = camera.location
    cam_obj.rotation_euler = camera.rotation


def apply_camera(cam_obj: bpy.types.Object, lens: Lens, focus_m: float, use_dof: bool) -> BlenderCamera:
    """Set the camera data of ``cam_obj`` to render ``lens`` focused at ``focus_m`` metres.

    - ``lens`` (mm) = L, the effective focal length (v for ``thin_lens``, so the
      image breathes as it would on the physical camera; f for ``blender``).
    - ``sensor_width`` (mm) with ``sensor_fit='HORIZONTAL'``: the pixel pitch is
      sensor width / image width whatever the aspect ratio, as ``lens.intrinsics`` assumes.
    - ``dof.aperture_fstop`` = L / A, so Cycles' aperture diameter L / fstop is
      the lens's A (DESIGN.md section 3).
    - ``dof.focus_distance`` (m): Cycles aims every lens sample at the plane at
      this planar distance, which is the thin-lens plane of focus.
    - ``dof.aperture_blades``, ``aperture_rotation`` (radians), ``aperture_ratio``: the
      lens's :class:`~generator.core.lens.Aperture`; without one a round, unsqueezed
      aperture, so the blur kernel is the uniform disc the CoC formula describes.
    - ``use_dof``: off for depth and all-in-focus renders (a pinhole at the lens
      centre), on for focus frames.

    Returns the values set, for the frame's metadata.
    """
    values = blender_camera(lens, focus_m)
    data = cam_obj.data
    data.type = "PERSP"
    data.lens_unit = "MILLIMETERS"
    data.lens = values.lens_mm
    data.sensor_fit = "HORIZONTAL"
    data.sensor_width = values.sensor_width_mm
    data.shift_x = data.shift_y = 0.0  # principal point at the image centre, as in K
    data.clip_start = CLIP_START_M
    data.clip_end = CLIP_END_M
    dof = data.dof
    dof.use_dof = use_dof
    dof.focus_object = None  # focus_distance, not an object, decides the focus plane
    dof.focus_distance = values.focus_distance_m
    dof.aperture_fstop = values.fstop
    dof.aperture_blades = values.aperture_blades
    dof.aperture_ratio = values.aperture_ratio
    dof.aperture_rotation = values.aperture_rotation
    return values


#: Camera data properties that :func:`apply_camera` changes from one focus frame
#: to the next (the others are the same for every frame of a scene).
FOCUS_DATA_PATHS = ("lens", "dof.aperture_fstop", "dof.focus_distance")

