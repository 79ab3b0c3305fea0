"""Zeek's log value formatting, pure: the ASCII writer's text per type and its escaping, and the
JSON writer's. The rules are Zeek 8's (threading/formatters/Ascii.cc, JSON.cc), checked against
logs the real Zeek wrote for the same values.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Iterable

from collector.zeek.values import Count, Enum, Interval, Port, Time
from collector.zeek.ztypes import Kind, ZeekType

SEPARATOR = "\t"
SET_SEPARATOR = ","
EMPTY_FIELD = "(empty)"
UNSET_FIELD = "-"


def _escape_bytes(data: bytes, in_container: bool) -> str:
    """Zeek's get_escaped_string: control bytes, 0x7f and backslash escaped; non-UTF-8 bytes too."""
    try:
        text = data.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        text = ""
        valid = False
    out: list[str] = []
    if valid:
        for ch in text:
            o = ord(ch)
            if ch == "\\":
                out.append("\\\\")
            elif o < 0x20 or o == 0x7F:
                out.append(f"\\x{o:02x}")
            elif in_container and ch == SET_SEPARATOR:
                out.append("\\x2c")
            else:
                out.append(ch)
        return "".join(out)
    for b in data:
        if b == 0x5C:
            out.append("\\\\")
        elif b < 0x20 or b >= 0x7F:
            out.append(f"\\x{b:02x}")
        elif in_container and b == 0x2C:
            out.append("\\x2c")
        else:
            out.append(chr(b))
    return "".join(out)


def format_double(x: float) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    text = f"{x:.6f}".rstrip("0")
    if text.endswith("."):
        if x == int(x):
            return ("0" if x == 0 else text[:-1]) + ".0"
        return "0" if text in ("0.", "-0.") else text[:-1]
    return text


def _seconds_6(ns: int) -> str:
    return f"{ns / 1e9:.6f}"


def _scalar_ascii(value: object, t: ZeekType, in_container: bool) -> str:
    k = t.kind
    if isinstance(value, bool):
        return "T" if value else "F"
    if k is Kind.DOUBLE:
        return format_double(float(value))  # type: ignore[arg-type]
    if isinstance(value, Time | Interval):
        return _seconds_6(value.ns)
    if isinstance(value, Port):
        return str(value.number)
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return format_double(value)
    if isinstance(value, Enum):
        return _escape_bytes(value.name.encode(), in_container)
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address | ipaddress.IPv4Network | ipaddress.IPv6Network):
        return str(value)
    if isinstance(value, str | bytes):
        data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
        if not data:
            return EMPTY_FIELD
        text = _escape_bytes(data, in_container)
        if text == UNSET_FIELD:
            return "\\x2d"
        if text == EMPTY_FIELD:
            return "\\x28empty)"
        return text
    raise TypeError(f"cannot log {type(value).__name__} as {t}")


def format_ascii(value: object, t: ZeekType) -> str:
    """One field's text in Zeek's ASCII log (``-`` unset, ``(empty)`` for an empty container)."""
    if value is None:
        return UNSET_FIELD
    if t.kind in (Kind.VECTOR, Kind.SET):
        items: Iterable[object] = value if isinstance(value, list | tuple) else sorted(value, key=repr)  # type: ignore[call-overload]
        parts = [_scalar_ascii(v, t.args[0], True) if v is not None else UNSET_FIELD for v in items]
        return SET_SEPARATOR.join(parts) if parts else EMPTY_FIELD
    return _scalar_ascii(value, t, False)


def _json_string(value: str | bytes) -> str:
    data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    try:
        text = data.decode("utf-8")
        chars: Iterable[str] = text
        valid = True
    except UnicodeDecodeError:
        chars = (chr(b) for b in data)
        valid = False
    out = ['"']
    for ch in chars:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch in "\b\t\n\f\r":
            out.append(json.dumps(ch)[1:-1])
        elif o < 0x20 or o == 0x7F or (not valid and o >= 0x80):
            out.append(f"\\\\x{o:02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _json_number(x: float) -> str:
    if not math.isfinite(x):
        return "null"
    return repr(x)


def format_json(value: object, t: ZeekType) -> str:
    """One field's JSON text in Zeek's JSON log (time as epoch seconds, JSON::TS_EPOCH)."""
    if value is None:
        return "null"
    if t.kind in (Kind.VECTOR, Kind.SET):
        items: Iterable[object] = value if isinstance(value, list | tuple) else sorted(value, key=repr)  # type: ignore[call-overload]
        return "[" + ",".join(format_json(v, t.args[0]) for v in items) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Time | Interval):
        return _json_number(value.ns / 1e9)
    if isinstance(value, Port):
        return str(value.number)
    if isinstance(value, Count | int):
        return str(int(value))
    if isinstance(value, float):
        return _json_number(value)
    if isinstance(value, Enum):
        return _json_string(value.name)
    if isinstance(value, str | bytes):
        return _json_string(value)
    return _json_string(str(value))
