"""The output directory of one recipe: WebDataset shards, manifest.json, recipe.yaml.

Layout (DESIGN.md section 5)::

    DIR/{recipe}-{split}-{shard:06d}.tar   complete shards, byte-reproducible
    DIR/manifest.json                      what is done (schema: :meth:`DatasetDir._manifest`)
    DIR/recipe.yaml                        the recipe that made them

Crash safety: a shard is written to ``NAME.tar.partial`` and renamed into place
when complete; the manifest is then rewritten atomically (temp file +
``os.replace``). A rerun with the same recipe resumes: scenes in listed shards
(and scenes recorded as failed) are skipped, everything else is removed and
rendered again. Shard boundaries depend only on the scene order and the
recipe's limits, so a resumed run ends byte-identical to an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import webdataset as wds

import generator
from generator.errors import OutputError
from generator.files import PARTIAL, TAR_MODE, TAR_MTIME, TAR_OWNER, write_atomic

MANIFEST = "manifest.json"
RECIPE = "recipe.yaml"
_TAR_BLOCK = 512


def shard_name(recipe_name: str, split: str, number: int) -> str:
    """File name of shard ``number`` of a split."""
    return f"{recipe_name}-{split}-{number:06d}.tar"


def _shard_pattern(recipe_name: str) -> re.Pattern:
    """Our shard names (complete or partial) for a recipe name."""
    return re.compile(re.escape(recipe_name) + r"-[^/]+-\d{6}\.tar(" + re.escape(PARTIAL) + ")?")


def sample_tar_bytes(sample: Mapping[str, Any]) -> int:
    """Bytes a sample adds to a tar: per member a 512-byte header plus data padded to 512."""
    sizes = [len(v) for k, v in sample.items() if not k.startswith("_")]
    return sum(_TAR_BLOCK + -(-n // _TAR_BLOCK) * _TAR_BLOCK for n in sizes)


@dataclass
class _OpenShard:
    """A shard being written (to its ``.partial`` file)."""

    name: str
    split: str
    file: Any
    writer: wds.TarWriter
    scenes: list[int] = field(default_factory=list)
    size: int = 0


class DatasetDir:
    """Writes one recipe's shards into ``out_dir``, resuming what a previous run left.

    Samples must be added per split in scene-index order; a shard is closed
    when the next sample would exceed ``max_samples`` samples or ``max_bytes``
    bytes (tar blocks of its members; a single larger sample gets a shard of its own).

    Args:
        out_dir: output directory (created if missing).
        recipe: has ``name``, ``sha256``, ``seed``, ``count``, ``to_dict()``, ``to_yaml()``.
        max_samples: samples per shard (>= 1).
        max_bytes: bytes per shard, or ``None`` for no limit.
        overwrite: delete dfdgen's files of any previous run first (the user's other files stay).

    Raises:
        OutputError: ``out_dir`` is unusable, or holds another recipe's data and not ``overwrite``.
    """

    def __init__(self, out_dir, recipe, *, max_samples: int, max_bytes: int | None = None,
                 overwrite: bool = False):
        self.path = Path(out_dir)
        self.recipe = recipe
        self.max_samples, self.max_bytes = max_samples, max_bytes
        self.shards: list[dict[str, Any]] = []
        self.failed: dict[int, str] = {}
        self._open: dict[str, _OpenShard] = {}
        try:
            previous = self._read_manifest()
            if overwrite:
                self._remove_ours(previous)
                previous = None
            elif previous is not None:
                self._check_same_recipe(previous)
                self.shards, self.failed = previous["shards"], {f["scene"]: f["reason"] for f in previous["failed"]}
            self._clean_leftovers()
            self.path.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path / RECIPE, recipe.to_yaml().encode("utf-8"))
            self._write_manifest(complete=False)
        except OSError as exc:
            raise OutputError(f"output directory {self.path} cannot be used: {exc}") from exc

    # --- state on disk -----------------------------------------------------

    def _read_manifest(self) -> dict[str, Any] | None:
        if self.path.exists() and not self.path.is_dir():
            raise OutputError(f"output path {self.path} exists and is not a directory")
        path = self.path / MANIFEST
        if not path.exists():
            return None
        try:
            manifest = json.loads(path.read_text())
            ours = manifest.get("generator", {}).get("name") == "dfdgen"
        except (ValueError, UnicodeDecodeError, AttributeError):
            ours = False
        if not ours:  # someone else's file: never replace it, even with --overwrite
            raise OutputError(f"{path} was not written by dfdgen; choose another --out")
        return manifest

    def _check_same_recipe(self, previous: dict[str, Any]) -> None:
        old, new = previous["recipe"], self.recipe
        if old["sha256"] != new.sha256:
            raise OutputError(
                f"{self.path} holds data of recipe '{old['name']}' (sha256 {old['sha256'][:12]}), "
                f"not of recipe '{new.name}' (sha256 {new.sha256[:12]}); "
                f"choose another --out or pass --overwrite to replace it"
            )
        for shard in previous["shards"]:
            path = self.path / shard["name"]
            if not path.is_file() or path.stat().st_size != shard["bytes"]:
                raise OutputError(f"shard {path} listed in {MANIFEST} is missing or truncated; use --overwrite")

    def _unlisted(self, names: set[str]) -> list[Path]:
        """Files in the directory that dfdgen wrote for recipe ``names`` but the manifest does not list."""
        if not self.path.is_dir():
            return []
        listed = {s["name"] for s in self.shards}
        patterns = [_shard_pattern(n) for n in names]
        return [
            p for p in self.path.iterdir()
            if p.name not in listed and any(pat.fullmatch(p.name) for pat in patterns)
        ]

    def _remove_ours(self, previous: dict[str, Any] | None) -> None:
        names = {self.recipe.name} | ({previous["recipe"]["name"]} if previous else set())
        listed = [self.path / s["name"] for s in previous["shards"]] if previous else []
        fixed = [self.path / n for n in (MANIFEST, RECIPE, MANIFEST + PARTIAL, RECIPE + PARTIAL)]
        for path in [*listed, *self._unlisted(names), *fixed]:
            path.unlink(missing_ok=True)

    def _clean_leftovers(self) -> None:
        """Remove partial shards and shards renamed into place after the last manifest write.

        Without a manifest, complete-looking shards of this recipe's name, or a
        recipe.yaml with other content, are not provably ours: refuse rather
        than delete, overwrite or mix them.
        """
        strays = self._unlisted({self.recipe.name})
        if not (self.path / MANIFEST).exists():
            unclaimed = [p for p in strays if not p.name.endswith(PARTIAL)]
            recipe_file = self.path / RECIPE
            if recipe_file.exists() and recipe_file.read_text() != self.recipe.to_yaml():
                unclaimed.append(recipe_file)
            if unclaimed:
                raise OutputError(
                    f"{self.path} holds {unclaimed[0].name}, which dfdgen's {MANIFEST} does not claim; "
                    f"choose another --out or pass --overwrite to replace it"
                )
        self._remove_unlisted()

    def _remove_unlisted(self) -> None:
        """Delete this recipe's shard files (partial or complete) that the manifest does not list."""
        for path in self._unlisted({self.recipe.name}):
            path.unlink()
        (self.path / (MANIFEST + PARTIAL)).unlink(missing_ok=True)

    def _manifest(self, complete: bool) -> dict[str, Any]:
        """The manifest: deterministic (no clock, no host), so reruns compare equal.

        ``recipe``: name, sha256, seed, count and the full recipe ``config``;
        ``shards``: [{name, split, samples, bytes, sha256, scenes}] sorted by name;
        ``failed``: [{scene, reason}]; ``scenes_done``: sorted scene indices in
        listed shards; ``complete``: every scene is in a shard or failed.
        """
        r = self.recipe
        return {
            "format_version": 1,
            "generator": {"name": "dfdgen", "version": generator.__version__},
            "recipe": {"name": r.name, "sha256": r.sha256, "seed": r.seed, "count": r.count,
                       "file": RECIPE, "config": r.to_dict()},
            "shards": sorted(self.shards, key=lambda s: s["name"]),
            "failed": [{"scene": i, "reason": self.failed[i]} for i in sorted(self.failed)],
            "scenes_done": sorted(self.scenes_in_shards),
            "complete": complete,
        }

    def _write_manifest(self, complete: bool) -> None:
        text = json.dumps(self._manifest(complete), sort_keys=True, indent=1, allow_nan=False)
        write_atomic(self.path / MANIFEST, text.encode("utf-8"))

    # --- progress ------------------------------------------------------------

    @property
    def scenes_in_shards(self) -> set[int]:
        return {i for s in self.shards for i in s["scenes"]}

    @property
    def done(self) -> set[int]:
        """Scenes that need no rendering: in a complete shard or recorded as failed."""
        return self.scenes_in_shards | set(self.failed)

    # --- writing -------------------------------------------------------------

    def add(self, index: int, split: str, sample: Mapping[str, Any]) -> None:
        """Append a sample (member name -> bytes) to its split's current shard."""
        size = sample_tar_bytes(sample)
        shard = self._open.get(split)
        if shard and (len(shard.scenes) >= self.max_samples
                      or (self.max_bytes is not None and shard.size + size > self.max_bytes)):
            self._close(shard)
            shard = None
        if shard is None:
            shard = self._start(split)
        shard.writer.write(dict(sample))
        shard.scenes.append(index)
        shard.size += size

    def fail(self, index: int, reason: str) -> None:
        """Record scene ``index`` as failed (written with the next manifest)."""
        self.failed[index] = reason

    def finish(self) -> None:
        """Close every open shard and mark the manifest complete."""
        for shard in list(self._open.values()):
            self._close(shard)
        self._write_manifest(complete=len(self.done) >= self.recipe.count)

    def abort(self) -> None:
        """Drop the incomplete shards; the listed ones and the manifest stay valid.

        Files are found by name, not only through ``_open``: an interrupt can land
        between creating a shard file and recording it, or between renaming a
        complete shard and listing it.
        """
        for shard in self._open.values():
            shard.writer.close()  # its bytes go with the file
            shard.file.close()
        self._open.clear()
        self._remove_unlisted()
        self._write_manifest(complete=False)

    def _start(self, split: str) -> _OpenShard:
        number = sum(s["split"] == split for s in self.shards)
        name = shard_name(self.recipe.name, split, number)
        file = open(self.path / (name + PARTIAL), "wb")
        writer = wds.TarWriter(file, user=TAR_OWNER, group=TAR_OWNER, mode=TAR_MODE, mtime=TAR_MTIME, encoder=False)
        self._open[split] = shard = _OpenShard(name, split, file, writer)
        return shard

    def _close(self, shard: _OpenShard) -> None:
        """Finish a shard's tar, rename it into place, then record it in the manifest."""
        shard.writer.close()
        shard.file.flush()
        os.fsync(shard.file.fileno())
        shard.file.close()
        tmp, final = self.path / (shard.name + PARTIAL), self.path / shard.name
        with open(tmp, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        os.replace(tmp, final)
        del self._open[shard.split]
        self.shards.append({"name": shard.name, "split": shard.split, "samples": len(shard.scenes),
                            "bytes": final.stat().st_size, "sha256": digest, "scenes": shard.scenes})
        self._write_manifest(complete=False)
