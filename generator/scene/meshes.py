"""Mesh files read without Blender, checked before they are parsed: ``.stl``, ``.obj``, ``.ply``, ``.glb``.

Meshes are read without Blender's importers, so they can be checked without
Blender and give the same arrays in every process: ``.stl`` (ASCII and binary)
through trimesh; Wavefront ``.obj`` (``v`` and ``f`` lines), ``.ply`` (ASCII and
binary) and binary glTF ``.glb`` (triangle primitives of the default scene with
their node transforms) through the small numpy readers below, because trimesh
(5.2) reads those differently (see :func:`_read_stl`). Every reader checks the
file's vertex and face counts against :mod:`generator.core.limits` (``MAX_MESH_*``) from its
header (OBJ: its counted ``v`` and ``f`` lines) before it parses the geometry.
Faces are fanned into triangles; the result is centred on its bounding box and
scaled to unit size (largest half-extent 1, like the procedural shapes), so the
recipe's size range applies.
"""

from __future__ import annotations

import functools
import io
import itertools
import re
import struct
from array import array
from pathlib import Path
from typing import Any

import numpy as np

from generator.core.errors import AssetError, printable
from generator.core.limits import MAX_GLB_DEPTH, MAX_GLB_INSTANCES, MAX_MESH_BYTES, MAX_MESH_FACES, MAX_MESH_VERTICES
from generator.core.safe_json import load_json


@functools.lru_cache(maxsize=64)
def load_mesh(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Vertices [V, 3] float64 (unit size, centred) and triangles [T, 3] int64 of a mesh file.

    Cached: a worker builds the same asset in many scenes. Callers must not modify the arrays.

    Raises:
        AssetError: unreadable, unsupported or corrupt file, no triangle in it, or more bytes,
            vertices or faces than :mod:`generator.core.limits` allows (checked before the geometry is read).
    """
    try:
        size = Path(path).stat().st_size
        if size > MAX_MESH_BYTES:
            raise AssetError(f"mesh {path} is {size / 1e6:.0f} MB; meshes are limited to {MAX_MESH_BYTES / 1e6:.0f} MB")
        data = Path(path).read_bytes()
        reader = {".obj": _read_obj, ".ply": _read_ply, ".stl": _read_stl, ".glb": _read_glb}[Path(path).suffix.lower()]
        verts, corners, sizes = reader(data)
        verts = np.asarray(verts, dtype=np.float64).reshape(-1, 3)
        tris = _fan(corners, sizes)
    except AssetError:
        raise
    except (OSError, KeyError, ValueError, IndexError, TypeError, StopIteration, struct.error, UnicodeDecodeError,
            RecursionError, OverflowError) as exc:
        raise AssetError(f"mesh {path} cannot be read: {type(exc).__name__}: {printable(str(exc))}") from None
    if len(tris) == 0 or not np.all(np.isfinite(verts)):
        raise AssetError(f"mesh {path} has no triangles or non-finite vertices")
    if tris.min() < 0 or tris.max() >= len(verts):
        raise AssetError(f"mesh {path} has faces that index missing vertices")
    used = verts[np.unique(tris)]
    low, high = used.min(axis=0), used.max(axis=0)
    half = (high - low).max() / 2
    if not half > 0:
        raise AssetError(f"mesh {path} is degenerate (all vertices at one point)")
    verts = (verts - (low + high) / 2) / half
    verts.flags.writeable = tris.flags.writeable = False
    return verts, tris


def _check_counts(vertices: int, faces: int) -> None:
    """Refuse a mesh whose file lists more vertices or faces than :mod:`generator.core.limits` allows.

    Raises:
        ValueError: naming the limit.
    """
    for count, limit, what in ((vertices, MAX_MESH_VERTICES, "vertices"), (faces, MAX_MESH_FACES, "faces")):
        if count > limit:  # no count in the message: an OBJ's are counted only up to the limits
            raise ValueError(f"the file lists more than {limit} {what} (generator.core.limits MAX_MESH_{what.upper()})")


def _fan(corners, sizes) -> np.ndarray:
    """Polygons -> triangles [T, 3] int64, each fanned from its first corner.

    ``corners``: the polygons' vertex indices, one polygon after the other; ``sizes``: the
    corners of each polygon (fewer than 3: no triangle), or None when every polygon is a triangle.
    """
    corners = np.asarray(corners, dtype=np.int64)
    if sizes is None:
        return corners.reshape(-1, 3)
    sizes = np.asarray(sizes, dtype=np.int64)
    fans = np.maximum(sizes - 2, 0)  # triangles per polygon
    first = np.repeat(np.cumsum(sizes) - sizes, fans)  # each triangle's polygon's first corner
    step = np.arange(fans.sum()) - np.repeat(np.cumsum(fans) - fans, fans)  # 0 .. fans - 1 in each polygon
    return np.stack([corners[first], corners[first + step + 1], corners[first + step + 2]], axis=1)


#: A vertex (``v``) or face (``f``) line of an OBJ file: its keyword (first token) and the rest of
#: the line. The line counts checked against the limits and the parser read the very same lines:
#: lines end at ``\n``; tokens are split at ASCII white space (``bytes.split``).
_OBJ_LINE = re.compile(rb"^[ \t\r\x0b\x0c]*([vf])(?=[ \t\r\x0b\x0c\n]|\Z)([^\n]*)", re.MULTILINE)


def _read_obj(data: bytes):
    """Wavefront OBJ: ``v x y z`` and ``f a/b/c ...`` (1-based or negative indices) -> vertices, corners, sizes.

    The ``v`` and ``f`` lines are counted first, at most one beyond the limits, so a file of
    millions of them is refused in about a second, before any is parsed.
    """
    keywords = [m.group(1) for m in itertools.islice(_OBJ_LINE.finditer(data), MAX_MESH_VERTICES + MAX_MESH_FACES + 1)]
    _check_counts(keywords.count(b"v"), keywords.count(b"f"))
    # Flat typed arrays, not a list per vertex: 8 bytes a number instead of some 100.
    coords, corners, sizes = array("d"), array("q"), array("q")
    for match in _OBJ_LINE.finditer(data):
        keyword, tokens = match.group(1), match.group(2).split()
        if keyword == b"v":
            if len(tokens) < 3:
                raise ValueError(f"vertex line {printable(repr(match.group(0)))} has fewer than 3 coordinates")
            coords.extend(map(float, tokens[:3]))
        else:
            count = len(coords) // 3  # negative indices count back from the vertices read so far
            indices = [int(token.split(b"/", 1)[0]) for token in tokens]
            corners.extend([i - 1 if i > 0 else count + i for i in indices])
            sizes.append(len(indices))
    return np.frombuffer(coords), np.frombuffer(corners, dtype=np.int64), np.frombuffer(sizes, dtype=np.int64)


_PLY_TYPES = {"char": "i1", "uchar": "u1", "short": "i2", "ushort": "u2", "int": "i4", "uint": "u4",
              "float": "f4", "double": "f8", "int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2",
              "int32": "i4", "uint32": "u4", "float32": "f4", "float64": "f8"}


def _read_ply(data: bytes):
    """PLY (ascii, binary_little_endian, binary_big_endian): ``vertex`` x, y, z and ``face`` vertex_indices."""
    end = data.index(b"end_header")
    header = data[:end].decode("ascii").split("\n")
    body = data[data.index(b"\n", end) + 1:]
    if header[0].strip() != "ply":
        raise ValueError("not a PLY file")
    fmt, elements = None, []  # elements: [name, count, [(name, type) or (name, count type, item type)]]
    for line in header[1:]:
        words = line.split()
        if not words:
            continue
        if words[0] == "format":
            fmt = words[1]
        elif words[0] == "element":
            if not 0 <= int(words[2]) <= len(body):  # every item takes a byte at least
                raise ValueError(f"element {words[1]} claims {words[2]} items in {len(body)} bytes")
            elements.append([words[1], int(words[2]), []])
        elif words[0] == "property":
            elements[-1][2].append((words[-1], *words[1:-1]))
    counts = {name: count for name, count, _ in elements}
    _check_counts(counts.get("vertex", 0), counts.get("face", 0))
    order = {"binary_little_endian": "<", "binary_big_endian": ">"}
    if fmt == "ascii":
        tokens = iter(body.decode("ascii").split())

        def read(kind: str, n: int) -> list[float]:
            return [float(next(tokens)) for _ in range(n)]
    elif fmt in order:
        pos = 0

        def read(kind: str, n: int) -> list[float]:
            nonlocal pos
            dtype = np.dtype(order[fmt] + _PLY_TYPES[kind])
            values = np.frombuffer(body, dtype, n, pos).tolist()
            pos += n * dtype.itemsize
            return values
    else:
        raise ValueError(f"unknown PLY format {fmt!r}")
    verts, faces = None, []
    for name, count, props in elements:
        rows = []
        for _ in range(count):
            row = {}
            for prop in props:
                if prop[1] == "list":  # ("vertex_indices", "list", count type, item type)
                    row[prop[0]] = read(prop[3], int(read(prop[2], 1)[0]))
                else:
                    row[prop[0]] = read(prop[1], 1)[0]
            rows.append(row)
        if name == "vertex":
            verts = [[r["x"], r["y"], r["z"]] for r in rows]
        elif name == "face":
            key = "vertex_indices" if not rows or "vertex_indices" in rows[0] else "vertex_index"
            faces = [[int(i) for i in r[key]] for r in rows]
    if verts is None:
        raise ValueError("no vertex element")
    return verts, [i for face in faces for i in face], [len(face) for face in faces]


#: Bytes of a binary STL's header and triangle count, and of each triangle record.
_STL_HEAD, _STL_RECORD = 84, 50


def _read_stl(data: bytes):
    """STL, binary (80-byte header, count, 50-byte records) or ASCII (``solid`` ... ``endsolid``), read by trimesh.

    Only STL goes through trimesh: for the other formats trimesh 5.2 (``process=False,
    maintain_order=True``) gives other arrays than the readers here, measured on test meshes:
    OBJ and PLY quads become ``(0, 1, 2), (2, 3, 0)`` and are listed after all triangles
    (a fan from the first corner here), negative OBJ indices count from the file's end instead
    of the current vertex, binary PLY with mixed polygon sizes is refused ("unexpected length"),
    ASCII PLY coordinates are rounded to their declared float32; glTF primitives come in
    another order, transformed with other rounding (4e-16), a node with two parents is built once,
    and cycles or 200-deep node chains load silently (the bounds here refuse them by name).

    The counts are checked first, as trimesh tells the kinds apart: a binary STL's size matches
    its triangle count; an ASCII STL lists a ``vertex`` keyword per corner (any case).
    """
    import trimesh.exchange.stl  # here, not at the top: the import takes 0.2 s and most recipes have no STL

    count = struct.unpack("<I", data[80:_STL_HEAD])[0] if len(data) >= _STL_HEAD else -1
    corners = 3 * count if len(data) == _STL_HEAD + _STL_RECORD * count else data.lower().count(b"vertex")
    _check_counts(corners, corners // 3)
    try:
        loaded = trimesh.exchange.stl.load_stl(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - trimesh raises what numpy and its text decoding raise
        raise ValueError(f"{type(exc).__name__}: {exc}") from None
    # Several ASCII solids come as {"geometry": {name: ...}}, in file order; joined as one mesh.
    solids = list(loaded["geometry"].values()) if "geometry" in loaded else [loaded]
    if not solids:
        raise ValueError("neither a binary STL (size does not match its triangle count) nor an ASCII one "
                         "(solid ... endsolid)")
    verts = np.concatenate([s["vertices"] for s in solids])
    return verts, np.arange(len(verts)), None  # trimesh's faces: three new corners per facet, in order


_GLB_COMPONENTS = {5121: "u1", 5123: "u2", 5125: "u4", 5126: "f4"}
_GLB_WIDTH = {"SCALAR": 1, "VEC3": 3}
#: The top-level lists of a glTF document that are read, and what one item of each is called.
_GLB_ITEMS = {"scenes": "scene", "nodes": "node", "meshes": "mesh", "accessors": "accessor",
              "bufferViews": "bufferView"}
#: The JSON type a glTF value must have, by Python type, for messages.
_JSON_TYPES = {dict: "JSON object", list: "JSON list", int: "non-negative integer"}


def _typed(value: Any, kind: type, what: str) -> Any:
    """``value`` of a glTF document, checked to be a ``kind`` (dict, list, or int >= 0; not a bool).

    Raises:
        ValueError: naming ``what`` and what it is instead.
    """
    if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 0):
        raise ValueError(f"glTF {what} is not a {_JSON_TYPES[kind]} (a {type(value).__name__})")
    return value


def _read_glb(data: bytes):
    """Binary glTF 2.0: triangle primitives (mode 4) of the default scene, node transforms applied.

    The JSON chunk is read with :func:`generator.core.safe_json.load_json` (size and nesting limits);
    every object, list and index on the way to the geometry is type-checked, and every
    accessor's count is added to the mesh's vertex and face counts before it is read.
    """
    magic, version, _ = struct.unpack("<4sII", data[:12])
    if magic != b"glTF" or version != 2:
        raise ValueError("not a binary glTF 2.0 file")
    json_len, json_type = struct.unpack("<I4s", data[12:20])
    if json_type != b"JSON":
        raise ValueError("first chunk is not JSON")
    doc = _typed(load_json(data[20:20 + json_len]), dict, "document")
    pos = 20 + json_len
    binary = b""
    if pos + 8 <= len(data):
        bin_len, _ = struct.unpack("<I4s", data[pos:pos + 8])
        binary = data[pos + 8:pos + 8 + bin_len]

    def item(key: str, index: Any) -> dict:
        """``doc[key][index]``, an object (``key`` a top-level list: nodes, meshes, accessors, ...)."""
        name = _GLB_ITEMS[key]
        return _typed(_typed(doc[key], list, key)[_typed(index, int, f"index of a {name}")], dict, f"{name} {index}")

    def layout(index: Any) -> tuple[np.dtype, int, int, int, int]:
        """(component type, components, stride in bytes, start in bytes, count) of accessor ``index``,
        checked to lie in the binary chunk."""
        acc = item("accessors", index)
        view = item("bufferViews", acc["bufferView"])
        width = _GLB_WIDTH[acc["type"]]
        kind = np.dtype("<" + _GLB_COMPONENTS[acc["componentType"]])
        stride = _typed(view.get("byteStride") or kind.itemsize * width, int, f"accessor {index}'s stride")
        start = (_typed(view.get("byteOffset", 0), int, f"bufferView {acc['bufferView']}'s byteOffset")
                 + _typed(acc.get("byteOffset", 0), int, f"accessor {index}'s byteOffset"))
        count = _typed(acc["count"], int, f"accessor {index}'s count")
        if not 0 < count or stride < kind.itemsize * width \
                or start + (count - 1) * stride + kind.itemsize * width > len(binary):
            raise ValueError(f"accessor {index} reads {count} items past the end of the binary chunk")
        return kind, width, stride, start, count

    def read(kind: np.dtype, width: int, stride: int, start: int, count: int) -> np.ndarray:
        """An accessor's items [count, width]: a strided view of the chunk (bounds checked by ``layout``), copied."""
        return np.array(np.ndarray((count, width), kind, binary, start, (stride, kind.itemsize)))

    verts, tris = [], []
    instances, vertices, faces = 0, 0, 0

    def visit(node_index: Any, parent: np.ndarray, path: tuple[int, ...] = ()) -> None:
        nonlocal instances, vertices, faces
        instances += 1
        if node_index in path:
            raise ValueError(f"node {node_index} is its own ancestor (a cycle in the node graph)")
        if len(path) >= MAX_GLB_DEPTH or instances > MAX_GLB_INSTANCES:
            raise ValueError(f"node graph deeper than {MAX_GLB_DEPTH} or larger than {MAX_GLB_INSTANCES} instances")
        node = item("nodes", node_index)
        matrix = parent @ _node_matrix(node)
        if "mesh" in node:
            for prim in _typed(item("meshes", node["mesh"])["primitives"], list, "primitives"):
                prim = _typed(prim, dict, "primitive")
                if prim.get("mode", 4) != 4:
                    continue
                points_at = layout(_typed(prim["attributes"], dict, "attributes")["POSITION"])
                index_at = layout(prim["indices"]) if "indices" in prim else points_at
                vertices, faces = vertices + points_at[-1], faces + index_at[-1] // 3
                _check_counts(vertices, faces)  # before reading: instances multiply what is read
                points = read(*points_at).astype(np.float64)
                index = read(*index_at).ravel() if "indices" in prim else np.arange(len(points))
                tris.append(index.astype(np.int64).reshape(-1, 3) + sum(len(v) for v in verts))
                verts.append(points @ matrix[:3, :3].T + matrix[:3, 3])
        for child in _typed(node.get("children", []), list, f"node {node_index}'s children"):
            visit(child, matrix, path + (node_index,))

    scene = item("scenes", doc.get("scene", 0))
    for root in _typed(scene["nodes"], list, "scene's nodes"):
        visit(root, np.eye(4))
    if not verts:
        raise ValueError("no triangle primitive in the default scene")
    return np.concatenate(verts), np.concatenate(tris).ravel(), None


def _node_matrix(node: dict) -> np.ndarray:
    """4x4 local transform of a glTF node: ``matrix`` (column-major) or T * R * S."""
    if "matrix" in node:
        return np.array(node["matrix"], dtype=np.float64).reshape(4, 4).T
    x, y, z, w = node.get("rotation", (0.0, 0.0, 0.0, 1.0))
    rot = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                    [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                    [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    out = np.eye(4)
    out[:3, :3] = rot * np.asarray(node.get("scale", (1.0, 1.0, 1.0)))
    out[:3, 3] = node.get("translation", (0.0, 0.0, 0.0))
    return out
