"""``listening_ports``: listening TCP, unconnected UDP/UDP-Lite/raw/ICMP, packet and listening UNIX sockets.

Built on :func:`tables.process_open_sockets.collect_sockets`, as osquery builds it on
``process_open_sockets``; every network namespace is covered.  As osquery: an IP socket
listens when its remote port is 0 (raw sockets too, their protocol in ``port``), packet
sockets are listed, and UNIX sockets have ``port`` 0 and ``socket`` 0.  UNIX sockets are
the listening ones and bound datagram ones with a path (osquery lists every UNIX socket
with a path, the connections a listener accepted included).
"""

from __future__ import annotations

from collections.abc import Iterator

from .process_open_sockets import AF_UNIX, collect_sockets
from .spec import Column, QueryContext, Row, TableSpec


def generate(context: QueryContext) -> Iterator[Row]:
    """One row per listening/bound socket."""
    for s in collect_sockets(context.paths.proc, context.values("pid")):
        info = s.info
        if not info.listening:
            continue
        unix = info.family == AF_UNIX
        if unix and not info.path:
            continue  # anonymous UNIX sockets are not "ports"
        yield {
            "pid": s.pid,
            "port": 0 if unix else info.local_port,
            "protocol": info.protocol,
            "family": info.family,
            "address": "" if unix else info.local_address,
            "fd": s.fd,
            "socket": 0 if unix else info.inode,
            "path": info.path,
            "net_namespace": str(s.net_namespace) if s.net_namespace is not None else None,
        }


SPEC = TableSpec(
    name="listening_ports",
    description="Processes with listening (bound) network sockets/ports.",
    columns=(
        # osquery does not push pid down here; we do (additional) so WHERE pid = X stays cheap.
        Column("pid", "INTEGER", "Process (or thread) ID", additional=True),
        Column("port", "INTEGER", "Transport layer port"),
        Column("protocol", "INTEGER", "Transport protocol (TCP/UDP)"),
        Column("family", "INTEGER", "Network protocol (IPv4, IPv6)"),
        Column("address", "TEXT", "Specific address for bind"),
        Column("fd", "BIGINT", "Socket file descriptor number"),
        Column("socket", "BIGINT", "Socket handle or inode number"),
        Column("path", "TEXT", "Path for UNIX domain sockets"),
        Column("net_namespace", "TEXT", "The inode number of the network namespace"),
    ),
    generate=generate,
    examples=(
        "SELECT * FROM listening_ports WHERE port = 22",
        "SELECT p.name, l.port, l.address FROM listening_ports l JOIN processes p USING (pid) WHERE l.port <> 0",
    ),
)
