"""One host's process-socket state: bounded, expiring, indexed for the engine's lookups.

Socket events are kept in arrival order (a deque) and indexed by the endpoints a lookup
knows: the remote end for connects, the peer for accepts, the port for binds.  Snapshot
rows (process_open_sockets, listening_ports) live from the time they were first seen to the
time a later result removed them.  Process images are kept per pid, oldest first, so that
a lookup at time t takes the image the pid had at t: pid reuse cannot lend one process's
user to another.  Every bound is enforced on insert; what is dropped is counted.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .records import Facts, Proc, Sock, SockKind

__all__ = ["HostLimits", "HostState", "ProcessView"]

#: Seconds of disagreement tolerated between two clocks' views of one moment on a host.
SLACK = 1.0
#: Two audit records of one host, one after the other, may carry stamps this far out of order.
ORDER_SLACK = 0.005
#: Exact matches remembered per host to learn its clock against Zeek's, and needed before use.
OFFSET_SAMPLES = 64
MIN_OFFSET_SAMPLES = 8


@dataclass(frozen=True)
class HostLimits:
    """Per-host bounds (entries, not bytes: each entry is a few hundred bytes)."""

    max_events: int = 100_000
    max_snapshot_sockets: int = 100_000
    max_processes: int = 50_000


@dataclass(frozen=True)
class ProcessView:
    """A process as the engine answers it: the socket row's facts merged with its image."""

    pid: int
    start: float | None
    path: str | None
    cmdline: str | None
    uid: int | None
    parent: int | None
    container_id: str | None
    described: bool  # an exec event, a processes row or the row itself said who runs it


def _drop(items: deque[Sock] | list[Sock], sock: Sock) -> None:
    if items and items[0] is sock:
        if isinstance(items, deque):
            items.popleft()
        else:
            del items[0]
        return
    for i, item in enumerate(items):
        if item is sock:
            del items[i]
            return


class HostState:
    """Everything known about one host's processes and sockets."""

    def __init__(self, host_id: str, limits: HostLimits, counters: Counter[str]) -> None:
        self.host_id = host_id
        self.hostname: str | None = None
        self.limits = limits
        self.counters = counters  # the engine's, shared by all hosts
        self.users: dict[int, str] = {}
        # addresses: normalised address -> [first seen, gone at or None, network text or None]
        self.addresses: dict[str, list[Any]] = {}
        self.procs: dict[int, list[Proc]] = {}
        self.proc_rows: dict[tuple[Any, ...], Proc] = {}  # alive processes-table rows by identity
        self.proc_order: deque[Proc] = deque()  # insertion order, for eviction
        self.n_procs = 0
        self.events: deque[Sock] = deque()
        self.connect_exact: dict[tuple[str, int, int], deque[Sock]] = {}
        self.connect_remote: dict[tuple[str, int], deque[Sock]] = {}
        self.accepts: dict[tuple[str, int], deque[Sock]] = {}
        self.binds: dict[int, deque[Sock]] = {}
        self.snapshot_rows: dict[tuple[Any, ...], Sock] = {}  # alive snapshot rows by identity
        self.gone_rows: deque[Sock] = deque()  # removed snapshot rows, kept for history
        self.open_index: dict[tuple[int, str, int], list[Sock]] = {}
        self.listen_index: dict[int, list[Sock]] = {}
        # Zeek's first-packet time minus the host's connect time, from exact matches
        self.offsets: deque[float] = deque(maxlen=OFFSET_SAMPLES)

    # -- the host's clock as Zeek sees it ---------------------------------------------------
    def learn_offset(self, offset: float) -> None:
        self.offsets.append(offset)

    def clock_estimate(self) -> tuple[float, float] | None:
        """(offset, spread) of this host's connect times against Zeek's clock, once enough
        exact matches were seen: Zeek's ts ~ connect time + offset, give or take spread."""
        if len(self.offsets) < MIN_OFFSET_SAMPLES:
            return None
        ordered = sorted(self.offsets)
        median = ordered[len(ordered) // 2]
        return median, max(median - ordered[0], ordered[-1] - median)

    # -- socket events --------------------------------------------------------------------
    def _event_lists(self, sock: Sock) -> Iterator[tuple[dict[Any, deque[Sock]], Any]]:
        if sock.kind is SockKind.CONNECT:
            assert sock.remote_addr is not None and sock.remote_port is not None
            yield self.connect_remote, (sock.remote_addr, sock.remote_port)
            if sock.local_port is not None:
                yield self.connect_exact, (sock.remote_addr, sock.remote_port, sock.local_port)
        elif sock.kind is SockKind.ACCEPT:
            yield self.accepts, (sock.remote_addr, sock.remote_port)
        else:
            yield self.binds, sock.local_port

    def add_event(self, sock: Sock) -> None:
        if len(self.events) >= self.limits.max_events:
            self._forget_event(self.events.popleft())
            self.counters["evicted_events"] += 1
        self.events.append(sock)
        for index, key in self._event_lists(sock):
            items = index.get(key)
            if items is None:
                index[key] = items = deque()
            items.append(sock)

    def _forget_event(self, sock: Sock) -> None:
        for index, key in self._event_lists(sock):
            items = index.get(key)
            if items is not None:
                _drop(items, sock)
                if not items:
                    del index[key]

    # -- snapshot sockets -----------------------------------------------------------------
    def _snapshot_index(self, sock: Sock) -> tuple[dict[Any, list[Sock]], Any]:
        if sock.kind is SockKind.LISTEN:
            return self.listen_index, sock.local_port
        return self.open_index, (sock.local_port, sock.remote_addr, sock.remote_port)

    def add_snapshot_row(self, sock: Sock) -> None:
        assert sock.key is not None
        if sock.key in self.snapshot_rows:
            return  # still there: keeps its first-seen time
        if len(self.snapshot_rows) + len(self.gone_rows) >= self.limits.max_snapshot_sockets:
            if self.gone_rows:
                self._forget_snapshot(self.gone_rows.popleft())
            else:
                victim = next(iter(self.snapshot_rows.values()))  # the oldest alive row
                del self.snapshot_rows[victim.key]  # type: ignore[arg-type]
                self._forget_snapshot(victim)
            self.counters["evicted_snapshot_sockets"] += 1
        self.snapshot_rows[sock.key] = sock
        index, key = self._snapshot_index(sock)
        index.setdefault(key, []).append(sock)

    def remove_snapshot_row(self, key: tuple[Any, ...], now: float) -> bool:
        sock = self.snapshot_rows.pop(key, None)
        if sock is None:
            return False
        sock.until = now
        self.gone_rows.append(sock)
        return True

    def snapshot_keys(self, table: str) -> list[tuple[Any, ...]]:
        return [key for key in self.snapshot_rows if key[0] == table]

    def _forget_snapshot(self, sock: Sock) -> None:
        index, key = self._snapshot_index(sock)
        items = index.get(key)
        if items is not None:
            _drop(items, sock)
            if not items:
                del index[key]

    # -- processes ------------------------------------------------------------------------
    def add_proc(self, proc: Proc) -> None:
        while self.n_procs >= self.limits.max_processes and self._evict_proc():
            pass
        images = self.procs.setdefault(proc.pid, [])
        images.append(proc)
        if len(images) > 1 and images[-2].begin > proc.begin:
            images.sort(key=lambda p: p.begin)
        self.n_procs += 1
        self.proc_order.append(proc)
        if proc.row_key is not None and proc.until is None:
            self.proc_rows[proc.row_key] = proc

    def remove_proc_row(self, key: tuple[Any, ...], now: float) -> bool:
        proc = self.proc_rows.pop(key, None)
        if proc is None:
            return False
        proc.until = now
        return True

    def _evict_proc(self) -> bool:
        """Drop the oldest image, giving one that lookups used since a second chance (clock)."""
        order = self.proc_order
        for _ in range(2 * len(order)):
            proc = order.popleft()
            if proc.dropped:
                continue
            if proc.touched and proc.until is None:
                proc.touched = False
                order.append(proc)
                continue
            self._forget_proc(proc)
            self.counters["evicted_processes"] += 1
            return True
        return False

    def _forget_proc(self, proc: Proc) -> None:
        proc.dropped = True
        images = self.procs.get(proc.pid)
        if images is None:
            return
        for i, image in enumerate(images):
            if image is proc:
                del images[i]
                self.n_procs -= 1
                break
        if not images:
            del self.procs[proc.pid]
        if proc.row_key is not None and self.proc_rows.get(proc.row_key) is proc:
            del self.proc_rows[proc.row_key]

    def resolve(self, facts: Facts, t: float, precision: float = 0.0) -> ProcessView:
        """The process behind a socket row at time ``t`` (give or take ``precision``): the
        row's facts, completed by the image the pid had then if it is consistent with them."""
        image = self._image(facts, t, precision)
        if image is not None:
            image.touched = True
        same_image = image is not None and (facts.path is None or image.path in (None, facts.path))
        uid = facts.uid if facts.uid is not None else (image.uid if image is not None else None)
        return ProcessView(
            pid=facts.pid,
            start=facts.start if facts.start is not None else (image.start if image is not None else None),
            path=facts.path or (image.path if image is not None else None),
            cmdline=facts.cmdline or (image.cmdline if image is not None and same_image else None),
            uid=uid,
            parent=facts.parent if facts.parent is not None else (image.parent if image is not None else None),
            container_id=facts.container_id or (image.container_id if image is not None else None),
            described=uid is not None,
        )

    def _image(self, facts: Facts, t: float, precision: float) -> Proc | None:
        images = self.procs.get(facts.pid)
        if not images:
            return None
        for proc in reversed(images):
            if proc.begin - proc.precision > t + precision + ORDER_SLACK:
                continue  # began after t (a later exec of the same pid included)
            if facts.start is not None and proc.start is not None and abs(proc.start - facts.start) > SLACK:
                if proc.start < facts.start:
                    return None  # an earlier incarnation of this pid: ours began later, unseen
                continue
            if proc.until is not None and proc.until < t - SLACK:
                return None  # the newest image at t had ended before t: this pid was reused
            if facts.path is not None and proc.path is not None and proc.path != facts.path:
                if proc.from_exec:
                    return None  # the pid ran something else at t: another incarnation
                continue  # a processes row may show a later exec's image
            return proc
        return None

    def alive_at(self, pid: int, t: float) -> bool:
        """False only when a processes row proves the pid's newest image before t had ended."""
        images = self.procs.get(pid)
        if not images:
            return True
        for proc in reversed(images):
            if proc.begin - proc.precision > t + SLACK:
                continue
            return proc.until is None or proc.until >= t - SLACK
        return True

    # -- expiry ---------------------------------------------------------------------------
    def expire(self, cutoff: float) -> int:
        """Forget what ended before ``cutoff``; returns how many entries went."""
        dropped = 0
        events = self.events
        while events and events[0].t < cutoff:
            self._forget_event(events.popleft())
            dropped += 1
        gone = self.gone_rows
        while gone and gone[0].until is not None and gone[0].until < cutoff:
            self._forget_snapshot(gone.popleft())
            dropped += 1
        for pid in list(self.procs):
            images = self.procs[pid]
            for i, proc in enumerate(images):
                superseded = i + 1 < len(images) and images[i + 1].begin < cutoff
                ended = proc.until is not None and proc.until < cutoff
                if superseded or ended:
                    proc.dropped = True
                    if proc.row_key is not None and self.proc_rows.get(proc.row_key) is proc:
                        del self.proc_rows[proc.row_key]
            keep = [proc for proc in images if not proc.dropped]
            dropped += len(images) - len(keep)
            self.n_procs -= len(images) - len(keep)
            if keep:
                self.procs[pid] = keep
            else:
                del self.procs[pid]
        if len(self.proc_order) > 2 * self.n_procs + 1024:
            self.proc_order = deque(proc for proc in self.proc_order if not proc.dropped)
        for address, (_, until, _) in list(self.addresses.items()):
            if until is not None and until < cutoff:
                del self.addresses[address]
                dropped += 1
        return dropped

    # -- persistence ----------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        return {
            "host_id": self.host_id,
            "hostname": self.hostname,
            "users": [[uid, name] for uid, name in self.users.items()],
            "addresses": [[address, *record] for address, record in self.addresses.items()],
            "procs": [proc.to_list() for proc in self.proc_order if not proc.dropped],
            "events": [sock.to_list() for sock in self.events],
            "snapshot_rows": [sock.to_list() for sock in self.snapshot_rows.values()],
            "gone_rows": [sock.to_list() for sock in self.gone_rows],
            "offsets": list(self.offsets),
        }

    @classmethod
    def from_state(cls, data: dict[str, Any], limits: HostLimits, counters: Counter[str]) -> HostState:
        host = cls(str(data["host_id"]), limits, counters)
        host.hostname = data.get("hostname")
        host.users = {int(uid): str(name) for uid, name in data.get("users", [])}
        host.addresses = {str(item[0]): list(item[1:4]) for item in data.get("addresses", [])}
        for proc_data in data.get("procs", []):
            host.add_proc(Proc.from_list(proc_data))
        for sock_data in data.get("events", []):
            host.add_event(Sock.from_list(sock_data))
        for sock_data in data.get("snapshot_rows", []):
            host.add_snapshot_row(Sock.from_list(sock_data))
        host.offsets.extend(float(x) for x in data.get("offsets", []))
        for sock_data in data.get("gone_rows", []):
            sock = Sock.from_list(sock_data)
            host.gone_rows.append(sock)
            index, key = host._snapshot_index(sock)
            index.setdefault(key, []).append(sock)
        return host

    def sizes(self) -> dict[str, int]:
        return {
            "events": len(self.events),
            "snapshot_sockets": len(self.snapshot_rows) + len(self.gone_rows),
            "processes": self.n_procs,
            "addresses": len(self.addresses),
            "users": len(self.users),
        }


def iter_window(items: Iterable[Sock], lo: float, hi: float, *, precise: float = 0.0) -> Iterator[Sock]:
    """The sockets whose time (give or take its precision) may fall within [lo, hi].

    A precision up to ``precise`` is already part of the window (a learned clock spread
    includes the event clock's granularity) and is not added again."""
    for sock in items:
        precision = sock.precision if sock.precision > precise else 0.0
        if sock.t + precision >= lo and sock.t - precision <= hi:
            yield sock
