"""The host queries attribution needs, and the "user connections" view as a query.

When attribution is on, collectord subscribes every host to :data:`SUBSCRIPTIONS`; each
result batch goes to :meth:`AttributionEngine.ingest` with the subscription's table.  The
socket snapshots join the process columns in on the host, so a server's process and user
are known from the snapshot alone; the event queries read the agent's own additions
(precise timestamp, caller uid and parent, start time, local end of connects).
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import Table

__all__ = ["SUBSCRIPTIONS", "USER_CONNECTIONS_SQL", "Subscription", "subscription_for"]


@dataclass(frozen=True)
class Subscription:
    """One query every host runs for attribution."""

    name: str
    table: Table
    sql: str
    interval: int  # seconds; event tables stream as their rows arrive
    snapshot: bool = False  # osquery's snapshot mode (every run the whole result) vs differential
    removed: bool = True  # differential: report removed rows too


_SOCKET_EVENTS = """
SELECT action, pid, path, fd, family, protocol, local_address, local_port, remote_address, remote_port,
       time, timestamp, status, uid, parent, process_start_time, container_id, community_id
FROM socket_events
WHERE family IN (2, 10)
"""

_PROCESS_EVENTS = """
SELECT pid, path, cmdline, uid, parent, time, timestamp, container_id
FROM process_events
"""

_LISTENING_PORTS = """
SELECT l.pid, l.port, l.protocol, l.family, l.address, l.fd, l.socket, l.net_namespace,
       p.start_time, p.path, p.cmdline, p.uid, p.parent
FROM listening_ports AS l LEFT JOIN processes AS p USING (pid)
WHERE l.family IN (2, 10) AND l.pid > 0
"""

_OPEN_SOCKETS = """
SELECT s.pid, s.fd, s.socket, s.family, s.protocol, s.local_address, s.local_port,
       s.remote_address, s.remote_port, s.state, s.net_namespace,
       p.start_time, p.path, p.cmdline, p.uid, p.parent
FROM process_open_sockets AS s LEFT JOIN processes AS p USING (pid)
WHERE s.family IN (2, 10) AND s.pid > 0 AND s.remote_port <> 0
"""

_PROCESSES = "SELECT pid, start_time, path, cmdline, uid, parent FROM processes"
_USERS = "SELECT uid, username FROM users"
_INTERFACE_ADDRESSES = "SELECT interface, address, mask FROM interface_addresses"


def _sql(text: str) -> str:
    return " ".join(text.split())


SUBSCRIPTIONS: tuple[Subscription, ...] = (
    Subscription("attribution:socket_events", Table.SOCKET_EVENTS, _sql(_SOCKET_EVENTS), 1),
    Subscription("attribution:process_events", Table.PROCESS_EVENTS, _sql(_PROCESS_EVENTS), 1),
    Subscription("attribution:listening_ports", Table.LISTENING_PORTS, _sql(_LISTENING_PORTS), 10),
    Subscription("attribution:process_open_sockets", Table.PROCESS_OPEN_SOCKETS, _sql(_OPEN_SOCKETS), 10),
    Subscription("attribution:processes", Table.PROCESSES, _sql(_PROCESSES), 10),
    Subscription("attribution:users", Table.USERS, _sql(_USERS), 300),
    Subscription("attribution:interface_addresses", Table.INTERFACE_ADDRESSES, _sql(_INTERFACE_ADDRESSES), 60),
)

_BY_NAME = {s.name: s for s in SUBSCRIPTIONS}


def subscription_for(name: str) -> Subscription | None:
    """The attribution subscription called ``name`` (None for anyone else's)."""
    return _BY_NAME.get(name)


#: The "user connections" view on one host (agent-cli query, or a subscription): each
#: connect with its process and user.  The command line comes from the exec event of that
#: pid, else from the live process; the user from the call itself, else from the process.
USER_CONNECTIONS_SQL = _sql(
    """
SELECT s.time AS t, s.local_address, s.local_port, s.remote_address, s.remote_port, s.protocol,
       s.pid, s.path,
       COALESCE((SELECT e.cmdline FROM process_events AS e
                 WHERE e.pid = s.pid AND e.path = s.path AND e.time <= s.time
                 ORDER BY e.time DESC LIMIT 1), p.cmdline) AS cmdline,
       COALESCE(s.uid, p.uid) AS uid,
       u.username,
       s.community_id
FROM socket_events AS s
LEFT JOIN processes AS p
       ON p.pid = s.pid AND p.path = s.path
          AND (s.process_start_time IS NULL OR p.start_time = s.process_start_time)
LEFT JOIN users AS u ON u.uid = COALESCE(s.uid, p.uid)
WHERE s.action = 'connect' AND s.family IN (2, 10) AND s.status <> 'failed'
"""
)
