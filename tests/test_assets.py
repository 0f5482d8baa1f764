"""User assets: tiny meshes, a texture and an environment map made here, read, sampled, rendered;
empty folders and corrupt files are refused (exit 2) before anything renders."""

from __future__ import annotations

import json
import struct

import numpy as np
import OpenEXR
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from fakes import write_tiny_recipe
from generator.assets import AssetError, AssetFiles, load_mesh
from generator.cli import main
from generator.errors import RecipeError
from generator.recipe import load_recipe
from generator.draw import sample_scene

# A tetrahedron 4 x 2 x 2 units, off the origin: the readers must centre and scale it.
TETRA = np.array([[10.0, 0.0, 0.0], [14.0, 0.0, 0.0], [10.0, 2.0, 0.0], [10.0, 0.0, 2.0]])
TETRA_FACES = [[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]


def write_obj(path, verts=TETRA, faces=TETRA_FACES):
    lines = ["# tetrahedron", "o t"] + [f"v {x} {y} {z}" for x, y, z in verts]
    lines += ["f " + " ".join(f"{i + 1}/{i + 1}/1" for i in face) for face in faces]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_ply(path, binary: bool, verts=TETRA, faces=TETRA_FACES):
    header = ["ply", f"format {'binary_little_endian' if binary else 'ascii'} 1.0", f"element vertex {len(verts)}",
              "property float x", "property float y", "property float z", "property uchar red",
              f"element face {len(faces)}", "property list uchar int vertex_indices", "end_header"]
    head = ("\n".join(header) + "\n").encode()
    if binary:
        body = b"".join(struct.pack("<fffB", *v, 200) for v in verts)
        body += b"".join(struct.pack(f"<B{len(f)}i", len(f), *f) for f in faces)
    else:
        body = "".join(f"{x} {y} {z} 200\n" for x, y, z in verts).encode()
        body += "".join(f"{len(f)} {' '.join(map(str, f))}\n" for f in faces).encode()
    path.write_bytes(head + body)
    return path


def write_stl(path, binary: bool):
    tris = TETRA[np.array(TETRA_FACES)]
    if binary:
        data = b"\0" * 80 + struct.pack("<I", len(tris))
        data += b"".join(struct.pack("<3f9fH", 0, 0, 0, *t.ravel(), 0) for t in tris)
        path.write_bytes(data)
    else:
        facets = "".join("facet normal 0 0 0\nouter loop\n" + "".join(f"vertex {x} {y} {z}\n" for x, y, z in t)
                         + "endloop\nendfacet\n" for t in tris)
        path.write_text(f"solid t\n{facets}endsolid t\n")
    return path


def write_glb(path):
    """The tetrahedron halved along x and moved by a node transform (TRS): the loader must apply it."""
    points = (TETRA * [0.5, 1.0, 1.0]).astype("<f4").tobytes()
    index = np.array(TETRA_FACES, dtype="<u2").tobytes()
    binary = points + index + b"\0" * (-len(points + index) % 4)
    doc = {
        "asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "scale": [2.0, 1.0, 1.0], "translation": [5.0, 0.0, 0.0]}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]}],
        "buffers": [{"byteLength": len(binary)}],
        "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": len(points)},
                        {"buffer": 0, "byteOffset": len(points), "byteLength": len(index)}],
        "accessors": [{"bufferView": 0, "componentType": 5126, "count": 4, "type": "VEC3"},
                      {"bufferView": 1, "componentType": 5123, "count": 12, "type": "SCALAR"}],
    }
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    body = struct.pack("<I4s", len(text), b"JSON") + text + struct.pack("<I4s", len(binary), b"BIN\0") + binary
    path.write_bytes(struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body)
    return path


def write_png(path, size=16):
    checker = (np.indices((size, size)).sum(axis=0) // 2 % 2 * 200 + 40).astype(np.uint8)
    Image.fromarray(np.stack([checker] * 3, -1)).save(path)
    return path


def write_exr(path, rgb=(1.0, 0.02, 0.02), width=16, height=8):
    """An equirectangular environment of one colour (linear RGB)."""
    channels = {c: np.full((height, width), v, dtype=np.float32) for c, v in zip("RGB", rgb)}
    OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}, channels).write(str(path))
    return path


@pytest.fixture
def assets(tmp_path):
    """Folders: meshes (an OBJ and a PLY), textures (a PNG), environments (a reddish EXR)."""
    folders = {name: tmp_path / name for name in ("meshes", "textures", "environments")}
    for folder in folders.values():
        folder.mkdir()
    write_obj(folders["meshes"] / "tetra.obj")
    write_ply(folders["meshes"] / "pyramid.ply", binary=True, verts=np.array(
        [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0.5, 0.5, 3.0]]), faces=[[0, 3, 2, 1], [0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]])
    write_png(folders["textures"] / "checker.png")
    write_exr(folders["environments"] / "red.exr")
    return folders


def _asset_recipe(tmp_path, *overrides):
    """A tiny recipe whose objects, materials, wall and world all come from the asset folders
    (relative paths: resolved against the recipe file's folder)."""
    path = write_tiny_recipe(tmp_path / "assets.yaml", {
        "assets": {"meshes": ["meshes"], "textures": ["textures"], "environments": ["environments"]},
        "scene.objects.shapes": ["mesh"], "scene.objects.count": [3, 3], "scene.materials.families": ["image"], "scene.materials.textureless_fraction": 0.0,
        "scene.wall.materials": ["image"], "scene.world.kinds": ["hdri"], "scene.world.strength": 1.0,
    })
    return load_recipe(path, overrides)


# --- readers --------------------------------------------------------------------------


def _triangles(path) -> np.ndarray:
    """Each triangle's corner coordinates, as a canonical sorted array (readers may share or repeat vertices)."""
    verts, tris = load_mesh(str(path))
    corners = np.round(verts[tris], 6)  # [T, 3, 3]
    rolled = [np.roll(corners, -k, axis=1) for k in range(3)]  # a triangle's start corner is arbitrary
    return np.array(sorted(min(tuple(r[i].ravel()) for r in rolled) for i in range(len(corners))))


@pytest.mark.parametrize("writer", ["obj", "ply_ascii", "ply_binary", "stl_ascii", "stl_binary", "glb"])
def test_mesh_readers_give_the_unit_size_mesh(tmp_path, writer):
    kind, _, variant = writer.partition("_")
    path = tmp_path / f"tetra.{kind}"
    {"obj": lambda: write_obj(path), "ply": lambda: write_ply(path, variant == "binary"),
     "stl": lambda: write_stl(path, variant == "binary"), "glb": lambda: write_glb(path)}[kind]()
    verts, tris = load_mesh(str(path))
    assert len(tris) == 4
    # Centred on its bounding box, largest half-extent 1: x from -1 to 1, y and z from -0.5 to 0.5.
    np.testing.assert_allclose(verts.min(axis=0), [-1.0, -0.5, -0.5], atol=1e-6)
    np.testing.assert_allclose(verts.max(axis=0), [1.0, 0.5, 0.5], atol=1e-6)
    expected = (TETRA - [12.0, 1.0, 1.0]) / 2.0
    np.testing.assert_array_equal(_triangles(path), _triangles(write_obj(tmp_path / "reference.obj", expected)))


def test_polygons_are_fanned_into_triangles(assets):
    verts, tris = load_mesh(str(assets["meshes"] / "pyramid.ply"))
    assert tris.shape == (2 + 4, 3)  # the square base is two triangles
    assert verts.max() == pytest.approx(1.0) and verts[:, 2].min() == pytest.approx(-1.0)


# A house outline, 2 x 3 x 1 units: a square, a pentagon and a triangle, fanned from each first corner.
HOUSE = np.array([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [2.0, 2.0, 0.0], [0.0, 2.0, 0.0], [1.0, 3.0, 1.0]])
HOUSE_FACES = [[0, 1, 2, 3], [0, 1, 2, 4, 3], [3, 2, 4]]
# Worked by hand: centre (1, 1.5, 0.5), largest half-extent 1.5.
HOUSE_UNIT = np.array([[-2 / 3, -1.0, -1 / 3], [2 / 3, -1.0, -1 / 3], [2 / 3, 1 / 3, -1 / 3], [-2 / 3, 1 / 3, -1 / 3],
                       [0.0, 1.0, 1 / 3]])
HOUSE_TRIS = np.array([[0, 1, 2], [0, 2, 3], [0, 1, 2], [0, 2, 4], [0, 4, 3], [3, 2, 4]])


@pytest.mark.parametrize("writer", ["obj", "ply_ascii", "ply_binary", "stl_ascii", "stl_binary", "glb"])
def test_mesh_arrays_are_exactly_the_files_own(tmp_path, writer):
    """Vertex order, triangle order and corners, dtypes, to the bit: known arrays, not the reader's output."""
    kind, _, variant = writer.partition("_")
    path = tmp_path / f"house.{kind}"
    if kind == "obj":  # the last face by negative indices, counted back from the vertices read so far
        write_obj(path, HOUSE, HOUSE_FACES[:2])
        path.write_text(path.read_text() + "f -2 -3 -1\n")
    elif kind == "ply":  # binary: faces of 4, 5 and 3 corners
        write_ply(path, variant == "binary", HOUSE, HOUSE_FACES)
    elif kind == "glb":
        write_glb(path)
    else:  # an STL facet lists its corners: three new vertices per triangle, in file order
        tris = HOUSE[HOUSE_TRIS]
        if variant == "binary":
            path.write_bytes(b"\0" * 80 + struct.pack("<I", len(tris))
                             + b"".join(struct.pack("<3f9fH", 0, 0, 1, *t.ravel(), 0) for t in tris))
        else:  # two solids, joined in order
            facets = ["facet normal 0 0 1\nouter loop\n" + "".join(f"vertex {x} {y} {z}\n" for x, y, z in t)
                      + "endloop\nendfacet\n" for t in tris]
            path.write_text(f"solid a\n{''.join(facets[:2])}endsolid a\nsolid b\n{''.join(facets[2:])}endsolid b\n")
    verts, tris = load_mesh(str(path))
    if kind == "glb":  # write_glb's tetrahedron, its node transform undone by the unit scaling
        want_verts, want_tris = (TETRA - [12.0, 1.0, 1.0]) / 2.0, np.array(TETRA_FACES)
    elif kind == "stl":
        want_verts, want_tris = HOUSE_UNIT[HOUSE_TRIS].reshape(-1, 3), np.arange(18).reshape(6, 3)
    else:
        want_verts, want_tris = HOUSE_UNIT, HOUSE_TRIS
    assert verts.dtype == np.float64 and tris.dtype == np.int64
    np.testing.assert_array_equal(verts, want_verts)
    np.testing.assert_array_equal(tris, want_tris)


CORRUPT = {
    "bad.obj": b"v 0 0 0\nv 1 0 0\nv 0 one 0\nf 1 2 3\n",
    "dangling.obj": b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n",
    "empty.obj": b"# no faces\nv 0 0 0\n",
    "truncated.ply": b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
                     b"property float z\nend_header\n\x00\x00",
    "short.stl": b"\0" * 80 + struct.pack("<I", 5) + b"\0" * 50,
    "wrong.glb": b"GLTF" + b"\0" * 40,
}


@pytest.mark.parametrize("name", sorted(CORRUPT))
def test_corrupt_mesh_is_an_asset_error_naming_the_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(CORRUPT[name])
    with pytest.raises(AssetError, match=name):
        load_mesh(str(path))


def test_corrupt_images_and_bad_folders(tmp_path, assets):
    (tmp_path / "broken").mkdir()
    png = (assets["textures"] / "checker.png").read_bytes()
    (tmp_path / "broken" / "half.png").write_bytes(png[: len(png) // 2])
    (tmp_path / "broken" / "fake.exr").write_text("not an EXR")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no asset here")
    folders = lambda **kw: type("Folders", (), {"meshes": None, "textures": None, "environments": None, **kw})  # noqa: E731
    with pytest.raises(AssetError, match="half.png"):
        AssetFiles.of(folders(textures=(str(tmp_path / "broken"),))).check()
    with pytest.raises(AssetError, match="fake.exr"):
        AssetFiles.of(folders(environments=(str(tmp_path / "broken"),))).check()
    with pytest.raises(AssetError, match="holds no .obj/.ply/.stl/.glb file"):
        AssetFiles.of(folders(meshes=(str(tmp_path / "empty"),)))
    with pytest.raises(AssetError, match="cannot be read"):
        AssetFiles.of(folders(meshes=(str(tmp_path / "missing"),)))
    AssetFiles.of(folders(**{k: (str(v),) for k, v in assets.items()})).check()  # the good ones pass


# --- recipes and sampling -------------------------------------------------------------


def test_asset_families_need_their_folders(tmp_path):
    path = write_tiny_recipe(tmp_path / "r.yaml", {"scene.objects.shapes": ["cube", "mesh"]})
    with pytest.raises(RecipeError, match="scene.objects.shapes.*assets.meshes"):
        load_recipe(path)
    with pytest.raises(RecipeError, match="scene.world.kinds"):
        load_recipe("small_obj", ["scene.world.kinds=[hdri]"])


def test_relative_folders_resolve_against_the_recipe_file(tmp_path, assets, monkeypatch):
    monkeypatch.chdir(assets["meshes"])  # anywhere but the recipe's folder
    recipe = _asset_recipe(tmp_path)
    assert recipe.assets.meshes == (str(assets["meshes"].resolve()),)
    # The canonical recipe (DIR/recipe.yaml, the manifest) keeps the resolved folders.
    assert yaml.safe_load(recipe.to_yaml())["assets"]["textures"] == [str(assets["textures"].resolve())]


def test_scenes_draw_every_asset(tmp_path, assets):
    recipe = _asset_recipe(tmp_path)
    scenes = [sample_scene(recipe, i) for i in range(12)]
    objects = [o for s in scenes for o in s.objects if o.name != "wall"]
    assert {o.asset for o in objects} == {str((assets["meshes"] / n).resolve()) for n in ("pyramid.ply", "tetra.obj")}
    assert {o.shape for o in objects} == {"mesh"}
    texture = str((assets["textures"] / "checker.png").resolve())
    assert {o.material.image for s in scenes for o in s.objects} == {texture}
    assert all(0 <= o.material.rotation < 2 * np.pi for s in scenes for o in s.objects)
    assert {s.world.image for s in scenes} == {str((assets["environments"] / "red.exr").resolve())}
    assert sample_scene(recipe, 3) == scenes[3]


# --- rendering and the command line -----------------------------------------------------


def test_rendered_scene_uses_the_assets(bpy, tmp_path, assets):
    from generator.blender.build import build_scene
    from generator.blender.render import render_scene

    spec = sample_scene(_asset_recipe(
        tmp_path, "scene.lights.count=0", "scene.objects.deform_probability=0", "image.width=24", "image.height=24"), 0)
    built = build_scene(spec)
    for obj_spec in spec.objects[1:]:
        mesh = built.objects[obj_spec.name].data
        assert len(mesh.polygons) == len(load_mesh(obj_spec.asset)[1])
        corners = np.array([v.co for v in mesh.vertices])
        assert np.abs(corners).max() == pytest.approx(1.0, abs=1e-6)  # unit size, then the object's scale
    for obj_spec in spec.objects:
        images = [n.image.filepath for n in built.objects[obj_spec.name].active_material.node_tree.nodes
                  if n.bl_idname == "ShaderNodeTexImage"]
        assert images == [obj_spec.material.image]
    world = [n.image.filepath for n in built.scene.world.node_tree.nodes if n.bl_idname == "ShaderNodeTexEnvironment"]
    assert world == [spec.world.image]
    # No lamps: the red environment map is the only light, so the grey checker texture comes out red.
    frame = render_scene(spec).frames[0]
    red, green, blue = frame.reshape(-1, 3).mean(axis=0)
    assert red > 0.01 and red > 5 * blue and red > 5 * green


@pytest.mark.parametrize("problem", ["empty folder", "missing folder", "corrupt mesh", "corrupt texture"])
def test_cli_refuses_bad_assets_before_rendering(tmp_path, assets, problem):
    name = {"empty folder": "meshes", "missing folder": "meshes", "corrupt mesh": "bad.stl", "corrupt texture": "bad.jpg"}[problem]
    if problem in ("empty folder", "missing folder"):
        for path in assets["meshes"].iterdir():
            path.unlink()
        if problem == "missing folder":
            assets["meshes"].rmdir()
    elif problem == "corrupt mesh":
        (assets["meshes"] / name).write_bytes(b"\0" * 90)
    else:
        (assets["textures"] / name).write_bytes(b"\xff\xd8\xff\xe0 truncated")
    recipe = write_tiny_recipe(tmp_path / "assets.yaml", {
        "assets": {"meshes": ["meshes"], "textures": ["textures"], "environments": ["environments"]},
        "scene.objects.shapes": ["mesh"], "scene.materials.families": ["image"], "scene.materials.textureless_fraction": 0.0,
    })
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["render", "--recipe", str(recipe), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert name in result.output
    assert not out.exists()
