"""system_info: one row identifying the host (names, CPU, memory, DMI hardware)."""

from __future__ import annotations

import os
from collections.abc import Iterator

from ._files import read_text
from .etc_hosts import parse_hosts
from .procfs import read_attr
from .spec import Column, HostPaths, QueryContext, Row, TableSpec

__all__ = ["SPEC", "fqdn", "generate", "parse_cpuinfo", "parse_meminfo_total", "uuid_from_machine_id"]

#: system_info column -> file in /sys/class/dmi/id.
_DMI = {
    "hardware_vendor": "sys_vendor",
    "hardware_model": "product_name",
    "hardware_version": "product_version",
    "hardware_serial": "product_serial",
    "board_vendor": "board_vendor",
    "board_model": "board_name",
    "board_version": "board_version",
    "board_serial": "board_serial",
}


def parse_cpuinfo(text: str) -> dict[str, object]:
    """CPU facts from /proc/cpuinfo: brand, model, microcode, logical/physical cores, sockets."""
    processors: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.split("\n"):
        if not line.strip():
            if current:
                processors.append(current)
                current = {}
            continue
        key, sep, value = line.partition(":")
        if sep:
            current[key.strip()] = value.strip()
    if current:
        processors.append(current)
    processors = [p for p in processors if "processor" in p]
    first = processors[0] if processors else {}
    sockets = {p.get("physical id", "0") for p in processors}
    cores = {(p.get("physical id", "0"), p.get("core id", p["processor"])) for p in processors}
    return {
        "cpu_brand": first.get("model name") or first.get("Hardware") or first.get("cpu model"),
        "cpu_subtype": first.get("model"),
        "cpu_microcode": first.get("microcode"),
        "cpu_logical_cores": len(processors) or None,
        "cpu_physical_cores": len(cores) or None,
        "cpu_sockets": len(sockets) or None,
    }


def parse_meminfo_total(text: str) -> int | None:
    """MemTotal from /proc/meminfo, in bytes."""
    for line in text.split("\n"):
        if line.startswith("MemTotal:"):
            parts = line.split()
            try:
                value = int(parts[1])
            except (IndexError, ValueError):
                return None
            return value * 1024 if len(parts) > 2 and parts[2].lower() == "kb" else value
    return None


def uuid_from_machine_id(machine_id: str) -> str | None:
    """/etc/machine-id (32 hex digits) in UUID form, or None when it is not one."""
    text = machine_id.strip().lower()
    if len(text) != 32 or any(c not in "0123456789abcdef" for c in text):
        return None
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def fqdn(hostname: str, hosts_text: str) -> str:
    """The canonical name /etc/hosts gives ``hostname`` (its first name on a line listing it)."""
    for _address, names in parse_hosts(hosts_text):
        if hostname in names and "." in names[0] and names[0].split(".", 1)[0] == hostname:
            return names[0]
    return hostname


def _hostname(paths: HostPaths) -> str:
    name = read_attr(os.path.join(paths.proc, "sys/kernel/hostname"))
    if name is None:
        name = (read_attr(paths.host("/etc/hostname")) or "").split("\n")[0]
    return name


def generate(context: QueryContext) -> Iterator[Row]:
    """The single system_info row; costly columns only when the query reads them."""
    paths = context.paths
    hostname = _hostname(paths)
    row: Row = {
        "hostname": fqdn(hostname, read_text(paths.host("/etc/hosts")) or ""),
        "computer_name": hostname,
        "local_hostname": hostname,
        "cpu_type": os.uname().machine,
    }
    dmi = os.path.join(paths.sys, "class/dmi/id")
    uuid = read_attr(os.path.join(dmi, "product_uuid"))
    if not uuid:
        uuid = uuid_from_machine_id(read_text(paths.host("/etc/machine-id")) or "")
    row["uuid"] = uuid or ""
    if context.any_used(
        "cpu_brand", "cpu_subtype", "cpu_microcode", "cpu_logical_cores", "cpu_physical_cores", "cpu_sockets"
    ):
        row.update(parse_cpuinfo(read_text(os.path.join(paths.proc, "cpuinfo")) or ""))
    if context.is_column_used("physical_memory"):
        row["physical_memory"] = parse_meminfo_total(read_text(os.path.join(paths.proc, "meminfo")) or "")
    for column, name in _DMI.items():
        if context.is_column_used(column):
            row[column] = read_attr(os.path.join(dmi, name))
    yield row


SPEC = TableSpec(
    name="system_info",
    description="System information for identification.",
    columns=(
        Column("hostname", "TEXT", "Network hostname including domain"),
        Column("uuid", "TEXT", "Unique ID provided by the system"),
        Column("cpu_type", "TEXT", "CPU type"),
        Column("cpu_subtype", "TEXT", "CPU subtype"),
        Column("cpu_brand", "TEXT", "CPU brand string, contains vendor and model"),
        Column("cpu_physical_cores", "INTEGER", "Number of physical CPU cores in to the system"),
        Column("cpu_logical_cores", "INTEGER", "Number of logical CPU cores available to the system"),
        Column("cpu_sockets", "INTEGER", "Number of processor sockets in the system"),
        Column("cpu_microcode", "TEXT", "Microcode version"),
        Column("physical_memory", "BIGINT", "Total physical memory in bytes"),
        Column("hardware_vendor", "TEXT", "Hardware vendor"),
        Column("hardware_model", "TEXT", "Hardware model"),
        Column("hardware_version", "TEXT", "Hardware version"),
        Column("hardware_serial", "TEXT", "Device serial number"),
        Column("board_vendor", "TEXT", "Board vendor"),
        Column("board_model", "TEXT", "Board model"),
        Column("board_version", "TEXT", "Board version"),
        Column("board_serial", "TEXT", "Board serial number"),
        Column("computer_name", "TEXT", "Friendly computer name (optional)"),
        Column("local_hostname", "TEXT", "Local hostname (optional)"),
        Column("emulated_cpu_type", "TEXT", "Emulated CPU type", hidden=True),
    ),
    generate=generate,
    examples=("SELECT hostname, uuid, cpu_brand, physical_memory FROM system_info",),
)
