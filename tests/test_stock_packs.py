"""osquery's stock packs run unchanged: every Linux query of every pack executes without error.

The pack files are copies in tests/fixtures/packs/ (verbatim from osquery's packs/ directory).
Only the tables the agent registers at runtime (agent/status_tables.py) are missing from
tables/; queries on those are run a second time with the agent's specs added.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tables.registry import all_specs
from tables.spec import QueryContext
from tables.sqlite import Database, QueryError
from tests._table_checks import assert_column_types

PACKS = Path(__file__).parent / "fixtures" / "packs"

#: Tables the agent (not tables/) provides at runtime; nothing else may be missing.
AGENT_TABLES = frozenset(
    {
        "osquery_info",  # agent/status_tables.py: the agent's own version, pid, start time
        "osquery_schedule",  # agent/status_tables.py: per-query run statistics
        "osquery_events",  # agent/status_tables.py: event publishers/subscribers
    }
)

#: Generous: a pack query scanning a big host must not be cut off, only a hang is an error.
TIME_LIMIT = 120.0

#: The tables this suite added for the packs (checked for value types below).
PACK_TABLES = (
    "acpi_tables",
    "apt_sources",
    "authorized_keys",
    "block_devices",
    "chrome_extensions",
    "cpu_info",
    "cpuid",
    "disk_encryption",
    "dns_resolvers",
    "etc_protocols",
    "etc_services",
    "firefox_addons",
    "iptables",
    "known_hosts",
    "last",
    "load_average",
    "memory_info",
    "opera_extensions",
    "pci_devices",
    "portage_packages",
    "process_envs",
    "process_memory_map",
    "process_open_files",
    "python_packages",
    "rpm_packages",
    "shadow",
    "shell_history",
    "smbios_tables",
    "sudoers",
    "suid_bin",
    "system_controls",
)

_LINUX_WORDS = ("any", "all", "linux", "ubuntu", "centos", "posix")


def load_pack(path: Path) -> dict:
    """A pack file as osquery reads it: ``//`` comment lines dropped, backslash-newlines joined."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("//")]
    return json.loads(re.sub(r"\\\n", "", "\n".join(lines)))


def runs_on_linux(platform: str | None) -> bool:
    """osquery's checkPlatform() on Linux: empty/null, or a substring naming Linux or all platforms."""
    platform = (platform or "").strip()
    return platform in ("", "null") or any(word in platform for word in _LINUX_WORDS)


def linux_queries() -> list[tuple[str, str, str]]:
    """(pack, query name, sql) of every query osquery would schedule on Linux."""
    out = []
    for path in sorted(PACKS.glob("*.conf")):
        pack = load_pack(path)
        if not runs_on_linux(pack.get("platform")):
            continue
        for name, query in pack.get("queries", {}).items():
            if runs_on_linux(query.get("platform")):
                out.append((path.stem, name, query["query"]))
    return out


QUERIES = linux_queries()


def test_platform_rule() -> None:
    assert runs_on_linux(None) and runs_on_linux("") and runs_on_linux("posix") and runs_on_linux("linux,darwin")
    assert not runs_on_linux("darwin") and not runs_on_linux("windows,darwin") and not runs_on_linux("gentoo")


def test_pack_selection() -> None:
    packs = {pack for pack, _, _ in QUERIES}
    assert packs == {
        "hardware-monitoring",
        "incident-response",
        "it-compliance",
        "osquery-monitoring",
        "ossec-rootkit",
        "vuln-management",
    }  # osx-attacks and the chrome pack are not for Linux
    assert len(load_pack(PACKS / "osx-attacks.conf")["queries"]) > 50  # continuations parsed
    assert len(QUERIES) > 100


@pytest.fixture(scope="module")
def db() -> Database:
    return Database(all_specs(), time_limit=TIME_LIMIT)


@pytest.mark.parametrize(("pack", "name", "sql"), QUERIES, ids=[f"{p}:{n}" for p, n, _ in QUERIES])
def test_query_runs(db: Database, pack: str, name: str, sql: str) -> None:
    try:
        db.execute(sql)
    except QueryError as exc:
        missing = re.match(r"no such table: (\w+)", str(exc))
        if missing and missing.group(1) in AGENT_TABLES:
            return  # provided by the agent: checked in test_agent_table_queries_run
        raise


def test_agent_table_queries_run() -> None:
    """Queries on the allow-listed tables run once the agent's status tables are registered."""
    from agent import status_tables

    agent_specs = [s for s in status_tables.SPECS if s.name in AGENT_TABLES]
    assert {s.name for s in agent_specs} == AGENT_TABLES
    full = Database([*all_specs(), *agent_specs], time_limit=TIME_LIMIT)
    used = [sql for _, _, sql in QUERIES if any(re.search(rf"\b{t}\b", sql) for t in AGENT_TABLES)]
    assert used
    for sql in used:
        full.execute(sql)


def test_pack_tables_value_types() -> None:
    """Every value the new tables produce on this host matches its declared osquery type (or is NULL)."""
    specs = {s.name: s for s in all_specs()}
    for name in PACK_TABLES:
        spec = specs[name]
        rows = list(spec.generate(QueryContext(table=name)))
        assert_column_types(spec, rows)


def test_pack_tables_match_osquery_columns() -> None:
    """Exact osquery columns, in order, with type and options (Linux columns only).

    tests/fixtures/pack_tables_schema.json is a copy of osquery's specs for these tables:
    [name, type, hidden, required, index, additional] per column.  acpi_tables, cpuid,
    smbios_tables, portage_packages and opera_extensions are not in that copy.
    """
    reference = json.loads((Path(__file__).parent / "fixtures" / "pack_tables_schema.json").read_text())
    specs = {s.name: s for s in all_specs()}
    assert set(reference) <= set(PACK_TABLES)
    for name, table in reference.items():
        ours = [[c.name, c.type, c.hidden, c.required, c.index, c.additional] for c in specs[name].columns]
        assert ours == table["columns"], name
