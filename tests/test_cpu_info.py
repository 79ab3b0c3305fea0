"""cpu_info: cpuinfo parsing (two sockets, hyper-threads) and the live row."""

from __future__ import annotations

import os
from pathlib import Path

from tables import cpu_info
from tables.cpu_info import parse_cpuinfo
from tables.spec import HostPaths
from tables.sqlite import Database


def _block(n: int, package: int) -> str:
    return (
        f"processor\t: {n}\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6230\n"
        f"physical id\t: {package}\nsiblings\t: 4\ncpu cores\t: 2\ncpu MHz\t\t: 2100.000\n"
        "address sizes\t: 46 bits physical, 48 bits virtual\n\n"
    )


CPUINFO = "".join(_block(n, n // 4) for n in range(8))


def test_parse_cpuinfo() -> None:
    blocks = parse_cpuinfo(CPUINFO)
    assert len(blocks) == 8 and blocks[5]["physical id"] == "1"


def test_fixture_two_packages(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text(CPUINFO)
    freq = tmp_path / "sys/devices/system/cpu/cpu0/cpufreq"
    freq.mkdir(parents=True)
    (freq / "cpuinfo_max_freq").write_text("3900000\n")
    db = Database([cpu_info.SPEC], paths=HostPaths(proc=str(tmp_path / "proc"), sys=str(tmp_path / "sys")))
    rows = db.execute(
        "SELECT device_id, model, manufacturer, number_of_cores, logical_processors, "
        "address_width, current_clock_speed, max_clock_speed FROM cpu_info"
    ).rows
    assert rows == [
        ("0", "Intel(R) Xeon(R) Gold 6230", "GenuineIntel", "2", 4, "48", 2100, 3900),
        ("1", "Intel(R) Xeon(R) Gold 6230", "GenuineIntel", "2", 4, "48", 2100, None),
    ]


def test_live() -> None:
    rows = Database([cpu_info.SPEC]).execute("SELECT logical_processors FROM cpu_info").rows
    assert rows and sum(r[0] or 0 for r in rows) in (0, os.cpu_count())
