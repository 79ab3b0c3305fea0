"""Dataclasses to JSON values and back, checked against their type hints.

The control socket's messages and the daemon's status are frozen dataclasses; this is
their one codec.  :func:`to_json` turns a dataclass (nested dataclasses, enums, tuples,
dicts) into plain JSON values; :func:`from_json` builds the dataclass again and checks
every value on the way, so bad input is a :class:`DecodeError` that names the field
(``status.schedule[1].executions: expected an integer, got 'x'``) rather than a
``KeyError`` somewhere later.  Unknown keys are ignored (a newer peer may send more);
a missing key takes the field's default, or is an error when the field has none.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

__all__ = ["DecodeError", "from_json", "to_json"]

T = TypeVar("T")


class DecodeError(ValueError):
    """A JSON value does not fit the dataclass; the message names the field at fault."""


def to_json(value: Any) -> Any:
    """``value`` as JSON values: dataclasses become objects, enums their values, tuples lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    return value


def from_json(cls: type[T], data: Any, where: str = "") -> T:
    """An instance of the dataclass ``cls`` from JSON values; :class:`DecodeError` names what does not fit."""
    return typing.cast(T, _decode(cls, data, where or cls.__name__))


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _decode(kind: Any, value: Any, where: str) -> Any:
    if kind is Any:
        return value
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _decode(option, value, where)
            except DecodeError as exc:
                errors.append(str(exc))
        raise DecodeError(errors[0] if len(errors) == 1 else f"{where}: no type fits {_describe(value)}")
    if origin in (tuple, list):
        if not isinstance(value, list):
            raise DecodeError(f"{where}: expected a list, got {_describe(value)}")
        args = typing.get_args(kind)
        item = args[0] if args else Any
        items = [_decode(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping):
        if not isinstance(value, dict):
            raise DecodeError(f"{where}: expected an object, got {_describe(value)}")
        args = typing.get_args(kind)
        item = args[1] if args else Any
        return {str(k): _decode(item, v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise DecodeError(f"{where}: expected an object, got {_describe(value)}")
        hints = _hints(kind)
        values = {}
        for f in dataclasses.fields(kind):
            if not f.init:
                continue
            if f.name in value:
                values[f.name] = _decode(hints[f.name], value[f.name], f"{where}.{f.name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise DecodeError(f"{where}: missing {f.name!r}")
        return kind(**values)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        try:
            return kind(value)
        except ValueError:
            allowed = ", ".join(str(m.value) for m in kind)
            raise DecodeError(f"{where}: {_describe(value)} is not one of {allowed}") from None
    if kind is bool:
        if not isinstance(value, bool):
            raise DecodeError(f"{where}: expected true or false, got {_describe(value)}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise DecodeError(f"{where}: expected an integer, got {_describe(value)}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DecodeError(f"{where}: expected a number, got {_describe(value)}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise DecodeError(f"{where}: expected a string, got {_describe(value)}")
        return value
    raise TypeError(f"{where}: cannot decode into {kind!r}")  # a programming error in the dataclass
