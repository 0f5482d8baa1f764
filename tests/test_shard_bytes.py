"""The shards of the bundled recipes keep their bytes across refactors.

``tests/shard_bytes.json`` holds the sha256 of every file ``dfdgen render`` writes (and of
every member of each shard) for ``small_obj``, ``dynamic`` and ``fod500`` at 32 px, recorded
before the generator was regrouped by stage (issue 28), and again when the scene spec and the
metadata took float32 precision (``generator/core/precision.py``: the same bytes on every CPU).
A change to any byte of a sample, the manifest or the canonical recipe fails here, naming the
member that moved. The pixels are
Cycles' own output, so they are compared only under the bpy version that recorded them; the
metadata, the manifest and the recipe are compared always.

Record again (only on purpose, when a change of bytes is intended and stated):
``python tests/test_shard_bytes.py``.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

RECORD = Path(__file__).with_name("shard_bytes.json")
RECIPES = ("small_obj", "dynamic", "fod500")
OVERRIDES = ("count=2", "image.width=32", "image.height=32", "image.samples=4")
#: Members decoded from Cycles' pixels (compared only under the recording bpy version).
PIXEL_SUFFIXES = (".png", ".exr", ".npy", ".npz")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest(out: Path) -> dict[str, str]:
    """sha256 of every file under ``out`` and of every member of each ``.tar`` (``shard/member``)."""
    found = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        name = path.relative_to(out).as_posix()
        found[name] = _sha(path.read_bytes())
        if path.suffix == ".tar":
            with tarfile.open(path) as tar:
                for member in tar.getmembers():
                    found[f"{name}/{member.name}"] = _sha(tar.extractfile(member).read())
    return found


def render(recipe: str, out: Path) -> dict[str, str]:
    from generator.cli import main

    args = ["render", "--recipe", recipe, "--out", str(out), "--workers", "1"]
    result = CliRunner().invoke(main, args + [a for o in OVERRIDES for a in ("--set", o)])
    assert result.exit_code == 0, result.output
    return digest(out)


def _holds_pixels(name: str) -> bool:
    """A shard, or a member of one decoded from Cycles' pixels."""
    return name.endswith(".tar") or (".tar/" in name and name.endswith(PIXEL_SUFFIXES))


@pytest.mark.parametrize("recipe", RECIPES)
def test_bundled_recipes_render_the_recorded_bytes(bpy, recipe, tmp_path):
    record = json.loads(RECORD.read_text())
    expected, found = record["recipes"][recipe], render(recipe, tmp_path / recipe)
    same_cycles = bpy.app.version_string == record["bpy"]
    compared = {k: v for k, v in expected.items() if same_cycles or not _holds_pixels(k)}
    moved = sorted(k for k in compared if found.get(k) != compared[k])
    extra = sorted(set(found) - set(expected))
    assert not moved and not extra, f"{recipe}: bytes changed in {moved}, new files {extra}"


if __name__ == "__main__":
    import tempfile

    import bpy

    with tempfile.TemporaryDirectory() as work:
        record = {"bpy": bpy.app.version_string, "overrides": list(OVERRIDES),
                  "recipes": {r: render(r, Path(work) / r) for r in RECIPES}}
    RECORD.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(f"recorded {sum(map(len, record['recipes'].values()))} digests in {RECORD}", file=sys.stderr)
