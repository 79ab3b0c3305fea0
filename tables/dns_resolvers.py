"""dns_resolvers: nameservers, search domains and sortlist from /etc/resolv.conf."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

from ._files import namespace_views, read_text
from .spec import Column, QueryContext, Row, TableSpec
from .text import fields as split_fields

__all__ = ["SPEC", "generate", "parse_resolv_conf", "resolver_options"]

# glibc resolv.h option bits: RES_INIT and RES_DEFAULT (RECURSE | DEFNAMES | DNSRCH) are always set.
_RES_BASE = 0x00000001 | 0x00000040 | 0x00000080 | 0x00000200
_RES_OPTIONS = {
    "debug": 0x00000002,
    "use-vc": 0x00000008,
    "rotate": 0x00004000,
    "edns0": 0x00100000,
    "single-request": 0x00200000,
    "single-request-reopen": 0x00400000,
    "no-tld-query": 0x01000000,
    "no-reload": 0x02000000,
    "trust-ad": 0x04000000,
}
_MAXNS = 3  # glibc reads at most three nameservers


def resolver_options(words: list[str]) -> int:
    """The ``options`` words of resolv.conf as glibc's ``_res.options`` bit mask."""
    value = _RES_BASE
    for word in words:
        value |= _RES_OPTIONS.get(word.split(":", 1)[0], 0)
    return value


def parse_resolv_conf(text: str) -> list[Row]:
    """resolv.conf -> nameserver, search and sortlist rows (``id`` counts within each type)."""
    nameservers: list[str] = []
    search: list[str] = []
    sortlist: list[tuple[str, str]] = []
    options: list[str] = []
    for raw in text.split("\n"):
        fields = split_fields(raw.split("#", 1)[0].split(";", 1)[0])
        if len(fields) < 2:
            continue
        keyword, values = fields[0], fields[1:]
        if keyword == "nameserver" and len(nameservers) < _MAXNS:
            nameservers.append(values[0])
        elif keyword in ("search", "domain"):
            search = values  # the last search/domain line wins
        elif keyword == "sortlist":
            for item in values:
                address, _, mask = item.partition("/")
                sortlist.append((address, mask))
        elif keyword == "options":
            options.extend(values)
    bits = resolver_options(options)
    rows: list[Row] = []
    for i, address in enumerate(nameservers):
        try:
            netmask = "32" if ipaddress.ip_address(address.split("%", 1)[0]).version == 4 else "128"
        except ValueError:
            netmask = ""
        rows.append({"id": i, "type": "nameserver", "address": address, "netmask": netmask, "options": bits})
    for i, domain in enumerate(search):
        rows.append({"id": i, "type": "search", "address": domain, "netmask": None, "options": bits})
    for i, (address, mask) in enumerate(sortlist):
        rows.append({"id": i, "type": "sortlist", "address": address, "netmask": mask, "options": bits})
    return rows


def generate(context: QueryContext) -> Iterator[Row]:
    """Rows of /etc/resolv.conf (in each requested process's mount namespace)."""
    for pid_ns, paths in namespace_views(context):
        for row in parse_resolv_conf(read_text(paths.host("/etc/resolv.conf")) or ""):
            row["pid_with_namespace"] = pid_ns
            yield row


SPEC = TableSpec(
    name="dns_resolvers",
    description="Resolvers used by this host.",
    columns=(
        Column("id", "INTEGER", "Address type index or order"),
        Column("type", "TEXT", "Address type: sortlist, nameserver, search"),
        Column("address", "TEXT", "Resolver IP/IPv6 address"),
        Column("netmask", "TEXT", "Address (sortlist) netmask length"),
        Column("options", "BIGINT", "Resolver options"),
        Column("pid_with_namespace", "INTEGER", "Pids that contain a namespace", hidden=True, additional=True),
    ),
    generate=generate,
    examples=("SELECT type, address FROM dns_resolvers WHERE type = 'nameserver'",),
)
