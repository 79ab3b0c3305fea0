"""disk_encryption: dm-crypt status of every block device (device-mapper uuids ``CRYPT-...``)."""

from __future__ import annotations

import os
from collections.abc import Iterator

from ._files import read_text
from .spec import Column, QueryContext, Row, TableSpec

__all__ = ["SPEC", "crypt_type", "generate"]


def crypt_type(dm_uuid: str) -> str | None:
    """``CRYPT-LUKS2-<uuid>-<name>`` -> ``luks2``; ``CRYPT-PLAIN-...`` -> ``plain``; None if not dm-crypt."""
    if not dm_uuid.startswith("CRYPT-"):
        return None
    return dm_uuid.split("-")[1].lower() if dm_uuid.count("-") >= 1 else ""


def _luks_uuid(dm_uuid: str) -> str:
    parts = dm_uuid.split("-")
    # CRYPT-LUKS2-<32 hex digits>-<name>: the LUKS header uuid without dashes
    return parts[2] if len(parts) > 2 and parts[1].startswith("LUKS") else ""


def generate(context: QueryContext) -> Iterator[Row]:
    """One row per block device; dm-crypt targets are encrypted, everything else is not."""
    base = f"{context.paths.sys}/class/block"
    wanted = context.values("name")
    try:
        names = sorted(os.listdir(base))
    except FileNotFoundError:
        return
    for name in names:
        if wanted is not None and f"/dev/{name}" not in wanted:
            continue
        dm_uuid = (read_text(f"{base}/{name}/dm/uuid") or "").strip()
        kind = crypt_type(dm_uuid)
        yield {
            "name": f"/dev/{name}",
            "uuid": _luks_uuid(dm_uuid) if kind else "",
            "encrypted": 1 if kind else 0,
            "type": kind or "",
            "encryption_status": "encrypted" if kind else "not encrypted",
        }


SPEC = TableSpec(
    name="disk_encryption",
    description="Disk encryption status and information.",
    columns=(
        Column("name", "TEXT", "Disk name", index=True),
        Column("uuid", "TEXT", "Disk Universally Unique Identifier"),
        Column("encrypted", "INTEGER", "1 If encrypted: true (disk is encrypted), else 0"),
        Column("type", "TEXT", "Description of cipher type and mode if available"),
        Column(
            "encryption_status",
            "TEXT",
            "Disk encryption status with one of following values: encrypted | not encrypted | undefined",
        ),
    ),
    generate=generate,
    examples=("SELECT name, encrypted, type FROM disk_encryption WHERE encrypted = 1",),
)
