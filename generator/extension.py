"""Build the Blender add-on into an installable extension zip (``dfdgen addon build``).

The zip holds:

- the add-on itself: ``blender_addon/``'s manifest and Python files;
- ``wheels/dfdgen-VERSION-py3-none-any.whl``: the :mod:`generator` and
  ``recipes`` packages, written here from the installed sources, so the panel
  runs the very code the CLI runs (Blender installs extension wheels into its
  own ``site-packages``, where ``import generator`` finds them);
- wheels of the third-party packages :mod:`generator` imports that Blender
  does not ship (:data:`BUNDLED`), downloaded by pip for Blender's Python and
  each target platform, at the versions installed here.

The manifest gets ``platforms``, ``wheels`` and an explicit, sorted
``[build] paths`` list at build time, then Blender's own extension tool
(``blender_ext.py``, shipped inside the bpy wheel) builds the zip and
validates it. The build is reproducible: the same sources and wheels give the
same zip bytes (fixed file times and modes, files in a fixed order).

No bpy is imported here: the tool runs as a subprocess.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import generator
from generator.core.errors import BadInput, DfdgenError, OutputError
from generator.core.files import write_atomic

#: Distributions whose modules :mod:`generator` imports and Blender does not ship
#: (yaml, OpenEXR, PIL, trimesh); Blender ships numpy itself, and bundling a second copy
#: would clash with the one bpy is built against.
BUNDLED = ("PyYAML", "OpenEXR", "Pillow", "trimesh")
#: Python of the Blender the add-on targets (Blender 5.0 bundles Python 3.11).
BLENDER_PYTHON = "3.11"
#: Blender platform name -> the pip platform tag its wheels need (pip also accepts
#: older compatible tags: earlier manylinux and macOS versions, universal2).
PLATFORMS = {
    "linux-x64": "manylinux_2_28_x86_64",
    "linux-arm64": "manylinux_2_28_aarch64",
    "macos-x64": "macosx_11_0_x86_64",
    "macos-arm64": "macosx_11_0_arm64",
    "windows-x64": "win_amd64",
    "windows-arm64": "win_arm64",
}
#: Modification time of every file in the zip and the dfdgen wheel, as a ZIP date.
ZIP_DATE = (2020, 1, 1, 0, 0, 0)
#: Keys the build writes into the manifest; the source manifest must not set them.
GENERATED_KEYS = ("platforms", "wheels", "build")
MANIFEST = "blender_manifest.toml"
#: Where Blender's extension tool lies inside the bpy package.
_TOOL = "*/scripts/addons_core/bl_pkg/cli/blender_ext.py"

_SYSTEMS = {"linux": "linux", "darwin": "macos", "windows": "windows"}
_MACHINES = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}


@dataclass(frozen=True)
class BuiltExtension:
    """What :func:`build_extension` made.

    Attributes:
        path: the extension zip.
        platforms: Blender platforms it holds wheels for.
        wheels: file names of the bundled wheels.
    """

    path: Path
    platforms: tuple[str, ...]
    wheels: tuple[str, ...]


def this_platform() -> str:
    """Blender's name for this machine's platform (``linux-x64``, ``macos-arm64``, ...)."""
    system, machine = platform.system().lower(), platform.machine().lower()
    name = f"{_SYSTEMS.get(system, system)}-{_MACHINES.get(machine, machine)}"
    if name not in PLATFORMS:
        raise DfdgenError(f"Blender has no extension platform for this machine ({name}); "
                          f"pick one of: {', '.join(PLATFORMS)}")
    return name


def _package_dirs(name: str) -> list[Path]:
    """The folders of an installed (regular or namespace) package, without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise DfdgenError(f"package '{name}' is not installed; install dfdgen (pip install -e .)")
    return [Path(p) for p in spec.submodule_search_locations]


def extension_tool() -> Path:
    """``blender_ext.py``, Blender's extension tool, from the installed bpy wheel."""
    try:
        (folder,) = _package_dirs("bpy")
    except DfdgenError:
        raise DfdgenError("building the add-on needs the bpy wheel, which ships Blender's extension "
                          "tool: pip install 'dfdgen[render]'") from None
    found = sorted(folder.glob(_TOOL))
    if not found:
        raise DfdgenError(f"Blender's extension tool ({_TOOL}) is missing from {folder}")
    return found[-1]


def _run_tool(*args: str) -> None:
    """Run ``blender_ext.py`` with this Python; a failure is an error with the tool's output."""
    done = subprocess.run([sys.executable, str(extension_tool()), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise DfdgenError(f"Blender's extension tool failed ({args[0]}):\n{(done.stdout + done.stderr).strip()}")


def _read_manifest(source: Path) -> str:
    """The add-on's manifest text, checked against what the build adds and the package version."""
    text = (source / MANIFEST).read_text(encoding="utf-8")
    data = tomllib.loads(text)
    for key in GENERATED_KEYS:
        if key in data:
            raise DfdgenError(f"{source / MANIFEST}: '{key}' is written by the build; remove it")
    if data.get("version") != generator.__version__:
        raise DfdgenError(f"{source / MANIFEST}: version {data.get('version')!r} differs from "
                          f"dfdgen's {generator.__version__!r}")
    return text


def _toml_list(values) -> str:
    """A TOML array of strings (none of ours holds a quote or a backslash)."""
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


def _manifest(text: str, platforms: list[str], wheels: list[str], paths: list[str]) -> str:
    """``text`` with the build's keys: top-level ones before the first table, ``[build]`` at the end."""
    head, table, tail = text.partition("\n[")
    generated = f"\nplatforms = {_toml_list(platforms)}\nwheels = {_toml_list(f'./wheels/{w}' for w in wheels)}\n"
    return f"{head.rstrip()}\n{generated}\n{table.lstrip()}{tail.rstrip()}\n\n[build]\npaths = {_toml_list(paths)}\n"


def _zip_file(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, data)


def _dfdgen_wheel(folder: Path) -> str:
    """Write the wheel of :mod:`generator` and ``recipes`` into ``folder``; its file name.

    Written directly (the format is a zip with a ``dist-info`` folder), so the
    bytes depend only on the sources, and nothing is built in the source tree.
    """
    version = generator.__version__
    files: dict[str, bytes] = {}
    for package in ("generator", "recipes"):
        for root in _package_dirs(package):
            for path in sorted(root.rglob("*")):
                name = f"{package}/{path.relative_to(root).as_posix()}"
                if path.is_file() and "__pycache__" not in path.parts and name not in files:
                    files[name] = path.read_bytes()
    info = f"dfdgen-{version}.dist-info"
    files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: dfdgen\nVersion: {version}\n".encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: dfdgen\nRoot-Is-Purelib: true\nTag: py3-none-any\n"

    def digest(data: bytes) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

    record = "".join(f"{name},sha256={digest(data)},{len(data)}\n" for name, data in files.items())
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    name = f"dfdgen-{version}-py3-none-any.whl"
    with zipfile.ZipFile(folder / name, "w") as zf:
        for arcname, data in files.items():
            _zip_file(zf, arcname, data)
    return name


def _download_wheels(folder: Path, platforms: list[str]) -> None:
    """pip-download the :data:`BUNDLED` wheels, at the versions installed here, for each platform."""
    pins = [f"{dist}=={importlib.metadata.version(dist)}" for dist in BUNDLED]
    for name in platforms:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
             "--python-version", BLENDER_PYTHON, "--implementation", "cp", "--platform", PLATFORMS[name],
             "--dest", str(folder), *pins],
            capture_output=True, text=True,
        )
        if done.returncode != 0:
            raise DfdgenError(f"pip could not download {', '.join(pins)} for {name}:\n{done.stderr.strip()}")


def build_extension(out_dir: str | os.PathLike[str], platforms: list[str] | tuple[str, ...] = ()) -> BuiltExtension:
    """Build the add-on into ``out_dir/dfdgen-VERSION.zip`` and validate it with Blender's tool.

    Args:
        out_dir: output folder (created if missing); an existing zip of the same
            name is replaced, nothing else in it is touched.
        platforms: Blender platforms to bundle wheels for (keys of :data:`PLATFORMS`);
            default: this machine's.

    Raises:
        OutputError: ``out_dir`` is a file or cannot be created; BadInput: an unknown platform;
        DfdgenError: pip or Blender's tool failed (with their output), or no bpy.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"cannot build into {out}: it is a file, not a folder")
    platforms = sorted(set(platforms)) or [this_platform()]
    unknown = [p for p in platforms if p not in PLATFORMS]
    if unknown:
        raise BadInput(f"unknown platform {unknown[0]!r}; pick from: {', '.join(PLATFORMS)}")
    source = _package_dirs("blender_addon")[0]
    manifest = _read_manifest(source)
    with tempfile.TemporaryDirectory(prefix="dfdgen-addon-") as tmp:
        stage, wheel_dir = Path(tmp) / "stage", Path(tmp) / "stage" / "wheels"
        wheel_dir.mkdir(parents=True)
        _dfdgen_wheel(wheel_dir)
        _download_wheels(wheel_dir, platforms)
        wheels = sorted(p.name for p in wheel_dir.iterdir())
        paths = sorted(p.name for p in source.glob("*.py"))
        for name in paths:
            shutil.copyfile(source / name, stage / name)
        (stage / MANIFEST).write_text(_manifest(manifest, platforms, wheels, paths), encoding="utf-8")
        # The tool zips files with their mode and local modification time: fix both.
        fixed = time.mktime((*ZIP_DATE, 0, 1, -1))
        for path in stage.rglob("*"):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
            os.utime(path, (fixed, fixed))
        package = Path(tmp) / f"dfdgen-{generator.__version__}.zip"
        _run_tool("build", "--source-dir", str(stage), "--output-filepath", str(package))
        _run_tool("validate", str(package))
        try:
            out.mkdir(parents=True, exist_ok=True)
            write_atomic(out / package.name, package.read_bytes())
        except OSError as exc:
            raise OutputError(f"cannot write the add-on into {out}: {exc}") from exc
    return BuiltExtension(out / package.name, tuple(platforms), tuple(wheels))
