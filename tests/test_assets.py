"""User assets: tiny meshes, a texture and an environment map made here, read, sampled, rendered;
empty folders, corrupt files, meshes over the limits and folders or links outside the recipe's
folder are refused (exit 2) before anything renders; samples record assets by folder, name and
sha256, never by host path."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import struct

import numpy as np
import OpenEXR
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

import generator.scene.meshes
from fakes import fake_render, write_tiny_recipe
from generator.core.errors import AssetError
from generator.scene.assets import AssetFiles
from generator.scene.meshes import load_mesh
from generator.scene.places import AssetPlaces
from generator.cli import main
from generator.dataset.sample import encode_sample
from generator.core.errors import RecipeError
from generator.core.limits import MAX_MESH_VERTICES
from generator.recipe.recipe import load_recipe
from generator.draw.scene import draw_scene
from generator.scene.spec import AssetRef, SceneSpec

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


def write_glb(path, **changes):
    """The tetrahedron halved along x and moved by a node transform (TRS): the loader must apply it.
    ``changes``: top-level keys of the glTF document replaced."""
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
        **changes,
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


#: A tiny recipe's fields that take its objects, materials, wall and world all from the asset folders.
_ASSET_FIELDS = {
    "assets": {"meshes": ["meshes"], "textures": ["textures"], "environments": ["environments"]},
    "scene.objects.shapes": ["mesh"], "scene.objects.count": [3, 3], "scene.materials.families": ["image"],
    "scene.materials.textureless_fraction": 0.0, "scene.wall.materials": ["image"], "scene.world.kinds": ["hdri"],
    "scene.world.strength": 1.0,
}


def _asset_recipe(tmp_path, *overrides):
    """A tiny recipe of :data:`_ASSET_FIELDS` (relative paths: resolved against the recipe file's folder)."""
    return load_recipe(write_tiny_recipe(tmp_path / "assets.yaml", _ASSET_FIELDS), overrides)


# Readers


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


WRITERS = {"obj": lambda p: write_obj(p), "ply_ascii": lambda p: write_ply(p, False), "ply_binary": lambda p: write_ply(p, True),
           "stl_ascii": lambda p: write_stl(p, False), "stl_binary": lambda p: write_stl(p, True), "glb": lambda p: write_glb(p)}


@pytest.mark.parametrize("writer", sorted(WRITERS))
@pytest.mark.parametrize("limit", ["vertices", "faces"])
def test_mesh_counts_over_the_limits_are_refused(tmp_path, monkeypatch, writer, limit):
    """Each reader checks the counts its file lists (an STL: 3 vertices a triangle) against generator.core.limits."""
    monkeypatch.setattr(generator.scene.meshes, f"MAX_MESH_{limit.upper()}", 3)  # the tetrahedron lists 4 of each or more
    path = WRITERS[writer](tmp_path / f"tetra.{writer.partition('_')[0]}")
    with pytest.raises(AssetError, match=f"tetra.* lists more than 3 {limit}"):
        load_mesh(str(path))


@pytest.mark.parametrize("indent", ["", " \t"])
def test_an_obj_of_too_many_vertices_is_refused_before_it_is_parsed(tmp_path, indent):
    """Counted as the parser reads lines (after white space too), before any vertex is parsed."""
    path = tmp_path / "big.obj"
    path.write_bytes(f"{indent}v 0 0 0\r\n".encode() * (MAX_MESH_VERTICES + 1) + b"f 1 2 3\n")
    with pytest.raises(AssetError, match=f"lists more than {MAX_MESH_VERTICES} vertices"):
        load_mesh(str(path))


@pytest.mark.parametrize("change, message", [
    ({"nodes": [[0]]}, "glTF node 0 is not a JSON object (a list)"),
    ({"nodes": [{"mesh": 0, "children": {"1": 1}}]}, "node 0's children is not a JSON list"),
    ({"scenes": [{"nodes": [-1]}]}, "index of a node is not a non-negative integer"),
    ({"meshes": ["mesh"]}, "glTF mesh 0 is not a JSON object"),
    ({"accessors": [{"bufferView": 0, "componentType": 5126, "count": "4", "type": "VEC3"}]}, "accessor 0's count is not"),
])
def test_glb_structures_of_the_wrong_type_are_refused(tmp_path, change, message):
    path = write_glb(tmp_path / "odd.glb", **change)
    with pytest.raises(AssetError, match=re.escape(message)):
        load_mesh(str(path))


def test_corrupt_images_and_bad_folders(tmp_path, assets):
    (tmp_path / "broken").mkdir()
    png = (assets["textures"] / "checker.png").read_bytes()
    (tmp_path / "broken" / "half.png").write_bytes(png[: len(png) // 2])
    (tmp_path / "broken" / "fake.exr").write_text("not an EXR")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no asset here")
    folders = lambda **kw: type("Folders", (), {"meshes": None, "textures": None, "environments": None,  # noqa: E731
                                                "places": AssetPlaces.of(tmp_path), **kw})
    with pytest.raises(AssetError, match="half.png"):
        AssetFiles.of(folders(textures=(str(tmp_path / "broken"),))).check()
    with pytest.raises(AssetError, match="fake.exr"):
        AssetFiles.of(folders(environments=(str(tmp_path / "broken"),))).check()
    with pytest.raises(AssetError, match="holds no .obj/.ply/.stl/.glb file"):
        AssetFiles.of(folders(meshes=(str(tmp_path / "empty"),)))
    with pytest.raises(AssetError, match="cannot be read"):
        AssetFiles.of(folders(meshes=(str(tmp_path / "missing"),)))
    AssetFiles.of(folders(**{k: (str(v),) for k, v in assets.items()})).check()  # the good ones pass


# Recipes and sampling


def test_asset_families_need_their_folders(tmp_path):
    path = write_tiny_recipe(tmp_path / "r.yaml", {"scene.objects.shapes": ["cube", "mesh"]})
    with pytest.raises(RecipeError, match="scene.objects.shapes.*assets.meshes"):
        load_recipe(path)
    with pytest.raises(RecipeError, match="scene.world.kinds"):
        load_recipe("small_obj", ["scene.world.kinds=[hdri]"])


def test_relative_folders_resolve_against_the_recipe_file(tmp_path, assets, monkeypatch):
    monkeypatch.chdir(assets["meshes"])  # anywhere but the recipe's folder
    recipe = _asset_recipe(tmp_path)
    # The canonical recipe (DIR/recipe.yaml, the manifest, the sha256) keeps the folders as written.
    assert recipe.assets.meshes == ("meshes",)
    assert yaml.safe_load(recipe.to_yaml())["assets"]["textures"] == ["textures"]
    assert [f.path for f in AssetFiles.of(recipe.assets).meshes] == \
        [str((assets["meshes"] / n).resolve()) for n in ("pyramid.ply", "tetra.obj")]


def test_scenes_draw_every_asset(tmp_path, assets):
    recipe = _asset_recipe(tmp_path)
    scenes = [draw_scene(recipe, i) for i in range(12)]
    objects = [o for s in scenes for o in s.objects if o.name != "wall"]

    def ref(kind, name):
        path = assets[kind] / name
        return AssetRef(f"assets.{kind}[0]", name, hashlib.sha256(path.read_bytes()).hexdigest(), str(path.resolve()))

    assert {o.asset for o in objects} == {ref("meshes", "pyramid.ply"), ref("meshes", "tetra.obj")}
    assert {o.asset.host_path for o in objects} == {ref("meshes", n).host_path for n in ("pyramid.ply", "tetra.obj")}
    assert {o.shape for o in objects} == {"mesh"}
    assert {o.material.image for s in scenes for o in s.objects} == {ref("textures", "checker.png")}
    assert all(0 <= o.material.rotation < 2 * np.pi for s in scenes for o in s.objects)
    assert {s.world.image for s in scenes} == {ref("environments", "red.exr")}
    assert draw_scene(recipe, 3) == scenes[3]


def test_samples_record_assets_by_folder_name_and_sha256_wherever_they_lie(tmp_path, assets):
    """A rendered sample's metadata holds no host path; the same recipe and files elsewhere give the same bytes."""
    copy = tmp_path / "elsewhere" / "deeper"
    shutil.copytree(tmp_path, copy, ignore=shutil.ignore_patterns("elsewhere"))
    samples = []
    for folder in (tmp_path, copy):
        recipe = load_recipe(write_tiny_recipe(folder / "assets.yaml", _ASSET_FIELDS))
        spec = draw_scene(recipe, 0)
        samples.append(encode_sample(spec, fake_render(spec), recipe))
    text = samples[0]["json"].decode()
    assert str(tmp_path) not in text and str(tmp_path.resolve()) not in text and "host_path" not in text
    scene = json.loads(text)["scene"]
    mesh = next(o["asset"] for o in scene["objects"] if o["shape"] == "mesh")
    assert mesh["folder"] == "assets.meshes[0]" and mesh["file"] in ("pyramid.ply", "tetra.obj")
    assert mesh["sha256"] == hashlib.sha256((assets["meshes"] / mesh["file"]).read_bytes()).hexdigest()
    assert scene["world"]["image"] == {"folder": "assets.environments[0]", "file": "red.exr",
                                       "sha256": hashlib.sha256((assets["environments"] / "red.exr").read_bytes()).hexdigest()}
    assert samples[0] == samples[1]
    read_back = SceneSpec.from_dict(scene)  # records no file of this host: it cannot be built as it is
    assert read_back == spec and read_back.world.image.host_path == ""


# Where assets may come from


def _outside(tmp_path):
    """A good mesh folder beside the recipe's folder ``recipe/``, not in it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    write_obj(outside / "tetra.obj")
    (tmp_path / "recipe").mkdir()
    return outside


@pytest.mark.parametrize("how", ["absolute", "dotdot", "folder link"])
def test_folders_outside_the_recipes_folder_are_refused_unless_allowed(tmp_path, how):
    outside = _outside(tmp_path)
    folder = {"absolute": str(outside), "dotdot": "../outside", "folder link": "meshes"}[how]
    if how == "folder link":
        (tmp_path / "recipe" / "meshes").symlink_to(outside)
    path = write_tiny_recipe(tmp_path / "recipe" / "r.yaml", {"assets": {"meshes": [folder]}, "scene.objects.shapes": ["mesh"]})
    with pytest.raises(RecipeError, match=r"'assets.meshes\[0\]': got .*in the recipe's folder .*--assets-root"):
        draw_scene(load_recipe(path), 0)
    for root in (outside, tmp_path):  # the folder itself, or one above it
        recipe = load_recipe(path, asset_roots=[root])
        assert {o.asset.host_path for o in draw_scene(recipe, 0).objects[1:]} == {str(outside / "tetra.obj")}


def test_a_file_linked_out_of_an_allowed_folder_is_refused(tmp_path):
    outside = _outside(tmp_path)
    meshes = tmp_path / "recipe" / "meshes"
    meshes.mkdir()
    write_obj(meshes / "own.obj")
    (meshes / "linked.obj").symlink_to(outside / "tetra.obj")
    path = write_tiny_recipe(tmp_path / "recipe" / "r.yaml", {"assets": {"meshes": ["meshes"]}, "scene.objects.shapes": ["mesh"]})
    with pytest.raises(AssetError, match="linked.obj is a link to .*outside the recipe's folder"):
        AssetFiles.of(load_recipe(path).assets)
    (meshes / "inside.obj").symlink_to(meshes / "own.obj")  # a link that stays inside is a file like any
    files = AssetFiles.of(load_recipe(path, asset_roots=[outside]).assets).meshes
    assert [(f.name, f.path) for f in files] == [("inside.obj", str(meshes / "own.obj")),
                                                 ("linked.obj", str(outside / "tetra.obj")),
                                                 ("own.obj", str(meshes / "own.obj"))]


def test_a_built_in_recipes_folder_is_the_recipes_folder(tmp_path):
    (tmp_path / "meshes").mkdir()
    write_obj(tmp_path / "meshes" / "tetra.obj")
    recipe = load_recipe("small_obj", [f"assets.meshes=[{json.dumps(str(tmp_path / 'meshes'))}]", "scene.objects.shapes=[mesh]"])
    with pytest.raises(RecipeError, match=r"'assets.meshes\[0\]'.*recipes"):
        AssetFiles.of(recipe.assets)


# Rendering and the command line


def test_rendered_scene_uses_the_assets(bpy, tmp_path, assets):
    from generator.render.blender.build import build_scene
    from generator.render.blender.render import render_scene

    spec = draw_scene(_asset_recipe(
        tmp_path, "scene.lights.count=0", "scene.objects.deform_probability=0", "image.width=24", "image.height=24"), 0)
    built = build_scene(spec)
    for obj_spec in spec.objects[1:]:
        mesh = built.objects[obj_spec.name].data
        assert len(mesh.polygons) == len(load_mesh(obj_spec.asset.host_path)[1])
        corners = np.array([v.co for v in mesh.vertices])
        assert np.abs(corners).max() == pytest.approx(1.0, abs=1e-6)  # unit size, then the object's scale
    for obj_spec in spec.objects:
        images = [n.image.filepath for n in built.objects[obj_spec.name].active_material.node_tree.nodes
                  if n.bl_idname == "ShaderNodeTexImage"]
        assert images == [obj_spec.material.image.host_path]
    world = [n.image.filepath for n in built.scene.world.node_tree.nodes if n.bl_idname == "ShaderNodeTexEnvironment"]
    assert world == [spec.world.image.host_path]
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


def test_assets_root_on_the_command_line_allows_a_folder_outside(tmp_path):
    outside = _outside(tmp_path)
    (outside / "bad.stl").write_bytes(b"\0" * 90)  # its error shows the folder was read, before anything renders
    recipe = write_tiny_recipe(tmp_path / "recipe" / "r.yaml", {"assets": {"meshes": [str(outside)]},
                                                                 "scene.objects.shapes": ["mesh"]})
    out = tmp_path / "out"
    refused = CliRunner().invoke(main, ["render", "--recipe", str(recipe), "--out", str(out)])
    assert refused.exit_code == 2 and "recipe field 'assets.meshes[0]'" in refused.output, refused.output
    allowed = CliRunner().invoke(main, ["render", "--recipe", str(recipe), "--out", str(out), "--assets-root", str(outside)])
    assert allowed.exit_code == 2 and "bad.stl" in allowed.output, allowed.output
    assert not out.exists()
