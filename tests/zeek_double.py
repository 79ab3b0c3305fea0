"""A strict double of Zeek's WebSocket endpoint running the osquery package.

It serves ws://127.0.0.1:PORT/v1/messages/json as Zeek 8.2.2 does (checked behaviour: the URI
check, the handshake array, the ack, the error replies and their texts, a dead connection after
a refused handshake) and refuses, like Zeek, every event whose arguments do not have exactly
the declared types (count vs int, a record as a vector of all its fields, enum values of the
declared enum). The declarations are read from the package's .zeek files, so a change there
shows up here. Stricter than Zeek in one point: ``none`` for a mandatory record field is refused
(Zeek accepts it and leaves the field uninitialized).

It also plays the framework's part of the collector protocol (v1): hello and replay, batch
marks and acks, state queries. Rows it accepted are in ``delivered``. Its scripts' requests
are ``requests`` (see :meth:`ZeekDouble.subscribe`; :func:`package_subscriptions` gives those of
the package's table scripts), replayed after every hello as the framework does.
:class:`DoubleThread` runs a double on its own event loop, for tests that drive real processes.

Two flavours (:class:`Flavour`): Zeek 7.2+'s own endpoint (the default, as above), and Broker's
endpoint of Zeek 6.0-7.1 (``Broker::listen_websocket``; checked on Zeek 7.0.11 built from
source): the ack names libbroker's version, every event Zeek publishes carries the network-time
metadata, a refused handshake gets no answer at all, errors say ``input #N ...`` (a message
without a topic gets none),
and events are not checked against the declarations on the way in: a mistyped event reaches
Zeek's event engine, which drops it with a reporter error (``reporter_errors`` here) and tells
the client nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ipaddress
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from collector.zeek import brokerjson as bj
from collector.zeek.values import Count, Enum, Interval, Port, Time
from collector.zeek.ztypes import Field, Kind, ZeekType, parse_type

PACKAGE = Path(__file__).resolve().parent.parent / "zeek" / "scripts"

#: zeek-osquery's README example (``bro_init`` renamed ``zeek_init``): it must work unchanged.
README_EXAMPLE_SQL = (
    "SELECT u.username, p.name, l.port from listening_ports l, users u, processes p WHERE l.pid=p.pid "
    "AND p.uid=u.uid and l.address NOT IN ('127.0.0.1', '::1')"
)
README_EXAMPLE = f"""
event host_server_apps(resultInfo: osquery::ResultInfo, username: string, name: string, port_number: int)
  {{ print fmt("[Host %s] User '%s' is running server application '%s' on port %d", resultInfo$host, username, name, port_number); }}
event zeek_init()
  {{ osquery::subscribe([$ev=host_server_apps, $query="{README_EXAMPLE_SQL}"]); }}
"""
README_EXAMPLE_TYPE = "event(resultInfo:osquery::ResultInfo, username:string, name:string, port_number:int)"


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

    def declare_event(self, name: str, type_text: str) -> None:
        """An event a script declares by its handler alone, given as ``type_name()`` spells it."""
        self.events[name] = parse_type(type_text).fields

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


class Flavour(enum.Enum):
    """Whose WebSocket endpoint the double plays."""

    ZEEK = "zeek"  # Zeek 7.2 and newer: Cluster::listen_websocket (checked on 8.2.2)
    BROKER = "broker"  # Zeek 6.0-7.1: Broker::listen_websocket


#: libbroker's version in the ack of Zeek 7.0's Broker endpoint.
BROKER_VERSION = "2.8.0"
#: How many bytes Broker's WebSocket reader (CAF) takes at a time.
BROKER_READ = 2048


@dataclass
class DoubleState:
    """What a restarted double keeps (the package's state_file): the delivery marks; and, for tests,
    the events of batches a closed connection cut off mid-way (the link's documented repeat)."""

    done: dict[str, int] = field(default_factory=dict)
    open: dict[str, int] = field(default_factory=dict)
    cut: list[tuple[str, int, list[bj.Event]]] = field(default_factory=list)


@dataclass(frozen=True)
class ScriptRequest:
    """A request a Zeek script made (osquery::subscribe, execute, join): replayed after each hello."""

    name: str  # osquery::subscribe_v1, execute_v1, join_v1, ...
    args: tuple[Any, ...]  # after zeek_id

    def event(self, zeek_id: str) -> bj.Event:
        return bj.Event(self.name, (zeek_id, *self.args))


def event_type(decls: Declarations, ev_name: str) -> str:
    """``type_name(q$ev)`` of a declared event, as Zeek spells it."""
    return "event(" + ", ".join(f"{f.name}:{f.type}" for f in decls.events[ev_name]) + ")"


def request_record(
    decls: Declarations,
    ev_name: str,
    query: str,
    utype: str = "ADD",
    inter: int = 10,
    cookie: str = "",
    hosts: tuple[str, ...] = ("",),
    groups: tuple[str, ...] = ("",),
) -> list[Any]:
    """An ``osquery::Request`` as the framework's make_request builds it."""
    return [ev_name, event_type(decls, ev_name), query, utype, Count(inter), cookie, list(hosts), list(groups)]


_TABLE_QUERY = re.compile(r'\$ev=(\w+),\s*\$query="([^"]*)",\s*\$utype=(\w+),\s*\$inter=QUERY_INTERVAL', re.S)


def package_subscriptions(decls: Declarations, root: Path = PACKAGE) -> list[ScriptRequest]:
    """The subscriptions the package's table scripts make (osquery/tables), as the framework sends them."""
    out = []
    for path in sorted((root / "osquery" / "tables").glob("*.zeek")):
        for ev, query, utype in _TABLE_QUERY.findall(path.read_text()):
            out.append(
                ScriptRequest("osquery::subscribe_v1", (request_record(decls, f"osquery::{ev}", query, utype, 2),))
            )
    return out


@dataclass
class ZeekDouble:
    decls: Declarations
    subscriptions: list[bj.Event] = field(default_factory=list)  # replayed on collector_hello
    requests: list[ScriptRequest] = field(default_factory=list)  # the scripts' requests, replayed too
    state: DoubleState = field(default_factory=DoubleState)
    zeek_topic: str = "/osquery/zeek/"
    collector_topic: str = "/osquery/collector/"
    host: str = "127.0.0.1"
    port: int = 0
    zeek_id: str = field(default_factory=lambda: "zeek_" + uuid.uuid4().hex[:12])
    delivered: list[bj.Event] = field(default_factory=list)  # every accepted event on zeek_topic
    arrived: list[float] = field(default_factory=list)  # when each of them was accepted (time.time())
    errors_sent: list[tuple[str, str]] = field(default_factory=list)
    repeated_batches: int = 0
    clients: list[ServerConnection] = field(default_factory=list)
    _server: object = None
    collector: ServerConnection | None = None  # the client that said collector_hello last
    slow: float = 0.0  # seconds each message takes (a busy Zeek: batches stay in flight)
    flavour: Flavour = Flavour.ZEEK
    reporter_errors: list[str] = field(default_factory=list)  # Broker flavour: events Zeek's engine refused
    # Broker flavour: sizes of frames after the ack that Broker's reader could take together with
    # the next (a payload under 2,048 bytes; Zeek 7.0.11 then drops the connection now and then).
    short_frames: list[int] = field(default_factory=list)
    _batches: dict[int, tuple[str, int, list[bj.Event]]] = field(default_factory=dict)  # open batch per connection
    _n: int = 0
    _node: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> None:
        pings = 5 if self.flavour is Flavour.ZEEK else None  # Zeek 7.2+ closes a client that misses a pong
        self._server = await serve(
            self._handle, self.host, self.port, process_request=self._check_uri, max_size=None, ping_interval=pings
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

    def _outgoing(self, ev: bj.Event) -> str:
        """An event Zeek publishes: Zeek 6.0-7.x attach the network time to every one."""
        if self.flavour is Flavour.BROKER:
            ev = bj.Event(ev.name, ev.args, ((1, Time.from_seconds(time.time())),))
        return bj.encode_event(self.collector_topic, ev)

    async def _publish(self, ws: ServerConnection, name: str, *args: object) -> None:
        await ws.send(self._outgoing(bj.Event(name, args)))

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
            valid = isinstance(topics, list) and all(isinstance(t, str) for t in topics)
            if not valid and self.flavour is Flavour.BROKER:
                async for _ in ws:  # Zeek 7.0.11: no ack, no error, no close; all that follows is ignored
                    pass
                return
            if not isinstance(topics, list):
                await self._error(ws, "deserialization_failed", "subscriptions not an array")
                async for _ in ws:  # dead: everything later is ignored
                    pass
                return
            if not valid:
                await self._error(ws, "deserialization_failed", "individual subscription not a string")
                async for _ in ws:
                    pass
                return
            if self.flavour is Flavour.BROKER:
                await self._send(ws, {"type": "ack", "endpoint": self._node, "version": BROKER_VERSION})
            else:
                await self._send(
                    ws, {"type": "ack", "endpoint": f"{self._node}-websocket-{self._n}", "version": "8.2.2"}
                )
            self._n += 1
            n = 0
            async for message in ws:
                n += 1
                if self.flavour is Flavour.BROKER:
                    if len(message) < BROKER_READ:  # with its header the frame is then at most 2,048 bytes
                        self.short_frames.append(len(message))
                    await self._broker_message(ws, message, n)
                else:
                    await self._message(ws, message)
        except Exception:
            return
        finally:
            with contextlib.suppress(ValueError):
                self.clients.remove(ws)
            cut = self._batches.pop(id(ws), None)
            if cut is not None:
                self.state.cut.append(cut)

    async def _message(self, ws: ServerConnection, message: str | bytes) -> None:
        if self.slow:
            await asyncio.sleep(self.slow)
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
        await self._accept(ws, ev)

    async def _broker_message(self, ws: ServerConnection, message: str | bytes, n: int) -> None:
        """One message after the handshake, as Broker's endpoint (Zeek 6.0-7.1) takes it."""
        if self.slow:
            await asyncio.sleep(self.slow)
        try:
            obj = json.loads(message)
        except ValueError:
            await self._error(
                ws,
                "deserialization_failed",
                f"input #{n} contained malformed JSON -> caf::pec::unexpected_character(1, 1)",
            )
            return
        if not isinstance(obj, dict):
            await self._error(ws, "deserialization_failed", f"input #{n} contained invalid data")
            return
        if not isinstance(obj.get("topic"), str):
            return  # Zeek 7.0.11: dropped without a reply
        try:
            topic, value = bj.decode_client_message(obj)
        except bj.DecodeError:
            await self._error(ws, "deserialization_failed", f"input #{n} contained invalid data")
            return
        if not topic.startswith(self.zeek_topic):
            return
        # Broker delivers it; Zeek's event engine checks it against the declaration and drops a
        # mismatch with a reporter error, telling the client nothing.
        ev = bj.event_from_value(value)
        if ev is None or ev.name not in self.decls.events:
            self.reporter_errors.append(f"Failed to lookup handler for '{ev.name if ev else value!r}'")
            return
        params = self.decls.events[ev.name]
        try:
            if len(params) != len(ev.args):
                raise Mismatch(f"{ev.name}: {len(ev.args)} arguments, {len(params)} declared")
            for param, arg in zip(params, ev.args, strict=True):
                check(arg, param.type, self.decls, f"{ev.name}({param.name})")
        except Mismatch as e:
            self.reporter_errors.append(f"Unserialize error for event '{ev.name}': {e}")
            return
        await self._accept(ws, ev)

    async def _accept(self, ws: ServerConnection, ev: bj.Event) -> None:
        """An event that reached the package's handlers."""
        self.delivered.append(ev)
        self.arrived.append(time.time())
        current = self._batches.get(id(ws))
        if current is not None and not ev.name.endswith("_v1"):
            current[2].append(ev)
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
                {h: Count(s) for h, s in self.state.open.items()},
            )
            for sub in self.subscriptions:
                await ws.send(self._outgoing(sub))
            for req in self.requests:
                await ws.send(self._outgoing(req.event(self.zeek_id)))
            count = len(self.subscriptions) + len(self.requests)
            await self._publish(ws, "osquery::sync_done_v1", self.zeek_id, Count(count))
            self.collector = ws
        elif name == "osquery::state_query_v1":
            await self._publish(
                ws,
                "osquery::state_v1",
                self.zeek_id,
                {h: Count(s) for h, s in self.state.done.items()},
                {h: Count(s) for h, s in self.state.open.items()},
            )
        elif name == "osquery::batch_begin_v1":
            host, seq = args[0], int(args[1])  # type: ignore[call-overload]
            if seq <= self.state.done.get(host, 0):  # type: ignore[arg-type]
                self.repeated_batches += 1
            self.state.open[host] = seq  # type: ignore[index]
            self._batches[id(ws)] = (host, seq, [])  # type: ignore[assignment]
        elif name == "osquery::batch_end_v1":
            host, seq = args[0], int(args[1])  # type: ignore[call-overload]
            self.state.done[host] = max(seq, self.state.done.get(host, 0))  # type: ignore[index, arg-type]
            if self.state.open.get(host) == seq:  # type: ignore[call-overload]
                del self.state.open[host]  # type: ignore[arg-type]
            self._batches.pop(id(ws), None)
            await self._publish(ws, "osquery::batch_ack_v1", self.zeek_id, host, Count(seq))

    async def request(self, req: ScriptRequest, *, keep: bool = True) -> None:
        """A script's request made now: kept for replays (subscribe, join) and sent if a collector is there."""
        if keep:
            self.requests.append(req)
        if self.collector is not None:
            with contextlib.suppress(Exception):
                await self.collector.send(self._outgoing(req.event(self.zeek_id)))

    async def unsubscribe(self, subscribe: ScriptRequest) -> None:
        self.requests.remove(subscribe)
        await self.request(ScriptRequest("osquery::unsubscribe_v1", subscribe.args), keep=False)

    def row_events(self, name: str) -> list[bj.Event]:
        return [e for e in self.delivered if e.name == name]


class DoubleThread:
    """A :class:`ZeekDouble` served by its own event loop in a thread; restartable on the same port."""

    def __init__(self, decls: Declarations | None = None, **kwargs: Any) -> None:
        if decls is None:
            decls = Declarations()
            decls.add_package()
        self.decls = decls
        self.kwargs = kwargs
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="zeek-double", daemon=True)
        self.thread.start()
        self.double: ZeekDouble | None = None
        self.earlier: list[bj.Event] = []  # what the doubles before a restart accepted

    def call(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` on the double's loop (awaited if it returns a coroutine); its result."""

        async def run() -> Any:
            result = fn()
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(30)

    def start(self, **kwargs: Any) -> ZeekDouble:
        double = ZeekDouble(self.decls, **{**self.kwargs, **kwargs})
        self.call(double.start)
        self.double = double
        return double

    def restart(self, *, abort: bool = False) -> ZeekDouble:
        """Stop and start again on the same port, with the delivery marks and the scripts' requests.

        ``abort``: the connections are reset at once (what Zeek had not read yet is lost), as when
        Zeek dies; otherwise the double reads what was sent before it closes, as a graceful stop."""
        old = self.double
        assert old is not None
        if abort:
            self.call(lambda: _abort_all(old))
        self.call(old.stop)
        self.call(lambda: _close_all(old))
        self.earlier.extend(old.delivered)
        return self.start(port=old.port, state=old.state, requests=list(old.requests))

    @property
    def url(self) -> str:
        assert self.double is not None
        return self.double.url

    def snapshot(self) -> list[bj.Event]:
        """Every event the running double accepted so far (a copy)."""
        assert self.double is not None
        double = self.double
        return self.call(lambda: list(double.delivered))

    def everything(self) -> list[bj.Event]:
        """Every event accepted by this double and the ones before its restarts."""
        return self.earlier + self.snapshot()

    def close(self) -> None:
        if self.double is not None:
            double = self.double
            with contextlib.suppress(Exception):
                self.call(double.stop)
                self.call(lambda: _close_all(double))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


async def _abort_all(double: ZeekDouble) -> None:
    for ws in list(double.clients):
        ws.transport.abort()


async def _close_all(double: ZeekDouble) -> None:
    for ws in list(double.clients):
        with contextlib.suppress(Exception):
            await ws.close(1001, "Terminating")
