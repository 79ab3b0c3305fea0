"""The standard subscriptions (collector/zeeklog/standard.py) are the package's table scripts, as the default config has them."""

from __future__ import annotations

import re

import pytest

from collector.config import DEFAULT_CONFIG, parse_config
from collector.zeeklog.standard import QUERY_INTERVAL, STANDARD
from tests.zeek_double import PACKAGE, Declarations

TABLES = PACKAGE / "osquery" / "tables"


def decls() -> Declarations:
    d = Declarations()
    d.add_package()
    return d


def test_every_table_script_has_its_standard_subscription():
    scripts = sorted(p.stem for p in TABLES.glob("*.zeek") if p.stem != "__load__")
    assert sorted(s.name for s in STANDARD) == scripts


@pytest.mark.parametrize("sub", STANDARD, ids=lambda s: s.name)
def test_standard_subscription_matches_its_table_script(sub):
    text = (TABLES / f"{sub.name}.zeek").read_text()
    query = re.search(r'\$query="([^"]*)"', text)
    utype = re.search(r"\$utype=(\w+)", text)
    path = re.search(r'\$path="([^"]*)"', text)
    assert query and utype and path
    assert sub.sql == query.group(1)
    assert (utype.group(1) == "BOTH") == sub.removed and utype.group(1) in ("BOTH", "ADD")
    assert "$inter=QUERY_INTERVAL" in text and QUERY_INTERVAL == 2
    assert sub.log == path.group(1)
    info = decls().records[f"osquery::{sub.name}::Info"]
    names = [name for name, _, _ in info]
    assert names[:2] == ["t", "host"]
    assert ("added" in names) == sub.removed
    columns = [(name, str(t)) for name, t, _ in info if name not in ("t", "host", "added")]
    assert [tuple(f.split(":")) for f in sub.fields] == columns


def test_the_embedded_default_subscribes_them_with_their_logs():
    config = parse_config(DEFAULT_CONFIG, "<embedded default>")
    by_name = {s.name: s for s in config.subscriptions}
    assert config.logs.dir == "logs" and config.logs.rotation == 3600
    for std in STANDARD:
        sub = by_name[std.name]
        assert (sub.sql, sub.interval, sub.removed, sub.all, sub.log) == (
            std.sql,
            QUERY_INTERVAL,
            std.removed,
            True,
            std.log,
        )
        assert sub.fields is not None and [f"{f.name}:{f.type}" for f in sub.fields] == list(std.fields)
