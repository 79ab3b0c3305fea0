"""The collector's core: which agents are connected, admission, subscriptions, one-time queries.

:class:`Fleet` knows nothing of WebSockets: a connection (collector/agents.py) is a
:class:`Link`.  Operators, the config and (later) Zeek endpoints use the same calls:
:meth:`Fleet.put_subscription`, :meth:`Fleet.remove_subscription`, :meth:`Fleet.execute`,
:meth:`Fleet.revoke`, :meth:`Fleet.hosts`.  Every change of what a host should run is
pushed to it at once if it is connected, and reconciled at its next hello otherwise.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import ipaddress
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from protocol.errors import ErrorCode
from protocol.messages import ByeReason, ExecuteResult, Hello, Value, Welcome
from protocol.operator import HostQueryStatus, Targets

from .config import Limits
from .model import Host, HostFacts, HostQuery, Lease, Subscription
from .registry import Registry, RegistryError
from .store import Store

__all__ = ["Fleet", "HostAnswer", "HostRows", "Link", "QueryRun", "Refusal", "SubnetGroups", "subnet_membership"]

log = logging.getLogger(__name__)

#: How long a lease lasts without renewal (connected hosts are renewed every third of it).
LEASE_TTL = 90.0


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: group -> the address ranges whose hosts are in it (Zeek's ``osquery::join``).
SubnetGroups = Mapping[str, tuple[Network, ...]]


def subnet_membership(addresses: Iterable[str], groups: SubnetGroups) -> frozenset[str]:
    """The groups whose ranges hold one of ``addresses`` (text as agents report it; a zone index is ignored)."""
    parsed = []
    for text in addresses:
        try:
            parsed.append(ipaddress.ip_address(text.split("%", 1)[0]))
        except ValueError:
            continue
    return frozenset(
        group
        for group, ranges in groups.items()
        if any(a in r for a in parsed for r in ranges if a.version == r.version)
    )


class Refusal(Exception):
    """An agent is not admitted: sent as ``error`` with this code, then the connection closes."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class Link(Protocol):
    """A connected agent, as the core sees it."""

    host_id: str
    hostname: str
    #: Host-side subscription ids the agent runs (from its hello, then what was sent to it).
    running: set[str]

    def subscribe(self, query_id: str, name: str, query: HostQuery) -> None: ...
    def unsubscribe(self, query_id: str) -> None: ...
    def execute(self, run: QueryRun) -> None: ...
    def close(self, reason: ByeReason, message: str) -> None: ...


@dataclass(frozen=True, slots=True)
class HostRows:
    """Rows of one host's answer to a one-time query (more may follow)."""

    host_id: str
    hostname: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Value, ...], ...]


@dataclass(frozen=True, slots=True)
class HostAnswer:
    """How one host ended a one-time query."""

    host_id: str
    hostname: str
    status: HostQueryStatus
    rows: int
    message: str = ""


class QueryRun:
    """One one-time query across hosts: parts come in from links, events go out in arrival order."""

    def __init__(self, query_id: str, sql: str, timeout: float) -> None:
        self.query_id = query_id
        self.sql = sql
        self.timeout = timeout
        self.waiting: dict[str, str] = {}  # host_id -> hostname, of hosts still answering
        self.counts: dict[str, int] = {}
        self._events: asyncio.Queue[HostRows | HostAnswer] = asyncio.Queue()

    def expect(self, host_id: str, hostname: str) -> None:
        self.waiting[host_id] = hostname
        self.counts[host_id] = 0

    def answer(self, answer: HostAnswer) -> None:
        self.waiting.pop(answer.host_id, None)
        self._events.put_nowait(answer)

    def part(self, host_id: str, message: ExecuteResult) -> None:
        """A part of a host's answer (from its link)."""
        hostname = self.waiting.get(host_id)
        if hostname is None:
            return  # after its timeout: too late
        if message.rows:
            self.counts[host_id] += len(message.rows)
            self._events.put_nowait(HostRows(host_id, hostname, message.columns, message.rows))
        if not message.last:
            return
        rows = self.counts[host_id]
        if message.timed_out:
            self.answer(HostAnswer(host_id, hostname, HostQueryStatus.TIMEOUT, rows, message.error or "timed out"))
        elif message.error is not None:
            self.answer(HostAnswer(host_id, hostname, HostQueryStatus.ERROR, rows, message.error))
        else:
            self.answer(HostAnswer(host_id, hostname, HostQueryStatus.ROWS if rows else HostQueryStatus.NO_ROWS, rows))

    def lost(self, host_id: str, why: str) -> None:
        """The host's connection ended before its answer did."""
        hostname = self.waiting.get(host_id)
        if hostname is not None:
            self.answer(HostAnswer(host_id, hostname, HostQueryStatus.ERROR, self.counts[host_id], why))

    async def events(self) -> AsyncIterator[HostRows | HostAnswer]:
        """Rows and answers as they come; hosts still silent at the deadline end with TIMEOUT."""
        deadline = time.monotonic() + self.timeout
        while self.waiting or not self._events.empty():
            left = deadline - time.monotonic()
            try:
                event = self._events.get_nowait() if not self._events.empty() else None
                if event is None:
                    if left <= 0:
                        raise TimeoutError
                    event = await asyncio.wait_for(self._events.get(), left)
            except TimeoutError:
                for host_id, hostname in list(self.waiting.items()):
                    self.answer(
                        HostAnswer(
                            host_id,
                            hostname,
                            HostQueryStatus.TIMEOUT,
                            self.counts[host_id],
                            f"no complete answer within {self.timeout:g} s",
                        )
                    )
                continue
            yield event


class Fleet:
    """Connected agents and everything done to them."""

    def __init__(
        self,
        store: Store,
        *,
        collector_id: str,
        enroll_secret: str,
        limits: Limits,
        versions: tuple[int, ...] = (1,),
    ) -> None:
        self.store = store
        self.collector_id = collector_id
        self._enroll_secret = enroll_secret.encode()
        self.limits = limits
        self.versions = versions
        self.links: dict[str, Link] = {}
        self.leases: dict[str, Lease] = {}
        self._runs: dict[str, QueryRun] = {}
        #: Called with a host id after its subscriptions changed (tests and the Zeek link may listen).
        self.on_change: list[Callable[[str], None]] = []
        #: Subnet groups by source (e.g. a Zeek endpoint's joins), applied to every host now and at each hello.
        self._subnet_groups: dict[str, SubnetGroups] = {}

    # -- admission --------------------------------------------------------------------------

    async def admit(self, link: Link, hello: Hello, version: int) -> tuple[Welcome, Lease]:
        """Check the hello's credential, take the host's lease; the welcome to send.  Raises :class:`Refusal`."""
        facts = HostFacts(
            hello.host_id, hello.hostname, hello.addresses, hello.platform, hello.agent_version, hello.groups
        )
        node_key: str | None = None
        if hello.node_key is not None:
            key = hello.node_key
            verdict = await self.store.call(lambda r: r.authenticate(hello.host_id, key))
            if verdict is None:
                raise Refusal(ErrorCode.REVOKED, f"host {hello.host_id} is revoked")
            if not verdict:
                raise Refusal(ErrorCode.AUTH_FAILED, f"unknown node key for host {hello.host_id}; enroll again")
        else:
            assert hello.enroll_secret is not None
            if not hmac.compare_digest(hello.enroll_secret.encode(), self._enroll_secret):
                raise Refusal(ErrorCode.AUTH_FAILED, "wrong enroll secret")
            try:
                node_key = await self.store.call(lambda r: r.enroll(facts))
            except RegistryError as exc:
                raise Refusal(ErrorCode.REVOKED, str(exc)) from None
            log.info("host %s (%s) enrolled", hello.host_id, hello.hostname)
        if self._subnet_groups:  # before the lease: the connected event carries every group
            await self.store.call(lambda r: self._apply_subnet_groups(r, [(hello.host_id, hello.addresses)]))
        try:
            lease = await self.store.call(
                lambda r: r.acquire(
                    facts, stream=hello.stream, acked_seq=hello.acked_seq, collector_id=self.collector_id, ttl=LEASE_TTL
                )
            )
        except RegistryError as exc:
            raise Refusal(ErrorCode.REVOKED, str(exc)) from None
        old = self.links.get(hello.host_id)
        if old is not None and old is not link:
            old.close(ByeReason.SUPERSEDED, "a newer connection of this host took over")
        self.links[hello.host_id] = link
        self.leases[hello.host_id] = lease
        welcome = Welcome(
            version=version,
            collector_id=self.collector_id,
            node_key=node_key,
            last_seq=lease.last_seq,
            max_frame=self.limits.max_frame,
            max_rate=self.limits.max_rate,
        )
        return welcome, lease

    async def left(self, link: Link, lease: Lease | None) -> None:
        """A connection ended; the host goes offline unless a newer connection took over."""
        if self.links.get(link.host_id) is link:
            del self.links[link.host_id]
            self.leases.pop(link.host_id, None)
        for run in list(self._runs.values()):
            run.lost(link.host_id, "the host disconnected before answering")
        if lease is not None:
            try:
                await self.store.call(lambda r: r.release(lease))
            except Exception as exc:  # noqa: BLE001 - registry closing at shutdown: release_all at the next start
                log.debug("releasing the lease of %s failed: %s", link.host_id, exc)

    async def renew_leases(self) -> None:
        """Extend the leases of connected hosts; a lease lost (revoked, taken over) closes its link."""
        leases = list(self.leases.values())
        lost: list[Lease] = []
        for start in range(0, len(leases), 200):  # small transactions: results commits go in between
            chunk = leases[start : start + 200]
            lost.extend(await self.store.call(functools.partial(Registry.renew, leases=chunk, ttl=LEASE_TTL)))
        for lease in lost:
            link = self.links.get(lease.host_id)
            if link is not None and self.leases.get(lease.host_id) == lease:
                link.close(ByeReason.SUPERSEDED, "the host's lease was lost")

    # -- subscriptions ----------------------------------------------------------------------

    async def reconcile(self, host_ids: Iterable[str] | None = None) -> None:
        """Make connected hosts run what the registry says: subscribe what is missing, unsubscribe the rest."""
        links = {h: self.links[h] for h in (self.links if host_ids is None else host_ids) if h in self.links}
        if not links:
            return
        wanted = await self.store.call(lambda r: {h: r.wanted(h, link.hostname) for h, link in links.items()})
        for host_id, link in links.items():
            if self.links.get(host_id) is not link:
                continue  # gone meanwhile
            want = wanted[host_id]
            for query_id in sorted(link.running - set(want)):
                link.unsubscribe(query_id)
            for query_id, (query, name) in want.items():
                if query_id not in link.running:
                    link.subscribe(query_id, name, query)
            for callback in self.on_change:
                callback(host_id)

    async def put_subscription(
        self, owner: str, name: str, query: HostQuery, targets: Targets, route: str = ""
    ) -> Subscription:
        sub = await self.store.call(lambda r: r.put_subscription(owner, name, query, targets, route))
        await self.reconcile()
        return sub

    async def remove_subscription(self, owner: str, name: str) -> Subscription | None:
        sub = await self.store.call(lambda r: r.remove_subscription(owner, name))
        if sub is not None:
            await self.reconcile()
        return sub

    async def subscriptions(self, owner: str | None = None) -> list[Subscription]:
        return await self.store.call(lambda r: r.subscriptions(owner))

    async def sync_owner(self, owner: str, wanted: Iterable[tuple[str, HostQuery, Targets, str]]) -> None:
        """Make ``owner``'s subscriptions exactly ``wanted`` (name, query, targets, route), e.g. a config at start-up
        or a Zeek endpoint's full set after it (re)connected; unchanged ones keep their id and state."""
        wanted = list(wanted)
        names = {item[0] for item in wanted}

        def sync(registry: Registry) -> None:
            for sub in registry.subscriptions(owner):
                if sub.name not in names:
                    registry.remove_subscription(owner, sub.name)
            for name, query, targets, route in wanted:
                registry.put_subscription(owner, name, query, targets, route)

        await self.store.call(sync)
        await self.reconcile()

    async def set_subnet_groups(self, source: str, groups: SubnetGroups) -> None:
        """Hosts with an address in a group's ranges are in that group on behalf of ``source``: every
        enrolled host now (by its last known addresses), and each host again when it connects."""
        self._subnet_groups[source] = {g: tuple(r) for g, r in groups.items() if r}
        only = {source: self._subnet_groups[source]}

        def apply(registry: Registry) -> list[str]:
            hosts = [(h.host_id, h.addresses) for h in registry.hosts()]
            return self._apply_subnet_groups(registry, hosts, only)

        changed = await self.store.call(apply)
        if changed:
            log.info("%s: subnet groups changed the groups of %d hosts", source, len(changed))
            await self.reconcile(changed)

    def _apply_subnet_groups(
        self,
        registry: Registry,
        hosts: Iterable[tuple[str, Iterable[str]]],
        sources: Mapping[str, SubnetGroups] | None = None,
    ) -> list[str]:
        """On the registry thread: write the subnet groups of ``hosts`` that differ; the hosts changed."""
        changed: list[str] = []
        for source, groups in (self._subnet_groups if sources is None else sources).items():
            current = registry.groups_by_source(source)
            for host_id, addresses in hosts:
                want = subnet_membership(addresses, groups)
                if want != current.get(host_id, frozenset()):
                    registry.set_groups(host_id, source, want)
                    changed.append(host_id)
        return changed

    async def set_groups(self, host_id: str, source: str, groups: Iterable[str]) -> None:
        """Put a host in groups on behalf of ``source`` (e.g. Zeek's subnet joins); pushes what changes."""
        chosen = tuple(groups)
        await self.store.call(lambda r: r.set_groups(host_id, source, chosen))
        await self.reconcile([host_id])

    # -- hosts ------------------------------------------------------------------------------

    async def hosts(self) -> list[Host]:
        return await self.store.call(lambda r: r.hosts())

    async def revoke(self, name: str) -> Host:
        """Revoke a host by id or hostname (RegistryError if unknown or ambiguous) and disconnect it."""
        host = await self.store.call(lambda r: r.revoke(name))
        link = self.links.get(host.host_id)
        if link is not None:
            link.close(ByeReason.REVOKED, "revoked by an operator")
        log.warning("host %s (%s) revoked", host.host_id, host.hostname)
        return host

    # -- one-time queries -------------------------------------------------------------------

    async def execute(self, sql: str, targets: Targets, time_limit: float) -> QueryRun:
        """Start ``sql`` on the targets; iterate ``run.events()`` for rows and one answer per host."""
        hosts, unknown = await self.store.call(lambda r: r.select(targets))
        run = QueryRun("x" + secrets.token_hex(8), sql, time_limit)
        self._runs[run.query_id] = run
        for host in hosts:
            run.expect(host.host_id, host.hostname)
        for name in unknown:
            run.expect(name, "")
        for name in unknown:
            run.answer(HostAnswer(name, "", HostQueryStatus.UNKNOWN, 0, "no enrolled host of that id or hostname"))
        for host in hosts:
            link = self.links.get(host.host_id)
            if host.revoked:
                run.answer(HostAnswer(host.host_id, host.hostname, HostQueryStatus.OFFLINE, 0, "revoked"))
            elif link is None:
                run.answer(HostAnswer(host.host_id, host.hostname, HostQueryStatus.OFFLINE, 0, "not connected"))
            else:
                link.execute(run)
        return run

    def finished(self, run: QueryRun) -> None:
        self._runs.pop(run.query_id, None)

    def run(self, query_id: str) -> QueryRun | None:
        return self._runs.get(query_id)
