"""Hostile-case helpers for asset folders, meshes, checkpoints and predict (tests/hostile/cases_assets.yaml):
``DAMAGE`` (name -> function(data folder)), ``ASSETS`` (name -> mesh bytes, written as meshes/mesh.SUFFIX)
and ``SETUP`` (name -> function(work folder)), merged into :mod:`test_hostile`'s.

Asset setups put a good mesh in ``outside/``, beside the work folder (not in it: the case must not
read it), and reach it from the recipe by an absolute folder, ``../`` or a symbolic link. Checkpoint
setups rewrite the fitted ``constant`` model's ``run/ckpt/last.pt`` as someone who crafts one would.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
from PIL import Image

HOSTILE = Path(__file__).parent / "hostile"
#: A tetrahedron, as a good OBJ: what the recipe would render if it reached it.
TETRA_OBJ = b"v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 3 2\nf 1 2 4\nf 1 4 3\nf 2 3 4\n"
#: Images given to predict (the outputs of all of them, or none, must be written).
IMAGES = 5


def glb(doc: dict, binary: bytes = b"") -> bytes:
    """A binary glTF 2.0 file of the JSON ``doc`` and the ``binary`` chunk."""
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    out = struct.pack("<I4s", len(text), b"JSON") + text
    if binary:
        out += struct.pack("<I4s", len(binary), b"BIN\x00") + binary
    return struct.pack("<4sII", b"glTF", 2, 12 + len(out)) + out


TRIANGLE = {"meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
             "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3"}],
             "bufferViews": [{"buffer": 0, "byteLength": 36}], "buffers": [{"byteLength": 36}]}
TRIANGLE_BIN = struct.pack("<9f", 0, 0, 0, 1, 0, 0, 0, 1, 0)

DAMAGE: dict = {}
ASSETS: dict = {
    # A node that is a JSON list, not an object.
    "node_list_glb": lambda: glb({**TRIANGLE, "scenes": [{"nodes": [0]}], "nodes": [[0]]}, TRIANGLE_BIN),
    # 80 MB of vertices (10^7, no face): what once took 3 GB and 130 s to refuse.
    "big_obj": lambda: b"v 0 0 0\n" * 10_000_000,
}


def _outside(work: Path) -> Path:
    """``outside/mesh.obj`` beside the work folder: a good mesh no case may read."""
    folder = work.parent / "outside"
    folder.mkdir(exist_ok=True)
    (folder / "mesh.obj").write_bytes(TETRA_OBJ)
    return folder


def _absolute_recipe(work: Path) -> None:
    """``absolute.yaml``: the mesh recipe with its folder the absolute path of ``outside/``."""
    text = (HOSTILE / "recipes" / "mesh_assets.yaml").read_text()
    (work / "absolute.yaml").write_text(text.replace("meshes: [meshes]", f"meshes: [{json.dumps(str(_outside(work)))}]"))


def _folder_link(work: Path) -> None:
    """``meshes/``: a symbolic link to ``outside/``."""
    (work / "meshes").symlink_to(_outside(work), target_is_directory=True)


def _file_link(work: Path) -> None:
    """``meshes/mesh.obj``: a symbolic link to ``outside/mesh.obj``."""
    (work / "meshes").mkdir()
    (work / "meshes" / "mesh.obj").symlink_to(_outside(work) / "mesh.obj")


def _checkpoint(work: Path, name: str, change) -> None:
    """``run/ckpt/NAME.pt``: the fitted model's checkpoint after ``change(checkpoint dict)``."""
    import torch

    checkpoint = torch.load(work / "run" / "ckpt" / "last.pt", weights_only=True)
    change(checkpoint)
    torch.save(checkpoint, work / "run" / "ckpt" / f"{name}.pt")


def _wide(checkpoint: dict) -> None:
    # ddff with 10^5 channels per level: 360 GB of weights in its first convolutions.
    checkpoint["config"]["model"] = {"name": "ddff", "config": {"channels": [100_000] * 4}}


def _images(work: Path) -> None:
    """``img0.png`` .. : small grey images to predict on."""
    for i in range(IMAGES):
        Image.fromarray(np.full((32, 32, 3), 40 * i, dtype=np.uint8)).save(work / f"img{i}.png")


SETUP: dict = {
    "outside": _outside,
    "absolute_recipe": _absolute_recipe,
    "folder_link": _folder_link,
    "file_link": _file_link,
    "ckpt_no_config": lambda w: _checkpoint(w, "no_config", lambda c: c.pop("config")),
    "ckpt_string_config": lambda w: _checkpoint(w, "string_config", lambda c: c.update(config="model: ddff")),
    "ckpt_wide": lambda w: _checkpoint(w, "wide", _wide),
    "ckpt_nan": lambda w: _checkpoint(w, "nan", lambda c: c["model"]["depth_m"].fill_(float("nan"))),
    "images": _images,
}
