"""deb_packages: installed Debian packages, from dpkg's status database."""

from __future__ import annotations

import os
from collections.abc import Iterator

from ._files import mount_namespace_id, namespace_views, read_text
from .spec import Column, QueryContext, Row, TableSpec

__all__ = ["DEFAULT_ADMINDIR", "SPEC", "generate", "package_row", "parse_status"]

DEFAULT_ADMINDIR = "/var/lib/dpkg"

#: Third word of ``Status:`` for packages dpkg only remembers (``dpkg-query -W`` omits them too).
_NOT_INSTALLED = frozenset({"not-installed"})


def parse_status(text: str) -> list[dict[str, str]]:
    """Stanzas of a dpkg status file (deb822): field -> value.

    Continuation lines (leading space or tab) extend the previous field; a line
    without ``:`` outside a continuation is ignored.
    """
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last: str | None = None
    for line in text.split("\n"):
        if not line.strip():
            if current:
                stanzas.append(current)
            current, last = {}, None
            continue
        if line[0] in " \t":
            if last is not None:
                current[last] += "\n" + line[1:]
            continue
        key, sep, value = line.partition(":")
        if not sep:
            last = None
            continue
        last = key.strip()
        current[last] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def _size(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def package_row(stanza: dict[str, str], admindir: str) -> Row | None:
    """The deb_packages row for one stanza, or None when the package is not installed."""
    name = stanza.get("Package")
    status = stanza.get("Status", "")
    words = status.split()
    if not name or len(words) < 3 or words[2] in _NOT_INSTALLED:
        return None
    version = stanza.get("Version", "")
    upstream, dash, revision = version.rpartition("-")
    source = stanza.get("Source", "")  # as dpkg records it, version included: "glibc (2.36-9)" (osquery)
    return {
        "name": name,
        "version": version,
        "source": source,
        "size": _size(stanza.get("Installed-Size")),  # as dpkg records it (KiB), like osquery
        "arch": stanza.get("Architecture", ""),
        "revision": revision if dash and upstream else "",
        "status": status,
        "maintainer": stanza.get("Maintainer", ""),
        "section": stanza.get("Section", ""),
        "priority": stanza.get("Priority", ""),
        "admindir": admindir,
    }


def generate(context: QueryContext) -> Iterator[Row]:
    """Installed packages of each admindir (default /var/lib/dpkg)."""
    admindirs = sorted(v for v in context.values("admindir") or {DEFAULT_ADMINDIR} if isinstance(v, str))
    for pid_ns, paths in namespace_views(context):
        ns_id = None
        if pid_ns and context.is_column_used("mount_namespace_id"):
            ns_id = mount_namespace_id(context.paths, pid_ns)
        for admindir in admindirs:
            text = read_text(paths.host(os.path.join(admindir, "status")))
            for stanza in parse_status(text or ""):
                row = package_row(stanza, admindir)
                if row is not None:
                    row["pid_with_namespace"] = pid_ns
                    row["mount_namespace_id"] = ns_id
                    yield row


SPEC = TableSpec(
    name="deb_packages",
    description="The installed DEB package database.",
    columns=(
        Column("name", "TEXT", "Package name"),
        Column("version", "TEXT", "Package version"),
        Column("source", "TEXT", "Package source"),
        Column("size", "BIGINT", "Package size in bytes"),
        Column("arch", "TEXT", "Package architecture"),
        Column("revision", "TEXT", "Package revision"),
        Column("status", "TEXT", "Package status"),
        Column("maintainer", "TEXT", "Package maintainer"),
        Column("section", "TEXT", "Package section"),
        Column("priority", "TEXT", "Package priority"),
        Column("admindir", "TEXT", "libdpkg admindir. Defaults to /var/lib/dpkg", additional=True),
        Column("pid_with_namespace", "INTEGER", "Pids that contain a namespace", hidden=True, additional=True),
        Column("mount_namespace_id", "TEXT", "Mount namespace id", hidden=True),
    ),
    generate=generate,
    examples=(
        "SELECT name, version FROM deb_packages WHERE name LIKE 'openssl%'",
        "SELECT name, version FROM deb_packages WHERE admindir = '/var/lib/dpkg'",
    ),
)
