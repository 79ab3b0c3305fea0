"""kernel_modules: /proc/modules parsing; the live host where the kernel has modules."""

from __future__ import annotations

from pathlib import Path

import pytest

from tables import kernel_modules
from tables.kernel_modules import parse_modules
from tables.spec import HostPaths
from tables.sqlite import Database

MODULES = """nf_tables 356352 1 nft_compat, Live 0xffffffffc0a00000
nft_compat 20480 0 - Live 0xffffffffc09f0000
ext4 1060864 2 - Live 0x0000000000000000 (E)
x_tables 65536 3 nft_compat,xt_tcpudp,ip_tables, Loading 0xffffffffc0980000
truncated line
"""


def test_parse_modules() -> None:
    rows = parse_modules(MODULES)
    assert rows[0] == {
        "name": "nf_tables",
        "size": 356352,
        "used_by": "nft_compat",
        "status": "Live",
        "address": "0xffffffffc0a00000",
    }
    assert rows[1]["used_by"] == "-"
    assert rows[3]["used_by"] == "nft_compat,xt_tcpudp,ip_tables"
    assert rows[3]["status"] == "Loading"
    assert len(rows) == 4


def test_fixture_table(tmp_path: Path) -> None:
    (tmp_path / "modules").write_text(MODULES)
    db = Database([kernel_modules.SPEC], paths=HostPaths(proc=str(tmp_path)))
    assert db.execute("SELECT name FROM kernel_modules WHERE used_by = '-' ORDER BY name").rows == [
        ("ext4",),
        ("nft_compat",),
    ]


def test_live_matches_proc_modules() -> None:
    path = Path("/proc/modules")
    if not path.exists():
        pytest.skip("this kernel has no loadable module support (/proc/modules is absent)")
    expected = {line.split()[0] for line in path.read_text().splitlines() if line.strip()}
    rows = Database([kernel_modules.SPEC]).execute("SELECT name FROM kernel_modules").rows
    assert {r[0] for r in rows} == expected
