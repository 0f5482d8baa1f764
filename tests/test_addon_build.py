"""``dfdgen addon build``: the extension zip, Blender's validator, reproducibility, bad input."""

from __future__ import annotations

import ast
import io
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

import generator
from generator.cli import main
from generator.extension import BUNDLED, extension_tool

ADDON = Path(__file__).parents[1] / "blender_addon"


def _manifest(zf: zipfile.ZipFile) -> dict:
    return tomllib.loads(zf.read("blender_manifest.toml").decode())


def _validate(path: Path) -> subprocess.CompletedProcess:
    """Blender's own validator on ``path``."""
    return subprocess.run([sys.executable, str(extension_tool()), "validate", str(path)],
                          capture_output=True, text=True)


def test_zip_passes_blenders_validator_and_bundles_what_the_addon_imports(addon_zip):
    done = _validate(addon_zip)
    assert done.returncode == 0, done.stdout + done.stderr
    with zipfile.ZipFile(addon_zip) as zf:
        manifest = _manifest(zf)
        names = set(zf.namelist())
        assert manifest["schema_version"] == "1.0.0" and manifest["type"] == "add-on"
        assert manifest["id"] == "dfdgen" and manifest["version"] == generator.__version__
        assert manifest["license"] == ["SPDX:MIT"] and "files" in manifest["permissions"]
        assert {p.name for p in ADDON.glob("*.py")} <= names
        wheels = [w.removeprefix("./") for w in manifest["wheels"]]
        assert set(wheels) <= names
        bundled = {Path(w).name.split("-")[0].lower() for w in wheels}
        assert bundled == {"dfdgen", *(d.lower() for d in BUNDLED)}
        # The dfdgen wheel holds the generator this environment runs, file for file.
        (ours,) = [w for w in wheels if Path(w).name.startswith("dfdgen-")]
        with zipfile.ZipFile(io.BytesIO(zf.read(ours))) as wheel:
            root = Path(generator.__file__).parent
            for path in root.rglob("*.py"):
                if "__pycache__" not in path.parts:
                    assert wheel.read(f"generator/{path.relative_to(root).as_posix()}") == path.read_bytes()
            assert "recipes/small_obj.yaml" in wheel.namelist()


def test_build_is_reproducible(addon_zip, tmp_path):
    result = CliRunner().invoke(main, ["addon", "build", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / addon_zip.name).read_bytes() == addon_zip.read_bytes()


def test_wheels_for_another_platform(bpy, tmp_path):
    result = CliRunner().invoke(main, ["addon", "build", "--out", str(tmp_path), "--platform", "windows-x64"])
    assert result.exit_code == 0, result.output
    (path,) = tmp_path.glob("*.zip")
    assert _validate(path).returncode == 0
    with zipfile.ZipFile(path) as zf:
        manifest = _manifest(zf)
    assert manifest["platforms"] == ["windows-x64"]
    assert all(w.endswith(("win_amd64.whl", "none-any.whl")) for w in manifest["wheels"]), manifest["wheels"]


@pytest.mark.parametrize("args, message", [
    (["--out", "{file}"], "Error: cannot build into {file}: it is a file, not a folder"),
    (["--out", "{dir}", "--platform", "amiga-68k"], "Error: unknown platform 'amiga-68k'; pick from: linux-x64"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, args, message):
    file = tmp_path / "taken"
    file.write_text("mine")
    names = {"file": file, "dir": tmp_path / "out"}
    result = CliRunner().invoke(main, ["addon", "build", *(a.format(**names) for a in args)])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(message.format(**names))
    assert file.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_addon_imports_its_own_modules_relatively():
    own = {p.stem for p in ADDON.glob("*.py")} | {"blender_addon"}
    for path in ADDON.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                absolute = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                absolute = [node.module]
            else:
                continue
            assert not {name.split(".")[0] for name in absolute} & own, (path.name, ast.unparse(node))
