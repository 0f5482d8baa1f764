"""Typed, frozen dataclasses from plain data: the one config mechanism of dfdgen.

Recipes (:mod:`generator.recipe.recipe`), training configs (:mod:`dfd_models.config`),
each model's own config (``DepthModel.Config``), the render options
(:class:`generator.render.options.RenderOptions`) and the scene spec
(:meth:`generator.scene.spec.SceneSpec.from_dict`) are dataclasses whose annotations
and :func:`setting` checks say what each field accepts. :func:`build` validates
plain data (parsed YAML, JSON) into them and :func:`apply_overrides` applies
``key.path=value`` strings (``--set``) to the plain data first, so every input
gets the same errors: the dotted field path, the value given, what is allowed
and, for an unknown key, "did you mean" (DESIGN.md section 8). Errors are of the
caller's :class:`generator.core.errors.FieldError` subclass (exit status 2).

Types understood: ``bool``, ``int`` (an integral float such as ``1e9`` too),
``float`` (finite; an int too), ``str``, ``dict`` (free keys), ``list[T]``,
``tuple[T, ...]`` (a non-empty list), fixed ``tuple[A, B, ...]``, a
:class:`Range`-like NamedTuple of two numbers (written ``x`` or ``[min, max]``),
unions (``X | None``, ``int | str``), ``Literal`` strings and nested dataclasses (sections).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from generator.core.errors import BadInput, FieldError
from generator.core.safe_yaml import load_yaml

#: The check keywords of :func:`setting`.
CHECKS = ("gt", "ge", "le", "choices", "pattern", "min_items", "max_items")


def setting(default: Any = dataclasses.MISSING, **checks: Any) -> Any:
    """A field with its default and checks.

    ``default``: a value; a list or dict (copied per instance); a section class (that
    section's defaults); or none (the field is required). ``checks``: ``gt``, ``ge``,
    ``le`` (bounds of every number in the field), ``choices`` (allowed strings),
    ``pattern`` (a regex a string must match in full), ``min_items``, ``max_items`` (the
    length of a list: e.g. a network's levels, each of which halves the image).
    """
    unknown = set(checks) - set(CHECKS)
    if unknown:
        raise TypeError(f"unknown checks {sorted(unknown)}; known: {CHECKS}")
    if dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=default, metadata=checks)
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=checks)
    return dataclasses.field(default=default, metadata=checks)


class _Nothing:
    """Stands for a missing value in error messages."""

    def __repr__(self) -> str:
        return "nothing"


NOTHING = _Nothing()


def join(path: str, key: object) -> str:
    """Dotted path of ``key`` inside ``path``."""
    return f"{path}.{key}" if path else str(key)


def unknown(error: type[FieldError], path: str, value: object, known: Sequence[str]) -> FieldError:
    """The error for a key that is not a field, with a "did you mean" from difflib."""
    key = path.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(key, known, n=1) or [k for k in known if key and key in k][:1]
    hint = f"did you mean '{close[0]}'? " if close else ""
    return error(path, value, f"unknown key; {hint}known keys: {', '.join(known)}")


def _is_range(tp: Any) -> bool:
    """A NamedTuple of two numbers (min, max), written as one number or ``[min, max]``."""
    return isinstance(tp, type) and issubclass(tp, tuple) and getattr(tp, "_fields", None) == ("min", "max")


def _range_item(tp: Any) -> type:
    return typing.get_type_hints(tp)["min"]


def describe(tp: Any, meta: Mapping[str, Any]) -> str:
    """What a field of type ``tp`` with checks ``meta`` accepts, in words."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return "any value"
    if origin is typing.Literal:
        return f"one of: {', '.join(args)}"
    if dataclasses.is_dataclass(tp):
        return f"a mapping with keys: {', '.join(f.name for f in dataclasses.fields(tp))}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else describe(a, meta) for a in args)
    if _is_range(tp):
        return f"{describe(_range_item(tp), meta)}, or [min, max] of such with min <= max"
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis or origin is list:
        return f"a list{_items(meta)}, each {describe(args[0], meta)}"
    if origin is tuple:
        return f"a list of {len(args)}: {', '.join(describe(a, meta) for a in args)}"
    if tp is str and "choices" in meta:
        return f"one of: {', '.join(meta['choices'])}"
    words = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a mapping"}[tp]
    if tp is str and "pattern" in meta:
        words += f" matching {meta['pattern']}"
    if tp in (int, float):
        bounds = [f"{op} {meta[key]}" for key, op in (("gt", ">"), ("ge", ">="), ("le", "<=")) if key in meta]
        words = " ".join([words, " and ".join(bounds)]).strip()
    return words


def _items(meta: Mapping[str, Any]) -> str:
    """How many items ``min_items`` and ``max_items`` allow, in words ("" for any number)."""
    low, high = meta.get("min_items"), meta.get("max_items")
    if low is not None and high is not None:
        return f" of {low} to {high} items"
    if high is not None:
        return f" of at most {high} items"
    return "" if low is None else f" of at least {low} items"


def _scalar(tp: type, value: Any, meta: Mapping[str, Any]) -> tuple[bool, Any]:
    """(ok, converted value) of one bool/int/float/str/dict value."""
    if tp is int and isinstance(value, float) and value.is_integer():
        value = int(value)  # 1e9 (a YAML 1.2 float, generator.core.safe_yaml) for an integer field
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)  # YAML true is not 1
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif tp is dict:
        return isinstance(value, Mapping), copy.deepcopy(dict(value)) if isinstance(value, Mapping) else value
    else:
        ok = isinstance(value, str)
    if ok and tp in (int, float):
        value = tp(value)
        ok = (("gt" not in meta or value > meta["gt"]) and ("ge" not in meta or value >= meta["ge"])
              and ("le" not in meta or value <= meta["le"]))
    if ok and tp is str:
        ok = ("choices" not in meta or value in meta["choices"]) and (
            "pattern" not in meta or re.fullmatch(meta["pattern"], value) is not None)
    return ok, value


def convert(tp: Any, value: Any, path: str, meta: Mapping[str, Any], error: type[FieldError],
            nonempty: bool = False) -> Any:
    """``value`` checked and converted to the annotated type ``tp``; ``path`` names it in errors;
    ``nonempty``: a ``tuple[T, ...]`` must have an item (a recipe's lists)."""
    if tp is Any:
        return copy.deepcopy(value)
    if typing.get_origin(tp) is typing.Literal:
        if not isinstance(value, str) or value not in typing.get_args(tp):
            raise error(path, value, describe(tp, meta))
        return value
    if dataclasses.is_dataclass(tp):
        return build(tp, value, error, path, nonempty=nonempty)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        arms = [a for a in args if a is not type(None)]
        if len(arms) == 1:  # "X | None": X's own, more precise, error
            return convert(arms[0], value, path, meta, error, nonempty)
        for arm in arms:
            try:
                return convert(arm, value, path, meta, error, nonempty)
            except FieldError:
                continue
        raise error(path, value, describe(tp, meta))
    if _is_range(tp):
        item = _range_item(tp)
        if not isinstance(value, list):
            one = convert(item, value, path, meta, error, nonempty)
            return tp(one, one)
        if len(value) != 2:
            raise error(path, value, describe(tp, meta))
        low, high = (convert(item, v, f"{path}[{i}]", meta, error, nonempty) for i, v in enumerate(value))
        if low > high:
            raise error(path, value, "[min, max] with min <= max")
        return tp(low, high)
    if origin in (tuple, list):
        variadic = origin is list or (len(args) == 2 and args[1] is Ellipsis)
        if not isinstance(value, (list, tuple)) or (not variadic and len(value) != len(args)):
            raise error(path, value, describe(tp, meta))
        if origin is tuple and variadic and nonempty and not value:
            raise error(path, value, f"a non-empty {describe(tp, meta).removeprefix('a ')}")
        if not meta.get("min_items", 0) <= len(value) <= meta.get("max_items", len(value)):
            raise error(path, value, describe(tp, meta))
        items = [convert(args[0] if variadic else args[i], v, f"{path}[{i}]", meta, error, nonempty)
                 for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    ok, converted = _scalar(tp, value, meta)
    if not ok:
        raise error(path, value, describe(tp, meta))
    return converted


def build(cls: type, data: Any, error: type[FieldError], path: str = "", *, nonempty: bool = False) -> Any:
    """Validate the mapping ``data`` into the dataclass ``cls`` (``path``: its dotted location).

    Keys left out take the field's default; a field without one is required.
    ``nonempty``: every ``tuple[T, ...]`` must have an item (a recipe's lists).

    Raises:
        error: not a mapping, an unknown key, a missing required field or a bad value.
    """
    if not isinstance(data, Mapping):
        raise error(path or cls.__name__, data, describe(cls, {}))
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key, value in data.items():
        if key not in fields:
            raise unknown(error, join(path, key), value, list(fields))
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, f in fields.items():
        where = join(path, name)
        if name in data:
            kwargs[name] = convert(hints[name], data[name], where, f.metadata, error, nonempty)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise error(where, NOTHING, f"required: {describe(hints[name], f.metadata)}")
    return cls(**kwargs)


def _section(tp: Any) -> Any:
    """The dataclass of a section field (``Section`` or ``Section | None``), else None."""
    if dataclasses.is_dataclass(tp):
        return tp
    return next((a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)), None)


def parse_override(item: str, error: type[FieldError], example: str) -> tuple[str, Any]:
    """Split ``"a.b=value"`` into the key path and the value parsed as YAML.

    Raises:
        error: no ``=``, an empty key, or a value that is not YAML; ``example``
            shows a well-formed override in the message.
    """
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise error(item, item, f"an override 'key.path=value', e.g. '{example}'")
    try:
        return key, load_yaml(text, f"--set {key}")
    except BadInput as exc:
        raise error(key, text, f"a YAML value ({exc})") from None


def set_value(cls: type, data: dict[str, Any], key: str, value: Any, error: type[FieldError]) -> None:
    """Set the dotted ``key`` of plain ``data`` (for dataclass ``cls``) to ``value``, in place.

    The key path must name a field, even one the data leaves at its default; below a
    ``dict`` field (free keys, e.g. ``model.config``, whose keys depend on ``model.name``) any
    key may be set. The value is checked later, by :func:`build` (a model's config: of its
    ``DepthModel.Config``).

    Raises:
        error: a key path that is not a field, or one that goes through a value as if
            it were a section.
    """
    section, node, parts = cls, data, key.split(".")
    for depth, part in enumerate(parts):
        path = ".".join(parts[: depth + 1])
        if section is None:  # below a dict: free keys
            tp = dict
        else:
            known = [f.name for f in dataclasses.fields(section)]
            if part not in known:
                raise unknown(error, path, value, known)
            tp = typing.get_type_hints(section)[part]
        if depth == len(parts) - 1:
            node[part] = value
            return
        if _section(tp) is None and tp is not dict:
            raise error(path, node.get(part), f"a value, not a section: cannot set {key}")
        section = _section(tp)
        if node.get(part) is None:  # absent, or an optional section left out
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise error(path, node, f"a mapping, to set {key}")


def apply_overrides(cls: type, data: Mapping[str, Any], overrides: Sequence[str], error: type[FieldError],
                    example: str) -> dict[str, Any]:
    """A copy of plain ``data`` (for dataclass ``cls``) with ``key.path=value`` overrides applied.

    Values are parsed as YAML (``lens.f_number=2.8``, ``data.crop=[64, 64]``) and set with
    :func:`set_value`; ``example`` shows a well-formed override in messages.

    Raises:
        error: a malformed override, or as :func:`set_value`.
    """
    out = copy.deepcopy(dict(data))
    for item in overrides:
        key, value = parse_override(item, error, example)
        set_value(cls, out, key, value, error)
    return out


def to_plain(value: Any) -> Any:
    """Dataclasses -> dicts (``None`` fields left out), tuples -> lists, [x, x] ranges -> x."""
    if _is_range(type(value)) and value.min == value.max:
        return value.min
    if dataclasses.is_dataclass(value):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if getattr(value, f.name) is not None}
    if isinstance(value, (tuple, list)):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    return value
