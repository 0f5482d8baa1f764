"""Object geometry: unit primitives, baked deformations and explicit shading normals.

Geometry is computed here with numpy, in a fixed order, and stored in the mesh
as final data: no modifiers, and the shading normals are written as Blender's
free custom normals (a float3 ``custom_normal`` point attribute). Measured on
bpy 5.0.1, Blender's own paths are not reproducible bit for bit: its vertex
normals sum face normals in a run-dependent order (a smooth-shaded mesh of
more than ~1000 vertices renders with last-bit differences from run to run,
and so does anything deformed by a modifier), and ``bmesh.ops.create_uvsphere``
and ``subdivide_edges`` return vertices in a run-dependent order.
"""

from __future__ import annotations

import math

import bmesh
import bpy
import mathutils
import mathutils.noise
import numpy as np

from generator.spec import ObjectSpec

#: Edges with a larger dihedral angle are shaded sharp (split), smaller ones smooth.
SMOOTH_ANGLE_RAD = math.radians(30.0)
#: A deformed primitive is subdivided to within a factor 2 of this many faces so
#: that twist, taper and displacement have vertices to move.
DEFORM_FACES = 10_000
#: Feature size of the displacement noise, metres of object space (before scale).
DISPLACE_NOISE_SCALE = 0.5
#: Torus proportions: ring radius + tube radius = 1, so the torus fits the unit size.
TORUS_RADII = (0.75, 0.25)

#: A mesh as arrays: vertex positions [V, 3] (float64, metres), triangles [T, 3]
#: and quads [Q, 4] (vertex indices, counter-clockwise seen from outside).
Geometry = tuple[np.ndarray, np.ndarray, np.ndarray]


def build_mesh(spec: ObjectSpec) -> bpy.types.Mesh:
    """The mesh of ``spec``: unit primitive, deformed, sharp edges split, normals stored."""
    verts, tris, quads = _primitive(spec.shape)
    if spec.displace or spec.twist or spec.taper:
        # Enough vertices for the deformation to bend.
        while 2 * (len(tris) + len(quads)) < DEFORM_FACES:
            verts, tris, quads = _subdivide(verts, tris, quads)
        verts = _deform(verts, tris, quads, spec)
    mesh = _to_mesh(spec.name, verts, tris, quads)
    mesh.set_sharp_from_angle(angle=SMOOTH_ANGLE_RAD)  # faces smooth, edges sharper than this marked
    mesh.split_faces()  # a sharp edge gets a vertex per side, so point normals can be sharp there
    if "sharp_edge" in mesh.attributes:
        mesh.attributes.remove(mesh.attributes["sharp_edge"])  # already split; shading is per point

    positions = np.empty(3 * len(mesh.vertices))
    mesh.vertices.foreach_get("co", positions)
    corner_verts = np.empty(len(mesh.loops), dtype=np.int64)
    mesh.loops.foreach_get("vertex_index", corner_verts)
    sizes = np.empty(len(mesh.polygons), dtype=np.int64)
    mesh.polygons.foreach_get("loop_total", sizes)
    starts = np.empty(len(mesh.polygons), dtype=np.int64)
    mesh.polygons.foreach_get("loop_start", starts)
    split_tris = corner_verts[starts[sizes == 3, None] + np.arange(3)]
    split_quads = corner_verts[starts[sizes == 4, None] + np.arange(4)]
    normals = _vertex_normals(positions.reshape(-1, 3), split_tris, split_quads)
    mesh.attributes.new("custom_normal", "FLOAT_VECTOR", "POINT").data.foreach_set("vector", normals.ravel())
    return mesh


def _to_mesh(name: str, verts: np.ndarray, tris: np.ndarray, quads: np.ndarray) -> bpy.types.Mesh:
    """A Blender mesh from arrays (``from_pydata`` through numpy, without Python lists)."""
    mesh = bpy.data.meshes.new(name)
    corners = np.concatenate([tris.ravel(), quads.ravel()])
    starts = np.concatenate([3 * np.arange(len(tris)), 3 * len(tris) + 4 * np.arange(len(quads))])
    mesh.vertices.add(len(verts))
    mesh.vertices.foreach_set("co", verts.ravel())
    mesh.loops.add(len(corners))
    mesh.loops.foreach_set("vertex_index", corners)
    mesh.polygons.add(len(starts))
    mesh.polygons.foreach_set("loop_start", starts)
    mesh.update(calc_edges=True)
    return mesh


def _primitive(shape: str) -> Geometry:
    """Unit-size primitive (radius or half-size 1 m), centred on the origin, axis along local Z."""
    if shape == "uv_sphere":
        return _uv_sphere(segments=64, rings=32)
    if shape == "torus":
        return _torus(*TORUS_RADII, segments=64, sides=24)
    bm = bmesh.new()
    try:
        if shape == "cube":
            bmesh.ops.create_cube(bm, size=2.0)
        elif shape == "ico_sphere":
            bmesh.ops.create_icosphere(bm, subdivisions=4, radius=1.0)
        elif shape == "cylinder":
            bmesh.ops.create_cone(bm, cap_ends=True, cap_tris=True, segments=64, radius1=1.0, radius2=1.0, depth=2.0)
        elif shape == "cone":
            bmesh.ops.create_cone(bm, cap_ends=True, cap_tris=True, segments=64, radius1=1.0, radius2=0.0, depth=2.0)
        elif shape == "plane":
            bmesh.ops.create_grid(bm, x_segments=1, y_segments=1, size=1.0)
        elif shape == "monkey":
            bmesh.ops.create_monkey(bm)
        else:
            raise ValueError(f"unknown shape {shape!r}")
        bm.verts.index_update()
        verts = np.array([tuple(v.co) for v in bm.verts], dtype=np.float64)
        faces = [[v.index for v in f.verts] for f in bm.faces]
    finally:
        bm.free()
    if shape == "monkey":
        verts /= np.abs(verts).max()  # Suzanne is 2.73 m wide; largest half-extent 1 m like the rest
    tris = np.array([f for f in faces if len(f) == 3], dtype=np.int64).reshape(-1, 3)
    quads = np.array([f for f in faces if len(f) == 4], dtype=np.int64).reshape(-1, 4)
    return verts, tris, quads


def _uv_sphere(segments: int, rings: int) -> Geometry:
    """Unit sphere: ``rings`` latitude bands of ``segments`` faces; triangle fans at the poles."""
    theta = np.pi * np.arange(1, rings)[:, None] / rings  # polar angle of the inner rings
    phi = 2.0 * np.pi * np.arange(segments)[None, :] / segments
    ring_verts = np.stack(np.broadcast_arrays(np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)), -1)
    verts = np.concatenate([[[0.0, 0.0, 1.0]], ring_verts.reshape(-1, 3), [[0.0, 0.0, -1.0]]])
    grid = 1 + np.arange((rings - 1) * segments).reshape(rings - 1, segments)
    nxt = np.roll(grid, -1, axis=1)
    south = len(verts) - 1
    quads = np.stack([grid[:-1], grid[1:], nxt[1:], nxt[:-1]], -1).reshape(-1, 4)
    tris = np.concatenate([
        np.stack([np.zeros(segments, dtype=np.int64), grid[0], nxt[0]], -1),
        np.stack([grid[-1], np.full(segments, south), nxt[-1]], -1),
    ])
    return verts, tris, quads


def _torus(ring: float, tube: float, segments: int, sides: int) -> Geometry:
    """Torus around local Z: ring radius ``ring``, tube radius ``tube`` (metres); quads."""
    theta = 2.0 * np.pi * np.arange(segments)[:, None] / segments
    phi = 2.0 * np.pi * np.arange(sides)[None, :] / sides
    radial = ring + tube * np.cos(phi)
    verts = np.stack(np.broadcast_arrays(radial * np.cos(theta), radial * np.sin(theta), tube * np.sin(phi)), -1)
    grid = np.arange(segments * sides).reshape(segments, sides)
    around, along = np.roll(grid, -1, axis=0), np.roll(grid, -1, axis=1)
    quads = np.stack([grid, around, np.roll(around, -1, axis=1), along], -1).reshape(-1, 4)
    return verts.reshape(-1, 3), np.zeros((0, 3), dtype=np.int64), quads


def _subdivide(verts: np.ndarray, tris: np.ndarray, quads: np.ndarray) -> Geometry:
    """One level of midpoint subdivision (shape-preserving): every edge split at its middle,
    a triangle into 4 triangles, a quad into 4 quads around its centre. Vertex order is a
    fixed function of the input: old vertices, edge midpoints (sorted edges), quad centres."""
    edges = np.concatenate([np.stack([f, np.roll(f, -1, axis=1)], -1).reshape(-1, 2) for f in (tris, quads)])
    lo, hi = edges.min(axis=1), edges.max(axis=1)
    codes, edge_of = np.unique(lo * len(verts) + hi, return_inverse=True)  # one code per undirected edge
    keys = np.stack([codes // len(verts), codes % len(verts)], -1)
    mids = len(verts) + edge_of
    m_tri = mids[: 3 * len(tris)].reshape(-1, 3)  # m[:, i] is the middle of edge (f[i], f[i + 1])
    m_quad = mids[3 * len(tris) :].reshape(-1, 4)
    centres = len(verts) + len(keys) + np.arange(len(quads))
    new_verts = np.concatenate([verts, verts[keys].mean(axis=1), verts[quads].mean(axis=1)])
    a, b, c = tris.T
    new_tris = np.concatenate([
        np.stack([a, m_tri[:, 0], m_tri[:, 2]], -1),
        np.stack([m_tri[:, 0], b, m_tri[:, 1]], -1),
        np.stack([m_tri[:, 2], m_tri[:, 1], c], -1),
        m_tri,
    ])
    new_quads = np.concatenate(
        [np.stack([quads[:, i], m_quad[:, i], centres, m_quad[:, i - 1]], -1) for i in range(4)]
    )
    return new_verts, new_tris, new_quads


def _vertex_normals(verts: np.ndarray, tris: np.ndarray, quads: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals [V, 3] (quads as two triangles)."""
    normals = np.zeros_like(verts)
    for tri in (tris, quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]):
        n = np.cross(verts[tri[:, 1]] - verts[tri[:, 0]], verts[tri[:, 2]] - verts[tri[:, 0]])
        for axis in range(3):  # bincount sums in input order: deterministic
            normals[:, axis] += np.bincount(tri.ravel(), np.repeat(n[:, axis], 3), minlength=len(verts))
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return normals / np.where(length > 0, length, 1.0)


def _deform(verts: np.ndarray, tris: np.ndarray, quads: np.ndarray, spec: ObjectSpec) -> np.ndarray:
    """Displace, then twist, then taper, in object space; returns new positions [V, 3].

    - displace: each vertex moves along its normal by ``displace`` x Perlin noise
      of its position / :data:`DISPLACE_NOISE_SCALE` (noise in [-1, 1], mostly
      within +-0.5); normals of the unsplit mesh, so nothing tears.
    - twist: rotation about local Z by ``twist`` x z radians (Blender's SimpleDeform twist).
    - taper: x and y scaled by 1 + ``taper`` x z (Blender's SimpleDeform taper).
    """
    if spec.displace:
        noise = np.array(
            [mathutils.noise.noise(mathutils.Vector(p), noise_basis="PERLIN_ORIGINAL") for p in verts / DISPLACE_NOISE_SCALE]
        )
        verts = verts + _vertex_normals(verts, tris, quads) * (spec.displace * noise)[:, None]
    x, y, z = verts.T
    angle, factor = spec.twist * z, 1.0 + spec.taper * z
    return np.stack([factor * (np.cos(angle) * x - np.sin(angle) * y), factor * (np.sin(angle) * x + np.cos(angle) * y), z], -1)
