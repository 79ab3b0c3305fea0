"""The table registry: every module's tables, and the static index that lets a query import only its tables."""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import subprocess
import sys

import tables
from tables.registry import _INFRASTRUCTURE, TABLE_MODULES, all_specs, catalog, get_spec, load_spec
from tables.sqlite import Database, QueryError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _defined() -> dict[str, str]:
    """Table name -> module, from the modules themselves."""
    found: dict[str, str] = {}
    for info in pkgutil.iter_modules(tables.__path__):
        if info.name.startswith("_") or info.name in _INFRASTRUCTURE:
            continue
        module = importlib.import_module(f"tables.{info.name}")
        for spec in getattr(module, "SPECS", None) or ((module.SPEC,) if hasattr(module, "SPEC") else ()):
            found[spec.name] = info.name
    return found


def test_the_index_names_every_table_and_its_module() -> None:
    defined = _defined()
    missing = {n: m for n, m in defined.items() if TABLE_MODULES.get(n) != m}
    stale = sorted(set(TABLE_MODULES) - set(defined))
    assert not missing and not stale, (
        "tables/registry.py TABLE_MODULES is out of date; "
        + (f"add: {json.dumps(missing, sort_keys=True)} " if missing else "")
        + (f"remove: {stale}" if stale else "")
    )
    assert sorted(TABLE_MODULES) == [s.name for s in all_specs()]


def test_lazy_loading_gives_the_same_specs() -> None:
    by_name = {s.name: s for s in all_specs()}
    assert set(catalog()) == set(by_name)
    for name, load in catalog().items():
        assert load() is by_name[name] is load_spec(name) is get_spec(name)


def test_a_catalog_database_registers_a_table_when_a_query_names_it() -> None:
    db = Database(catalog=catalog())
    assert db.specs == {} and "processes" in db.tables() and "arp_cache" in db.tables()
    assert db.execute("SELECT 1").rows == [(1,)] and db.specs == {}
    rows = db.execute("SELECT pid FROM Processes WHERE pid = ?", (os.getpid(),)).rows
    assert rows == [(os.getpid(),)] and set(db.specs) == {"processes"}
    assert db.tables_read("SELECT * FROM users u JOIN groups g ON u.gid = g.gid") == {"users", "groups"}
    assert db.execute("SELECT count(*) FROM pragma_module_list WHERE name = 'deb_packages'").rows == [(1,)]
    assert set(db.specs) == set(TABLE_MODULES), "listing modules loads them all"


def test_a_table_that_cannot_be_loaded_is_a_clear_error() -> None:
    def broken():
        raise ImportError("No module named 'pyroute2'")

    db = Database(catalog={"arp_cache": broken})
    try:
        db.execute("SELECT * FROM arp_cache")
    except QueryError as exc:
        assert str(exc) == "table arp_cache cannot be loaded: ImportError: No module named 'pyroute2'"
    else:
        raise AssertionError("no error")


def _imported(sql: str) -> set[str]:
    code = (
        "import contextlib, io, sys\n"
        "from agent.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main(['query', {sql!r}]) == 0\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_agent_cli_imports_only_the_tables_a_query_names() -> None:
    table_modules = {f"tables.{m}" for m in TABLE_MODULES.values()}
    loaded = _imported("SELECT 1")
    assert not loaded & table_modules and "pyroute2" not in loaded and "asyncio" not in loaded
    assert "protocol.messages" not in loaded  # community_id_v1's module, not the wire messages
    loaded = _imported("SELECT pid, name FROM processes")
    assert loaded & table_modules == {"tables.processes"} and "pyroute2" not in loaded
    assert "tables.arp_cache" in _imported("SELECT count(*) FROM arp_cache")
