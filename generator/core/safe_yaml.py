"""Reading YAML a stranger wrote: recipes, training configs and ``--set`` values.

``yaml.safe_load`` runs no code, but it still expands aliases (a 1 KB "billion
laughs" document grows to gigabytes), recurses without a limit, keeps the last
of two equal keys without a word, and reads ``5e1`` as a string (YAML 1.1 wants
a dot in a float). :func:`load_yaml` is ``safe_load`` with those four closed:

* aliases (``*name``) are refused, so a document is never larger than its text;
* nesting deeper than :data:`MAX_DEPTH` and text longer than :data:`MAX_CHARS`
  are refused;
* a mapping that repeats a key is refused, naming the key and its line;
* numbers in exponent form without a dot (``5e1``, ``1E-3``) are floats, as in YAML 1.2.
"""

from __future__ import annotations

import io
import re
from typing import Any

import yaml

from generator.core.errors import BadInput, printable

#: Characters a YAML input may have (recipes and configs are a few KB).
MAX_CHARS = 1_000_000
#: Levels of nested lists and mappings a YAML input may have.
MAX_DEPTH = 32

_FLOAT_12 = re.compile(r"[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")


class _Loader(yaml.SafeLoader):
    """SafeLoader without aliases, with a nesting limit and duplicate-key checks."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed", event.start_mark)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels",
                                              self.peek_event().start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: the base class reports it
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {printable(repr(key), 60)}",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789."))


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML ``text`` (module docstring: what is refused).

    Args:
        text: the document.
        source: where it came from (a file name, ``--set key``), for messages.
    Raises:
        BadInput: not YAML, too long, too deep, an alias or a duplicate key; the
            message names ``source`` and the line.
    """
    if len(text) > MAX_CHARS:
        raise BadInput(f"{printable(source)} is {len(text)} characters long; YAML input is limited to {MAX_CHARS}")
    stream = io.StringIO(text)
    stream.name = printable(source, 120)  # the name YAML's messages give the document
    try:
        return yaml.load(stream, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        raise BadInput(f"{printable(source)} is not valid YAML for dfdgen: {printable(str(exc), 400)}") from None
