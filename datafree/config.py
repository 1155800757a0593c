"""Building config dataclasses from JSON-like dicts (``--set`` options, manifests, saved states)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

from datafree.errors import DatafreeError

T = TypeVar("T")


def config_from_dict(cls: type[T], d: dict[str, Any], what: str) -> T:
    """``cls(**d)`` with JSON lists turned back into tuples; an unknown key is a user error, so a
    typo in ``--set`` fails loudly instead of being ignored."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = set(d) - names
    if unknown:
        raise DatafreeError(f"unknown {what} options: {', '.join(sorted(unknown))}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
