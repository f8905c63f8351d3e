"""Typed configs: dataclasses built from plain dicts, with unknown keys refused by name."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, TypeVar

from gensci.errors import ConfigError

C = TypeVar("C")


def config_from_dict(cls: type[C], values: dict[str, Any]) -> C:
    """Return `cls(**values)`; raise ConfigError naming any key `cls` does not know."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {unknown} for {cls.__name__}; known keys: {sorted(known)}"
        )
    hints = typing.get_type_hints(cls)
    fixed: dict[str, Any] = {}
    for key, value in values.items():
        # JSON turns tuples into lists; give tuple-typed fields their tuples back.
        if isinstance(value, list) and "tuple" in str(hints.get(key, "")):
            value = tuple(value)
        fixed[key] = value
    try:
        return cls(**fixed)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid {cls.__name__}: {exc}") from exc


def config_to_dict(config: Any) -> dict[str, Any]:
    """Return the dataclass `config` as a JSON-ready dict."""
    return dataclasses.asdict(config)
