"""Exceptions the library raises, and how the CLI reports them with their exit codes (DESIGN.md 8)."""

from __future__ import annotations

import contextlib
import errno
import os
import warnings

#: Characters of a value echoed in a message, at most: a hostile input must not flood the terminal.
BRIEF_CHARS = 200


def printable(text: str, limit: int = BRIEF_CHARS) -> str:
    """``text`` for a message: control and other non-printable characters but the newline escaped,
    cut to ``limit``."""
    text = "".join(c if c.isprintable() or c == "\n" else c.encode("unicode_escape").decode("ascii") for c in text)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def brief(value: object, limit: int = BRIEF_CHARS) -> str:
    """``repr(value)`` for a message (:func:`printable`)."""
    return printable(repr(value), limit)



#: Exit status of a render that finished but could not render some scenes (listed on stderr
#: and in the manifest's ``failed``); 2 is bad input, 1 any other failure, 130 an interrupt.
EXIT_SCENES_FAILED = 3


class DfdgenError(Exception):
    """Base class of every error dfdgen reports to a user."""

    exit_code = 1


class BadInput(DfdgenError):
    """The user's input (recipe, path, option) is wrong: exit status 2."""

    exit_code = 2


class AssetError(BadInput):
    """An asset folder or file cannot be used (exit status 2)."""


class FieldError(BadInput):
    """A field of a structured input (recipe, training config) is invalid.

    Args:
        path: dotted field path, e.g. ``"lens.f_number"``.
        value: the value given.
        allowed: what would have been accepted, in words.
    """

    what = "field"

    def __init__(self, path: str, value: object, allowed: str):
        self.path, self.value, self.allowed = path, value, allowed
        super().__init__(f"{self.what} '{printable(str(path), 80)}': got {brief(value)}; {allowed}")


class RecipeError(FieldError):
    """A recipe field is invalid."""

    what = "recipe field"


class SpecError(FieldError):
    """A scene spec read back (the add-on's, a sample's) is invalid."""

    what = "scene spec field"


class LensError(BadInput):
    """Lens parameters that no physical lens has (e.g. focus inside the focal length)."""


class OutputError(BadInput):
    """The output directory cannot be used (unwritable, holds another recipe, ...)."""


class WriteError(DfdgenError):
    """The disk refused a write: full, over quota, read-only, or no permission (exit status 1).

    What was written before stays as it was: every file is written to a temporary file first.
    """

    #: errno values that mean the disk or folder refused a write rather than a bug in dfdgen.
    ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM})

    @classmethod
    def of(cls, exc: OSError, path: "os.PathLike[str] | str | None" = None) -> "WriteError | OSError":
        """``exc`` as a WriteError naming ``path`` (else the file ``exc`` names), when its errno is one
        of :data:`ERRNOS`; other errors are returned as they are (a bug, not the disk)."""
        if exc.errno not in cls.ERRNOS:
            return exc
        where = path if path is not None else exc.filename
        return cls(printable(f"cannot write {where}: {exc.strerror}" if where is not None
                             else f"a write failed: {exc.strerror}"))


class CorruptShard(DfdgenError):
    """A shard or one of its members cannot be decoded.

    Args:
        shard: path or URL of the shard.
        member: the member name inside the tar (or ``None`` for the whole file).
        reason: what went wrong.
    """

    def __init__(self, shard: str, member: str | None, reason: str):
        self.shard, self.member, self.reason = shard, member, reason
        where = f"{shard}:{member}" if member else shard
        super().__init__(printable(f"corrupt shard {where}: {reason}", 2 * BRIEF_CHARS))


# Reporting, for the click commands


@contextlib.contextmanager
def library_errors():
    """In a click command: report a library error as ``Error: <message>`` with its exit status."""
    import click  # here: the add-on imports this module without click

    try:
        try:
            yield
        except OSError as exc:
            disk = WriteError.of(exc)
            if disk is exc:
                raise
            raise disk from exc
    except DfdgenError as exc:
        error = click.ClickException(str(exc))
        error.exit_code = exc.exit_code
        raise error from exc


@contextlib.contextmanager
def warnings_as_messages():
    """Show the library's warnings (e.g. no GPU for ``--device gpu``) as ``Warning: <message>`` on stderr,
    not in Python's ``file:line: RuntimeWarning`` form (in a click command)."""
    import click

    with warnings.catch_warnings():
        warnings.showwarning = lambda message, *_: click.echo(f"Warning: {message}", err=True)
        yield
