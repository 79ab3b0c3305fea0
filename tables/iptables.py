"""iptables: IPv4 packet filter rules, parsed from ``iptables-save -c`` output."""

from __future__ import annotations

import ipaddress
import shlex
import shutil
import subprocess
from collections.abc import Iterator

from ._files import read_text
from .spec import Column, QueryContext, Row, TableError, TableSpec
from .text import fields as split_fields

__all__ = ["SPEC", "generate", "parse_iptables_save", "protocol_numbers"]

_SAVE_TIMEOUT = 10.0
_ANY = "0.0.0.0"


def protocol_numbers(text: str) -> dict[str, int]:
    """/etc/protocols text -> {name or alias: number} (iptables accepts either)."""
    numbers: dict[str, int] = {}
    for line in text.split("\n"):
        fields = split_fields(line.split("#", 1)[0])
        if len(fields) >= 2 and fields[1].isdigit():
            for name in (fields[0], *fields[2:]):
                numbers.setdefault(name.lower(), int(fields[1]))
    return numbers


def _address(value: str) -> tuple[str, str]:
    try:
        net = ipaddress.IPv4Network(value, strict=False)
    except ValueError:
        return value, ""  # a hostname iptables-save would not print; keep it verbatim
    return str(net.network_address), str(net.netmask)


def _port_span(value: str) -> str:
    """``22`` -> ``22:22``, ``1000:2000`` kept, ``:80`` -> ``0:80``, ``1000:`` -> ``1000:65535``."""
    low, sep, high = value.partition(":")
    if not sep:
        return f"{low}:{low}"
    return f"{low or 0}:{high or 65535}"


def _options(args: list[str]) -> Iterator[tuple[str, list[str]]]:
    """(option, its values) pairs of a rule; ``!`` negations are dropped."""
    i = 0
    while i < len(args):
        opt = args[i]
        i += 1
        if not opt.startswith("-"):
            continue  # a stray value, or "!"
        values = []
        while i < len(args) and not args[i].startswith("-") and args[i] != "!":
            values.append(args[i])
            i += 1
        yield opt, values


def _rule_row(table: str, chain: str, policy: str, args: list[str], protocols: dict[str, int]) -> Row:
    row: Row = {
        "filter_name": table,
        "chain": chain,
        "policy": policy,
        "target": "",
        "protocol": 0,
        "src_port": "",
        "dst_port": "",
        "src_ip": _ANY,
        "src_mask": _ANY,
        "iniface": "",
        "iniface_mask": "",
        "dst_ip": _ANY,
        "dst_mask": _ANY,
        "outiface": "",
        "outiface_mask": "",
        "match": "",
        "packets": 0,
        "bytes": 0,
    }
    matches: list[str] = []
    for opt, values in _options(args):
        value = values[0] if values else ""
        if opt in ("-s", "--source"):
            row["src_ip"], row["src_mask"] = _address(value)
        elif opt in ("-d", "--destination"):
            row["dst_ip"], row["dst_mask"] = _address(value)
        elif opt in ("-i", "--in-interface", "-o", "--out-interface"):
            side = "iniface" if opt in ("-i", "--in-interface") else "outiface"
            wildcard = value.endswith("+")
            row[side] = value
            # xtables' byte mask: 0xFF for every name byte (and the NUL, unless "+" wildcard)
            row[f"{side}_mask"] = "FF" * (len(value) - 1 if wildcard else len(value) + 1)
        elif opt in ("-p", "--protocol"):
            row["protocol"] = int(value) if value.isdigit() else protocols.get(value.lower(), 0)
            if value.lower() in ("tcp", "udp"):
                row["src_port"], row["dst_port"] = "0:65535", "0:65535"
        elif opt in ("-m", "--match"):
            matches.append(value)
        elif opt in ("--sport", "--source-port"):
            row["src_port"] = _port_span(value)
        elif opt in ("--dport", "--destination-port"):
            row["dst_port"] = _port_span(value)
        elif opt in ("-j", "--jump", "-g", "--goto"):
            row["target"] = value
    row["match"] = ",".join(matches)
    return row


def parse_iptables_save(text: str, protocols: dict[str, int] | None = None) -> list[Row]:
    """``iptables-save -c`` output -> one row per rule (chains without rules give none).

    Counters come from ``[packets:bytes]`` in front of each ``-A`` line; a built-in chain's
    policy is repeated on each of its rules, as osquery does.  Lines that cannot be split
    (unbalanced quotes) are skipped.
    """
    protocols = protocols or {"tcp": 6, "udp": 17, "icmp": 1}
    rows: list[Row] = []
    table = ""
    policies: dict[str, str] = {}
    for raw in text.split("\n"):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            table, policies = line[1:], {}
            continue
        if line.startswith(":"):
            fields = split_fields(line[1:])
            if len(fields) >= 2:
                policies[fields[0]] = "" if fields[1] == "-" else fields[1]
            continue
        packets = bytes_ = 0
        if line.startswith("["):
            counters, _, line = line.partition("]")
            p, _, b = counters[1:].partition(":")
            if p.isdigit() and b.isdigit():
                packets, bytes_ = int(p), int(b)
            line = line.strip()
        if not line.startswith("-A "):
            continue
        try:
            args = shlex.split(line)
        except ValueError:
            continue
        if len(args) < 2:
            continue
        chain = args[1]
        row = _rule_row(table, chain, policies.get(chain, ""), args[2:], protocols)
        row["packets"], row["bytes"] = packets, bytes_
        rows.append(row)
    return rows


def _iptables_save() -> str | None:
    binary = shutil.which("iptables-save") or next(
        (p for p in ("/usr/sbin/iptables-save", "/sbin/iptables-save") if shutil.which(p)), None
    )
    if binary is None:
        return None
    try:
        done = subprocess.run([binary, "-c"], capture_output=True, text=True, timeout=_SAVE_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TableError(f"table iptables: running {binary} -c failed: {exc}") from exc
    if done.returncode != 0:
        raise TableError(f"table iptables: {binary} -c exited {done.returncode}: {done.stderr.strip()[:200]}")
    return done.stdout


def generate(context: QueryContext) -> Iterator[Row]:
    """Rules of every iptables table; no rows where iptables is not installed."""
    if context.paths.root not in ("", "/"):
        return  # the rules live in the running kernel, not in a fixture tree
    text = _iptables_save()
    if text is None:
        return
    protocols = protocol_numbers(read_text(context.paths.host("/etc/protocols")) or "")
    yield from parse_iptables_save(text, protocols or None)


SPEC = TableSpec(
    name="iptables",
    description="Linux IP packet filtering and NAT tool.",
    columns=(
        Column("filter_name", "TEXT", "Packet matching filter table name."),
        Column("chain", "TEXT", "Size of module content."),
        Column("policy", "TEXT", "Policy that applies for this rule."),
        Column("target", "TEXT", "Target that applies for this rule."),
        Column("protocol", "INTEGER", "Protocol number identification."),
        Column("src_port", "TEXT", "Protocol source port(s)."),
        Column("dst_port", "TEXT", "Protocol destination port(s)."),
        Column("src_ip", "TEXT", "Source IP address."),
        Column("src_mask", "TEXT", "Source IP address mask."),
        Column("iniface", "TEXT", "Input interface for the rule."),
        Column("iniface_mask", "TEXT", "Input interface mask for the rule."),
        Column("dst_ip", "TEXT", "Destination IP address."),
        Column("dst_mask", "TEXT", "Destination IP address mask."),
        Column("outiface", "TEXT", "Output interface for the rule."),
        Column("outiface_mask", "TEXT", "Output interface mask for the rule."),
        Column("match", "TEXT", "Matching rule that applies."),
        Column("packets", "INTEGER", "Number of matching packets for this rule."),
        Column("bytes", "INTEGER", "Number of matching bytes for this rule."),
    ),
    generate=generate,
    examples=("SELECT chain, policy, target, protocol, dst_port FROM iptables WHERE filter_name = 'filter'",),
)
