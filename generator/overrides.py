"""``key.path=value`` command-line overrides (``--set``), shared by recipes and training configs."""

from __future__ import annotations

from typing import Any

from generator.errors import BadInput, FieldError
from generator.safe_yaml import load_yaml


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
