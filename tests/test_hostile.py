"""Hostile inputs (tests/hostile/cases*.yaml) through the command line, each in its own process with
a time limit: the expected exit status and message, no traceback, no raw control character, and
nothing written, deleted or run outside the folder the command names."""

from __future__ import annotations

import hashlib
import io
import os
import re
import resource
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

import hostile_assets
from hostile_assets import TRIANGLE, TRIANGLE_BIN, glb
import hostile_verify
import hostile_writes
from fakes import fake_render, make_spec, tiny_recipe
from generator.dataset.sample import encode_sample
from generator.dataset.shards import DatasetDir

pytestmark = pytest.mark.slow  # every case runs the CLI in a fresh process

HOSTILE = Path(__file__).parent / "hostile"
#: Every case file's cases (one file per concern: cases.yaml, cases_verify.yaml, cases_assets.yaml, ...).
CASES = [case for path in sorted(HOSTILE.glob("cases*.yaml")) for case in yaml.safe_load(path.read_text())]
#: Seconds a case may take: a hang (an alias bomb, a 10^12-scene loop) fails instead of stalling the suite.
TIME_LIMIT_S = 120
#: Splits of the fake dataset's scenes: two train shards, one test shard.
SPLITS = ["train", "train", "train", "train", "test", "test"]
#: tqdm's progress lines on stderr, which are not messages.
_PROGRESS = re.compile(r"\d+%\||\d+(\.\d+)?(it|batch|step|scene)/s|\?(it|batch|step|scene)/s|^\s*$")


def test_the_collection_is_large_and_every_input_is_used():
    assert len(CASES) >= 30 and len({c["id"] for c in CASES}) == len(CASES)
    files = {str(p.relative_to(HOSTILE)) for p in HOSTILE.rglob("*") if p.is_file() and not (p.match("cases*.yaml") and p.parent == HOSTILE)}
    assert files == {c["input"] for c in CASES if "input" in c}


def _dfdgen(args, cwd: Path, fsize: int | None = None) -> subprocess.CompletedProcess:
    """Run dfdgen; ``fsize``: the largest file it may write, bytes (``RLIMIT_FSIZE``: a write past
    it fails with EFBIG, as a write to a full disk fails with ENOSPC; Python ignores SIGXFSZ)."""
    command = [sys.executable, "-c", "from generator.cli import main; main()", *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    limit = None if fsize is None else (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize)))
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=TIME_LIMIT_S, env=env,
                          errors="backslashreplace", preexec_fn=limit)


def _write_dataset(folder: Path) -> None:
    recipe = tiny_recipe("count=6")
    out = DatasetDir(folder, recipe, max_samples=2)
    for index, split in enumerate(SPLITS):
        spec = make_spec(index, split=split)
        out.add(index, split, encode_sample(spec, fake_render(spec), recipe))
    out.finish()


@pytest.fixture(scope="module")
def clean(tmp_path_factory, torch):
    """A fake dataset and a `constant` model fitted on it (copied into the cases that use them)."""
    root = tmp_path_factory.mktemp("hostile-clean")
    _write_dataset(root / "data")
    fit = _dfdgen(["train", "--shards", "data", "--model", "constant", "--out", "run", "--max-steps", "1",
                   "--set", "data.workers=0"], root)
    assert fit.returncode == 0, fit.stdout + fit.stderr
    return root


# Damage to a dataset, and assets


def _rewrite_member(data: Path, shard: str, member: str, change) -> None:
    """Rewrite one member of a shard through ``change(TarInfo, bytes) -> (TarInfo, bytes)``."""
    path = data / shard
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(path, "w") as tar:
        for info, content in members:
            if info.name == member:
                info, content = change(info, content)
            tar.addfile(info, None if info.issym() else io.BytesIO(content))


def _symlink_member(info, content):
    info.type, info.linkname, info.size = tarfile.SYMTYPE, "/etc/hostname", 0
    return info, b""


def _bad_json(info, content):
    bad = b'{"split": "train", "\x1b[2J' + b"x" * 5000
    info.size = len(bad)
    return info, bad


def _garbage_png(info, content):
    bad = b"\x89PNG\r\n\x1a\n" + b"\x1b[31m garbage " * 100
    info.size = len(bad)
    return info, bad


def _flip_byte(data: Path) -> None:
    path = data / "small_obj-train-000000.tar"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 3] ^= 0xFF
    path.write_bytes(bytes(raw))


def _symlink_shard(data: Path) -> None:
    path = data / "small_obj-train-000000.tar"
    path.unlink()
    path.symlink_to(data.parent / "victim.tar")


DAMAGE = {
    "truncate": lambda d: (d / "small_obj-train-000001.tar").write_bytes(
        (d / "small_obj-train-000001.tar").read_bytes()[:7000]),
    "flip_byte": _flip_byte,
    "symlink_member": lambda d: _rewrite_member(d, "small_obj-train-000000.tar", "00000000.json", _symlink_member),
    "symlink_shard": _symlink_shard,
    "bad_json": lambda d: _rewrite_member(d, "small_obj-train-000000.tar", "00000001.json", _bad_json),
    "garbage_png": lambda d: _rewrite_member(d, "small_obj-test-000000.tar", "00000004.f000.png", _garbage_png),
}


ASSETS = {
    "cyclic_glb": lambda: glb({**TRIANGLE, "scenes": [{"nodes": [0]}],
                                "nodes": [{"mesh": 0, "children": [1]}, {"children": [0]}]}, TRIANGLE_BIN),
    "deep_glb": lambda: glb({**TRIANGLE, "scenes": [{"nodes": [0]}],
                              "nodes": [{"children": [i + 1]} for i in range(200)] + [{"mesh": 0}]}, TRIANGLE_BIN),
    "huge_count_glb": lambda: glb({**TRIANGLE, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
                                    "accessors": [{"bufferView": 0, "componentType": 5126, "count": 10**12,
                                                   "type": "VEC3"}]}, TRIANGLE_BIN),
    "huge_count_ply": lambda: b"ply\nformat ascii 1.0\nelement vertex 1000000000000\nelement face 0\n"
                              b"property list uchar int vertex_indices\nend_header\n",
}


#: Further work-folder setups by name: ``function(work folder)``, run after the dataset, run,
#: victim and input are in place and before the damage. Each concern keeps its own in a module of
#: its own and they are merged here.
SETUP: dict = {}
for _module in (hostile_verify, hostile_assets, hostile_writes):
    DAMAGE.update(getattr(_module, "DAMAGE", {}))
    ASSETS.update(getattr(_module, "ASSETS", {}))
    SETUP.update(getattr(_module, "SETUP", {}))


# The cases


def _snapshot(root: Path) -> dict[str, str]:
    """Every file and link under ``root`` by relative path: content hash, or link target."""
    out = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            out[key] = "-> " + os.readlink(path)
        elif path.is_file():
            out[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[key] = "dir"
    return out


def _prepare(case: dict, work: Path, clean: Path | None) -> None:
    setup = case.get("setup", [])
    if "dataset" in setup:
        shutil.copytree(clean / "data", work / "data")
    if "run" in setup:
        shutil.copytree(clean / "run", work / "run")
    if "victim" in setup:
        (work / "victim.tar").write_bytes(b"the user's file")
    if "input" in case:
        shutil.copy(HOSTILE / case["input"], work / Path(case["input"]).name)
    if "manifest" in setup:
        shutil.copy(HOSTILE / case["input"], work / "data" / "manifest.json")
    for name in setup:
        if name in SETUP:
            SETUP[name](work)
        if name in ASSETS:
            (work / "meshes").mkdir(exist_ok=True)
            suffix = name.rsplit("_", 1)[1]
            (work / "meshes" / f"mesh.{suffix}").write_bytes(ASSETS[name]())
    if "damage" in case:
        DAMAGE[case["damage"]](work / "data")


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_hostile_input(case, tmp_path, request):
    needs_data = bool({"dataset", "run"} & set(case.get("setup", []))) or case["args"][0] in ("train", "eval")
    clean = request.getfixturevalue("clean") if needs_data else None
    work = tmp_path / "work"
    work.mkdir()
    _prepare(case, work, clean)
    before = _snapshot(work)
    args = [a.replace("{input}", Path(case.get("input", "")).name) for a in case["args"]]
    result = _dfdgen(args, work / case.get("cwd", "."), case.get("fsize"))
    output = result.stdout + result.stderr
    assert result.returncode == case["status"], output
    assert case["message"] in output, output
    assert "Traceback" not in output and "\x1b" not in output and "\x07" not in output, output
    messages = [line for line in re.split(r"[\r\n]", result.stderr) if not _PROGRESS.search(line)]
    assert len(messages) <= case.get("max_lines", 4), messages
    assert len(output) <= case.get("max_chars", 4000), output[:4000]
    after = _snapshot(work)
    writes = tuple(case.get("writes", []))
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert {k for k in changed if not k.startswith(writes) or not writes} == set(), sorted(changed)
    assert not list(work.rglob("pwned")) and not Path("pwned").exists()
