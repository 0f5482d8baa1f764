"""Writing output files safely: never through a link, atomic replacement, one run per folder,
and checks before any work is done.

A folder the user names may hold links a stranger planted (``recipe.yaml.partial`` pointing at
a file outside it, a shard's ``.partial`` file pointing at a victim). dfdgen never follows one
when it writes:

* a whole file (:func:`write_atomic`) goes to a temporary file created with ``O_EXCL`` and
  ``O_NOFOLLOW`` under an unpredictable name in the same folder, then renamed over the final
  name, which must not be a link;
* a file written in place (a shard being appended to, :func:`open_in_place`) is opened with
  ``O_NOFOLLOW`` and must be a regular file with no other hard link;
* a run holds :func:`folder_lock` for as long as it writes, so two runs never interleave.

Pure Python (no webdataset, no bpy), so the Blender add-on, which bundles
:mod:`generator` without the dataset writer's dependencies, writes its samples
and recipes the same way :mod:`generator.dataset.shards` writes datasets.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import stat
from pathlib import Path
from typing import BinaryIO, Iterator

from generator.core.errors import OutputError, WriteError

#: Suffix of a shard being written; it is renamed into place when complete.
PARTIAL = ".partial"
#: The names :func:`write_atomic`'s temporary files have: ``.NAME.`` + 8 hex digits + :data:`PARTIAL`
#: (what a killed run may leave behind, for the next run to remove).
TEMPORARY = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{8}" + re.escape(PARTIAL))
#: The lock file a run holds in its output folder (:func:`folder_lock`); removed when the run ends.
LOCK = ".dfdgen.lock"


def refuse_link(path: Path) -> None:
    """Raise :class:`OutputError` if ``path`` is a symbolic link (dfdgen never writes through one)."""
    if path.is_symlink():
        raise OutputError(f"{path} is a symbolic link; dfdgen does not write through links (remove it)")


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``path`` via a private temporary file and ``os.replace``: readers see old or new,
    never half, and no link is followed.

    Raises:
        OutputError: ``path`` is a symbolic link; nothing is written then.
        WriteError: the disk refused the write (full, read-only); the temporary file is removed.
    """
    path = Path(path)
    refuse_link(path)
    try:
        fd, tmp = _create_temporary(path)
    except OSError as exc:
        raise WriteError.of(exc, path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):  # a Ctrl-C just after os.replace: it is renamed already
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise WriteError.of(exc, path)
        raise


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new file ``.NAME.XXXXXXXX.partial`` beside ``path`` (8 random characters, :data:`TEMPORARY`),
    created with ``O_EXCL | O_NOFOLLOW`` and the mode the umask gives any new file (unlike
    ``tempfile.mkstemp``'s 0600); returns its descriptor and path."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{PARTIAL}")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666), tmp
        except FileExistsError:
            continue


def open_in_place(path: Path, *, create: bool) -> BinaryIO:
    """``path`` opened for reading and writing in place without following a link.

    Args:
        create: create it (it must not exist, not even as a dangling link); else it must exist.

    Raises:
        OutputError: ``path`` is a link, not a regular file, has another hard link (writing
            would change a file elsewhere), or (``create``) exists already. Nothing is written.
    """
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_CREAT | os.O_EXCL if create else 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            refuse_link(path)
        if exc.errno == errno.EEXIST:
            raise OutputError(f"{path} exists already; dfdgen does not overwrite a file it did not create") from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        raise OutputError(f"{path} is not a regular file of its own (a device, a folder or a hard link); "
                          f"dfdgen does not write to it")
    return os.fdopen(fd, "r+b")


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s lock (``folder/.dfdgen.lock``, holding the pid) while the context lasts.

    Creates ``folder`` if missing, and removes it again at the end if it is still empty then,
    so a run refused early leaves nothing. The lock is a POSIX record lock: the kernel drops it
    when the process dies (``kill -9`` leaves a stale file, which the next run takes over).

    Raises:
        OutputError: another process holds the lock (the message names its pid), or the lock
            file is a link or not a regular file.
    """
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    try:
        lock = _acquire(path)
    except BaseException:
        if created:
            _remove_if_empty(folder)
        raise
    try:
        yield
    finally:
        # before unlocking: a waiting run then finds the file gone and starts over; only our own
        # file (a run of this process that took over an abandoned lock may have replaced it)
        if _is_file_at(lock, path):
            os.unlink(path)
        lock.close()
        if created:
            _remove_if_empty(folder)


def _acquire(path: Path) -> BinaryIO:
    """Lock ``path`` (created if missing); retried while another run removes the file under us."""
    while True:
        try:
            lock = open_in_place(path, create=False)
        except FileNotFoundError:
            try:
                lock = open_in_place(path, create=True)
            except OutputError:  # another run created it first: take its file instead
                continue
        try:
            fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = lock.read(32).decode("ascii", "replace").strip() or "unknown"
            lock.close()
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            raise OutputError(f"{path.parent} is in use by another dfdgen run (pid {holder}); "
                              f"wait for it to end or choose another --out") from None
        if _is_file_at(lock, path):
            lock.truncate(0)
            lock.write(f"{os.getpid()}\n".encode("ascii"))
            lock.flush()
            return lock
        lock.close()  # the holder removed this file as we locked it: lock the new one


def _is_file_at(file: BinaryIO, path: Path) -> bool:
    """Whether ``path`` names the open ``file`` (not a file that replaced it, nor nothing)."""
    try:
        return os.path.samestat(os.fstat(file.fileno()), os.lstat(path))
    except FileNotFoundError:
        return False


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()


def output_file(path: str | os.PathLike[str]) -> Path:
    """``path`` as a file to write, checked before any work is done.

    Raises:
        OutputError: ``path`` is a folder or a link, or its folder does not exist.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot save {path}: it is a folder")
    if not path.parent.is_dir():
        raise OutputError(f"cannot save {path}: folder {path.parent} does not exist")
    refuse_link(path)
    return path
