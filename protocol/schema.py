"""Field checks for decoding: each takes the raw msgpack value and where it is, returns the typed value.

Decoding is strict: a value of the wrong type or out of bounds raises
:class:`~protocol.errors.ProtocolError` with ``BAD_MESSAGE`` and the field's path
(``results.rows[3][1][0]``), so the peer learns exactly what was wrong.  Lists arrive as
tuples (the codec unpacks with ``use_list=False``) and stay tuples in the messages.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from enum import Enum
from itertools import chain
from typing import Any, ClassVar, TypeVar

from .errors import ErrorCode, ProtocolError

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "Check",
    "Fields",
    "Record",
    "Value",
    "boolean",
    "check_values",
    "enum",
    "integer",
    "number",
    "optional",
    "record",
    "seq_of",
    "text",
    "value_rows",
    "values",
    "values_ok",
]

#: A column value as SQLite gives it (seams item 1): never stringified.
Value = int | float | str | bytes | None

Check = Callable[[Any, str], Any]
Fields = Mapping[str, Check]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

E = TypeVar("E", bound=Enum)


def bad(where: str, expected: str, value: Any) -> ProtocolError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return ProtocolError(ErrorCode.BAD_MESSAGE, f"{where}: expected {expected}, got {shown}")


class Record:
    """Base of messages and nested records: ``FIELDS`` maps each field to its check.

    ``check()`` holds the rules across fields (e.g. a row's width equals the number of
    columns); the codec calls it after the fields are typed.
    """

    __slots__ = ()
    FIELDS: ClassVar[Fields] = {}
    #: Defaults of fields that may be missing on the wire (newer optional fields).
    DEFAULTS: ClassVar[Mapping[str, Any]] = {}

    def check(self, where: str) -> None:
        """Rules across fields; raise :class:`ProtocolError` (``BAD_MESSAGE``) when one is broken."""


def text(max_len: int = 256, *, min_len: int = 0) -> Check:
    """A UTF-8 string of ``min_len``..``max_len`` characters."""

    def check(value: Any, where: str) -> str:
        if type(value) is not str:
            raise bad(where, "a string", value)
        if not min_len <= len(value) <= max_len:
            raise bad(where, f"{min_len}..{max_len} characters", f"{len(value)} characters")
        return value

    return check


def integer(lo: int = INT64_MIN, hi: int = INT64_MAX) -> Check:
    """An integer in ``lo``..``hi`` (booleans are not integers here)."""

    def check(value: Any, where: str) -> int:
        if type(value) is not int:
            raise bad(where, "an integer", value)
        if not lo <= value <= hi:
            raise bad(where, f"an integer in {lo}..{hi}", value)
        return value

    return check


def number(lo: float = -math.inf, hi: float = math.inf) -> Check:
    """A finite float (an integer is accepted and converted) in ``lo``..``hi``."""

    def check(value: Any, where: str) -> float:
        if type(value) not in (int, float):
            raise bad(where, "a number", value)
        result = float(value)
        if not (math.isfinite(result) and lo <= result <= hi):
            raise bad(where, f"a finite number in {lo:g}..{hi:g}", value)
        return result

    return check


def boolean() -> Check:
    def check(value: Any, where: str) -> bool:
        if type(value) is not bool:
            raise bad(where, "true or false", value)
        return value

    return check


def enum(cls: type[E]) -> Check:
    """One of the string values of ``cls``."""
    members = {m.value: m for m in cls}
    names = ", ".join(sorted(members))

    def check(value: Any, where: str) -> E:
        member = members.get(value) if type(value) is str else None
        if member is None:
            raise bad(where, f"one of {names}", value)
        return member

    return check


def optional(inner: Check) -> Check:
    """``None`` or what ``inner`` accepts."""

    def check(value: Any, where: str) -> Any:
        return None if value is None else inner(value, where)

    return check


def seq_of(item: Check, max_items: int, *, min_items: int = 0) -> Check:
    """An array of ``min_items``..``max_items`` elements, each checked by ``item``; a tuple."""

    def check(value: Any, where: str) -> tuple[Any, ...]:
        if type(value) is not tuple:
            raise bad(where, "an array", value)
        if not min_items <= len(value) <= max_items:
            raise bad(where, f"{min_items}..{max_items} elements", f"{len(value)} elements")
        return tuple(item(v, f"{where}[{i}]") for i, v in enumerate(value))

    return check


_VALUE_TYPES = frozenset({int, float, str, bytes, type(None)})


def values_ok(rows: Iterable[Any]) -> bool:
    """True when every value of every row is an SQLite value (the fast path: loops run in C).

    Rows must already be tuples.  When False, :func:`check_values` on each row finds the culprit.
    """
    flat = list(chain.from_iterable(rows))
    types = set(map(type, flat))
    if not types <= _VALUE_TYPES:
        return False
    if int in types:
        ints = [v for v in flat if type(v) is int]
        if max(ints) > INT64_MAX or min(ints) < INT64_MIN:
            return False
    return True


def check_values(row: Any, where: str) -> None:
    for i, v in enumerate(row):
        t = type(v)
        if t is str or v is None or t is float or t is bytes:
            continue
        if t is int and INT64_MIN <= v <= INT64_MAX:
            continue
        raise bad(f"{where}[{i}]", "an SQLite value (64-bit integer, float, string, bytes or nil)", v)


def values(max_items: int) -> Check:
    """A row of SQLite values: int (64-bit), float, str, bytes or None."""

    def check(value: Any, where: str) -> tuple[Value, ...]:
        if type(value) is not tuple or len(value) > max_items:
            raise bad(where, f"an array of at most {max_items} values", value)
        check_values(value, where)
        return value

    return check


def value_rows(max_rows: int, max_width: int) -> Check:
    """Rows of SQLite values (their width is checked against the columns by the message)."""

    def check(value: Any, where: str) -> tuple[tuple[Value, ...], ...]:
        if type(value) is not tuple or len(value) > max_rows:
            raise bad(where, f"an array of at most {max_rows} rows", value)
        if value and set(map(type, value)) == {tuple} and max(map(len, value)) <= max_width and values_ok(value):
            return value  # the common case, checked in C loops
        for i, row in enumerate(value):
            if type(row) is not tuple or len(row) > max_width:
                raise bad(f"{where}[{i}]", f"an array of at most {max_width} values", row)
            check_values(row, f"{where}[{i}]")
        return value

    return check


R = TypeVar("R", bound=Record)


def record(cls: type[R]) -> Check:
    """A nested map decoded into ``cls`` (a :class:`Record` dataclass)."""

    def check(value: Any, where: str) -> R:
        if type(value) is not dict:
            raise bad(where, "a map", value)
        return build(cls, value, where, tolerate_unknown=False)

    return check


def build(cls: type[R], body: Mapping[Any, Any], where: str, *, tolerate_unknown: bool) -> R:
    """``cls`` from a decoded map: every field checked, unknown keys refused unless tolerated."""
    fields = cls.FIELDS
    if not tolerate_unknown:
        for key in body:
            if key not in fields and key != "type":
                raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{where}: unknown field {key!r}")
    kwargs: dict[str, Any] = {}
    for name, check in fields.items():
        try:
            raw = body[name]
        except KeyError:
            if name in cls.DEFAULTS:
                kwargs[name] = cls.DEFAULTS[name]
                continue
            raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{where}: missing field {name!r}") from None
        kwargs[name] = check(raw, f"{where}.{name}")
    result = cls(**kwargs)
    result.check(where)
    return result
