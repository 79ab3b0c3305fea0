"""Broker's JSON encoding (Zeek's WebSocket API, v1), pure: values, events and messages.

Every value is ``{"@data-type": T, "data": D}``. The encoder writes JSON text directly (it is on
the hot path: one event per result row); the decoder takes what ``json.loads`` made of Zeek's
text. Python's value model is in :mod:`collector.zeek.values`.

Zeek's own encoder is lax in ways a strict JSON parser refuses (raw control bytes in strings,
``\\v``, bare ``inf``/``nan`` reals): :func:`loads` reads what Zeek really sends.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from collector.zeek.values import COUNT_MAX, INT_MAX, INT_MIN, Count, Enum, Interval, Port, Proto, Time

JSONValue = Any
"""What ``json.loads`` returns."""

EVENT_FORMAT = 1
EVENT_TYPE = 1


class EncodeError(ValueError):
    """A Python value has no Broker JSON encoding (names what and why)."""


class DecodeError(ValueError):
    """A Broker JSON value or message is malformed (names what and why)."""


# ---------------------------------------------------------------------------------------------
# Encoding


_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def _tagged(tag: str, data_json: str) -> str:
    return '{"@data-type":"' + tag + '","data":' + data_json + "}"


def enc_none() -> str:
    return '{"@data-type":"none","data":{}}'


def enc_bool(value: bool) -> str:
    return _tagged("boolean", "true" if value else "false")


def enc_count(value: int) -> str:
    if not 0 <= value <= COUNT_MAX:
        raise EncodeError(f"count out of range 0..2^64-1: {value}")
    return _tagged("count", str(int(value)))


def enc_int(value: int) -> str:
    if not INT_MIN <= value <= INT_MAX:
        raise EncodeError(f"int out of range -2^63..2^63-1: {value}")
    return _tagged("integer", str(int(value)))


def enc_real(value: float) -> str:
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise EncodeError(f"double {value} has no JSON encoding (Broker JSON carries finite reals only)")
    text = repr(value)
    return _tagged("real", text)


def _utf8(value: str | bytes) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EncodeError(
                f"bytes are not UTF-8 ({exc.reason} at {exc.start}): Broker JSON strings are UTF-8"
            ) from None
    if max(value, default="\x00") >= "\ud800":
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise EncodeError("string holds a lone surrogate: not encodable as UTF-8") from None
    return value


def enc_string(value: str | bytes) -> str:
    return _tagged("string", _dumps(_utf8(value)))


def enc_addr(value: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return _tagged("address", '"' + str(value) + '"')


def enc_subnet(value: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    return _tagged("subnet", '"' + str(value) + '"')


def enc_port(value: Port) -> str:
    return _tagged("port", '"' + str(value) + '"')


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def format_timestamp(ns: int) -> str:
    """Broker's timestamp text: UTC, no offset, nanosecond fraction (Broker reads 1-9 digits)."""
    seconds, frac = divmod(ns, 1_000_000_000)
    try:
        moment = _EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        raise EncodeError(f"time out of range: {ns} ns") from None
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}"


def enc_time(value: Time) -> str:
    return _tagged("timestamp", '"' + format_timestamp(value.ns) + '"')


def enc_interval(value: Interval) -> str:
    return _tagged("timespan", '"' + str(value.ns) + 'ns"')


def enc_enum(value: Enum) -> str:
    return _tagged("enum-value", _dumps(value.name))


def enc_vector(items_json: Iterable[str]) -> str:
    return _tagged("vector", "[" + ",".join(items_json) + "]")


def encode(value: object) -> str:
    """Encode a Python value (see :mod:`collector.zeek.values`) as Broker JSON text."""
    if value is None:
        return enc_none()
    if isinstance(value, bool):
        return enc_bool(value)
    if isinstance(value, Count):
        return enc_count(value)
    if isinstance(value, int):
        return enc_int(value)
    if isinstance(value, float):
        return enc_real(value)
    if isinstance(value, str | bytes):
        return enc_string(value)
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return enc_addr(value)
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return enc_subnet(value)
    if isinstance(value, Port):
        return enc_port(value)
    if isinstance(value, Time):
        return enc_time(value)
    if isinstance(value, Interval):
        return enc_interval(value)
    if isinstance(value, Enum):
        return enc_enum(value)
    if isinstance(value, list | tuple):
        return enc_vector(encode(item) for item in value)
    if isinstance(value, set | frozenset):
        items = [encode(item) for item in value]
        if len(set(items)) != len(items):
            raise EncodeError("set elements encode to duplicates (Zeek rejects duplicate set elements)")
        return _tagged("set", "[" + ",".join(sorted(items)) + "]")
    if isinstance(value, Mapping):
        pairs = [(encode(k), encode(v)) for k, v in value.items()]
        return _tagged("table", "[" + ",".join('{"key":' + k + ',"value":' + v + "}" for k, v in pairs) + "]")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return enc_vector(encode(getattr(value, f.name)) for f in dataclasses.fields(value))
    raise EncodeError(f"no Broker JSON encoding for {type(value).__name__} value {value!r}")


# ---------------------------------------------------------------------------------------------
# Decoding


_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?\Z",
)
_TIMESPAN = re.compile(r"(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)(ns|us|ms|s|min|h|d)\Z")
_SPAN_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "min": 60_000_000_000, "h": 3_600_000_000_000}
_SPAN_NS["d"] = 24 * _SPAN_NS["h"]
_PROTOS = {"tcp": Proto.TCP, "udp": Proto.UDP, "icmp": Proto.ICMP, "?": Proto.UNKNOWN, "unknown": Proto.UNKNOWN}


def parse_timestamp(text: str) -> Time:
    """Parse Broker's timestamp text (no offset means UTC; 1-9 fraction digits; Z or +hh:mm)."""
    m = _TIMESTAMP.match(text)
    if not m:
        raise DecodeError(f"bad timestamp {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError as exc:
        raise DecodeError(f"bad timestamp {text!r}: {exc}") from None
    frac = m.group(7) or ""
    ns = (frac + "0" * (9 - len(frac))) if frac else "0"
    offset = m.group(8)
    delta = moment - _EPOCH
    total = (delta.days * 86400 + delta.seconds) * 1_000_000_000 + int(ns)
    if offset and offset != "Z":
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        total -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60) * 1_000_000_000
    return Time(total)


def parse_timespan(text: str) -> Interval:
    m = _TIMESPAN.match(text)
    if not m:
        raise DecodeError(f"bad timespan {text!r}")
    number, unit = m.groups()
    if re.fullmatch(r"-?\d+", number):
        return Interval(int(number) * _SPAN_NS[unit])
    return Interval(round(float(number) * _SPAN_NS[unit]))


def parse_port(text: str) -> Port:
    number, _, proto = text.partition("/")
    if not number.isdigit() or (proto and proto not in _PROTOS):
        raise DecodeError(f"bad port {text!r}")
    try:
        return Port(int(number), _PROTOS[proto] if proto else Proto.TCP)
    except ValueError as exc:
        raise DecodeError(f"bad port {text!r}: {exc}") from None


def _expect(data: JSONValue, kind: type | tuple[type, ...], tag: str) -> Any:
    if not isinstance(data, kind) or (isinstance(data, bool) and kind is not bool):
        raise DecodeError(f"{tag}: unexpected JSON {type(data).__name__} {data!r}")
    return data


def decode(obj: JSONValue) -> object:
    """Decode one Broker JSON value (parsed JSON) to its Python value."""
    if not isinstance(obj, dict) or "@data-type" not in obj or "data" not in obj:
        raise DecodeError(f"not a Broker value (needs @data-type and data): {obj!r:.200}")
    tag, data = obj["@data-type"], obj["data"]
    if tag == "none":
        return None
    if tag == "boolean":
        return _expect(data, bool, tag)
    if tag == "count":
        n = _expect(data, int, tag)
        if not 0 <= n <= COUNT_MAX:
            raise DecodeError(f"count out of range: {n}")
        return Count(n)
    if tag == "integer":
        n = _expect(data, int, tag)
        if not INT_MIN <= n <= INT_MAX:
            raise DecodeError(f"integer out of range: {n}")
        return n
    if tag == "real":
        if isinstance(data, str) and data.lstrip("-") in ("inf", "nan"):
            return float(data)  # Zeek writes bare inf/nan; loads() turned them into strings
        return float(_expect(data, (int, float), tag))
    if tag == "string":
        return _expect(data, str, tag)
    if tag == "address":
        try:
            return ipaddress.ip_address(_expect(data, str, tag))
        except ValueError:
            raise DecodeError(f"bad address {data!r}") from None
    if tag == "subnet":
        try:
            return ipaddress.ip_network(_expect(data, str, tag), strict=False)
        except ValueError:
            raise DecodeError(f"bad subnet {data!r}") from None
    if tag == "port":
        return parse_port(_expect(data, str, tag))
    if tag == "timestamp":
        return parse_timestamp(_expect(data, str, tag))
    if tag == "timespan":
        return parse_timespan(_expect(data, str, tag))
    if tag == "enum-value":
        return Enum(_expect(data, str, tag))
    if tag == "vector":
        return [decode(item) for item in _expect(data, list, tag)]
    if tag == "set":
        items = [decode(item) for item in _expect(data, list, tag)]
        return frozenset(_hashable(i) for i in items)
    if tag == "table":
        table: dict[object, object] = {}
        for pair in _expect(data, list, tag):
            if not isinstance(pair, dict) or "key" not in pair or "value" not in pair:
                raise DecodeError(f"table entry needs key and value: {pair!r:.200}")
            table[_hashable(decode(pair["key"]))] = decode(pair["value"])
        return table
    raise DecodeError(f"unknown @data-type {tag!r}")


def _hashable(value: object) -> object:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted(((k, _hashable(v)) for k, v in value.items()), key=repr))
    return value


_BAD_ESCAPE_V = re.compile(r"(?<!\\)((?:\\\\)*)\\v")


def loads(text: str | bytes) -> JSONValue:
    """Parse JSON as Zeek writes it: raw control bytes allowed, ``\\v`` read as U+000B."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    try:
        return json.loads(text, strict=False)
    except json.JSONDecodeError:
        fixed = _BAD_ESCAPE_V.sub(lambda m: m.group(1) + "\\u000b", text)
        fixed = re.sub(r"(?<=[:\[,])(-?)(inf|nan)(?=[,\]}])", lambda m: '"' + m.group(1) + m.group(2) + '"', fixed)
        try:
            return json.loads(fixed, strict=False)
        except json.JSONDecodeError as exc:
            raise DecodeError(f"not JSON: {exc}") from None


# ---------------------------------------------------------------------------------------------
# Events and WebSocket messages


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """A Zeek event as it travels: full name, arguments, optional metadata ``(id, value)`` pairs."""

    name: str
    args: tuple[object, ...]
    metadata: tuple[tuple[int, object], ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Ack:
    """The server's answer to the handshake. ``endpoint`` and ``version`` differ between Broker's
    endpoint (Zeek 5.0-7.1: libbroker's version) and Zeek's (7.2 and newer: Zeek's version)."""

    endpoint: str
    version: str


@dataclasses.dataclass(frozen=True, slots=True)
class Error:
    """An error reply. It carries no id of the message it refers to (either endpoint)."""

    code: str
    context: str


@dataclasses.dataclass(frozen=True, slots=True)
class DataMessage:
    """A published value on a topic; ``event`` is set when the value is a Zeek event."""

    topic: str
    value: object
    event: Event | None


ServerMessage = Ack | Error | DataMessage


def encode_handshake(topics: Sequence[str]) -> str:
    """The client's first message: the topic prefixes it subscribes to."""
    for topic in topics:
        if not isinstance(topic, str):
            raise EncodeError(f"topic must be a string: {topic!r}")
    return _dumps(list(topics))


def encode_event_args(name: str, args_json: Iterable[str], metadata_json: str | None = None) -> str:
    """The Broker JSON of a Zeek event (a vector), from already-encoded arguments."""
    inner = [enc_string(name), enc_vector(args_json)]
    if metadata_json is not None:
        inner.append(metadata_json)
    return enc_vector(['{"@data-type":"count","data":1}', '{"@data-type":"count","data":1}', enc_vector(inner)])


def data_message(topic: str, value_json: str) -> str:
    """A data-message frame publishing ``value_json`` (Broker JSON) on ``topic``."""
    if not value_json.startswith('{"@data-type":'):
        raise EncodeError("value must be Broker JSON text starting with its @data-type")
    return '{"type":"data-message","topic":' + _dumps(topic) + "," + value_json[1:]


def encode_event(topic: str, event: Event) -> str:
    """A complete data-message frame publishing ``event`` on ``topic``."""
    metadata = None
    if event.metadata:
        metadata = enc_vector(enc_vector([enc_count(i), encode(v)]) for i, v in event.metadata)
    return data_message(topic, encode_event_args(event.name, (encode(a) for a in event.args), metadata))


def event_from_value(value: object) -> Event | None:
    """The Zeek event a decoded vector holds, or None when it is not one.

    Zeek 8 sends 2 inner elements by default; Zeek 6-7 (and 8 with network timestamps) a third,
    the metadata vector, possibly empty.
    """
    if not isinstance(value, list) or len(value) != 3:
        return None
    fmt, kind, inner = value
    if not isinstance(fmt, Count) or not isinstance(kind, Count) or not isinstance(inner, list):
        return None
    if len(inner) not in (2, 3) or not isinstance(inner[0], str) or not isinstance(inner[1], list):
        return None
    metadata: list[tuple[int, object]] = []
    if len(inner) == 3:
        if not isinstance(inner[2], list):
            return None
        for entry in inner[2]:
            if isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], int):
                metadata.append((int(entry[0]), entry[1]))
    return Event(inner[0], tuple(inner[1]), tuple(metadata))


def decode_server_message(text: str | bytes) -> ServerMessage:
    """Decode one message from Zeek: ``ack``, ``error`` or ``data-message``."""
    obj = loads(text)
    if not isinstance(obj, dict):
        raise DecodeError(f"server message is not a JSON object: {obj!r:.200}")
    kind = obj.get("type")
    if kind == "ack":
        endpoint, version = obj.get("endpoint"), obj.get("version")
        if not isinstance(endpoint, str) or not isinstance(version, str):
            raise DecodeError(f"ack without endpoint/version strings: {obj!r:.200}")
        return Ack(endpoint, version)
    if kind == "error":
        code, context = obj.get("code"), obj.get("context")
        if not isinstance(code, str) or not isinstance(context, str):
            raise DecodeError(f"error without code/context strings: {obj!r:.200}")
        return Error(code, context)
    if kind == "data-message":
        topic = obj.get("topic")
        if not isinstance(topic, str):
            raise DecodeError(f"data-message without a topic: {obj!r:.200}")
        value = decode(obj)
        return DataMessage(topic, value, event_from_value(value))
    raise DecodeError(f"unknown server message type {kind!r}")


def decode_client_message(obj: JSONValue) -> tuple[str, object]:
    """Decode a client's data-message (parsed JSON) to (topic, value): what a server reads."""
    if not isinstance(obj, dict):
        raise DecodeError("expected a JSON object")
    topic = obj.get("topic")
    if not isinstance(topic, str):
        raise DecodeError("no topic in top-level JSON object")
    return topic, decode(obj)
