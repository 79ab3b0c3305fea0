"""Zeek type names as Zeek's ``type_name()`` spells them, parsed into frozen values.

The framework sends each subscription's event signature as ``type_name(q$ev)`` gives it, e.g.
``event(resultInfo:osquery::ResultInfo, username:string, name:string, port_number:int)``; the
column typing rules (:mod:`collector.zeek.columns`) work from the parsed form.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class Kind(enum.Enum):
    BOOL = "bool"
    INT = "int"
    COUNT = "count"
    DOUBLE = "double"
    TIME = "time"
    INTERVAL = "interval"
    STRING = "string"
    ADDR = "addr"
    SUBNET = "subnet"
    PORT = "port"
    PATTERN = "pattern"
    ANY = "any"
    VECTOR = "vector"
    SET = "set"
    TABLE = "table"
    RECORD = "record"
    NAMED = "named"  # a record or enum declared by name; type_name() does not say which
    EVENT = "event"
    OTHER = "other"  # function, opaque, file, ...


_BASE = {k.value: k for k in (Kind.BOOL, Kind.INT, Kind.COUNT, Kind.DOUBLE, Kind.TIME, Kind.INTERVAL, Kind.STRING,
                              Kind.ADDR, Kind.SUBNET, Kind.PORT, Kind.PATTERN, Kind.ANY)}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: ZeekType


@dataclass(frozen=True, slots=True)
class ZeekType:
    """A parsed Zeek type. ``args`` are index types (set/table) or the element type (vector);
    ``yield_`` is a table's value type; ``fields`` a record's or event's parameters."""

    kind: Kind
    name: str = ""
    args: tuple[ZeekType, ...] = ()
    yield_: ZeekType | None = None
    fields: tuple[Field, ...] = ()

    def __str__(self) -> str:
        k = self.kind
        if k in _BASE.values():
            return k.value
        if k is Kind.VECTOR:
            return f"vector of {self.args[0]}"
        if k is Kind.SET:
            return "set[" + ",".join(map(str, self.args)) + "]"
        if k is Kind.TABLE:
            return "table[" + ",".join(map(str, self.args)) + f"] of {self.yield_}"
        if k is Kind.RECORD:
            return "record { " + " ".join(f"{f.name}:{f.type};" for f in self.fields) + " }"
        if k is Kind.EVENT:
            return "event(" + ", ".join(f"{f.name}:{f.type}" for f in self.fields) + ")"
        return self.name

    def log_name(self) -> str:
        """The spelling of Zeek's ``#types`` header line (``vector[string]``, ``set[addr]``)."""
        if self.kind is Kind.VECTOR:
            return f"vector[{self.args[0].log_name()}]"
        if self.kind is Kind.SET:
            return "set[" + ",".join(a.log_name() for a in self.args) + "]"
        if self.kind is Kind.NAMED:
            return "enum"
        return str(self)


class TypeSyntaxError(ValueError):
    """A type name that does not parse; the message shows where."""


_TOKEN = re.compile(r"\s*(::|[A-Za-z_][A-Za-z0-9_]*|[\[\](){}:;,]|\S)")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, int]] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m or not m.group(1):
                break
            self.tokens.append((m.group(1), m.start(1)))
            pos = m.end()
        self.i = 0

    def peek(self) -> str | None:
        return self.tokens[self.i][0] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            where = self.tokens[self.i][1] if self.i < len(self.tokens) else len(self.text)
            want = f"{expected!r}" if expected else "more"
            raise TypeSyntaxError(f"type {self.text!r}: expected {want} at offset {where}, found {tok!r}")
        self.i += 1
        return tok

    def ident(self) -> str:
        tok = self.take()
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", tok):
            raise TypeSyntaxError(f"type {self.text!r}: expected a name, found {tok!r}")
        return tok

    def qualified(self) -> str:
        name = self.ident()
        while self.peek() == "::":
            self.take()
            name += "::" + self.ident()
        return name

    def type_list(self, close: str) -> tuple[ZeekType, ...]:
        items = [self.type()]
        while self.peek() == ",":
            self.take()
            items.append(self.type())
        self.take(close)
        return tuple(items)

    def params(self) -> tuple[Field, ...]:
        self.take("(")
        fields: list[Field] = []
        while self.peek() != ")":
            name = self.ident()
            self.take(":")
            fields.append(Field(name, self.type()))
            if self.peek() == ",":
                self.take()
        self.take(")")
        return tuple(fields)

    def type(self) -> ZeekType:
        word = self.peek()
        if word is None:
            raise TypeSyntaxError(f"type {self.text!r}: unexpected end")
        if word == "vector":
            self.take()
            self.take("of")
            return ZeekType(Kind.VECTOR, args=(self.type(),))
        if word == "set":
            self.take()
            self.take("[")
            return ZeekType(Kind.SET, args=self.type_list("]"))
        if word == "table":
            self.take()
            self.take("[")
            index = self.type_list("]")
            self.take("of")
            return ZeekType(Kind.TABLE, args=index, yield_=self.type())
        if word == "record":
            self.take()
            self.take("{")
            fields: list[Field] = []
            while self.peek() != "}":
                name = self.ident()
                self.take(":")
                fields.append(Field(name, self.type()))
                self.take(";")
            self.take("}")
            return ZeekType(Kind.RECORD, fields=tuple(fields))
        if word == "event":
            self.take()
            return ZeekType(Kind.EVENT, fields=self.params())
        if word in ("function", "hook"):
            start = self.tokens[self.i][1]
            self.i = len(self.tokens)
            return ZeekType(Kind.OTHER, name=self.text[start:])
        if word in ("opaque", "file"):
            self.take()
            self.take("of")
            inner = self.qualified()
            return ZeekType(Kind.OTHER, name=f"{word} of {inner}")
        name = self.qualified()
        if name in _BASE:
            return ZeekType(_BASE[name])
        return ZeekType(Kind.NAMED, name=name)


def parse_type(text: str) -> ZeekType:
    """Parse one type as ``type_name()`` writes it."""
    parser = _Parser(text)
    result = parser.type()
    if parser.peek() is not None:
        raise TypeSyntaxError(f"type {text!r}: unexpected {parser.peek()!r} after the type")
    return result


def parse_event_signature(text: str) -> tuple[Field, ...]:
    """The parameters of an event type, e.g. ``event(resultInfo:osquery::ResultInfo, pid:int)``."""
    result = parse_type(text)
    if result.kind is not Kind.EVENT:
        raise TypeSyntaxError(f"{text!r} is not an event type")
    return result.fields
