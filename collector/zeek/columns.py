"""The column typing rules: SQL values (as SQLite gave them) to the Zeek types a script declared.

A subscription names a Zeek event and its signature, ``event(resultInfo:osquery::ResultInfo,
c1:T1, ...)``. Each result row becomes one such event: ``resultInfo`` built from the host, the
row's action and the cookie, then every column converted to the declared type. A value that
cannot be converted exactly is an error naming the column, the value and the type, never a
guess: osquery INTEGER columns become ``int`` or ``count`` as declared, a numeric TEXT declared
``int``/``count`` is converted, a TEXT declared ``string`` stays text. A NULL sent as ``string`` is
``""``, osquery's text for it (osquery keeps every value as text; the original framework got
``""``); as any other type it is refused (a Zeek event parameter cannot be unset).
"""

from __future__ import annotations

import enum
import ipaddress
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from collector.zeek import brokerjson as bj
from collector.zeek.values import COUNT_MAX, INT_MAX, INT_MIN, Interval, Port, Proto, Time
from collector.zeek.ztypes import Field, Kind, TypeSyntaxError, ZeekType, parse_event_signature

RESULT_INFO = "osquery::ResultInfo"

SQLValue = int | float | str | bytes | None


class Action(enum.Enum):
    """osquery's action of a result row, and the ``osquery::UpdateType`` value Zeek gets for it."""

    ADDED = "added"
    REMOVED = "removed"
    SNAPSHOT = "snapshot"

    @property
    def zeek_enum(self) -> str:
        return _ZEEK_ACTION[self]


_ZEEK_ACTION = {Action.ADDED: "osquery::ADD", Action.REMOVED: "osquery::REMOVE", Action.SNAPSHOT: "osquery::SNAPSHOT"}


class SignatureError(ValueError):
    """An event signature the collector cannot serve (bad syntax, no ResultInfo first, a column type
    that SQL values cannot fill)."""


class ColumnError(ValueError):
    """A row that cannot become the declared event: the message names the column and the value."""


Converter = Callable[[SQLValue], str]


class _Bad(Exception):
    """Raised by converters with the reason; wrapped into ColumnError with the column's name."""


_INT_TEXT = re.compile(r"[+-]?\d+\Z")
_FLOAT_TEXT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\Z")


def _integral(value: SQLValue, lo: int, hi: int, zeek: str) -> int:
    if isinstance(value, bool):
        raise _Bad("a boolean is not a number")
    if isinstance(value, int):
        n = value
    elif isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise _Bad(f"{value!r} is not a whole number")
        n = int(value)
    elif isinstance(value, str):
        if not _INT_TEXT.match(value):
            raise _Bad(f"text {value!r} is not an integer")
        n = int(value)
    else:
        raise _Bad(f"{type(value).__name__} is not a number")
    if not lo <= n <= hi:
        raise _Bad(f"{n} is out of range for {zeek}")
    return n


def _conv_int(value: SQLValue) -> str:
    return bj._tagged("integer", str(_integral(value, INT_MIN, INT_MAX, "int")))


def _conv_count(value: SQLValue) -> str:
    return bj._tagged("count", str(_integral(value, 0, COUNT_MAX, "count")))


def _real(value: SQLValue) -> float:
    if isinstance(value, bool) or value is None or isinstance(value, bytes):
        raise _Bad(f"{type(value).__name__} is not a number")
    if isinstance(value, int):
        f = float(value)
        if int(f) != value:
            raise _Bad(f"{value} cannot be represented exactly as a double")
        return f
    if isinstance(value, str):
        if not _FLOAT_TEXT.match(value):
            raise _Bad(f"text {value!r} is not a number")
        value = float(value)
    if not math.isfinite(value):
        raise _Bad(f"{value!r} is not finite (Broker JSON carries finite reals only)")
    return value


def _conv_double(value: SQLValue) -> str:
    return bj._tagged("real", repr(_real(value)))


def _conv_string(value: SQLValue) -> str:
    if isinstance(value, str):
        return bj._tagged("string", bj._dumps(value))
    if isinstance(value, bool):
        raise _Bad("a boolean is not text")
    if isinstance(value, int):
        return bj._tagged("string", '"' + str(value) + '"')
    if isinstance(value, float):
        return bj._tagged("string", '"' + repr(value) + '"')
    if isinstance(value, bytes):
        try:
            return bj._tagged("string", bj._dumps(value.decode("utf-8")))
        except UnicodeDecodeError:
            raise _Bad("BLOB is not UTF-8 text") from None
    raise _Bad(f"{type(value).__name__} is not text")


def _conv_bool(value: SQLValue) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        return bj.enc_bool(bool(value))
    if isinstance(value, str) and value.lower() in ("0", "1", "true", "false"):
        return bj.enc_bool(value.lower() in ("1", "true"))
    raise _Bad(f"{value!r} is not a boolean (0/1, true/false)")


def _conv_addr(value: SQLValue) -> str:
    if not isinstance(value, str):
        raise _Bad(f"{type(value).__name__} is not an address")
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        raise _Bad(f"{value!r} is not an IP address") from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.scope_id:
        raise _Bad(f"{value!r} has a zone index, which a Zeek addr cannot carry")
    return bj.enc_addr(addr)


def _conv_subnet(value: SQLValue) -> str:
    if not isinstance(value, str) or "/" not in value:
        raise _Bad(f"{value!r} is not a subnet (address/length)")
    try:
        return bj.enc_subnet(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise _Bad(f"{value!r} is not a subnet") from None


def _conv_port(value: SQLValue) -> str:
    if isinstance(value, str) and "/" in value:
        try:
            return bj.enc_port(bj.parse_port(value))
        except bj.DecodeError:
            raise _Bad(f"{value!r} is not a port") from None
    return bj.enc_port(Port(_integral(value, 0, 65535, "port"), Proto.UNKNOWN))


def _conv_time(value: SQLValue) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return bj.enc_time(Time.from_seconds(_integral(value, -(2**33), 2**35, "time")))
    try:
        return bj.enc_time(Time.from_seconds(_real(value)))
    except bj.EncodeError as exc:
        raise _Bad(str(exc)) from None


def _conv_interval(value: SQLValue) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return bj.enc_interval(Interval.from_seconds(_integral(value, -(2**33), 2**35, "interval")))
    return bj.enc_interval(Interval.from_seconds(_real(value)))


_TRANSPORT_BY_NUMBER = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp"}
_TRANSPORT_NAMES = ("tcp", "udp", "icmp", "unknown_transport")


def _conv_transport_proto(value: SQLValue) -> str:
    if isinstance(value, str) and value in _TRANSPORT_NAMES:
        return bj._tagged("enum-value", '"' + value + '"')
    if isinstance(value, int) and not isinstance(value, bool) and value in _TRANSPORT_BY_NUMBER:
        return bj._tagged("enum-value", '"' + _TRANSPORT_BY_NUMBER[value] + '"')
    raise _Bad(f"{value!r} is not a transport protocol (tcp, udp, icmp or IP protocol 6, 17, 1, 58)")


_CONVERTERS: dict[Kind, Converter] = {
    Kind.INT: _conv_int,
    Kind.COUNT: _conv_count,
    Kind.DOUBLE: _conv_double,
    Kind.STRING: _conv_string,
    Kind.BOOL: _conv_bool,
    Kind.ADDR: _conv_addr,
    Kind.SUBNET: _conv_subnet,
    Kind.PORT: _conv_port,
    Kind.TIME: _conv_time,
    Kind.INTERVAL: _conv_interval,
}


def converter_for(zeek_type: ZeekType) -> Converter:
    """The converter of SQL values to ``zeek_type``; SignatureError when SQL values cannot fill it."""
    conv = _CONVERTERS.get(zeek_type.kind)
    if conv is not None:
        return conv
    if zeek_type.kind is Kind.NAMED and zeek_type.name == "transport_proto":
        return _conv_transport_proto
    raise SignatureError(
        f"type {zeek_type} cannot take an SQL column value (use bool, int, count, double, string, "
        "addr, subnet, port, time, interval or transport_proto)"
    )


def convert(value: SQLValue, zeek_type: ZeekType) -> str:
    """Convert one SQL value to Broker JSON of ``zeek_type`` (ColumnError when it cannot)."""
    if value is None:
        raise ColumnError(f"NULL cannot be sent as {zeek_type} (a Zeek event parameter cannot be unset)")
    try:
        return converter_for(zeek_type)(value)
    except _Bad as exc:
        raise ColumnError(f"{exc}; declared {zeek_type}") from None
    except SignatureError as exc:
        raise ColumnError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class EventSignature:
    """A subscription's event: its full name and the declared column parameters after resultInfo."""

    name: str
    columns: tuple[Field, ...]

    @classmethod
    def parse(cls, name: str, type_name: str) -> EventSignature:
        """Check ``type_name(q$ev)`` and keep its columns; SignatureError says what is wrong."""
        if not name or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(::[A-Za-z_][A-Za-z0-9_]*)*", name):
            raise SignatureError(f"bad event name {name!r}")
        try:
            params = parse_event_signature(type_name)
        except TypeSyntaxError as exc:
            raise SignatureError(f"event {name}: {exc}") from None
        if not params or params[0].type.kind is not Kind.NAMED or params[0].type.name != RESULT_INFO:
            raise SignatureError(f"event {name}: the first parameter must be of type {RESULT_INFO}, got {type_name}")
        for param in params[1:]:
            try:
                converter_for(param.type)
            except SignatureError as exc:
                raise SignatureError(f"event {name}: parameter {param.name}: {exc}") from None
        return cls(name, params[1:])


class RowEncoder:
    """Turns result rows into the Broker JSON of one event, following the column typing rules.

    Compiled once per (signature, column names): per row it only runs the converters.
    """

    def __init__(self, signature: EventSignature, columns: Sequence[str]) -> None:
        self.signature = signature
        self.columns = tuple(columns)
        if len(self.columns) != len(signature.columns):
            declared = ", ".join(f"{f.name}:{f.type}" for f in signature.columns)
            raise ColumnError(
                f"event {signature.name}: the query returns {len(self.columns)} column(s) "
                f"({', '.join(self.columns)}) but the event declares {len(signature.columns)} after "
                f"resultInfo ({declared})"
            )
        self._convs = tuple(converter_for(f.type) for f in signature.columns)
        self._null = tuple(bj.enc_string("") if f.type.kind is Kind.STRING else None for f in signature.columns)
        self._name_json = bj.enc_string(signature.name)

    def result_info(self, host: str, action: Action, cookie: str) -> str:
        return bj.enc_vector(
            (bj.enc_string(host), bj._tagged("enum-value", '"' + action.zeek_enum + '"'), bj.enc_string(cookie))
        )

    def encode(self, info_json: str, values: Sequence[SQLValue]) -> str:
        """The event's Broker JSON for one row (ColumnError names the column at fault)."""
        if len(values) != len(self._convs):
            raise ColumnError(
                f"event {self.signature.name}: row has {len(values)} value(s), expected {len(self._convs)}"
            )
        parts = [info_json]
        for i, (conv, value) in enumerate(zip(self._convs, values, strict=True)):
            if value is None:
                empty = self._null[i]
                if empty is not None:
                    parts.append(empty)
                    continue
                f = self.signature.columns[i]
                raise ColumnError(
                    f"event {self.signature.name}: column {self.columns[i]} is NULL, which cannot be sent as "
                    f"{f.name}:{f.type} (a Zeek event parameter cannot be unset)"
                )
            try:
                parts.append(conv(value))
            except _Bad as exc:
                f = self.signature.columns[i]
                raise ColumnError(
                    f"event {self.signature.name}: column {self.columns[i]} value {value!r:.80} cannot be sent as "
                    f"{f.name}:{f.type}: {exc}"
                ) from None
        return (
            '{"@data-type":"vector","data":[{"@data-type":"count","data":1},{"@data-type":"count","data":1},'
            '{"@data-type":"vector","data":['
            + self._name_json
            + ',{"@data-type":"vector","data":['
            + ",".join(parts)
            + "]}]}]}"
        )
