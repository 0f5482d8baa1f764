"""Exceptions the library raises; the CLI maps them to exit codes (DESIGN.md 8)."""

from __future__ import annotations


class DfdgenError(Exception):
    """Base class of every error dfdgen reports to a user."""

    exit_code = 1


class BadInput(DfdgenError):
    """The user's input (recipe, path, option) is wrong: exit status 2."""

    exit_code = 2


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
        super().__init__(f"{self.what} '{path}': got {value!r}; {allowed}")


class RecipeError(FieldError):
    """A recipe field is invalid."""

    what = "recipe field"


class LensError(BadInput):
    """Lens parameters that no physical lens has (e.g. focus inside the focal length)."""


class OutputError(BadInput):
    """The output directory cannot be used (unwritable, holds another recipe, ...)."""


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
        super().__init__(f"corrupt shard {where}: {reason}")
