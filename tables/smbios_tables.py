"""smbios_tables: SMBIOS structures from /sys/firmware/dmi/tables/DMI (no rows where absent)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from ._files import read_bytes
from .spec import Column, QueryContext, Row, TableSpec

__all__ = ["SPEC", "TYPE_NAMES", "generate", "parse_smbios"]

#: SMBIOS structure types (DMTF DSP0134) by number.
TYPE_NAMES = {
    0: "BIOS Information",
    1: "System Information",
    2: "Base Board or Module Information",
    3: "System Enclosure or Chassis",
    4: "Processor Information",
    5: "Memory Controller Information",
    6: "Memory Module Information",
    7: "Cache Information",
    8: "Port Connector Information",
    9: "System Slots",
    10: "On Board Devices Information",
    11: "OEM Strings",
    12: "System Configuration Options",
    13: "BIOS Language Information",
    14: "Group Associations",
    15: "System Event Log",
    16: "Physical Memory Array",
    17: "Memory Device",
    18: "32-bit Memory Error Information",
    19: "Memory Array Mapped Address",
    20: "Memory Device Mapped Address",
    21: "Built-in Pointing Device",
    22: "Portable Battery",
    23: "System Reset",
    24: "Hardware Security",
    25: "System Power Controls",
    26: "Voltage Probe",
    27: "Cooling Device",
    28: "Temperature Probe",
    29: "Electrical Current Probe",
    30: "Out-of-Band Remote Access",
    31: "Boot Integrity Services (BIS) Entry Point",
    32: "System Boot Information",
    33: "64-bit Memory Error Information",
    34: "Management Device",
    35: "Management Device Component",
    36: "Management Device Threshold Data",
    37: "Memory Channel",
    38: "IPMI Device Information",
    39: "System Power Supply",
    40: "Additional Information",
    41: "Onboard Devices Extended Information",
    42: "Management Controller Host Interface",
    43: "TPM Device",
    126: "Inactive",
    127: "End-of-Table",
}


def parse_smbios(data: bytes) -> list[Row]:
    """The structure table -> rows; a structure running past the end stops the walk."""
    rows = []
    offset = 0
    number = 0
    while offset + 4 <= len(data):
        kind, length = data[offset], data[offset + 1]
        handle = int.from_bytes(data[offset + 2 : offset + 4], "little")
        if length < 4 or offset + length > len(data):
            break
        end = data.find(b"\0\0", offset + length)  # the string-set ends with two NULs
        if end < 0:
            break
        end += 2
        rows.append(
            {
                "number": number,
                "type": kind,
                "description": TYPE_NAMES.get(kind, "Unknown"),
                "handle": handle,
                "header_size": length,
                "size": end - offset,
                "md5": hashlib.md5(data[offset:end]).hexdigest(),
            }
        )
        number += 1
        offset = end
        if kind == 127:
            break
    return rows


def generate(context: QueryContext) -> Iterator[Row]:
    """One row per SMBIOS structure."""
    yield from parse_smbios(read_bytes(f"{context.paths.sys}/firmware/dmi/tables/DMI") or b"")


SPEC = TableSpec(
    name="smbios_tables",
    description="BIOS (DMI) structure common details and content.",
    columns=(
        Column("number", "INTEGER", "Table entry number"),
        Column("type", "INTEGER", "Table entry type"),
        Column("description", "TEXT", "Table entry description"),
        Column("handle", "INTEGER", "Table entry handle"),
        Column("header_size", "INTEGER", "Header size in bytes"),
        Column("size", "INTEGER", "Table entry size in bytes"),
        Column("md5", "TEXT", "MD5 hash of table entry"),
    ),
    generate=generate,
    examples=("SELECT type, description, size FROM smbios_tables",),
)
