"""Audit record text, sans I/O: ``audit(TS:SERIAL): key=value ...`` -> fields decoded by name.

The kernel writes untrusted strings (comm, exe, name, cwd, proctitle, key, EXECVE
aN) ``"quoted"`` when every byte is printable and not a space or quote, and as bare
uppercase hex otherwise; so decoding depends on the field *name*, never on whether
a value looks like hex (``pid=123`` does too).  Records are parsed lazily: the
header (serial) at once, the fields only when a row is built from them.
"""

from __future__ import annotations

import ipaddress
from typing import NamedTuple

__all__ = [
    "RECORD_NAMES",
    "RECORD_TYPES",
    "USED_TYPES",
    "Record",
    "RecordError",
    "SockAddr",
    "decode_hex",
    "decode_sockaddr",
    "decode_untrusted",
    "execve_args",
    "parse_fields",
    "parse_line",
    "parse_message",
]

SYSCALL, PATH, SOCKETCALL, SOCKADDR, CWD, EXECVE, EOE, PROCTITLE = 1300, 1302, 1304, 1306, 1307, 1309, 1320, 1327

#: record type number -> name (as auditd writes it in logs)
RECORD_NAMES: dict[int, str] = {
    1300: "SYSCALL",
    1302: "PATH",
    1303: "IPC",
    1304: "SOCKETCALL",
    1305: "CONFIG_CHANGE",
    1306: "SOCKADDR",
    1307: "CWD",
    1309: "EXECVE",
    1320: "EOE",
    1321: "BPRM_FCAPS",
    1327: "PROCTITLE",
}
RECORD_TYPES: dict[str, int] = {name: num for num, name in RECORD_NAMES.items()}

#: the record types process_events and socket_events are built from
USED_TYPES = frozenset({SYSCALL, PATH, SOCKETCALL, SOCKADDR, CWD, EXECVE, EOE, PROCTITLE})

_NULLS = frozenset({"(null)", "(none)", "?"})


class RecordError(ValueError):
    """A record's text is not ``audit(SECONDS.MILLIS:SERIAL): ...``."""


class Record:
    """One audit record: type number, event time, serial, and its field text (parsed on demand)."""

    __slots__ = ("_fields", "body", "serial", "ts", "type")

    def __init__(self, rtype: int, ts: float, serial: int, body: str) -> None:
        self.type = rtype
        self.ts = ts
        self.serial = serial
        self.body = body
        self._fields: dict[str, str] | None = None

    @property
    def fields(self) -> dict[str, str]:
        """Raw values by field name (quotes kept: decode with :func:`decode_untrusted`)."""
        if self._fields is None:
            self._fields = parse_fields(self.body)
        return self._fields

    def __repr__(self) -> str:
        return f"Record({RECORD_NAMES.get(self.type, self.type)}, serial={self.serial}, body={self.body[:60]!r})"


def parse_message(rtype: int, text: str) -> Record:
    """A record from netlink: ``rtype`` from nlmsg_type, ``text`` = ``audit(TS:SERIAL): body``."""
    if not text.startswith("audit("):
        raise RecordError(f"record type {rtype}: text does not start with 'audit(': {text[:60]!r}")
    close = text.find(")", 6)
    if close < 0:
        raise RecordError(f"record type {rtype}: unterminated audit(...) header: {text[:60]!r}")
    stamp = text[6:close]
    colon = stamp.rfind(":")
    if colon < 0:
        raise RecordError(f"record type {rtype}: no serial in {stamp!r}")
    try:
        ts = float(stamp[:colon])
        serial = int(stamp[colon + 1 :])
    except ValueError:
        raise RecordError(f"record type {rtype}: bad timestamp/serial {stamp!r}") from None
    body = text[close + 1 :]
    if body.startswith(":"):
        body = body[1:]
    return Record(rtype, ts, serial, body.strip(" \0\n"))


def parse_line(line: str) -> Record:
    """A record from an auditd log line.

    Accepts ``type=SYSCALL msg=audit(...): ...``, a ``node=HOST`` prefix, numeric
    and ``UNKNOWN[1327]`` types, and enriched logs (``\\x1d`` then ``UID="root" ...``,
    which is dropped: the raw fields carry the same numbers).
    """
    text = line.rstrip("\r\n")
    sep = text.find("\x1d")
    if sep >= 0:
        text = text[:sep]
    if text.startswith("node="):
        space = text.find(" ")
        text = text[space + 1 :] if space > 0 else ""
    if not text.startswith("type="):
        raise RecordError(f"line does not start with 'type=': {line[:60]!r}")
    space = text.find(" ")
    if space < 0:
        raise RecordError(f"no 'msg=' after the record type: {line[:60]!r}")
    name = text[5:space]
    rtype = RECORD_TYPES.get(name)
    if rtype is None:
        if name.startswith("UNKNOWN[") and name.endswith("]"):
            name = name[8:-1]
        rtype = int(name) if name.isdigit() else 0  # 0: a type we do not use (USER_LOGIN, AVC, ...)
    rest = text[space + 1 :]
    if not rest.startswith("msg="):
        raise RecordError(f"expected 'msg=' after type={name}: {line[:60]!r}")
    if rest.count('"') % 2:  # the kernel's quoted values never hold a '"' (those are hex)
        raise RecordError(f"unbalanced quotes (a truncated line?): {line[:60]!r}")
    return parse_message(rtype, rest[4:])


def parse_fields(body: str) -> dict[str, str]:
    """``k=v k2="v 2" ...`` -> {k: raw value}; tokens without ``=`` are ignored."""
    out: dict[str, str] = {}
    tokens = body.split(" ")
    i, n = 0, len(tokens)
    while i < n:
        tok = tokens[i]
        i += 1
        key, sep, value = tok.partition("=")
        if not sep:
            continue
        if value[:1] in ('"', "'"):
            quote = value[0]
            while (len(value) < 2 or not value.endswith(quote)) and i < n:  # quoted value with spaces
                value = f"{value} {tokens[i]}"
                i += 1
        out[key] = value
    return out


def decode_hex(value: str) -> bytes:
    """Bytes of a hex field (ValueError with the field text when it is not hex)."""
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"not a hex-encoded value: {value[:40]!r}") from None


def decode_untrusted(value: str | None) -> str | None:
    """A string the kernel wrote quoted or as hex; ``(null)`` -> None; bytes decoded as UTF-8 (errors replaced)."""
    if value is None:
        return None
    if value[:1] == '"':
        return value[1:-1] if len(value) > 1 and value[-1] == '"' else value[1:]
    if value in _NULLS:
        return None
    try:
        return bytes.fromhex(value).decode("utf-8", "replace")
    except ValueError:
        return value  # neither quoted nor hex (old or hand-written logs): keep as written


def execve_args(records: list[Record]) -> tuple[list[str], int | None]:
    """(argv, argc) from an event's EXECVE records, long arguments put back together.

    A long argument arrives as ``aN_len=L aN[0]=... aN[1]=...`` possibly over
    several records; each chunk is hex or (when the argument needs no encoding)
    ``"quoted"``, and chunks are joined as bytes before decoding.  An argument with
    an unreadable chunk is left out (argv then has fewer than ``argc`` entries).
    """
    argc: int | None = None
    args: dict[int, str | None] = {}
    chunks: dict[int, dict[int, str]] = {}
    for rec in records:
        for key, value in rec.fields.items():
            if key == "argc":
                try:
                    argc = int(value)
                except ValueError:
                    pass
                continue
            if key[:1] != "a":
                continue
            rest = key[1:]
            if rest.isdigit():
                args[int(rest)] = decode_untrusted(value)
                continue
            bracket = rest.find("[")
            if bracket > 0 and rest.endswith("]"):
                arg, part = rest[:bracket], rest[bracket + 1 : -1]
                if arg.isdigit() and part.isdigit():
                    chunks.setdefault(int(arg), {})[int(part)] = value
    for idx, parts in chunks.items():
        try:
            data = b"".join(_chunk_bytes(parts[j]) for j in sorted(parts))
        except ValueError:
            continue
        args[idx] = data.decode("utf-8", "replace")
    return [args[i] or "" for i in sorted(args)], argc


def _chunk_bytes(value: str) -> bytes:
    """One ``aN[i]`` chunk: ``"quoted"`` printable ASCII or hex."""
    if value[:1] == '"':
        if len(value) < 2 or value[-1] != '"':
            raise ValueError(f"unterminated quoted chunk: {value[:40]!r}")
        return value[1:-1].encode("latin-1", "replace")
    return bytes.fromhex(value)


class SockAddr(NamedTuple):
    """A decoded ``saddr``: family and, by family, address + port or a UNIX path."""

    family: int
    address: str | None = None
    port: int | None = None
    path: str | None = None


def decode_sockaddr(saddr: str) -> SockAddr:
    """Decode the SOCKADDR ``saddr`` hex (sa_family host-endian, port network order).

    AF_UNIX abstract names (leading NUL) read ``@name`` as ``ss`` and osquery show them.
    ValueError when the text is not a sockaddr.
    """
    raw = decode_hex(saddr)
    if len(raw) < 2:
        raise ValueError(f"sockaddr too short: {saddr!r}")
    family = int.from_bytes(raw[:2], "little")
    if family == 2:  # AF_INET
        if len(raw) < 8:
            raise ValueError(f"AF_INET sockaddr too short: {saddr!r}")
        return SockAddr(2, str(ipaddress.IPv4Address(raw[4:8])), int.from_bytes(raw[2:4], "big"))
    if family == 10:  # AF_INET6
        if len(raw) < 24:
            raise ValueError(f"AF_INET6 sockaddr too short: {saddr!r}")
        return SockAddr(10, str(ipaddress.IPv6Address(raw[8:24])), int.from_bytes(raw[2:4], "big"))
    if family == 1:  # AF_UNIX
        name = raw[2:]
        if not name:
            return SockAddr(1, path="")  # unnamed (e.g. an accept()ed peer)
        if name[:1] == b"\0":
            return SockAddr(1, path="@" + name[1:].decode("utf-8", "replace").replace("\0", "@"))
        return SockAddr(1, path=name.split(b"\0", 1)[0].decode("utf-8", "replace"))
    return SockAddr(family)
