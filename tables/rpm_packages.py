"""rpm_packages: installed RPMs from the sqlite rpm database (/var/lib/rpm/rpmdb.sqlite).

Only the sqlite backend (rpm >= 4.16) is read, with apsw, read-only; hosts with a
BerkeleyDB or no rpm database at all have no rows.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import Any

import apsw

from ._files import mount_namespace_id, namespace_views
from .spec import Column, QueryContext, Row, TableError, TableSpec
from .text import decode

__all__ = ["RPMDB_PATHS", "SPEC", "generate", "parse_header"]

RPMDB_PATHS = ("/var/lib/rpm/rpmdb.sqlite", "/usr/lib/sysimage/rpm/rpmdb.sqlite")

#: rpm tag numbers (rpmtag.h) -> our column.
_TAGS = {
    1000: "name",
    1001: "version",
    1002: "release",
    1003: "epoch",
    1008: "install_time",
    1009: "size",
    5009: "size",
    1011: "vendor",
    1016: "package_group",
    1022: "arch",
    1044: "source",
    269: "sha1",
}
_INT_TYPES = {3: ">h", 4: ">i", 5: ">q"}  # INT16, INT32, INT64
_STRING_TYPES = (6, 8, 9)  # STRING, STRING_ARRAY (first element), I18NSTRING (first element)
_ENTRY = struct.Struct(">iiii")


def parse_header(blob: bytes) -> dict[str, Any]:
    """An rpm header blob (index count, data length, index entries, data) -> {column: value}.

    Only the tags this table needs are decoded; an entry pointing outside the data is skipped.
    """
    if len(blob) < 8:
        raise ValueError("rpm header shorter than its preamble")
    count, data_len = struct.unpack_from(">ii", blob, 0)
    start = 8 + count * _ENTRY.size
    if count < 0 or data_len < 0 or start + data_len > len(blob):
        raise ValueError(f"rpm header claims {count} entries and {data_len} data bytes in {len(blob)} bytes")
    data = blob[start : start + data_len]
    values: dict[str, Any] = {}
    for i in range(count):
        tag, kind, offset, n = _ENTRY.unpack_from(blob, 8 + i * _ENTRY.size)
        column = _TAGS.get(tag)
        if column is None or n < 1 or not 0 <= offset < len(data):
            continue
        if kind in _INT_TYPES:
            fmt = _INT_TYPES[kind]
            if offset + struct.calcsize(fmt) <= len(data):
                values[column] = struct.unpack_from(fmt, data, offset)[0]
        elif kind in _STRING_TYPES:
            end = data.find(b"\0", offset)
            values[column] = decode(data[offset : end if end >= 0 else None])
    return values


def _open(path: str) -> apsw.Connection:
    flags = apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI
    try:
        connection = apsw.Connection(f"file:{path}?mode=ro", flags=flags)
        connection.execute("SELECT 1 FROM Packages LIMIT 1").fetchall()
        return connection
    except apsw.CantOpenError:  # no write access for the -shm file: read the file as it is
        return apsw.Connection(f"file:{path}?mode=ro&immutable=1", flags=flags)


def _rows(path: str, context: QueryContext) -> Iterator[dict[str, Any]]:
    try:
        connection = _open(path)
    except apsw.Error as exc:
        raise TableError(f"table rpm_packages: cannot open {path} read-only: {exc}") from exc
    try:
        for (blob,) in connection.execute("SELECT blob FROM Packages"):
            context.check_deadline()
            try:
                yield parse_header(bytes(blob))
            except ValueError:
                continue  # a damaged header: skip that package
    except apsw.Error as exc:
        raise TableError(f"table rpm_packages: reading {path}: {exc}") from exc
    finally:
        connection.close()


def generate(context: QueryContext) -> Iterator[Row]:
    """One row per installed package; none unless an rpmdb.sqlite exists."""
    for pid_ns, paths in namespace_views(context):
        path = next((paths.host(p) for p in RPMDB_PATHS if os.path.isfile(paths.host(p))), None)
        if path is None:
            continue
        ns_id = mount_namespace_id(context.paths, pid_ns) if pid_ns else ""
        for header in _rows(path, context):
            if header.get("name") in (None, "gpg-pubkey"):
                continue  # imported signing keys are pseudo-packages, as rpm -qa shows them
            yield {
                "name": header.get("name"),
                "version": header.get("version", ""),
                "release": header.get("release", ""),
                "source": header.get("source", ""),
                "size": header.get("size", 0),
                "sha1": header.get("sha1", ""),
                "arch": header.get("arch", ""),
                "epoch": header.get("epoch"),
                "install_time": header.get("install_time"),
                "vendor": header.get("vendor", ""),
                "package_group": header.get("package_group", ""),
                "pid_with_namespace": pid_ns,
                "mount_namespace_id": ns_id or "",
            }


SPEC = TableSpec(
    name="rpm_packages",
    description="RPM packages that are currently installed on the host system.",
    columns=(
        Column("name", "TEXT", "RPM package name", index=True),
        Column("version", "TEXT", "Package version", index=True),
        Column("release", "TEXT", "Package release", index=True),
        Column("source", "TEXT", "Source RPM package name (optional)"),
        Column("size", "BIGINT", "Package size in bytes"),
        Column("sha1", "TEXT", "SHA1 hash of the package contents"),
        Column("arch", "TEXT", "Architecture(s) supported", index=True),
        Column("epoch", "INTEGER", "Package epoch value", index=True),
        Column("install_time", "INTEGER", "When the package was installed"),
        Column("vendor", "TEXT", "Package vendor"),
        Column("package_group", "TEXT", "Package group"),
        Column("pid_with_namespace", "INTEGER", "Pids that contain a namespace", hidden=True, additional=True),
        Column("mount_namespace_id", "TEXT", "Mount namespace id", hidden=True),
    ),
    generate=generate,
    examples=("SELECT name, version, release, arch FROM rpm_packages WHERE name = 'openssl'",),
)
