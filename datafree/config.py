"""Building config dataclasses from JSON-like dicts (``--set`` options, manifests, saved states)."""

from __future__ import annotations

import types
import typing
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
    hints = typing.get_type_hints(cls)
    for key, value in d.items():
        _check_scalar(what, key, value, hints[key])
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _check_scalar(what: str, key: str, value: Any, hint: Any) -> None:
    """A one-line error for a value of the wrong kind in a bool, int, float or str field (``--set iterations=abc``),
    before the config reaches code that would fail on it with a traceback. Other field types are not checked here."""
    kinds = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union \
        else (hint,)
    if value is None and type(None) in kinds:
        return
    scalars = [k for k in kinds if k in (bool, int, float, str)]
    if not scalars or len(scalars) != len([k for k in kinds if k is not type(None)]):
        return  # a container or a mixed union: not a scalar field
    if not any(_is_a(kind, value) for kind in scalars):
        names = " or ".join("true/false" if k is bool else k.__name__ for k in scalars)
        raise DatafreeError(f"{what} option {key}: expected {names}, got {value!r}")


def _is_a(kind: type, value: Any) -> bool:
    """JSON's reading of a scalar: a bool is not a number, an int is a float."""
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool)
    return isinstance(value, (int, float)) if kind is float else isinstance(value, kind)
