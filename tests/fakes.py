"""Small stand-ins for the renderer and recipes, so the sample, shard and
executor logic is tested without Blender (and fast).

Module-level functions only: the executor pickles its task into 'spawn'
worker processes, which import this module by name (pytest puts tests/ on
sys.path and spawn hands sys.path to the child).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from generator.core import lens as lensmod
from generator.recipe.recipe import Recipe, load_recipe
from generator.dataset.sample import encode_sample
from generator.draw.scene import scene_split
from generator.scene.spec import CameraSpec, FrameSpec, MaterialSpec, ObjectSpec, RenderSpec, SceneSpec


#: A recipe small enough to render in about a second per scene with Cycles.
TINY = (
    "name=tiny", "count=6", "image.width=32", "image.height=32", "image.samples=4",
    "focus.ramps=1", "focus.frames_per_ramp=2", "scene.objects.count=[1, 2]", "scene.lights.count=1",
    "shards.max_samples=2",
)


def write_tiny_recipe(path: Path, changes: dict | None = None) -> Path:
    """Write :data:`TINY` as YAML to ``path``, with ``{"dotted.key": value}`` changes (valid or not)."""
    data = load_recipe("small_obj", TINY).to_dict()
    for key, value in (changes or {}).items():
        *parents, last = key.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    path.write_text(yaml.safe_dump(data))
    return path


def tiny_recipe(*overrides: str) -> Recipe:
    """The built-in small_obj recipe, 6 scenes, 2 samples per shard, plus ``overrides``."""
    return load_recipe("small_obj", ["count=6", "shards.max_samples=2", *overrides])


@dataclass
class FakeRendered:
    frames: list
    depth: list
    aif: np.ndarray | None = None
    object_index: list | None = None
    cycles_seconds: float = 0.0
    total_seconds: float = 0.0


def make_spec(index: int = 3, *, model: str = "thin_lens", rgb: str = "png8", aif: bool = False,
              coc: bool = False, width: int = 32, height: int = 24, split: str = "train") -> SceneSpec:
    """A two-ramp, two-frames-per-ramp scene with one cube."""
    frames = tuple(
        FrameSpec(index=i, ramp=i // 2, time_s=0.0, focus_distance_m=f)
        for i, f in enumerate((0.5, 2.0, 0.6, 3.0))
    )
    cube = ObjectSpec("cube", "cube", (0.0, 2.0, 0.0), (0.0, 0.0, 0.0), (0.3, 0.3, 0.3), MaterialSpec("checker"))
    return SceneSpec(
        index=index,
        seed=1000 + index,
        split=split,
        render=RenderSpec(width=width, height=height, samples=4, seed=index, aif=aif, rgb=rgb, coc=coc),
        lens=lensmod.Lens(model, 0.05, 2.0, 0.036),
        camera=CameraSpec(),
        frames=frames,
        objects=(cube,),
    )


def fake_render(spec: SceneSpec) -> FakeRendered:
    """Deterministic pseudo-images from the scene's seed; depth has a sky (0) corner."""
    rng = np.random.default_rng(spec.seed)
    h, w = spec.render.height, spec.render.width
    frames = [rng.random((h, w, 3), dtype=np.float32) * 1.2 for _ in spec.frames]
    n_depth = len(spec.frames) if spec.depth_per_frame else 1
    depth = [(0.3 + 4 * rng.random((h, w))).astype(np.float32) for _ in range(n_depth)]
    for d in depth:
        d[:3, :3] = 0.0
    aif = rng.random((h, w, 3), dtype=np.float32) if spec.render.aif else None
    # every pixel on the first object, whatever it is
    object_index = [np.ones((h, w), np.float32) for _ in depth] if spec.render.motion else None
    return FakeRendered(frames, depth, aif, object_index)


def fake_task(recipe: Recipe, index: int) -> dict:
    """Executor task: encode a fake render of scene ``index``, in the recipe's split for it
    (:func:`generator.draw.scene.scene_split`: scenes 1 and 4 of :func:`tiny_recipe` are "test")."""
    spec = make_spec(index, split=scene_split(recipe, index))
    return encode_sample(spec, fake_render(spec), recipe)


def slow_task(seconds: float, recipe: Recipe, index: int) -> dict:
    """:func:`fake_task` that takes ``seconds`` (to interrupt a run in the middle)."""
    time.sleep(seconds)
    return fake_task(recipe, index)


#: Seconds a "hang-once" scene of :func:`flaky_task` waits for its worker to be killed.
HANG_S = 120.0


def flaky_task(log_dir: str, fail: dict[int, str], recipe: Recipe, index: int) -> dict:
    """Like :func:`fake_task`, but scene ``i`` misbehaves as ``fail[i]`` says:
    ``"raise"`` always raises, ``"raise-once"`` / ``"die-once"`` raise / kill the
    worker process on the first attempt only, ``"die"`` always kills it,
    ``"hang-once"`` sleeps :data:`HANG_S` on the first attempt (for a test to kill its worker).
    Every attempt is logged as a file ``{index}-{attempt}`` in ``log_dir`` holding the
    worker's pid (workers are separate processes)."""
    attempt = len(list(Path(log_dir).glob(f"{index}-*"))) + 1
    (Path(log_dir) / f"{index}-{attempt}").write_text(str(os.getpid()))
    mode = fail.get(index, "")
    if mode == "raise" or (mode == "raise-once" and attempt == 1):
        raise RuntimeError(f"injected failure in scene {index}")
    if mode == "die" or (mode == "die-once" and attempt == 1):
        os._exit(3)
    if mode == "hang-once" and attempt == 1:
        time.sleep(HANG_S)
    return fake_task(recipe, index)


def dir_bytes(out: Path) -> dict[str, bytes]:
    """Every file in ``out`` by name: what two runs must agree on byte for byte."""
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def listed_shards(out: Path) -> list:
    """Shards ``out``'s manifest lists (it is replaced atomically, so it always parses)."""
    manifest = out / "manifest.json"
    return json.loads(manifest.read_text())["shards"] if manifest.exists() else []
