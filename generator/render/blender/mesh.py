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

from generator.scene.meshes import load_mesh
from generator.scene.spec import MESH_SHAPE, ObjectSpec, asset_file

#: Edges with a larger dihedral angle are shaded sharp (split), smaller ones smooth.
SMOOTH_ANGLE_RAD = math.radians(30.0)
#: A deformed primitive is subdivided to within a factor 2 of this many faces so
#: that twist, taper and displacement have vertices to move.
DEFORM_FACES = 10_000
#: Feature size of the displacement noise, metres of object space (before scale).
DISPLACE_NOISE_SCALE = 0.5
#: Torus proportions: ring radius + tube radius = 1, so the torus fits the unit size.
TORUS_RADII = (0.75, 0.25)
#: Vertices of a rock: an icosahedron subdivided once (one radius factor each in ``shape_params``).
ROCK_VERTICES = 42
#: Numbers per bump of a blob in ``shape_params``: direction (3), amplitude, angular width.
BLOB_BUMP_PARAMS = 5

#: A mesh as arrays: vertex positions [V, 3] (float64, metres), triangles [T, 3]
#: and quads [Q, 4] (vertex indices, counter-clockwise seen from outside).
Geometry = tuple[np.ndarray, np.ndarray, np.ndarray]


def build_mesh(spec: ObjectSpec) -> bpy.types.Mesh:
    """The mesh of ``spec``: unit-size shape, deformed, sharp edges split, normals stored.

    ``spec.shape_params`` by shape (all lengths relative to the unit size):
    ``superquadric`` (e1, e2) the latitude and longitude exponents (1, 1 is a
    sphere, < 1 boxy, 2 an octahedron); ``extrusion`` the radii of a star
    polygon's corners at equal angles, extruded along local Z; ``rock``
    :data:`ROCK_VERTICES` radius factors of a once-subdivided icosahedron (flat
    shaded); ``blob`` bumps on a sphere, :data:`BLOB_BUMP_PARAMS` numbers each;
    ``rod`` (radius,) of a cylinder of length 2; ``ring`` (tube radius,) of a
    torus of outer radius 1. ``mesh`` objects load the file of ``spec.asset``
    on this host (:func:`generator.scene.meshes.load_mesh`); the other shapes take no parameters.
    """
    verts, tris, quads = _shape(spec)
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


def _shape(spec: ObjectSpec) -> Geometry:
    """Unit-size geometry of ``spec.shape`` with its ``shape_params`` (see :func:`build_mesh`)."""
    shape, params = spec.shape, np.asarray(spec.shape_params, dtype=np.float64)
    if shape == MESH_SHAPE:
        verts, tris = load_mesh(asset_file(spec.asset, f"mesh of {spec.name}"))
        return verts, tris, np.zeros((0, 4), dtype=np.int64)
    if shape == "superquadric":
        return _superquadric(*params)
    if shape == "extrusion":
        return _extrusion(params)
    if shape == "rock":
        verts, tris, quads = _icosphere()
        return _unit_size(verts * params[:, None]), tris, quads
    if shape == "blob":
        return _blob(params.reshape(-1, BLOB_BUMP_PARAMS))
    if shape == "rod":
        verts, tris, quads = _primitive("cylinder")
        return verts * [params[0], params[0], 1.0], tris, quads
    if shape == "ring":
        return _torus(1.0 - params[0], params[0], segments=64, sides=12)
    return _primitive(shape)


def _unit_size(verts: np.ndarray) -> np.ndarray:
    """``verts`` scaled about the origin so that the largest |coordinate| is 1."""
    return verts / np.abs(verts).max()


def _superquadric(e1: float, e2: float) -> Geometry:
    """Superquadric sign(c)|c|^e on the unit sphere's grid: x = C(eta)^e1 C(w)^e2, y = C(eta)^e1 S(w)^e2, z = S(eta)^e1."""
    verts, tris, quads = _uv_sphere(segments=48, rings=24)
    ring = np.hypot(verts[:, 0], verts[:, 1])  # cos(latitude)
    safe = np.where(ring > 0, ring, 1.0)
    power = lambda t, e: np.sign(t) * np.abs(t) ** e  # noqa: E731
    out = np.stack([power(ring, e1) * power(verts[:, 0] / safe, e2),
                    power(ring, e1) * power(verts[:, 1] / safe, e2),
                    power(verts[:, 2], e1)], -1)
    return out, tris, quads


def _extrusion(radii: np.ndarray) -> Geometry:
    """A star polygon (corner i at angle 2 pi i / n, radius radii[i]) extruded from z = -1 to 1; fan caps."""
    n = len(radii)
    angle = 2.0 * np.pi * np.arange(n) / n
    ring = np.stack([radii * np.cos(angle), radii * np.sin(angle)], -1) / radii.max()
    verts = np.concatenate([np.c_[ring, -np.ones(n)], np.c_[ring, np.ones(n)], [[0.0, 0.0, -1.0], [0.0, 0.0, 1.0]]])
    i, j = np.arange(n), (np.arange(n) + 1) % n
    quads = np.stack([i, j, n + j, n + i], -1)
    tris = np.concatenate([np.stack([np.full(n, 2 * n), j, i], -1), np.stack([np.full(n, 2 * n + 1), n + i, n + j], -1)])
    return verts, tris, quads


def _icosphere() -> Geometry:
    """Unit sphere of :data:`ROCK_VERTICES` vertices: an icosahedron, each triangle split in four."""
    phi = (1.0 + math.sqrt(5.0)) / 2.0
    verts = np.array([[-1, phi, 0], [1, phi, 0], [-1, -phi, 0], [1, -phi, 0], [0, -1, phi], [0, 1, phi],
                      [0, -1, -phi], [0, 1, -phi], [phi, 0, -1], [phi, 0, 1], [-phi, 0, -1], [-phi, 0, 1]], dtype=np.float64)
    tris = np.array([[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2],
                     [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5],
                     [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]], dtype=np.int64)
    verts, tris, quads = _subdivide(verts, tris, np.zeros((0, 4), dtype=np.int64))
    return verts / np.linalg.norm(verts, axis=1, keepdims=True), tris, quads


def _blob(bumps: np.ndarray) -> Geometry:
    """Unit sphere whose radius at direction p is 1 + sum_k a_k exp((p . d_k - 1) / w_k), scaled to unit size.

    ``bumps`` [K, 5]: direction d_k (normalised here), amplitude a_k, angular width w_k.
    """
    verts, tris, quads = _uv_sphere(segments=48, rings=24)
    directions = bumps[:, :3] / np.linalg.norm(bumps[:, :3], axis=1, keepdims=True)
    radius = 1.0 + (bumps[:, 3] * np.exp((verts @ directions.T - 1.0) / bumps[:, 4])).sum(axis=1)
    return _unit_size(verts * radius[:, None]), tris, quads


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
