"""The attribution engine: host rows in, answers about Zeek connections out.

Pure: no I/O, no clock of its own (every call that needs time is given it), bounded
(per-host limits, a host limit, expiry by age) and counted (every refused row, eviction,
expiry and answer).  The collector feeds it from its result outbox and persists
:meth:`AttributionEngine.to_state`; the offline command restores that state and asks.

For one side of a connection the engine first finds the host owning that end's address
(one host, else NO_AGENT or AMBIGUOUS), then the best kind of evidence that host gave, in
order, stopping at the first kind that has any:

originator (local end orig_h:orig_p, remote end resp_h:resp_p)
  1. a connect event to resp_h:resp_p from local port orig_p        -> SOCKET_EVENT
  2. an open-socket row orig_p <-> resp_h:resp_p (UDP: bound orig_p) -> OPEN_SOCKET
  3. the connects to resp_h:resp_p around ts whose local port the
     host could not read                                             -> SOCKET_EVENT_TIME
     ("around": within clock_skew, or, once exact matches taught the engine how the
     host's clock relates to Zeek's, within that learned offset and spread)
responder (local end resp_h:resp_p, remote end orig_h:orig_p)
  1. an accept event whose peer is orig_h:orig_p                     -> SOCKET_EVENT
  2. an open-socket row resp_p <-> orig_h:orig_p                     -> OPEN_SOCKET
  3. a listening socket on resp_p (the address or a wildcard)       -> LISTENING_PORT
  4. a bind event on resp_p                                          -> BIND_EVENT

If the evidence of that kind points at more than one process, the answer is AMBIGUOUS.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from protocol.community_id import PROTO_SCTP, PROTO_TCP, PROTO_UDP, community_id

from .addresses import is_wildcard, listen_score, normal, owned_network
from .hoststate import SLACK, HostLimits, HostState, ProcessView, iter_window
from .model import (
    Action,
    Attribution,
    Connection,
    Method,
    Reason,
    Side,
    SideAttribution,
    Table,
    UserConnection,
)
from .records import (
    EVENT_PRECISION,
    Proc,
    RowRefused,
    Sock,
    SockKind,
    event_time,
    facts_from,
    snapshot_socket,
    socket_event,
    to_int,
    to_text,
)

__all__ = ["STATE_VERSION", "AttributionEngine", "EngineConfig", "EngineStats", "StateError"]

STATE_VERSION = 1
#: Transport protocols whose connections sockets describe (socket rows carry their ports).
SOCKET_PROTOCOLS = frozenset({PROTO_TCP, PROTO_UDP, PROTO_SCTP})


class StateError(ValueError):
    """A persisted state that cannot be restored (wrong version or shape)."""


@dataclass(frozen=True)
class EngineConfig:
    """Tunables.  Times are seconds."""

    #: History kept: events older than this, and rows gone longer ago, are forgotten.
    max_age: float = 3600.0
    #: How far a host's clock and Zeek's may disagree.
    clock_skew: float = 1.0
    #: How long after the first packet a server may accept (listen backlog).
    accept_delay: float = 60.0
    #: Added to twice a host's learned clock spread when matching connects by time alone.
    time_margin: float = 0.002
    #: Hosts tracked at most; the one not heard from longest goes first.
    max_hosts: int = 10_000
    host_limits: HostLimits = field(default_factory=HostLimits)


@dataclass(frozen=True)
class EngineStats:
    """Sizes and counters: ingested/refused rows per table and reason, evictions,
    expiry, answers per side and method or reason."""

    hosts: int
    events: int
    snapshot_sockets: int
    processes: int
    addresses: int
    counters: Mapping[str, int]


def _compatible(sock: Sock, proto: int) -> bool:
    return sock.protocol in (0, proto)


def _identity(sock: Sock) -> tuple[Any, ...]:
    """Which process a socket row stands for (distinct identities make an answer ambiguous)."""
    facts = sock.facts
    return (facts.pid, round(facts.start) if facts.start is not None else None, facts.path)


def _describe(sock: Sock) -> str:
    path = sock.facts.path or "?"
    return f"pid {sock.facts.pid} ({path})"


class AttributionEngine:
    """Per-host process-socket state and the lookups over it."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self.hosts: dict[str, HostState] = {}
        self.counters: Counter[str] = Counter()
        self._owners: dict[str, set[str]] = {}  # address -> host ids that reported it
        self._networks: dict[str, tuple[Any, set[str]]] = {}  # loopback network -> (network, host ids)
        self._heard: dict[str, float] = {}  # host id -> last time it gave rows

    # -- hosts and addresses ----------------------------------------------------------------
    def host(self, host_id: str, *, hostname: str | None = None) -> HostState:
        host = self.hosts.get(host_id)
        if host is None:
            while len(self.hosts) >= self.config.max_hosts:
                oldest = min(self.hosts, key=lambda h: self._heard.get(h, 0.0))
                self.forget_host(oldest)
                self.counters["evicted_hosts"] += 1
            host = self.hosts[host_id] = HostState(host_id, self.config.host_limits, self.counters)
        if hostname:
            host.hostname = hostname
        return host

    def forget_host(self, host_id: str) -> None:
        host = self.hosts.pop(host_id, None)
        self._heard.pop(host_id, None)
        if host is None:
            return
        for address in host.addresses:
            self._unindex_address(host_id, address)

    def set_host(self, host_id: str, *, hostname: str | None = None, addresses: Iterable[str] = (), now: float) -> None:
        """What an agent says of itself when it connects (hostname, addresses)."""
        host = self.host(host_id, hostname=hostname)
        self._heard[host_id] = now
        for address in addresses:
            text, _, mask = str(address).partition("/")
            self._add_address(host, text, mask or None, now)

    def _add_address(self, host: HostState, text: str, mask: object, now: float) -> None:
        address = normal(text)
        if address is None or is_wildcard(address):
            self.counters["refused_interface_addresses:no address"] += 1
            return
        network = owned_network(address, mask)
        record = host.addresses.get(address)
        if record is None:
            host.addresses[address] = [now, None, str(network) if network is not None else None]
        else:
            record[1] = None
            if network is not None:
                record[2] = str(network)
        self._index_address(host.host_id, address, host.addresses[address][2])

    def _index_address(self, host_id: str, address: str, network: str | None) -> None:
        self._owners.setdefault(address, set()).add(host_id)
        if network is not None:
            entry = self._networks.get(network)
            if entry is None:
                entry = self._networks[network] = (ipaddress.ip_network(network), set())
            entry[1].add(host_id)

    def _unindex_address(self, host_id: str, address: str) -> None:
        owners = self._owners.get(address)
        if owners is not None:
            owners.discard(host_id)
            if not owners:
                del self._owners[address]
        for network, (_, hosts) in list(self._networks.items()):
            host = self.hosts.get(host_id)
            if host_id in hosts and (host is None or all(r[2] != network for r in host.addresses.values())):
                hosts.discard(host_id)
                if not hosts:
                    del self._networks[network]

    def owners(self, address: str, ts: float) -> list[str]:
        """Host ids that owned ``address`` at ``ts`` (sorted)."""
        found = set(self._owners.get(address, ()))
        if self._networks:
            ip = _loopback(address)
            if ip is not None:
                for network, hosts in self._networks.values():
                    if ip.version == network.version and ip in network:
                        found |= hosts
        result = []
        for host_id in found:
            host = self.hosts.get(host_id)
            if host is None:
                continue
            record = host.addresses.get(address)
            if record is not None and record[1] is not None and record[1] < ts - self.config.clock_skew:
                continue  # gone before the connection
            result.append(host_id)
        return sorted(result)

    # -- ingest ---------------------------------------------------------------------------
    def ingest(
        self,
        host_id: str,
        table: Table,
        rows: Iterable[tuple[Action, Mapping[str, Any]]],
        now: float,
        *,
        hostname: str | None = None,
    ) -> int:
        """Learn from one result batch of ``table`` taken on the host at ``now`` (its clock).

        A batch of SNAPSHOT rows is the whole table: what it lacks is gone.  Returns how
        many rows were used; refused rows are counted as ``refused_<table>:<reason>``.
        """
        host = self.host(host_id, hostname=hostname)
        self._heard[host_id] = now
        rows = list(rows)
        used = 0
        snapshot_keys: set[Any] = set()
        for action, row in rows:
            try:
                key = self._apply(host, table, action, row, now)
            except RowRefused as exc:
                self.counters[f"refused_{table.value}:{exc}"] += 1
                continue
            used += 1
            if action is Action.SNAPSHOT and key is not None:
                snapshot_keys.add(key)
        self.counters[f"ingested_{table.value}"] += used
        if rows and all(action is Action.SNAPSHOT for action, _ in rows):
            self._end_snapshot(host, table, snapshot_keys, now)
        return used

    def _apply(self, host: HostState, table: Table, action: Action, row: Mapping[str, Any], now: float) -> Any:
        removed = action is Action.REMOVED
        if table is Table.SOCKET_EVENTS:
            if not removed:
                host.add_event(socket_event(row))
            return None
        if table is Table.PROCESS_EVENTS:
            if not removed:
                t, precision = event_time(row)
                facts = facts_from(row)
                host.add_proc(
                    Proc(
                        facts.pid,
                        t,
                        precision,
                        True,
                        facts.start,
                        facts.path,
                        facts.cmdline,
                        facts.uid,
                        facts.parent,
                        facts.container_id,
                    )
                )
            return None
        if table in (Table.PROCESS_OPEN_SOCKETS, Table.LISTENING_PORTS):
            kind = SockKind.OPEN if table is Table.PROCESS_OPEN_SOCKETS else SockKind.LISTEN
            sock = snapshot_socket(row, kind, now)
            assert sock.key is not None
            if removed:
                host.remove_snapshot_row(sock.key, now)
            else:
                host.add_snapshot_row(sock)
            return sock.key
        if table is Table.PROCESSES:
            facts = facts_from(row)
            start = facts.start
            key = (facts.pid, start, facts.path, facts.cmdline, facts.uid, facts.parent)
            if removed:
                self._process_ended(host, key, now)
            elif key not in host.proc_rows:
                begin = start if start is not None else now
                host.add_proc(
                    Proc(
                        facts.pid,
                        begin,
                        SECOND if start is not None else 0.0,
                        False,
                        start,
                        facts.path,
                        facts.cmdline,
                        facts.uid,
                        facts.parent,
                        facts.container_id,
                        row_key=key,
                    )
                )
            return key
        if table is Table.INTERFACE_ADDRESSES:
            address = normal(row.get("address"))
            if address is None or is_wildcard(address):
                raise RowRefused("no address")
            if removed:
                record = host.addresses.get(address)
                if record is not None:
                    record[1] = now
            else:
                self._add_address(host, address, to_text(row.get("mask")), now)
            return address
        if table is Table.USERS:
            uid, name = to_int(row.get("uid")), to_text(row.get("username"))
            if uid is None or name is None:
                raise RowRefused("no uid or username")
            if removed:
                host.users.pop(uid, None)
            else:
                host.users[uid] = name
            return uid
        raise RowRefused("unknown table")  # pragma: no cover - Table is closed

    def _process_ended(self, host: HostState, key: tuple[Any, ...], now: float) -> None:
        if not host.remove_proc_row(key, now):
            return
        pid, start = key[0], key[1]
        for proc in host.procs.get(pid, ()):
            if proc.until is None and proc.from_exec and (start is None or proc.begin >= start - SLACK):
                proc.until = now  # the exec images of that incarnation ended with it

    def _end_snapshot(self, host: HostState, table: Table, present: set[Any], now: float) -> None:
        if table in (Table.PROCESS_OPEN_SOCKETS, Table.LISTENING_PORTS):
            name = (SockKind.OPEN if table is Table.PROCESS_OPEN_SOCKETS else SockKind.LISTEN).value
            for key in host.snapshot_keys(name):
                if key not in present:
                    host.remove_snapshot_row(key, now)
        elif table is Table.PROCESSES:
            for key in [k for k in host.proc_rows if k not in present]:
                self._process_ended(host, key, now)
        elif table is Table.INTERFACE_ADDRESSES:
            for address, record in host.addresses.items():
                if address not in present and record[1] is None:
                    record[1] = now
        elif table is Table.USERS:
            for uid in [u for u in host.users if u not in present]:
                del host.users[uid]

    # -- expiry ---------------------------------------------------------------------------
    def expire(self, now: float) -> int:
        """Forget what is older than ``max_age``; returns how many entries went."""
        cutoff = now - self.config.max_age
        dropped = 0
        for host in list(self.hosts.values()):
            gone_before = [a for a, r in host.addresses.items() if r[1] is not None and r[1] < cutoff]
            dropped += host.expire(cutoff)
            for address in gone_before:
                self._unindex_address(host.host_id, address)
        self.counters["expired"] += dropped
        return dropped

    # -- lookups --------------------------------------------------------------------------
    def attribute(self, conn: Connection) -> Attribution:
        """Both sides of ``conn``, from what the hosts reported."""
        self.counters["lookups"] += 1
        orig = self._side(conn, Side.ORIG)
        resp = self._side(conn, Side.RESP)
        for answer in (orig, resp):
            outcome = answer.method.value if answer.method is not None else answer.reason.value  # type: ignore[union-attr]
            self.counters[f"{answer.side.value}:{outcome}"] += 1
        return Attribution(conn, conn.community_id, orig, resp)

    def _side(self, conn: Connection, side: Side) -> SideAttribution:
        address = conn.orig_h if side is Side.ORIG else conn.resp_h
        owners = self.owners(address, conn.ts)
        if not owners:
            return SideAttribution(side, reason=Reason.NO_AGENT, detail=f"no agent reports {address}")
        if len(owners) > 1:
            return SideAttribution(
                side,
                reason=Reason.AMBIGUOUS,
                candidates=tuple(owners),
                detail=f"{len(owners)} hosts report {address}: " + ", ".join(owners),
            )
        host = self.hosts[owners[0]]
        if conn.proto not in SOCKET_PROTOCOLS:
            return SideAttribution(
                side,
                reason=Reason.NO_SOCKET,
                host_id=host.host_id,
                hostname=host.hostname,
                detail=f"{conn.proto_name} has no ports: no socket rows describe it",
            )
        levels = self._orig_levels(host, conn) if side is Side.ORIG else self._resp_levels(host, conn)
        for method, socks in levels:
            if not socks:
                continue
            identities: dict[tuple[Any, ...], Sock] = {}
            for sock in socks:
                identities.setdefault(_identity(sock), sock)
            if len(identities) > 1:
                described = [_describe(s) for s in identities.values()]
                return SideAttribution(
                    side,
                    reason=Reason.AMBIGUOUS,
                    host_id=host.host_id,
                    hostname=host.hostname,
                    candidates=tuple(described),
                    detail=f"{len(described)} processes fit ({method.value}): " + ", ".join(described),
                )
            sock = socks[0]
            if side is Side.ORIG and method is Method.SOCKET_EVENT and sock.precision <= EVENT_PRECISION:
                host.learn_offset(conn.ts - sock.t)  # this host's clock, as Zeek's sees it
            if sock.kind.is_event:
                view = host.resolve(sock.facts, sock.t, sock.precision)
            else:
                view = host.resolve(sock.facts, conn.ts)
            return self._answer(side, host, method, view)
        return SideAttribution(
            side,
            reason=Reason.NO_SOCKET,
            host_id=host.host_id,
            hostname=host.hostname,
            detail=f"{host.hostname or host.host_id} reported no socket for this connection",
        )

    def _answer(self, side: Side, host: HostState, method: Method, view: ProcessView) -> SideAttribution:
        common: dict[str, Any] = {
            "host_id": host.host_id,
            "hostname": host.hostname,
            "pid": view.pid,
            "process_start": view.start,
            "path": view.path,
            "cmdline": view.cmdline,
            "uid": view.uid,
            "username": host.users.get(view.uid) if view.uid is not None else None,
            "parent": view.parent,
            "container_id": view.container_id,
        }
        if not view.described:
            return SideAttribution(
                side,
                reason=Reason.PROCESS_GONE,
                detail=f"pid {view.pid} ended before any snapshot or exec event described it ({method.value})",
                **common,
            )
        return SideAttribution(side, method=method, **common)

    def _near(self, ts: float) -> tuple[float, float]:
        return ts - self.config.clock_skew, ts + self.config.clock_skew

    def _orig_levels(self, host: HostState, conn: Connection) -> Iterator[tuple[Method, list[Sock]]]:
        ts, proto = conn.ts, conn.proto
        lo, hi = self._near(ts)
        history = ts - self.config.max_age
        key = (conn.resp_h, conn.resp_p, conn.orig_p)
        exact = [s for s in host.connect_exact.get(key, ()) if _compatible(s, proto)]
        near = list(iter_window(exact, lo, hi))
        if not near:  # the connect came earlier (Zeek joined late, or a long connection): the latest one
            before = [s for s in exact if history <= s.t <= lo]
            near = before[-1:]
        window, precise = (lo, hi), 0.0
        estimate = host.clock_estimate()
        if estimate is not None:  # the host's clock learned from exact matches: a tight window
            offset, spread = estimate
            half = min(2 * spread + self.config.time_margin, self.config.clock_skew)  # twice what was seen
            window, precise = (ts - offset - half, ts - offset + half), EVENT_PRECISION
        candidates = host.connect_remote.get((conn.resp_h, conn.resp_p), ())
        unknown_port = [
            s
            for s in iter_window(candidates, *window, precise=precise)
            if s.local_port is None and _compatible(s, proto)
        ]
        if near and estimate is not None and unknown_port and not list(iter_window(near, *window, precise=precise)):
            # The port matches an earlier connect only, and a connect whose port the host could not read
            # fits the connection's time: a 4-tuple used again (loopback reuses TIME_WAIT ports at once)
            # is as likely as a clock that drifted.  Both are candidates: never the older one on its own.
            near = near + unknown_port
        yield Method.SOCKET_EVENT, near
        opened = [
            s
            for s in host.open_index.get((conn.orig_p, conn.resp_h, conn.resp_p), ())
            if _compatible(s, proto) and self._alive(s, ts)
        ]
        if not opened and proto == PROTO_UDP:  # unconnected UDP sockets send from their bound port
            opened = self._listening(host, conn.orig_p, conn.orig_h, proto, ts)
        yield Method.OPEN_SOCKET, opened
        yield Method.SOCKET_EVENT_TIME, unknown_port

    def _resp_levels(self, host: HostState, conn: Connection) -> Iterator[tuple[Method, list[Sock]]]:
        ts, proto = conn.ts, conn.proto
        lo, hi = self._near(ts)
        accepts = [
            s
            for s in host.accepts.get((conn.orig_h, conn.orig_p), ())
            if _compatible(s, proto) and s.local_port in (None, conn.resp_p)
        ]
        near = list(iter_window(accepts, lo, hi))
        if not near:  # accepted later (a full backlog): the first accept after
            later = [s for s in accepts if hi < s.t <= hi + self.config.accept_delay]
            near = later[:1]
        yield Method.SOCKET_EVENT, near
        yield (
            Method.OPEN_SOCKET,
            [
                s
                for s in host.open_index.get((conn.resp_p, conn.orig_h, conn.orig_p), ())
                if _compatible(s, proto) and self._alive(s, ts)
            ],
        )
        yield Method.LISTENING_PORT, self._listening(host, conn.resp_p, conn.resp_h, proto, ts)
        binds = [
            s
            for s in host.binds.get(conn.resp_p, ())
            if _compatible(s, proto)
            and s.t - s.precision <= hi
            and s.t >= ts - self.config.max_age
            and host.alive_at(s.facts.pid, ts)
        ]
        yield Method.BIND_EVENT, _best_bound(binds, conn.resp_h)

    def _alive(self, sock: Sock, ts: float) -> bool:
        """A snapshot row covers ``ts``: seen before it ended (and not long before it began)."""
        if sock.until is not None and sock.until < ts - self.config.clock_skew:
            return False
        return sock.t - self.config.max_age <= ts

    def _listening(self, host: HostState, port: int, address: str, proto: int, ts: float) -> list[Sock]:
        socks = [s for s in host.listen_index.get(port, ()) if _compatible(s, proto) and self._alive(s, ts)]
        return _best_bound(socks, address)

    # -- views ----------------------------------------------------------------------------
    def user_connections(self, since: float | None = None) -> Iterator[UserConnection]:
        """Every connect the hosts reported (since ``since``), with process and user."""
        for host in self.hosts.values():
            for sock in host.events:
                if sock.kind is not SockKind.CONNECT or (since is not None and sock.t < since):
                    continue
                yield self.user_connection(host, sock)

    def user_connection(self, host: HostState, sock: Sock) -> UserConnection:
        view = host.resolve(sock.facts, sock.t, sock.precision)
        assert sock.remote_addr is not None and sock.remote_port is not None
        cid = None
        local = sock.local_addr
        if sock.protocol in (PROTO_TCP, PROTO_UDP) and sock.local_port and local and not is_wildcard(local):
            try:
                cid = community_id(sock.protocol, local, sock.remote_addr, sock.local_port, sock.remote_port)
            except ValueError:
                cid = None
        return UserConnection(
            ts=sock.t,
            host_id=host.host_id,
            hostname=host.hostname,
            pid=view.pid,
            path=view.path,
            cmdline=view.cmdline,
            uid=view.uid,
            username=host.users.get(view.uid) if view.uid is not None else None,
            local_address=sock.local_addr if not is_wildcard(sock.local_addr) else None,
            local_port=sock.local_port,
            remote_address=sock.remote_addr,
            remote_port=sock.remote_port,
            protocol=sock.protocol,
            community_id=cid,
        )

    # -- introspection and persistence ----------------------------------------------------
    def stats(self) -> EngineStats:
        totals: Counter[str] = Counter()
        for host in self.hosts.values():
            totals.update(host.sizes())
        return EngineStats(
            hosts=len(self.hosts),
            events=totals["events"],
            snapshot_sockets=totals["snapshot_sockets"],
            processes=totals["processes"],
            addresses=totals["addresses"],
            counters=dict(self.counters),
        )

    def to_state(self) -> dict[str, Any]:
        """Everything needed to answer again after a restart, as plain lists and dicts."""
        return {
            "version": STATE_VERSION,
            "hosts": [host.to_state() for host in self.hosts.values()],
            "heard": dict(self._heard),
            "counters": dict(self.counters),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], config: EngineConfig | None = None) -> AttributionEngine:
        if not isinstance(state, Mapping) or state.get("version") != STATE_VERSION:
            version = state.get("version") if isinstance(state, Mapping) else type(state).__name__
            raise StateError(f"attribution state version {version!r}, expected {STATE_VERSION}")
        engine = cls(config)
        try:
            engine.counters.update({str(k): int(v) for k, v in state.get("counters", {}).items()})
            for data in state.get("hosts", []):
                host = HostState.from_state(data, engine.config.host_limits, engine.counters)
                engine.hosts[host.host_id] = host
                for address, record in host.addresses.items():
                    engine._index_address(host.host_id, address, record[2])
            engine._heard = {str(k): float(v) for k, v in state.get("heard", {}).items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"attribution state is malformed: {exc!r}") from exc
        return engine


SECOND = 0.5  # a processes row's start_time is whole seconds


@lru_cache(maxsize=4096)
def _loopback(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    ip = ipaddress.ip_address(address)
    return ip if ip.is_loopback else None


def _best_bound(socks: list[Sock], address: str) -> list[Sock]:
    """The sockets bound most specifically to ``address`` (see addresses.listen_score)."""
    scored = [(listen_score(s.local_addr, address), s) for s in socks]
    best = max((score for score, _ in scored), default=0)
    return [s for score, s in scored if score == best and score > 0]
