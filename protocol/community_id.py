"""Community ID v1: the flow hash Zeek, Suricata and others write (corelight/community-id-spec).

One pure implementation for everyone: the agent's SQL function ``community_id_v1``, the
agent's socket_events rows and the collector's attributions all hash here, so host records
join with conn.log and IDS alerts on equal strings.

The hash is SHA-1 over: the 2-byte seed, the two addresses (4 or 16 bytes each), the IP
protocol number, one padding byte and, for port protocols, the two ports; all in network
byte order, with the endpoints ordered so both directions of a flow hash alike (by
address, then, for equal addresses, by port as Zeek and Suricata compare it: see _wire).  ICMP and
ICMPv6 carry type and code in the port fields; types with a known reply (echo, timestamp,
neighbour solicitation, ...) take the reply's type as the "destination port" so request and
reply share an ID, the others are one-way and keep their direction.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import struct
from functools import lru_cache
from typing import Any

__all__ = [
    "PORT_PROTOCOLS",
    "PROTO_ICMP",
    "PROTO_ICMP6",
    "PROTO_SCTP",
    "PROTO_TCP",
    "PROTO_UDP",
    "community_id",
    "community_id_v1",
]

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMP6 = 58
PROTO_SCTP = 132

#: Protocols hashed with their ports (ICMP's with type and code).
PORT_PROTOCOLS = frozenset({PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMP6, PROTO_SCTP})

#: ICMP message types with a counterpart (request <-> reply), as Zeek pairs them.
_ICMP_PAIRS = {0: 8, 8: 0, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
_ICMP6_PAIRS = {
    128: 129,
    129: 128,
    130: 131,
    131: 130,
    133: 134,
    134: 133,
    135: 136,
    136: 135,
    139: 140,
    140: 139,
    144: 145,
    145: 144,
}

Address = str | ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(value: Address, what: str) -> tuple[int, bytes]:
    """(IP version, packed bytes) of an address."""
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value.version, value.packed
    found = _parse(str(value)) if isinstance(value, str) else None
    if found is None:
        raise ValueError(f"community id: {what} {value!r} is not an IP address")
    return found


@lru_cache(maxsize=65536)
def _parse(text: str) -> tuple[int, bytes] | None:
    try:
        address = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    return address.version, address.packed


def community_id(
    proto: int,
    saddr: Address,
    daddr: Address,
    sport: int | None = None,
    dport: int | None = None,
    *,
    seed: int = 0,
) -> str:
    """The Community ID (``1:<base64 sha1>``) of one flow; raises ValueError on bad input.

    ``sport``/``dport`` are required for the port protocols (for ICMP: type and code, as
    Zeek's conn.log gives them in orig_p/resp_p) and ignored for the others.
    """
    if not isinstance(proto, int) or isinstance(proto, bool) or not 0 <= proto <= 255:
        raise ValueError(f"community id: protocol {proto!r} is not a number 0-255")
    if not isinstance(seed, int) or not 0 <= seed <= 0xFFFF:
        raise ValueError(f"community id: seed {seed!r} is not a number 0-65535")
    (src_version, a), (dst_version, b) = _address(saddr, "source"), _address(daddr, "destination")
    if src_version != dst_version:
        raise ValueError(f"community id: {saddr} and {daddr} are not of one address family")
    if proto not in PORT_PROTOCOLS:
        if b < a:
            a, b = b, a
        return _render(struct.pack("!H", seed) + a + b + struct.pack("!BB", proto, 0))
    for port, what in ((sport, "source port"), (dport, "destination port")):
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 0xFFFF:
            raise ValueError(f"community id: {what} {port!r} is not a number 0-65535")
    assert sport is not None and dport is not None  # checked above; for the type checker
    one_way = False
    if proto in (PROTO_ICMP, PROTO_ICMP6):
        pairs = _ICMP_PAIRS if proto == PROTO_ICMP else _ICMP6_PAIRS
        if sport in pairs:
            dport = pairs[sport]  # the code does not count for paired types
        else:
            one_way = True
    if not one_way and (b, _wire(dport)) < (a, _wire(sport)):
        a, b, sport, dport = b, a, dport, sport
    return _render(struct.pack("!H", seed) + a + b + struct.pack("!BBHH", proto, 0, sport, dport))


def _wire(port: int) -> int:
    """A port as Zeek and Suricata compare it when both addresses are equal: the network-order
    16 bits read as a number on a little-endian host (``htons(port)``).  The specification's
    vectors never have equal addresses; this ordering is what conn.log and eve.json carry
    (checked against Zeek 8.2's conn.log on ::1 <-> ::1)."""
    return ((port & 0xFF) << 8) | (port >> 8)


def _render(data: bytes) -> str:
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode("ascii")


def community_id_v1(src: Any, dst: Any, sport: Any, dport: Any, proto: Any, seed: Any = 0) -> str | None:
    """osquery's SQL function (source, destination, ports, protocol[, seed]): NULL on bad input.

    Numbers may come as SQLite gives them (int, or text holding an int).
    """
    try:
        pr = int(proto)
        sp = None if sport is None else int(sport)
        dp = None if dport is None else int(dport)
        sd = int(seed or 0)
        if src is None or dst is None:
            return None
        return community_id(pr, str(src), str(dst), sp, dp, seed=sd)
    except (TypeError, ValueError):
        return None
