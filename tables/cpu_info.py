"""cpu_info: one row per physical CPU package, from /proc/cpuinfo and sysfs cpufreq."""

from __future__ import annotations

from collections.abc import Iterator

from ._files import read_text
from .procfs import GONE, read_file
from .spec import Column, QueryContext, Row, TableError, TableSpec
from .text import decode

__all__ = ["SPEC", "generate", "parse_cpuinfo"]


def parse_cpuinfo(text: str) -> list[dict[str, str]]:
    """/proc/cpuinfo -> one {key: value} per logical processor (blank-line separated)."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.split("\n"):
        key, sep, value = line.partition(":")
        if not line.strip():
            if current:
                blocks.append(current)
            current = {}
        elif sep:
            current[key.strip()] = value.strip()
    if current:
        blocks.append(current)
    return blocks


def _int(value: str | None) -> int | None:
    try:
        return int(float(value)) if value not in (None, "") else None
    except ValueError:
        return None


def _max_mhz(sys: str, cpu: str | None) -> int | None:
    khz = read_text(f"{sys}/devices/system/cpu/cpu{cpu or 0}/cpufreq/cpuinfo_max_freq")
    return int(khz) // 1000 if khz and khz.strip().isdigit() else None


def generate(context: QueryContext) -> Iterator[Row]:
    """One row per ``physical id`` (the first logical processor of each package)."""
    path = f"{context.paths.proc}/cpuinfo"
    try:
        blocks = parse_cpuinfo(decode(read_file(path)))
    except GONE as exc:
        raise TableError(f"table cpu_info: cannot read {path}: {exc}") from exc
    seen: set[str] = set()
    for block in blocks:
        package = block.get("physical id", "0")
        if package in seen:
            continue
        seen.add(package)
        bits = block.get("address sizes", "")
        virtual = bits.rsplit(",", 1)[-1].split()[0] if "virtual" in bits else ""
        yield {
            "device_id": package,
            "model": block.get("model name") or block.get("Processor") or block.get("cpu model", ""),
            "manufacturer": block.get("vendor_id") or block.get("CPU implementer", ""),
            "processor_type": "",
            "cpu_status": None,
            "number_of_cores": block.get("cpu cores", ""),
            "logical_processors": _int(block.get("siblings")),
            "address_width": virtual,
            "current_clock_speed": _int(block.get("cpu MHz")),
            "max_clock_speed": _max_mhz(context.paths.sys, block.get("processor")),
            "socket_designation": package,
        }


SPEC = TableSpec(
    name="cpu_info",
    description="Retrieve cpu hardware info of the machine.",
    columns=(
        Column("device_id", "TEXT", "The DeviceID of the CPU."),
        Column("model", "TEXT", "The model of the CPU."),
        Column("manufacturer", "TEXT", "The manufacturer of the CPU."),
        Column("processor_type", "TEXT", "The processor type, such as Central, Math, or Video."),
        Column("cpu_status", "INTEGER", "The current operating status of the CPU."),
        Column("number_of_cores", "TEXT", "The number of cores of the CPU."),
        Column("logical_processors", "INTEGER", "The number of logical processors of the CPU."),
        Column("address_width", "TEXT", "The width of the CPU address bus."),
        Column("current_clock_speed", "INTEGER", "The current frequency of the CPU."),
        Column("max_clock_speed", "INTEGER", "The maximum possible frequency of the CPU."),
        Column("socket_designation", "TEXT", "The assigned socket on the board for the given CPU."),
    ),
    generate=generate,
    examples=("SELECT model, number_of_cores, logical_processors FROM cpu_info",),
)
