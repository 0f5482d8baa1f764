"""User assets: mesh, texture and environment-map folders named by a recipe's ``assets`` section.

Pure Python (numpy, Pillow, OpenEXR); no bpy. The render command checks every
file here before anything is rendered or written (:func:`check_assets`), so an
empty folder or a corrupt file is a bad-input error (exit status 2) naming the
file, not a failed scene later. The mesh readers are also what the builder
uses (:func:`load_mesh`), so a mesh that passes the check is the mesh rendered.

Meshes are read without Blender's importers, so they can be checked without
Blender and give the same arrays in every process: ``.stl`` (ASCII and binary)
through trimesh; Wavefront ``.obj`` (``v`` and ``f`` lines), ``.ply`` (ASCII and
binary) and binary glTF ``.glb`` (triangle primitives of the default scene with
their node transforms) through the small numpy readers below, because trimesh
(5.2) reads those differently (see :func:`_read_stl`). Faces are fanned into
triangles; the result is centred on its bounding box and scaled to unit size
(largest half-extent 1, like the procedural shapes), so the recipe's size range
applies.
"""

from __future__ import annotations

import functools
import io
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import OpenEXR
from PIL import Image

from generator.errors import BadInput, printable

#: File types per asset kind (lower-case suffixes).
MESH_SUFFIXES = (".obj", ".ply", ".stl", ".glb")
TEXTURE_SUFFIXES = (".png", ".jpg", ".jpeg")
ENVIRONMENT_SUFFIXES = (".exr", ".hdr")


class AssetError(BadInput):
    """An asset folder or file cannot be used (exit status 2)."""


def asset_files(folders: tuple[str, ...], suffixes: tuple[str, ...], what: str) -> tuple[str, ...]:
    """Absolute paths of the files with ``suffixes`` in ``folders`` (not recursive), sorted by path.

    Raises:
        AssetError: a folder is missing, unreadable, or holds no such file.
    """
    found = []
    for folder in folders:
        try:
            names = os.listdir(folder)
        except OSError as exc:
            raise AssetError(f"{what} folder {folder} cannot be read: {exc.strerror or exc}") from None
        files = sorted(str(Path(folder, n).resolve()) for n in names
                       if n.lower().endswith(suffixes) and Path(folder, n).is_file())
        if not files:
            raise AssetError(f"{what} folder {folder} holds no {'/'.join(suffixes)} file")
        found.extend(files)
    return tuple(sorted(found))


# --- meshes ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def load_mesh(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Vertices [V, 3] float64 (unit size, centred) and triangles [T, 3] int64 of a mesh file.

    Cached: a worker builds the same asset in many scenes. Callers must not modify the arrays.

    Raises:
        AssetError: unreadable, unsupported or corrupt file, or no triangle in it.
    """
    try:
        size = Path(path).stat().st_size
        if size > MAX_MESH_BYTES:
            raise AssetError(f"mesh {path} is {size / 1e6:.0f} MB; meshes are limited to {MAX_MESH_BYTES / 1e6:.0f} MB")
        data = Path(path).read_bytes()
        reader = {".obj": _read_obj, ".ply": _read_ply, ".stl": _read_stl, ".glb": _read_glb}[Path(path).suffix.lower()]
        verts, faces = reader(data)
        verts = np.asarray(verts, dtype=np.float64).reshape(-1, 3)
        tris = _fan(faces)
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


def _fan(faces) -> np.ndarray:
    """Polygons (vertex index lists, or an [F, 3] array) -> triangles [T, 3] by fanning from the first corner."""
    if isinstance(faces, np.ndarray):
        return faces.astype(np.int64).reshape(-1, 3)
    tris = [(f[0], f[i], f[i + 1]) for f in faces for i in range(1, len(f) - 1)]
    return np.array(tris, dtype=np.int64).reshape(-1, 3)


def _read_obj(data: bytes):
    """Wavefront OBJ: ``v x y z`` and ``f a/b/c ...`` (1-based or negative indices)."""
    verts, faces = [], []
    for line in data.decode("utf-8").splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "v":
            verts.append([float(x) for x in parts[1:4]])
        elif parts[0] == "f":
            idx = [int(p.split("/")[0]) for p in parts[1:]]
            faces.append([i - 1 if i > 0 else len(verts) + i for i in idx])
    return verts, faces


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
    return verts, faces


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
    """
    import trimesh.exchange.stl  # here, not at the top: the import takes 0.2 s and most recipes have no STL

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
    return verts, np.arange(len(verts)).reshape(-1, 3)  # trimesh's faces: three new corners per facet, in order


#: Largest mesh file read, bytes; a mesh is a prop of a scene, not a city.
MAX_MESH_BYTES = 256_000_000
#: Deepest glTF node hierarchy, and most node instances a glTF scene may expand to (a node
#: graph shared by many parents multiplies: a chain of n nodes each listing the next twice is 2^n).
MAX_GLB_DEPTH = 64
MAX_GLB_INSTANCES = 10_000

_GLB_COMPONENTS = {5121: "u1", 5123: "u2", 5125: "u4", 5126: "f4"}
_GLB_WIDTH = {"SCALAR": 1, "VEC3": 3}


def _read_glb(data: bytes):
    """Binary glTF 2.0: triangle primitives (mode 4) of the default scene, node transforms applied."""
    magic, version, _ = struct.unpack("<4sII", data[:12])
    if magic != b"glTF" or version != 2:
        raise ValueError("not a binary glTF 2.0 file")
    json_len, json_type = struct.unpack("<I4s", data[12:20])
    if json_type != b"JSON":
        raise ValueError("first chunk is not JSON")
    doc = json.loads(data[20:20 + json_len])
    pos = 20 + json_len
    binary = b""
    if pos + 8 <= len(data):
        bin_len, _ = struct.unpack("<I4s", data[pos:pos + 8])
        binary = data[pos + 8:pos + 8 + bin_len]

    def accessor(index: int) -> np.ndarray:
        acc = doc["accessors"][index]
        view = doc["bufferViews"][acc["bufferView"]]
        width = _GLB_WIDTH[acc["type"]]
        kind = np.dtype("<" + _GLB_COMPONENTS[acc["componentType"]])
        stride = view.get("byteStride") or kind.itemsize * width
        start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
        count = acc["count"]
        if not 0 < count or start < 0 or start + (count - 1) * stride + kind.itemsize * width > len(binary):
            raise ValueError(f"accessor {index} reads {count} items past the end of the binary chunk")
        rows = [np.frombuffer(binary, kind, width, start + i * stride) for i in range(count)]
        return np.array(rows).reshape(count, width)

    verts, tris = [], []
    instances = 0

    def visit(node_index: int, parent: np.ndarray, path: tuple[int, ...] = ()) -> None:
        nonlocal instances
        instances += 1
        if node_index in path:
            raise ValueError(f"node {node_index} is its own ancestor (a cycle in the node graph)")
        if len(path) >= MAX_GLB_DEPTH or instances > MAX_GLB_INSTANCES:
            raise ValueError(f"node graph deeper than {MAX_GLB_DEPTH} or larger than {MAX_GLB_INSTANCES} instances")
        node = doc["nodes"][node_index]
        matrix = parent @ _node_matrix(node)
        if "mesh" in node:
            for prim in doc["meshes"][node["mesh"]]["primitives"]:
                if prim.get("mode", 4) != 4:
                    continue
                points = accessor(prim["attributes"]["POSITION"]).astype(np.float64)
                index = accessor(prim["indices"]).ravel() if "indices" in prim else np.arange(len(points))
                tris.append(index.astype(np.int64).reshape(-1, 3) + sum(len(v) for v in verts))
                verts.append(points @ matrix[:3, :3].T + matrix[:3, 3])
        for child in node.get("children", []):
            visit(child, matrix, path + (node_index,))

    scene = doc["scenes"][doc.get("scene", 0)]
    for root in scene["nodes"]:
        visit(root, np.eye(4))
    if not verts:
        raise ValueError("no triangle primitive in the default scene")
    return np.concatenate(verts), np.concatenate(tris)


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


# --- images ---------------------------------------------------------------------------


def check_texture(path: str) -> None:
    """Decode an image texture fully (Pillow), so a truncated or corrupt file fails here.

    Raises:
        AssetError: the file is not a readable image.
    """
    try:
        with Image.open(path) as image:
            image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise AssetError(f"texture {path} cannot be read: {exc}") from None


def check_environment(path: str) -> None:
    """Check an environment map: an OpenEXR file with R, G and B channels, or a Radiance ``.hdr``
    whose header and resolution line parse (its pixels are decoded by Blender).

    Raises:
        AssetError: the file is not such a map.
    """
    if path.lower().endswith(".hdr"):
        with open(path, "rb") as stream:
            head = stream.read(4096)
        lines = head.split(b"\n")
        size = next((i for i, line in enumerate(lines) if not line.strip()), None)
        if not head.startswith((b"#?RADIANCE", b"#?RGBE")) or size is None or size + 1 >= len(lines) \
                or len(lines[size + 1].split()) != 4:
            raise AssetError(f"environment map {path} is not a Radiance HDR file")
        return
    try:
        with OpenEXR.File(path, separate_channels=True) as exr:
            channels = exr.channels()
            missing = {"R", "G", "B"} - set(channels)
            pixels = [np.asarray(channels[c].pixels) for c in ("R", "G", "B") if c in channels]
    except Exception as exc:  # noqa: BLE001 - OpenEXR raises bare RuntimeErrors and more
        raise AssetError(f"environment map {path} cannot be read: {exc}") from None
    if missing or any(p.size == 0 for p in pixels):
        raise AssetError(f"environment map {path} lacks channels {sorted(missing)} or pixels")


class AssetFolders(Protocol):
    """What :meth:`AssetFiles.of` needs from a recipe's ``assets`` section: folder lists or None."""

    meshes: tuple[str, ...] | None
    textures: tuple[str, ...] | None
    environments: tuple[str, ...] | None


@dataclass(frozen=True)
class AssetFiles:
    """A recipe's asset files by kind: absolute paths, sorted; empty where it names no folder."""

    meshes: tuple[str, ...]
    textures: tuple[str, ...]
    environments: tuple[str, ...]

    @classmethod
    def of(cls, folders: AssetFolders) -> "AssetFiles":
        """List the files of ``folders`` (see :func:`asset_files`).

        Raises:
            AssetError: a named folder is missing, unreadable or holds no file of its kind.
        """
        def files(names, suffixes, what):
            return asset_files(names, suffixes, what) if names is not None else ()

        return cls(
            files(folders.meshes, MESH_SUFFIXES, "mesh"),
            files(folders.textures, TEXTURE_SUFFIXES, "texture"),
            files(folders.environments, ENVIRONMENT_SUFFIXES, "environment map"),
        )

    def check(self) -> None:
        """Read every file once (meshes parsed, images decoded).

        Raises:
            AssetError: the first unusable file, by name.
        """
        for path in self.meshes:
            load_mesh(path)
        for path in self.textures:
            check_texture(path)
        for path in self.environments:
            check_environment(path)
