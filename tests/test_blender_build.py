"""The builder puts the spec's values into Blender, and renders are reproducible."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from generator.core.lens import Lens, blender_camera
from generator.draw.scene import shape_params
from generator.scene.spec import (
    MATERIALS,
    SHAPES,
    CameraSpec,
    FrameSpec,
    LightSpec,
    MaterialSpec,
    ObjectSpec,
    RenderSpec,
    SceneSpec,
    WorldSpec,
)


def _scene(model: str = "thin_lens", width: int = 40, height: int = 30, world: WorldSpec | None = None) -> SceneSpec:
    """Every shape, material family, deformation and light kind, in front of a textured wall."""
    rng = np.random.default_rng(0)
    objects = [
        ObjectSpec(
            name=f"{shape}_{i}",
            shape=shape,
            location=(-2.0 + 0.5 * i, 4.0, 0.3 * (i % 3) - 0.3),
            rotation=(0.4, 0.1 * i, 0.2),
            scale=(0.25, 0.25, 0.25),
            material=MaterialSpec(
                kind=MATERIALS[i % len(MATERIALS)],
                color_a=(0.9, 0.5, 0.2),
                color_b=(0.1, 0.2, 0.6),
                scale=8.0,
                distortion=0.5,
                emission_strength=2.0,
                ramp=((0.0, 0.9, 0.5, 0.2), (0.4, 0.1, 0.1, 0.1), (1.0, 0.1, 0.2, 0.6)) if i % 2 else (),
                metallic=0.3 * (i % 2),
                bump=0.5 * (i % 3 == 1),
            ),
            shape_params=shape_params(rng, shape),
            twist=0.8 if i % 3 == 0 else 0.0,
            taper=0.5 if i % 3 == 1 else 0.0,
            displace=0.1 if i % 3 == 2 else 0.0,
        )
        for i, shape in enumerate(SHAPES)
    ]
    wall = ObjectSpec(
        name="wall",
        shape="plane",
        location=(0.0, 8.0, 0.0),
        rotation=(math.pi / 2, 0.0, 0.0),
        scale=(10.0, 10.0, 1.0),
        material=MaterialSpec(kind="gradient", scale=2.0),
    )
    lights = (
        LightSpec("sun", (0.0, 0.0, 5.0), (0.6, 0.2, 0.0), 2.0, size=0.05),
        LightSpec("point", (1.0, 2.0, 2.0), (0.0, 0.0, 0.0), 150.0, color=(1.0, 0.9, 0.8), size=0.2),
        LightSpec("area", (-1.0, 2.0, 2.0), (0.8, 0.0, 0.0), 100.0, size=1.0),
        LightSpec("spot", (0.0, 1.0, 3.0), (0.3, 0.0, 0.0), 300.0),
    )
    return SceneSpec(
        index=7,
        seed=11,
        split="test",
        render=RenderSpec(width=width, height=height, samples=8, seed=5, max_bounces=3, aif=True),
        lens=Lens(model, 0.035, 2.0, 0.036),
        camera=CameraSpec(location=(0.1, -0.2, 0.05), rotation=(math.pi / 2 - 0.05, 0.02, 0.03)),
        frames=tuple(FrameSpec(index=k, ramp=0, time_s=0.0, focus_distance_m=f) for k, f in enumerate((0.8, 3.0))),
        objects=tuple(objects) + (wall,),
        lights=lights,
        world=world or WorldSpec(color=(0.2, 0.3, 0.4), strength=0.5),
    )


def _check_camera(cam_obj, lens: Lens, focus_m: float, use_dof: bool) -> None:
    expected = blender_camera(lens, focus_m)
    data = cam_obj.data
    assert data.lens == pytest.approx(expected.lens_mm, rel=1e-6)
    assert data.sensor_width == pytest.approx(expected.sensor_width_mm, rel=1e-6)
    assert data.sensor_fit == "HORIZONTAL"
    assert data.dof.use_dof is use_dof
    assert data.dof.aperture_fstop == pytest.approx(expected.fstop, rel=1e-6)
    assert data.dof.focus_distance == pytest.approx(focus_m, rel=1e-6)
    assert data.dof.aperture_blades == 0 and data.dof.aperture_ratio == 1.0
    assert data.shift_x == data.shift_y == 0.0


@pytest.mark.parametrize("model", ["thin_lens", "blender"])
def test_camera_values_reach_blender_per_frame(bpy, model):
    from generator.render.blender.build import build_scene
    from generator.render.blender.camera import apply_camera

    spec = _scene(model)
    built = build_scene(spec)
    assert built.scene.camera == built.camera
    _check_camera(built.camera, spec.lens, spec.frames[0].focus_distance_m, use_dof=True)
    assert tuple(built.camera.location) == pytest.approx(spec.camera.location)
    assert tuple(built.camera.rotation_euler) == pytest.approx(spec.camera.rotation)
    assert built.camera.rotation_mode == "XYZ"
    for frame in spec.frames:
        for use_dof in (True, False):
            returned = apply_camera(built.camera, spec.lens, frame.focus_distance_m, use_dof)
            assert returned == blender_camera(spec.lens, frame.focus_distance_m)
            _check_camera(built.camera, spec.lens, frame.focus_distance_m, use_dof)
    if model == "thin_lens":  # breathing: the lens value follows the focus
        near, far = (blender_camera(spec.lens, f.focus_distance_m).lens_mm for f in spec.frames)
        assert near > far > 35.0


def test_render_settings_reach_blender(bpy):
    from generator.render.blender.build import build_scene

    spec = _scene()
    scene = build_scene(spec, threads=3).scene
    cycles, render = scene.cycles, scene.render
    assert render.engine == "CYCLES" and cycles.device == "CPU"
    assert cycles.samples == spec.render.samples and cycles.seed == spec.render.seed
    assert not cycles.use_animated_seed
    assert not cycles.use_adaptive_sampling and not cycles.use_denoising
    assert cycles.pixel_filter_type == "BOX"
    assert cycles.max_bounces == spec.render.max_bounces
    assert render.use_persistent_data
    assert (render.resolution_x, render.resolution_y, render.resolution_percentage) == (40, 30, 100)
    assert not render.film_transparent
    assert render.threads_mode == "FIXED" and render.threads == 3
    assert scene.view_settings.view_transform == "Standard"
    assert not any(getattr(render, name) for name in dir(render) if name.startswith("use_stamp"))
    assert build_scene(spec).scene.render.threads_mode == "AUTO"


def test_scene_contents_match_spec(bpy):
    from generator.render.blender.build import build_scene

    spec = _scene()
    scene = build_scene(spec).scene
    names = {obj.name for obj in scene.objects}
    assert names == {o.name for o in spec.objects} | {"camera"} | {f"light_{l.kind}" for l in spec.lights}
    for obj_spec in spec.objects:
        obj = scene.objects[obj_spec.name]
        assert tuple(obj.location) == pytest.approx(obj_spec.location)
        assert tuple(obj.rotation_euler) == pytest.approx(obj_spec.rotation)
        assert tuple(obj.scale) == pytest.approx(obj_spec.scale)
        # Unit size: the primitive's largest half-extent is 1 m before scale.
        extent = max(abs(c) for corner in obj.bound_box for c in corner)
        assert extent == pytest.approx(1.0, abs=0.02) or obj_spec.displace or obj_spec.twist or obj_spec.taper
        assert not obj.modifiers  # deformations are baked into the mesh
        assert "custom_normal" in obj.data.attributes and obj.data.normals_domain == "POINT"
        tree = obj.material_slots[0].material.node_tree
        nodes = {n.bl_idname for n in tree.nodes}
        material = obj_spec.material
        if material.kind == "emission":
            assert "ShaderNodeEmission" in nodes and "ShaderNodeBsdfPrincipled" not in nodes
            continue
        bsdf = next(n for n in tree.nodes if n.bl_idname == "ShaderNodeBsdfPrincipled")
        assert bsdf.inputs["Metallic"].default_value == pytest.approx(material.metallic)
        assert ("ShaderNodeBump" in nodes) == (material.bump > 0 and material.kind != "diffuse")
        if material.kind != "diffuse":
            ramp = next(n for n in tree.nodes if n.bl_idname == "ShaderNodeValToRGB").color_ramp
            stops = material.ramp or ((0.0, *material.color_a), (1.0, *material.color_b))
            got = [(e.position, *e.color[:3]) for e in ramp.elements]
            np.testing.assert_allclose(got, stops, atol=1e-6)
    for light_spec in spec.lights:
        light = scene.objects[f"light_{light_spec.kind}"].data
        assert light.type == light_spec.kind.upper() and light.energy == pytest.approx(light_spec.energy)
    background = next(n for n in scene.world.node_tree.nodes if n.bl_idname == "ShaderNodeBackground")
    assert tuple(background.inputs["Color"].default_value)[:3] == pytest.approx(spec.world.color)
    assert background.inputs["Strength"].default_value == pytest.approx(spec.world.strength)


def test_sky_world_reaches_blender_and_lights_the_scene(bpy):
    from generator.render.blender.build import build_scene
    from generator.render.blender.render import render_scene

    sky = WorldSpec(kind="sky", strength=0.3, sun_elevation=0.6, sun_azimuth=1.0, turbidity=4.0)
    spec = dataclasses.replace(_scene(width=16, height=12, world=sky), lights=())
    node = next(n for n in build_scene(spec).scene.world.node_tree.nodes if n.bl_idname == "ShaderNodeTexSky")
    assert node.sky_type == "HOSEK_WILKIE" and node.turbidity == pytest.approx(4.0)
    expected = (math.cos(0.6) * math.cos(1.0), math.cos(0.6) * math.sin(1.0), math.sin(0.6))
    assert tuple(node.sun_direction) == pytest.approx(expected, abs=1e-6)
    dark = dataclasses.replace(spec, world=dataclasses.replace(sky, strength=0.0))
    lit, unlit = (render_scene(s).frames[0].mean() for s in (spec, dark))
    assert lit - unlit > 0.01  # the sky adds light (the emitting objects shine in both)


def _mesh_arrays(mesh) -> list[np.ndarray]:
    out = []
    for collection, attr, size, dtype in (
        (mesh.vertices, "co", 3, np.float32),
        (mesh.vertex_normals, "vector", 3, np.float32),
        (mesh.loops, "vertex_index", 1, np.int32),
        (mesh.polygons, "loop_start", 1, np.int32),
    ):
        array = np.empty(len(collection) * size, dtype=dtype)
        collection.foreach_get(attr, array)
        out.append(array)
    return out


@pytest.mark.parametrize("shape", SHAPES)
def test_meshes_are_identical_from_build_to_build(bpy, shape):
    """Bit-identical geometry and shading normals (Blender's own normals and bmesh's
    UV sphere are not; see generator.render.blender.mesh)."""
    from generator.render.blender.mesh import build_mesh

    for deformed in (False, True):
        spec = ObjectSpec(
            name="o", shape=shape, location=(0.0, 0.0, 0.0), rotation=(0.0, 0.0, 0.0), scale=(1.0, 1.0, 1.0),
            material=MaterialSpec(kind="diffuse"), shape_params=shape_params(np.random.default_rng(1), shape),
            twist=0.5 * deformed, taper=0.2 * deformed, displace=0.05 * deformed,
        )
        first, second = _mesh_arrays(build_mesh(spec)), _mesh_arrays(build_mesh(spec))
        assert all(a.tobytes() == b.tobytes() for a, b in zip(first, second))


def test_twist_and_taper_follow_simple_deform(bpy):
    """Twist rotates by twist x z about local Z; taper scales x, y by 1 + taper x z."""
    from generator.render.blender.mesh import build_mesh

    twist, taper = 0.6, 0.25
    spec = ObjectSpec(
        name="cube", shape="cube", location=(0.0, 0.0, 0.0), rotation=(0.0, 0.0, 0.0), scale=(1.0, 1.0, 1.0),
        material=MaterialSpec(kind="diffuse"), twist=twist, taper=taper,
    )
    co = _mesh_arrays(build_mesh(spec))[0].reshape(-1, 3).astype(np.float64)
    for z in (-1.0, 1.0):
        ring = co[np.isclose(co[:, 2], z)]
        radius = np.hypot(ring[:, 0], ring[:, 1])
        assert radius.max() == pytest.approx(math.sqrt(2) * (1 + taper * z), rel=1e-6)
        corner = ring[np.argmax(radius)]
        angle = (math.atan2(corner[1], corner[0]) - twist * z) % (math.pi / 2)
        assert min(angle, math.pi / 2 - angle) == pytest.approx(math.pi / 4, abs=1e-5)


def test_rendering_is_deterministic_and_thread_independent(bpy):
    from generator.render.blender.render import render_scene

    spec = _scene()
    first = render_scene(spec, threads=2)
    again = render_scene(spec, threads=2)
    one_thread = render_scene(spec, threads=1)
    assert len(first.frames) == 2 and len(first.depth) == 2 and first.aif is not None
    for other in (again, one_thread):
        for a, b in zip(first.frames + first.depth + [first.aif], other.frames + other.depth + [other.aif]):
            assert a.tobytes() == b.tobytes()
    for image in first.frames + [first.aif]:
        assert image.dtype == np.float32 and image.shape == (30, 40, 3) and image.mean() > 0.01
    # Frames differ only in focus, and focus changes the pixels.
    assert not np.array_equal(first.frames[0], first.frames[1])


def test_repeated_views_are_rendered_once(bpy, monkeypatch):
    """Ramps repeating the same focus distances cost one render per distinct view."""
    from generator.render.blender import render as render_module

    calls = []
    original = render_module._Renderer.render
    monkeypatch.setattr(render_module._Renderer, "render", lambda self, *a, **k: calls.append(a) or original(self, *a, **k))
    spec = _scene(width=16, height=12)
    ramps = tuple(
        FrameSpec(index=2 * ramp + k, ramp=ramp, time_s=0.0, focus_distance_m=f)
        for ramp in range(3)
        for k, f in enumerate((0.8, 3.0))
    )
    result = render_module.render_scene(dataclasses.replace(spec, frames=ramps))
    assert len(calls) == 2 + 1 + 2  # depth per focus (thin lens), AIF, frames per focus
    assert len(result.frames) == len(result.depth) == 6
    for k in range(2, 6):
        assert np.array_equal(result.frames[k], result.frames[k % 2])
        assert np.array_equal(result.depth[k], result.depth[k % 2])


def test_save_blend_writes_what_is_rendered(bpy, tmp_path):
    from generator.render.blender.render import save_blend

    spec = _scene()
    path = tmp_path / "scene.blend"
    save_blend(spec, path)
    assert path.stat().st_size > 0
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.wm.open_mainfile(filepath=str(path))
    scene = bpy.data.scenes[f"dfdgen_{spec.index:08d}"]
    assert {o.name for o in spec.objects} <= {obj.name for obj in scene.objects}
    assert scene.camera.name == "camera"
    _check_camera(scene.camera, spec.lens, spec.frames[0].focus_distance_m, use_dof=True)
    assert scene.cycles.samples == spec.render.samples and scene.cycles.pixel_filter_type == "BOX"
