"""Hostile-case helpers for links planted where dfdgen writes, a folder another run holds, and
JSON nested a million deep (tests/hostile/cases.yaml): ``SETUP`` (name -> function(work folder)),
merged into :mod:`test_hostile`'s. Each planted link points at ``victim.tar`` (setup ``victim``),
which the case runner checks is never changed."""

from __future__ import annotations

import atexit
import json
import subprocess
import sys
from pathlib import Path

from fakes import fake_render
from generator.dataset.sample import encode_sample
from generator.draw.scene import draw_scene, scene_split
from generator.core.files import LOCK, PARTIAL
from generator.dataset.format import PROGRESS, shard_name
from generator.recipe.recipe import load_recipe
from generator.dataset.shards import DatasetDir

#: The recipe of the render cases that get as far as rendering: the command line's
#: ``--recipe small_obj -n 2 --set image.width=32 --set image.height=32 --set image.samples=4``.
RENDER_OVERRIDES = ["count=2", "image.width=32", "image.height=32", "image.samples=4"]
#: The processes holding a folder's lock for a case (killed when the tests end).
_HELD: list = []
#: A JSON text nested a million levels deep (``json.loads`` recurses once per level).
DEEP_JSON = "[" * 10**6 + "]" * 10**6


def _link_to_victim(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(Path("..") / "victim.tar" if path.parent.name else "victim.tar")


def _planted_partials(work: Path) -> None:
    """``out/{recipe.yaml,manifest.json,progress.json}.partial``: the names main's atomic writes used."""
    for name in ("recipe.yaml", "manifest.json", "progress.json"):
        _link_to_victim(work / "out" / (name + PARTIAL))


def _interrupted_render(work: Path) -> tuple[Path, dict]:
    """``out/`` as a render killed after its first scene left it: scene 0 in an open shard."""
    recipe = load_recipe("small_obj", overrides=RENDER_OVERRIDES)
    out = DatasetDir(work / "out", recipe, max_samples=recipe.shards.max_samples)
    spec = draw_scene(recipe, 0)
    out.add(0, scene_split(recipe, 0), encode_sample(spec, fake_render(spec), recipe))
    out.abort()  # keeps the open shard and progress.json, gives the lock back
    progress = json.loads((work / "out" / PROGRESS).read_text())
    return work / "out" / (shard_name(recipe.name, scene_split(recipe, 0), 0) + PARTIAL), progress


def _resume_through_link(work: Path) -> None:
    """The open shard replaced by a link to the victim, progress.json claiming 1024 of its bytes."""
    partial, progress = _interrupted_render(work)
    partial.unlink()
    _link_to_victim(partial)
    progress["open"][0]["bytes"] = 1024
    (work / "out" / PROGRESS).write_text(json.dumps(progress))


def _resume_lying_progress(work: Path) -> None:
    """progress.json claims 1024 bytes of the open shard, which holds one whole sample of another length."""
    _, progress = _interrupted_render(work)
    progress["open"][0]["bytes"] = 1024
    (work / "out" / PROGRESS).write_text(json.dumps(progress))


def _hold_lock(folder: Path) -> None:
    """Lock ``folder`` as a running dfdgen would, from a process of its own that lives until the
    tests end (a POSIX lock held here would be dropped as soon as this process closed any file
    open on the lock file, e.g. while the case runner hashes the work folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder / LOCK)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    _HELD.append(holder)
    atexit.register(holder.kill)


#: A process holding a folder's lock as dfdgen does: its pid in the file, a POSIX lock on it.
_HOLDER = """
import fcntl, os, sys, time
lock = open(sys.argv[1], "w+b")
lock.write(f"{os.getpid()}\\n".encode())
lock.flush()
fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("locked", flush=True)
time.sleep(3600)
"""


SETUP = {
    "planted_partials": _planted_partials,
    "config_partial_link": lambda work: _link_to_victim(work / "run2" / "config.yaml.partial"),
    "recipe_link": lambda work: _link_to_victim(work / "out" / "recipe.yaml"),
    "resume_through_link": _resume_through_link,
    "resume_lying_progress": _resume_lying_progress,
    "lock_out": lambda work: _hold_lock(work / "out"),
    "lock_run2": lambda work: _hold_lock(work / "run2"),
    "deep_manifest": lambda work: (work / "data" / "manifest.json").write_text(DEEP_JSON),
    "deep_progress": lambda work: (work / "data" / PROGRESS).write_text(DEEP_JSON),
}
