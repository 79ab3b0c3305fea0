"""The host identifier in result lines, chosen as osquery's --host_identifier does."""

from __future__ import annotations

import re
import socket
import uuid
from typing import Protocol

__all__ = ["HostIdError", "collector_host_id", "host_identifier", "host_uuid", "is_placeholder_uuid"]

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

#: Vendor placeholders osquery refuses (isPlaceholderHardwareUUID), compared upper-case.
_PLACEHOLDERS = frozenset(
    {
        "00000000-0000-0000-0000-000000000000",
        "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
        "03000200-0400-0500-0006-000700080009",
        "00020003-0004-0005-0006-000700080009",
        "12345678-1234-5678-90AB-CDDEEFAABBCC",
        "01234567-8910-1112-1314-151617181920",
    }
)

_EPHEMERAL = str(uuid.uuid4())  # one per process, never stored


class HostIdError(Exception):
    """The configured host identifier cannot be determined."""


class _InstanceStore(Protocol):
    def instance_id(self) -> str: ...


def is_placeholder_uuid(value: str) -> bool:
    return value.strip().upper() in _PLACEHOLDERS


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read().strip()
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError):
        return None


def host_uuid(
    *, dmi_path: str = "/sys/class/dmi/id/product_uuid", machine_id_path: str = "/etc/machine-id"
) -> str | None:
    """The DMI product UUID (upper-case), else /etc/machine-id as a UUID; None if neither is usable."""
    dmi = _read(dmi_path)
    if dmi and _UUID.match(dmi) and not is_placeholder_uuid(dmi):
        return dmi.upper()
    machine_id = _read(machine_id_path)
    if machine_id and re.fullmatch(r"[0-9a-fA-F]{32}", machine_id) and set(machine_id) != {"0"}:
        return str(uuid.UUID(hex=machine_id)).upper()
    return None


def host_identifier(
    kind: str = "hostname",
    *,
    specified: str = "",
    state: _InstanceStore | None = None,
    dmi_path: str = "/sys/class/dmi/id/product_uuid",
    machine_id_path: str = "/etc/machine-id",
) -> str:
    """hostname (default), uuid, instance (persisted in ``state``), ephemeral or specified."""
    if kind == "hostname":
        return socket.gethostname()
    if kind == "uuid":
        value = host_uuid(dmi_path=dmi_path, machine_id_path=machine_id_path)
        if value is not None:
            return value
        if state is None:
            raise HostIdError(f"host_identifier uuid: no usable UUID in {dmi_path} or {machine_id_path}")
        return state.instance_id()  # osquery falls back to a generated, stored UUID
    if kind == "instance":
        if state is None:
            raise HostIdError("host_identifier instance: needs the state database to keep the instance id")
        return state.instance_id()
    if kind == "ephemeral":
        return _EPHEMERAL
    if kind == "specified":
        if not specified:
            raise HostIdError("host_identifier specified: options.specified_identifier is empty")
        return specified
    raise HostIdError(f"unknown host_identifier {kind!r}: use hostname, uuid, instance, ephemeral or specified")


#: host_identifier kinds that name this agent rather than the machine: the collector uplink uses them as is.
AGENT_NAMED = ("instance", "specified")


def collector_host_id(kind: str, *, identifier: str, uuid: str, instance_id: str) -> str:
    """The ``host_id`` the agent gives its collector.

    The machine's UUID (else the instance id) by default: it is stable across restarts and
    reinstalls, which a hostname or an ephemeral id is not.  With ``host_identifier``
    ``instance`` or ``specified`` the configured identifier (``identifier``) is used, so
    several agents on one machine (one per network namespace, say) are distinct hosts.
    """
    if kind in AGENT_NAMED:
        return identifier
    return uuid or instance_id
