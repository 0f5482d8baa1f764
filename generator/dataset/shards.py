"""The output directory of one recipe: WebDataset shards, manifest.json, recipe.yaml.

Layout (DESIGN.md section 5)::

    DIR/{recipe}-{split}-{shard:06d}.tar          complete shards, byte-reproducible
    DIR/{recipe}-{split}-{shard:06d}.tar.partial  shards being written (listed in progress.json)
    DIR/manifest.json                             what is done (schema: :func:`generator.dataset.format.manifest_json`)
    DIR/progress.json                             the shards being written and the scenes in them
    DIR/recipe.yaml                               the recipe that made them

Crash safety: dfdgen claims a file before it creates it, so it never deletes,
overwrites or reads as its own a file it did not write. A shard being written
is listed in ``progress.json`` before its ``.partial`` file is created; each
sample is appended to it (tar members only, :func:`generator.dataset.format.tar_members`),
flushed, and then recorded there with the byte length of the complete samples.
A shard is closed by finishing its tar, listing it in the manifest and renaming
it into place. A rerun with the same recipe resumes at scene granularity:
listed shards and recorded failures are kept, each ``.partial`` file is cut back
to its recorded length and appended to, and only the scenes in none of them are
rendered. Shard boundaries depend only on the scene order and the recipe's
limits, so a resumed run ends byte-identical to an uninterrupted one.

Names read back from a manifest or ``progress.json`` are data: one that is not
a shard name of dfdgen's (:data:`generator.dataset.format.SHARD_NAME`) is refused, so a dataset cannot
point dfdgen at a path outside its folder or at a ``pipe:`` command. Nor are the byte counts
trusted: a ``.partial`` file is resumed only when it is a regular file of its own (opened
without following links, :func:`generator.core.files.open_in_place`) whose first recorded bytes are
exactly the recorded scenes' samples, and a listed shard is renamed into place only when its
sha256 is the manifest's. A run holds the folder's lock (:func:`generator.core.files.folder_lock`)
from its first check to :meth:`DatasetDir.finish` or :meth:`DatasetDir.abort`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Mapping

from generator.core.errors import BadInput, OutputError, WriteError, brief
from generator.core.files import PARTIAL, TEMPORARY, folder_lock, open_in_place, refuse_link, write_atomic
from generator.dataset.format import (MANIFEST, PROGRESS, RECIPE, SHARD_NAME, check_shard_entries, manifest_json, read_manifest,
                              sample_key, sample_keys, shard_name, tar_end, tar_members)
from generator.core.safe_json import load_json_file


@dataclass
class _OpenShard:
    """A shard being written to its ``.partial`` file; ``size`` bytes of complete samples so far."""

    name: str
    split: str
    file: BinaryIO
    scenes: list[int] = field(default_factory=list)
    size: int = 0

    def entry(self) -> dict[str, Any]:
        return {"name": self.name, "split": self.split, "scenes": self.scenes, "bytes": self.size}


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
        overwrite: delete the files the previous run's manifest claims first (nothing else).

    Raises:
        OutputError: ``out_dir`` is unusable, another run holds it, it holds another recipe's
            data and not ``overwrite``, a file named like a shard of this recipe that no
            manifest claims, or a link where dfdgen writes. Nothing is changed then.
        WriteError: the disk refused a write (read-only folder, full disk).
    """

    def __init__(self, out_dir, recipe, *, max_samples: int, max_bytes: int | None = None,
                 overwrite: bool = False):
        self.path = Path(out_dir)
        self.recipe = recipe
        self.max_samples, self.max_bytes = max_samples, max_bytes
        self.shards: list[dict[str, Any]] = []
        self.failed: dict[int, str] = {}
        self._open: dict[str, _OpenShard] = {}
        if self.path.exists() and not self.path.is_dir():
            raise OutputError(f"output path {self.path} exists and is not a directory")
        self._lock = contextlib.ExitStack()
        try:
            self._lock.enter_context(folder_lock(self.path))
            self._remove_stale_temporaries()
            previous = self._read_previous()
            if previous is not None and not overwrite:
                self._check_same_recipe(previous[0])
            self._check_unclaimed(previous)
            if previous is not None and overwrite:
                self._remove_claimed(*previous)
                previous = None
            self.path.mkdir(parents=True, exist_ok=True)
            if previous is not None:
                self._resume(*previous)
            write_atomic(self.path / RECIPE, recipe.to_yaml().encode("utf-8"))
            self._write_manifest(complete=False)
        except BaseException as exc:
            self._release()
            if isinstance(exc, OSError):
                disk = WriteError.of(exc, self.path)
                raise (OutputError(f"output directory {self.path} cannot be used: {exc}") if disk is exc
                       else disk) from exc
            raise

    # State on disk

    def _read_previous(self) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """The previous run's manifest and progress entries, or ``None`` without a manifest."""
        if not os.path.lexists(self.path / MANIFEST):
            return None
        try:
            manifest = read_manifest(self.path)
        except BadInput:  # someone else's file: never replace it, even with --overwrite
            raise OutputError(f"{self.path / MANIFEST} was not written by dfdgen or is damaged; "
                              f"choose another --out") from None
        progress: list[dict[str, Any]] = []
        path = self.path / PROGRESS
        if os.path.lexists(path):
            try:
                progress = load_json_file(path)["open"]
                check_shard_entries(progress, path)
                for entry in progress:
                    if not (isinstance(entry["bytes"], int) and entry["bytes"] >= 0
                            and all(isinstance(i, int) for i in entry["scenes"])):
                        raise ValueError(f"entry {entry['name']} has no byte count or scene list")
            except (ValueError, KeyError, TypeError, UnicodeDecodeError, OSError) as exn:
                raise OutputError(f"{path} is damaged ({brief(exn)}); use --overwrite") from None
        return manifest, progress

    def _check_same_recipe(self, previous: dict[str, Any]) -> None:
        old, new = previous["recipe"], self.recipe
        if old["sha256"] != new.sha256:
            changed = _changed_fields(old.get("config"), new.to_dict())
            raise OutputError(
                f"{self.path} holds data of recipe '{old['name']}' (sha256 {old['sha256'][:12]}), "
                f"not of this one (sha256 {new.sha256[:12]}): {changed}; "
                f"choose another --out or pass --overwrite to replace it"
            )

    def _claimed(self, previous: tuple[dict[str, Any], list[dict[str, Any]]] | None) -> set[str]:
        """File names in the directory that a previous run's manifest or progress claims."""
        if previous is None:
            return set()
        manifest, progress = previous
        names = {s["name"] for s in manifest["shards"]} | {s["name"] for s in progress}
        return names | {n + PARTIAL for n in names}

    def _check_unclaimed(self, previous) -> None:
        """Refuse a directory holding files named like this recipe's shards that no manifest claims
        (or a recipe.yaml of other content without a manifest): they are not provably ours."""
        if not self.path.is_dir():
            return
        claimed = self._claimed(previous)
        for p in sorted(self.path.iterdir()):
            match = SHARD_NAME.fullmatch(p.name.removesuffix(PARTIAL))
            if match and match["recipe"] == self.recipe.name and p.name not in claimed:
                raise OutputError(
                    f"{self.path} holds {p.name}, which dfdgen's {MANIFEST} does not claim; "
                    f"choose another --out or move it away"
                )
        recipe_file = self.path / RECIPE
        refuse_link(recipe_file)
        if previous is None and recipe_file.exists() and not (self.path / MANIFEST).exists() \
                and recipe_file.read_bytes() != self.recipe.to_yaml().encode("utf-8"):
            raise OutputError(f"{self.path} holds {RECIPE}, which dfdgen's {MANIFEST} does not claim; "
                              f"choose another --out")

    def _remove_claimed(self, manifest: dict[str, Any], progress: list[dict[str, Any]]) -> None:
        """--overwrite: delete exactly the files the previous manifest and progress claim."""
        for name in sorted(self._claimed((manifest, progress))):
            path = self.path / name
            if path.is_file() and not path.is_symlink() and path.resolve().parent == self.path.resolve():
                path.unlink()
        for name in (PROGRESS, MANIFEST, RECIPE):
            (self.path / name).unlink(missing_ok=True)

    def _remove_stale_temporaries(self) -> None:
        """Remove the temporary files a killed run left of the files it rewrites (a link is removed,
        not followed)."""
        for path in self.path.iterdir():
            match = TEMPORARY.fullmatch(path.name)
            if match and match["name"] in (MANIFEST, PROGRESS, RECIPE):
                path.unlink()

    def _resume(self, manifest: dict[str, Any], progress: list[dict[str, Any]]) -> None:
        """Take over the previous run: its complete shards, failures and partial shards."""
        self.failed = {f["scene"]: f["reason"] for f in manifest["failed"]}
        self.shards = list(manifest["shards"])
        self._finish_renames()
        for shard in self.shards:
            path = self.path / shard["name"]
            refuse_link(path)
            if not path.is_file() or path.stat().st_size != shard["bytes"]:
                raise OutputError(f"shard {path} listed in {MANIFEST} is missing or truncated; use --overwrite")
        listed = {s["name"] for s in self.shards}
        opened = []
        try:
            for entry in progress:
                partial = self.path / (entry["name"] + PARTIAL)
                if entry["name"] in listed or entry["split"] in self._open:
                    continue
                if not os.path.lexists(partial):  # claimed, never created
                    continue
                file = open_in_place(partial, create=False)
                opened.append(file)
                self._check_partial(file, partial, entry)
                file.truncate(entry["bytes"])  # drop the sample that was being appended
                file.seek(entry["bytes"])
                self._open[entry["split"]] = _OpenShard(entry["name"], entry["split"], file,
                                                        list(entry["scenes"]), entry["bytes"])
        except BaseException:
            for file in opened:
                file.close()
            self._open.clear()
            raise
        self._write_progress()

    @staticmethod
    def _check_partial(file: BinaryIO, path: Path, entry: Mapping[str, Any]) -> None:
        """Refuse a ``.partial`` file whose first ``entry["bytes"]`` bytes are not exactly the samples
        of ``entry["scenes"]``: ``progress.json`` is data, and truncating a file it misdescribes
        would destroy bytes dfdgen cannot vouch for."""
        data = file.read(entry["bytes"])
        try:
            keys = sample_keys(data) if len(data) == entry["bytes"] else None
        except ValueError:
            keys = None
        if keys != [sample_key(i) for i in entry["scenes"]]:
            raise OutputError(f"{path} does not hold the {entry['bytes']} bytes of scenes {brief(entry['scenes'])} "
                              f"that {PROGRESS} records; use --overwrite")

    def _write_manifest(self, complete: bool) -> None:
        text = manifest_json(self.recipe, self.shards, self.failed, self.scenes_in_shards, complete)
        write_atomic(self.path / MANIFEST, text)

    def _write_progress(self, *claims: dict[str, Any]) -> None:
        """Record the open shards and ``claims`` (shards about to be created); small, rewritten
        after every sample; nothing open: no file."""
        entries = sorted([s.entry() for s in self._open.values()] + list(claims), key=lambda e: e["name"])
        if entries:
            write_atomic(self.path / PROGRESS, json.dumps({"open": entries}, sort_keys=True).encode("utf-8"))
        else:
            (self.path / PROGRESS).unlink(missing_ok=True)

    # Progress

    @property
    def scenes_in_shards(self) -> set[int]:
        """Scenes in complete shards."""
        return {i for s in self.shards for i in s["scenes"]}

    @property
    def done(self) -> set[int]:
        """Scenes that need no rendering: written to a shard (complete or open) or recorded as failed."""
        return self.scenes_in_shards | {i for s in self._open.values() for i in s.scenes} | set(self.failed)

    # Writing

    def add(self, index: int, split: str, sample: Mapping[str, Any]) -> None:
        """Append a sample (member name -> bytes) to its split's current shard, durably."""
        data = tar_members(sample)
        shard = self._open.get(split)
        if shard and (len(shard.scenes) >= self.max_samples
                      or (self.max_bytes is not None and shard.size + len(data) > self.max_bytes)):
            self._close(shard)
            shard = None
        if shard is None:
            shard = self._start(split)
        shard.file.write(data)
        shard.file.flush()
        os.fsync(shard.file.fileno())
        shard.scenes.append(index)
        shard.size += len(data)
        self._write_progress()

    def fail(self, index: int, reason: str) -> None:
        """Record scene ``index`` as failed (in the manifest at once: failures are rare)."""
        self.failed[index] = reason
        self._write_manifest(complete=False)

    def finish(self) -> None:
        """Close every open shard, mark the manifest complete and release the folder."""
        try:
            for shard in list(self._open.values()):
                self._close(shard)
            self._write_manifest(complete=len(self.done) >= self.recipe.count)
        finally:
            self._release()

    def abort(self) -> None:
        """Stop writing: the open shards keep their complete samples for a rerun to resume.

        A shard listed but not yet renamed is renamed. ``progress.json`` stays as it is: it
        claims every file that may exist, and a rerun skips its entries the manifest lists
        (:meth:`_resume`).
        """
        try:
            self._finish_renames()
        finally:
            for shard in self._open.values():
                shard.file.close()
            self._open.clear()
            self._release()

    def _release(self) -> None:
        """Give the folder's lock back (once; later calls do nothing)."""
        self._lock.close()

    def _finish_renames(self) -> None:
        """Rename into place each listed shard an interrupt left as ``.partial`` (the manifest
        lists a shard before its rename: :meth:`_close`)."""
        for shard in self.shards:
            final, partial = self.path / shard["name"], self.path / (shard["name"] + PARTIAL)
            if os.path.lexists(final) or not os.path.lexists(partial):
                continue
            with open_in_place(partial, create=False) as f:
                ours = (stat.S_ISREG(os.fstat(f.fileno()).st_mode) and os.fstat(f.fileno()).st_size == shard["bytes"]
                        and hashlib.file_digest(f, "sha256").hexdigest() == shard["sha256"])
            if ours:
                os.replace(partial, final)

    def _start(self, split: str) -> _OpenShard:
        number = sum(s["split"] == split for s in self.shards)
        name = shard_name(self.recipe.name, split, number)
        for taken in (self.path / name, self.path / (name + PARTIAL)):
            if os.path.lexists(taken):  # unclaimed (claimed ones are resumed): never overwrite it
                raise OutputError(f"{taken} appeared while rendering; dfdgen does not overwrite it")
        self._write_progress({"name": name, "split": split, "scenes": [], "bytes": 0})  # claimed before created
        self._open[split] = shard = _OpenShard(name, split, open_in_place(self.path / (name + PARTIAL), create=True))
        return shard

    def _close(self, shard: _OpenShard) -> None:
        """Finish a shard's tar, list it in the manifest, then rename it into place."""
        with shard.file as f:
            f.write(tar_end(shard.size))
            f.flush()
            os.fsync(f.fileno())
            size = f.tell()
            f.seek(0)  # hashed through the file written, never through its name
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        tmp, final = self.path / (shard.name + PARTIAL), self.path / shard.name
        self.shards.append({"name": shard.name, "split": shard.split, "samples": len(shard.scenes),
                            "bytes": size, "sha256": digest, "scenes": shard.scenes})
        self._write_manifest(complete=False)
        del self._open[shard.split]
        self._write_progress()
        os.replace(tmp, final)


def _changed_fields(old: Any, new: Mapping[str, Any], limit: int = 5) -> str:
    """The dotted recipe fields whose values differ between a stored recipe config and ``new``,
    as ``field old -> new``, at most ``limit`` of them (the stored config is data: any shape)."""
    if not isinstance(old, Mapping):
        return "the stored recipe cannot be read"
    changes: list[str] = []
    stack = [("", old, new)]
    while stack:
        prefix, a, b = stack.pop()
        for key in sorted(set(a) | set(b), key=str, reverse=True):
            x, y = a.get(key, "(absent)"), b.get(key, "(absent)")
            if isinstance(x, Mapping) and isinstance(y, Mapping):
                stack.append((f"{prefix}{key}.", x, y))
            elif x != y:
                changes.append(f"{prefix}{key} {brief(x, 40)} -> {brief(y, 40)}")
    more = f" and {len(changes) - limit} more" if len(changes) > limit else ""
    return ", ".join(changes[:limit]) + more if changes else "the same fields, another sha256"
