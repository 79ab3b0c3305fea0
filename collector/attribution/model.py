"""The attribution engine's vocabulary: what goes in (a connection) and what comes out.

Enums and frozen dataclasses only; the engine (:mod:`.engine`) fills them.  An answer is
one :class:`SideAttribution` per side of a connection: who owns that end (host, process,
user) and how that was established (:class:`Method`), or why it could not be
(:class:`Reason`).  There is never a guess: several candidates give ``AMBIGUOUS``.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass
from functools import lru_cache

from protocol.community_id import PROTO_ICMP, PROTO_ICMP6, PROTO_SCTP, PROTO_TCP, PROTO_UDP, community_id

__all__ = [
    "PROTOCOL_NAMES",
    "PROTOCOL_NUMBERS",
    "Action",
    "Attribution",
    "Connection",
    "Method",
    "Reason",
    "Side",
    "SideAttribution",
    "Table",
    "UserConnection",
]

#: Zeek's transport_proto names <-> IP protocol numbers.
PROTOCOL_NUMBERS = {"tcp": PROTO_TCP, "udp": PROTO_UDP, "icmp": PROTO_ICMP, "icmp6": PROTO_ICMP6, "sctp": PROTO_SCTP}
PROTOCOL_NAMES = {number: name for name, number in PROTOCOL_NUMBERS.items()}


class Table(enum.Enum):
    """The host tables the engine learns from (osquery's schemas)."""

    SOCKET_EVENTS = "socket_events"
    PROCESS_EVENTS = "process_events"
    PROCESS_OPEN_SOCKETS = "process_open_sockets"
    LISTENING_PORTS = "listening_ports"
    INTERFACE_ADDRESSES = "interface_addresses"
    PROCESSES = "processes"
    USERS = "users"


class Action(enum.Enum):
    """osquery's result actions: a differential's added/removed rows, or a full snapshot."""

    ADDED = "added"
    REMOVED = "removed"
    SNAPSHOT = "snapshot"


class Side(enum.Enum):
    ORIG = "orig"
    RESP = "resp"


class Method(enum.Enum):
    """How a side was attributed, best evidence first."""

    #: A connect (originator) or accept (responder) event with this connection's endpoints.
    SOCKET_EVENT = "socket_event"
    #: The only connect to the responder's endpoint around the connection's time, from a host
    #: whose event did not carry the local port (the process was gone before the agent looked).
    SOCKET_EVENT_TIME = "socket_event_time"
    #: A process_open_sockets snapshot row with this connection's endpoints.
    OPEN_SOCKET = "open_socket"
    #: A listening_ports snapshot row on the responder's port (address or wildcard).
    LISTENING_PORT = "listening_port"
    #: A bind event on the responder's port (a server too short-lived for any snapshot).
    BIND_EVENT = "bind_event"


class Reason(enum.Enum):
    """Why a side was not attributed."""

    #: No agent reports the address of that end.
    NO_AGENT = "no_agent"
    #: The host owning the address reported no socket that fits the connection.
    NO_SOCKET = "no_socket"
    #: A socket fits, but its process ended before any snapshot or exec event described it
    #: (pid and path are given as far as the socket event knew them; the user is unknown).
    PROCESS_GONE = "process_gone"
    #: Several hosts own the address (NAT, shared or duplicated addresses), or several
    #: processes fit equally well.  Never resolved by guessing.
    AMBIGUOUS = "ambiguous"


@lru_cache(maxsize=65536)
def _normal_address(value: str) -> str:
    address = ipaddress.ip_address(value.partition("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


@dataclass(frozen=True)
class Connection:
    """One connection as Zeek sees it: first-packet time, uid and the 5-tuple.

    Addresses are normalised (IPv4-mapped IPv6 to IPv4, scope ids dropped); ``proto`` is the
    IP protocol number (:meth:`from_zeek` takes Zeek's ``tcp``/``udp``/``icmp`` names).
    """

    ts: float
    uid: str
    orig_h: str
    orig_p: int
    resp_h: str
    resp_p: int
    proto: int

    def __post_init__(self) -> None:
        for name in ("orig_h", "resp_h"):
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, _normal_address(str(value)))
            except ValueError:
                raise ValueError(f"connection {self.uid!r}: {name} {value!r} is not an IP address") from None
        for name in ("orig_p", "resp_p"):
            port = getattr(self, name)
            if not isinstance(port, int) or not 0 <= port <= 0xFFFF:
                raise ValueError(f"connection {self.uid!r}: {name} {port!r} is not a port number")
        if not isinstance(self.proto, int) or not 0 <= self.proto <= 255:
            raise ValueError(f"connection {self.uid!r}: protocol {self.proto!r} is not an IP protocol number")

    @classmethod
    def from_zeek(
        cls, ts: float, uid: str, orig_h: str, orig_p: int, resp_h: str, resp_p: int, proto: str
    ) -> Connection:
        """From conn.log's fields (``proto`` as Zeek names it: tcp, udp, icmp, ...)."""
        number = PROTOCOL_NUMBERS.get(proto.lower())
        if number is None:
            raise ValueError(f"connection {uid!r}: unknown protocol {proto!r} (expected one of tcp, udp, icmp)")
        if number == PROTO_ICMP and ":" in orig_h:
            number = PROTO_ICMP6  # Zeek names both "icmp"
        return cls(float(ts), uid, orig_h, int(orig_p), resp_h, int(resp_p), number)

    @property
    def proto_name(self) -> str:
        name = PROTOCOL_NAMES.get(self.proto, "unknown_transport")
        return "icmp" if name == "icmp6" else name

    @property
    def community_id(self) -> str:
        """Community ID v1, seed 0: what Zeek's community-id logging writes for this connection."""
        return community_id(self.proto, self.orig_h, self.resp_h, self.orig_p, self.resp_p)


@dataclass(frozen=True)
class SideAttribution:
    """Who owns one end of a connection, or why that is not known.

    Exactly one of ``method`` and ``reason`` is set.  With a reason, the fields hold what
    is known anyway (the host for NO_SOCKET, pid and path for PROCESS_GONE); ``candidates``
    names the hosts or processes that made an answer AMBIGUOUS, ``detail`` says it in words.
    """

    side: Side
    method: Method | None = None
    reason: Reason | None = None
    host_id: str | None = None
    hostname: str | None = None
    pid: int | None = None
    process_start: float | None = None
    path: str | None = None
    cmdline: str | None = None
    uid: int | None = None
    username: str | None = None
    parent: int | None = None
    container_id: str | None = None
    candidates: tuple[str, ...] = ()
    detail: str = ""

    def __post_init__(self) -> None:
        if (self.method is None) == (self.reason is None):
            raise ValueError("a side attribution has either a method or a reason")

    @property
    def attributed(self) -> bool:
        return self.method is not None


@dataclass(frozen=True)
class Attribution:
    """The answer for one connection: both sides and the connection's Community ID."""

    conn: Connection
    community_id: str
    orig: SideAttribution
    resp: SideAttribution

    def side(self, side: Side) -> SideAttribution:
        return self.orig if side is Side.ORIG else self.resp


@dataclass(frozen=True)
class UserConnection:
    """One outgoing connection a host reported (a connect), with its process and user:
    the "user connections" view (osq-user_connections.log)."""

    ts: float
    host_id: str
    hostname: str | None
    pid: int
    path: str | None
    cmdline: str | None
    uid: int | None
    username: str | None
    local_address: str | None
    local_port: int | None
    remote_address: str
    remote_port: int
    protocol: int  # 0: not known
    community_id: str | None
