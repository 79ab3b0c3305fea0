"""Which process and which user is behind each Zeek connection.

:mod:`.engine` keeps per-host process-socket state built from the agents' rows
(socket_events, process_events, process_open_sockets, listening_ports, processes, users,
interface_addresses) and answers, for a connection as Zeek sees it, who owns each end.
It is pure (no I/O, the caller's clock), bounded and counted; :mod:`.model` holds the
answers' types.  docs/attribution.md describes the methods and reasons.
"""

from .engine import AttributionEngine, EngineConfig, EngineStats, StateError
from .hoststate import HostLimits
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

__all__ = [
    "Action",
    "Attribution",
    "AttributionEngine",
    "Connection",
    "EngineConfig",
    "EngineStats",
    "HostLimits",
    "Method",
    "Reason",
    "Side",
    "SideAttribution",
    "StateError",
    "Table",
    "UserConnection",
]
