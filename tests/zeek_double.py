"""A strict double of Zeek 8's WebSocket endpoint running the osquery package.

It serves ws://127.0.0.1:PORT/v1/messages/json as Zeek 8.2.2 does (checked behaviour: the URI
check, the handshake array, the ack, the error replies and their texts, a dead connection after
a refused handshake) and refuses, like Zeek, every event whose arguments do not have exactly
the declared types (count vs int, a record as a vector of all its fields, enum values of the
declared enum). The declarations are read from the package's .zeek files, so a change there
shows up here. Stricter than Zeek in one point: ``none`` for a mandatory record field is refused
(Zeek accepts it and leaves the field uninitialized).

It also plays the framework's part of the collector protocol (v1): hello and replay, batch
marks and acks, state queries. Rows it accepted are in ``delivered``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from collector.zeek import brokerjson as bj
from collector.zeek.values import Count, Enum, Interval, Port, Time
from collector.zeek.ztypes import Field, Kind, ZeekType, parse_type

PACKAGE = Path(__file__).resolve().parent.parent / "zeek" / "scripts"


def _strip_comments(text: str) -> str:
    out, in_str, esc = [], False, False
    i = 0
    while i < len(text):
        c = text[i]
        if in_str:
            out.append(c)
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
            out.append(c)
        elif c == "#":
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


_ATTR = re.compile(r"&\w+(\s*=\s*(\"[^\"]*\"|[^;,)]+?(\([^)]*\))?))?(?=\s*[;,)&]|\s*$)")


@dataclass
class Declarations:
    """Events, records and enums declared in Zeek script text."""

    events: dict[str, tuple[Field, ...]] = field(default_factory=dict)
    records: dict[str, tuple[tuple[str, ZeekType, bool], ...]] = field(default_factory=dict)  # (name, type, optional)
    enums: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def add_script(self, text: str) -> None:
        text = _strip_comments(text)
        module = "GLOBAL"
        for stmt in re.finditer(
            r"\bmodule\s+([\w:]+)\s*;|\btype\s+(\w+)\s*:\s*(record|enum)\s*\{(.*?)\}\s*;|\bglobal\s+([\w:]+)\s*:\s*event\s*\((.*?)\)\s*(?:&is_used\s*)?;",
            text,
            re.S,
        ):
            if stmt.group(1):
                module = stmt.group(1)
            elif stmt.group(2):
                name = stmt.group(2) if module == "GLOBAL" else f"{module}::{stmt.group(2)}"
                body = stmt.group(4)
                if stmt.group(3) == "enum":
                    prefix = "" if module == "GLOBAL" else module + "::"
                    self.enums[name] = tuple(prefix + v.strip() for v in body.split(",") if v.strip())
                else:
                    fields = []
                    for decl in body.split(";"):
                        if not decl.strip():
                            continue
                        fname, _, rest = decl.partition(":")
                        optional = "&optional" in rest or "&default" in rest
                        fields.append((fname.strip(), self._type(_ATTR.sub("", rest).strip(), module), optional))
                    self.records[name] = tuple(fields)
            else:
                full = stmt.group(5) if "::" in stmt.group(5) or module == "GLOBAL" else f"{module}::{stmt.group(5)}"
                params = []
                for decl in _split_params(stmt.group(6)):
                    pname, _, ptype = decl.partition(":")
                    params.append(Field(pname.strip(), self._type(_ATTR.sub("", ptype).strip(), module)))
                self.events[full] = tuple(params)

    def _type(self, text: str, module: str) -> ZeekType:
        t = parse_type(" ".join(text.split()))
        return self._qualify(t, module)

    def _qualify(self, t: ZeekType, module: str) -> ZeekType:
        if t.kind is Kind.NAMED and "::" not in t.name and module != "GLOBAL" and t.name != "transport_proto":
            return ZeekType(Kind.NAMED, name=f"{module}::{t.name}")
        if t.args or t.yield_:
            return ZeekType(
                t.kind,
                t.name,
                tuple(self._qualify(a, module) for a in t.args),
                self._qualify(t.yield_, module) if t.yield_ else None,
                t.fields,
            )
        return t

    def add_package(self, root: Path = PACKAGE) -> None:
        for path in sorted(root.rglob("*.zeek")):
            self.add_script(path.read_text())


def _split_params(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for c in text:
        if c in "[({":
            depth += 1
        elif c in "])}":
            depth -= 1
        if c == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += c
    if cur.strip():
        parts.append(cur)
    return parts


class Mismatch(Exception):
    pass


def check(value: object, t: ZeekType, decls: Declarations, where: str) -> None:
    """Raise Mismatch unless ``value`` (decoded Broker JSON) has exactly Zeek type ``t``."""
    k = t.kind
    ok = {
        Kind.COUNT: lambda v: isinstance(v, Count),
        Kind.INT: lambda v: isinstance(v, int) and not isinstance(v, Count | bool),
        Kind.DOUBLE: lambda v: isinstance(v, float),
        Kind.STRING: lambda v: isinstance(v, str),
        Kind.BOOL: lambda v: isinstance(v, bool),
        Kind.ADDR: lambda v: isinstance(v, ipaddress.IPv4Address | ipaddress.IPv6Address),
        Kind.SUBNET: lambda v: isinstance(v, ipaddress.IPv4Network | ipaddress.IPv6Network),
        Kind.PORT: lambda v: isinstance(v, Port),
        Kind.TIME: lambda v: isinstance(v, Time),
        Kind.INTERVAL: lambda v: isinstance(v, Interval),
        Kind.ANY: lambda v: True,
    }.get(k)
    if ok is not None:
        if value is None or not ok(value):
            raise Mismatch(f"{where}: broker value '{value!r}' to Zeek type '{t}' failed")
        return
    if k is Kind.VECTOR:
        if not isinstance(value, list):
            raise Mismatch(f"{where}: expected vector, got {value!r}")
        for i, v in enumerate(value):
            check(v, t.args[0], decls, f"{where}[{i}]")
        return
    if k is Kind.SET:
        if not isinstance(value, frozenset):
            raise Mismatch(f"{where}: expected set, got {value!r}")
        for v in value:
            check(v, t.args[0], decls, f"{where}{{}}")
        return
    if k is Kind.TABLE:
        if not isinstance(value, dict):
            raise Mismatch(f"{where}: expected table, got {value!r}")
        for kk, vv in value.items():
            check(kk, t.args[0], decls, f"{where} key")
            assert t.yield_ is not None
            check(vv, t.yield_, decls, f"{where} value")
        return
    if k is Kind.NAMED:
        if t.name == "transport_proto":
            if not isinstance(value, Enum) or value.name not in ("tcp", "udp", "icmp", "unknown_transport"):
                raise Mismatch(f"{where}: {value!r} is not a transport_proto")
            return
        if t.name in decls.enums:
            if not isinstance(value, Enum) or value.name not in decls.enums[t.name]:
                raise Mismatch(f"{where}: {value!r} is not a value of enum {t.name}")
            return
        if t.name in decls.records:
            fields = decls.records[t.name]
            if not isinstance(value, list) or len(value) < len(fields):
                raise Mismatch(f"{where}: record {t.name} needs a vector of {len(fields)} fields, got {value!r}")
            for (fname, ftype, optional), v in zip(fields, value, strict=False):
                if v is None:
                    if not optional:
                        raise Mismatch(f"{where}${fname}: none for a mandatory field")
                    continue
                check(v, ftype, decls, f"{where}${fname}")
            return
    raise Mismatch(f"{where}: the double does not know type {t}")


@dataclass
class DoubleState:
    """What a restarted double keeps (the package's state_file): the delivery marks."""

    done: dict[str, int] = field(default_factory=dict)


@dataclass
class ZeekDouble:
    decls: Declarations
    subscriptions: list[bj.Event] = field(default_factory=list)  # replayed on collector_hello
    state: DoubleState = field(default_factory=DoubleState)
    zeek_topic: str = "/osquery/zeek/"
    collector_topic: str = "/osquery/collector/"
    host: str = "127.0.0.1"
    port: int = 0
    zeek_id: str = field(default_factory=lambda: "zeek_" + uuid.uuid4().hex[:12])
    delivered: list[bj.Event] = field(default_factory=list)  # every accepted event on zeek_topic
    errors_sent: list[tuple[str, str]] = field(default_factory=list)
    repeated_batches: int = 0
    open: dict[str, int] = field(default_factory=dict)
    clients: list[ServerConnection] = field(default_factory=list)
    _server: object = None
    _n: int = 0
    _node: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await serve(
            self._handle, self.host, self.port, process_request=self._check_uri, max_size=None, ping_interval=5
        )
        self.port = self._server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        server = self._server
        if server is not None:
            server.close()  # type: ignore[attr-defined]
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)  # type: ignore[attr-defined]
            self._server = None

    def _check_uri(self, connection: ServerConnection, request: Request) -> Response | None:
        return None

    def rows(self) -> list[bj.Event]:
        """Delivered user events (not the protocol's own)."""
        return [e for e in self.delivered if not e.name.startswith("osquery::") or e.name.startswith("osquery::table_")]

    async def _send(self, ws: ServerConnection, obj: dict[str, object]) -> None:
        await ws.send(json.dumps(obj, separators=(",", ":")))

    async def _error(self, ws: ServerConnection, code: str, context: str) -> None:
        self.errors_sent.append((code, context))
        await self._send(ws, {"type": "error", "code": code, "context": context})

    async def _publish(self, ws: ServerConnection, name: str, *args: object) -> None:
        await ws.send(bj.encode_event(self.collector_topic, bj.Event(name, args)))

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        if ws.request.path != "/v1/messages/json":
            await self._error(ws, "invalid_uri", "Invalid URI - use /v1/messages/json")
            await ws.close(1008, "Invalid URI")
            return
        self.clients.append(ws)
        try:
            first = await ws.recv()
            try:
                topics = json.loads(first)
            except ValueError:
                topics = None
            if not isinstance(topics, list):
                await self._error(ws, "deserialization_failed", "subscriptions not an array")
                async for _ in ws:  # dead: everything later is ignored
                    pass
                return
            if not all(isinstance(t, str) for t in topics):
                await self._error(ws, "deserialization_failed", "individual subscription not a string")
                async for _ in ws:
                    pass
                return
            await self._send(ws, {"type": "ack", "endpoint": f"{self._node}-websocket-{self._n}", "version": "8.2.2"})
            self._n += 1
            async for message in ws:
                await self._message(ws, message)
        except Exception:
            return
        finally:
            with contextlib.suppress(ValueError):
                self.clients.remove(ws)

    async def _message(self, ws: ServerConnection, message: str | bytes) -> None:
        try:
            obj = bj.loads(message)
            if not isinstance(obj, dict):
                raise bj.DecodeError("not an object")
            if "topic" not in obj:
                await self._error(ws, "deserialization_failed", "no topic in top-level JSON object")
                return
            topic, value = bj.decode_client_message(obj)
        except bj.DecodeError:
            await self._error(ws, "deserialization_failed", "failed to decode JSON object")
            return
        ev = bj.event_from_value(value)
        if ev is None or ev.name not in self.decls.events:
            await self._error(ws, "deserialization_failed", "failed to create Zeek event")
            return
        params = self.decls.events[ev.name]
        if len(params) != len(ev.args):
            await self._error(ws, "deserialization_failed", "failed to create Zeek event")
            return
        try:
            for param, arg in zip(params, ev.args, strict=True):
                check(arg, param.type, self.decls, f"{ev.name}({param.name})")
        except Mismatch:
            await self._error(ws, "deserialization_failed", "failed to create Zeek event")
            return
        if not topic.startswith(self.zeek_topic):
            return  # nobody subscribed: silently dropped, as Zeek does
        self.delivered.append(ev)
        await self._framework(ws, ev)

    async def _framework(self, ws: ServerConnection, ev: bj.Event) -> None:
        name, args = ev.name, ev.args
        if name == "osquery::collector_hello_v1":
            await self._publish(
                ws,
                "osquery::zeek_hello_v1",
                self.zeek_id,
                "1.0",
                {h: Count(s) for h, s in self.state.done.items()},
                {h: Count(s) for h, s in self.open.items()},
            )
            for sub in self.subscriptions:
                await ws.send(bj.encode_event(self.collector_topic, sub))
            await self._publish(ws, "osquery::sync_done_v1", self.zeek_id, Count(len(self.subscriptions)))
        elif name == "osquery::state_query_v1":
            await self._publish(
                ws,
                "osquery::state_v1",
                self.zeek_id,
                {h: Count(s) for h, s in self.state.done.items()},
                {h: Count(s) for h, s in self.open.items()},
            )
        elif name == "osquery::batch_begin_v1":
            host, seq = args[0], int(args[1])  # type: ignore[call-overload]
            if seq <= self.state.done.get(host, 0):  # type: ignore[arg-type]
                self.repeated_batches += 1
            self.open[host] = seq  # type: ignore[index]
        elif name == "osquery::batch_end_v1":
            host, seq = args[0], int(args[1])  # type: ignore[call-overload]
            self.state.done[host] = max(seq, self.state.done.get(host, 0))  # type: ignore[index, arg-type]
            if self.open.get(host) == seq:  # type: ignore[call-overload]
                del self.open[host]  # type: ignore[arg-type]
            await self._publish(ws, "osquery::batch_ack_v1", self.zeek_id, host, Count(seq))
