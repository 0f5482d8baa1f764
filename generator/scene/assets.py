"""User assets: mesh, texture and environment-map folders named by a recipe's ``assets`` section.

Pure Python (numpy, Pillow, OpenEXR); no bpy. The render command checks every
file here before anything is rendered or written (:func:`AssetFiles.check`), so an
empty folder or a corrupt file is a bad-input error (exit status 2) naming the
file, not a failed scene later. The mesh readers are also what the builder
uses (:func:`load_mesh`), so a mesh that passes the check is the mesh rendered.

Where assets may come from (:class:`AssetPlaces`): a recipe's asset folder must lie, links
followed, inside the folder that holds the recipe file (for a built-in recipe: the ``recipes``
folder), or inside a folder the user grants by name on the command line (``dfdgen render
--assets-root PATH``, repeatable, like Kubric's asset-source flags; a folder given with ``--set
assets.meshes=...`` is checked as the file's are, so granting is always explicit); every file
read from it must too (a link out is refused). So a recipe from a stranger reads no file of the
machine beyond its own folder. A scene records each file it uses as an
:class:`~generator.scene.spec.AssetRef` (recipe field, file name, sha256), never by host path.
Meshes are read by :mod:`generator.scene.meshes`.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import OpenEXR
from PIL import Image

from generator.core.errors import AssetError, printable
from generator.scene.places import AssetPlaces
from generator.scene.meshes import load_mesh
from generator.scene.spec import AssetRef

#: File types per asset kind (lower-case suffixes).
MESH_SUFFIXES = (".obj", ".ply", ".stl", ".glb")
TEXTURE_SUFFIXES = (".png", ".jpg", ".jpeg")
ENVIRONMENT_SUFFIXES = (".exr", ".hdr")


@dataclass(frozen=True)
class AssetFile:
    """One file of a recipe's asset folder.

    Attributes:
        folder: the recipe field that names its folder, e.g. ``assets.meshes[0]``.
        name: its name in that folder.
        path: the file on this host: absolute, links followed.
    """

    folder: str
    name: str
    path: str

    def ref(self) -> AssetRef:
        """The file as a scene records it (:class:`~generator.scene.spec.AssetRef`), with its sha256.

        Raises:
            AssetError: the file cannot be read.
        """
        return AssetRef(self.folder, self.name, file_sha256(self.path), self.path)


@functools.lru_cache(maxsize=1024)
def file_sha256(path: str) -> str:
    """Hex SHA-256 of the file at ``path``; cached, as :func:`load_mesh` is: a worker hashes each asset once.

    Raises:
        AssetError: the file cannot be read.
    """
    try:
        with open(path, "rb") as stream:
            return hashlib.file_digest(stream, "sha256").hexdigest()
    except OSError as exc:
        raise AssetError(f"asset {printable(path)} cannot be read: {exc.strerror or exc}") from None


def asset_files(places: AssetPlaces, field: str, folder: str, suffixes: tuple[str, ...],
                what: str) -> tuple[AssetFile, ...]:
    """The files with ``suffixes`` in asset folder ``folder`` (recipe field ``field``; not recursive), by name.

    Raises:
        RecipeError: the folder lies outside ``places``.
        AssetError: the folder is missing, unreadable or holds no such file, or a file in it is
            a link to a file outside ``places``.
    """
    real = places.folder(field, folder)
    try:
        names = sorted(os.listdir(real))
    except OSError as exc:
        raise AssetError(f"{what} folder {printable(folder)} ({field}) cannot be read: {exc.strerror or exc}") from None
    found = []
    for name in names:
        if not name.lower().endswith(suffixes):
            continue
        try:
            target = (real / name).resolve()
            regular = target.is_file()
        except (OSError, ValueError, RuntimeError):  # a loop of links: not a file to read
            continue
        if not regular:
            continue
        if not places.holds(target):
            raise AssetError(f"{what} {printable(str(real / name))} is a link to {printable(str(target))}, "
                             f"outside the recipe's folder and every --assets-root; copy the file in instead")
        found.append(AssetFile(field, name, str(target)))
    if not found:
        raise AssetError(f"{what} folder {printable(folder)} ({field}) holds no {'/'.join(suffixes)} file")
    return tuple(found)


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
    """What :meth:`AssetFiles.of` needs from a recipe's ``assets`` section: folder lists or None,
    and where they may be."""

    meshes: tuple[str, ...] | None
    textures: tuple[str, ...] | None
    environments: tuple[str, ...] | None
    places: AssetPlaces


@dataclass(frozen=True)
class AssetFiles:
    """A recipe's asset files by kind, in the order of its folders, then by name; empty where it names no folder."""

    meshes: tuple[AssetFile, ...]
    textures: tuple[AssetFile, ...]
    environments: tuple[AssetFile, ...]

    @classmethod
    def of(cls, folders: AssetFolders) -> "AssetFiles":
        """List the files of ``folders`` (see :func:`asset_files`).

        The order depends on the folders' order and the files' names only, not on where they
        are, so a recipe draws the same files wherever its data lies.

        Raises:
            RecipeError: a folder lies outside ``folders.places``.
            AssetError: a named folder is missing, unreadable or holds no file of its kind, or a
                file is a link out of the places.
        """
        def files(kind, suffixes, what):
            return tuple(file for i, folder in enumerate(getattr(folders, kind) or ())
                         for file in asset_files(folders.places, f"assets.{kind}[{i}]", folder, suffixes, what))

        return cls(
            files("meshes", MESH_SUFFIXES, "mesh"),
            files("textures", TEXTURE_SUFFIXES, "texture"),
            files("environments", ENVIRONMENT_SUFFIXES, "environment map"),
        )

    def check(self) -> None:
        """Read every file once (meshes parsed, images decoded).

        Raises:
            AssetError: the first unusable file, by name.
        """
        for file in self.meshes:
            load_mesh(file.path)
        for file in self.textures:
            check_texture(file.path)
        for file in self.environments:
            check_environment(file.path)
