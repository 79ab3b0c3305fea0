"""system_info: pure cpuinfo/meminfo parsers, a fixture tree, and the live host."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from tables import system_info
from tables.spec import HostPaths
from tables.sqlite import Database
from tables.system_info import fqdn, parse_cpuinfo, parse_meminfo_total, uuid_from_machine_id

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model\t\t: 85
model name\t: Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz
microcode\t: 0x2006e05
physical id\t: 0
core id\t\t: 0

processor\t: 1
model\t\t: 85
model name\t: Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz
physical id\t: 0
core id\t\t: 0

processor\t: 2
model\t\t: 85
model name\t: Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz
physical id\t: 1
core id\t\t: 0
"""


def test_parse_cpuinfo_counts_threads_cores_sockets() -> None:
    info = parse_cpuinfo(CPUINFO)
    assert info == {
        "cpu_brand": "Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz",
        "cpu_subtype": "85",
        "cpu_microcode": "0x2006e05",
        "cpu_logical_cores": 3,
        "cpu_physical_cores": 2,
        "cpu_sockets": 2,
    }
    assert parse_cpuinfo("")["cpu_logical_cores"] is None


def test_parse_meminfo_and_machine_id() -> None:
    assert parse_meminfo_total("MemFree: 1 kB\nMemTotal:       16318412 kB\n") == 16318412 * 1024
    assert parse_meminfo_total("nothing here\n") is None
    assert uuid_from_machine_id("3d1219c7c4c5404aaa1f6d2a48adfda4\n") == "3d1219c7-c4c5-404a-aa1f-6d2a48adfda4"
    assert uuid_from_machine_id("not-a-machine-id") is None


def test_fqdn_from_hosts() -> None:
    hosts = "127.0.0.1 localhost\n127.0.1.1 web1.example.org web1\n"
    assert fqdn("web1", hosts) == "web1.example.org"
    assert fqdn("db1", hosts) == "db1"


def test_fixture_tree(tmp_path: Path) -> None:
    proc, sys_, root = tmp_path / "proc", tmp_path / "sys", tmp_path / "root"
    (proc / "sys/kernel").mkdir(parents=True)
    (proc / "sys/kernel/hostname").write_text("web1\n")
    (proc / "cpuinfo").write_text(CPUINFO)
    (proc / "meminfo").write_text("MemTotal: 2048 kB\n")
    dmi = sys_ / "class/dmi/id"
    dmi.mkdir(parents=True)
    for name, value in {
        "product_uuid": "4c4c4544-0042-3510-8052-b2c04f4e4e31",
        "sys_vendor": "Dell Inc.",
        "product_name": "PowerEdge R640",
        "board_name": "0W23H8",
    }.items():
        (dmi / name).write_text(value + "\n")
    (root / "etc").mkdir(parents=True)
    (root / "etc/hosts").write_text("127.0.1.1 web1.example.org web1\n")
    db = Database([system_info.SPEC], paths=HostPaths(proc=str(proc), sys=str(sys_), root=str(root)))
    row = db.execute("SELECT * FROM system_info").dicts()[0]
    assert row["hostname"] == "web1.example.org"
    assert row["computer_name"] == row["local_hostname"] == "web1"
    assert row["uuid"] == "4c4c4544-0042-3510-8052-b2c04f4e4e31"
    assert row["physical_memory"] == 2048 * 1024
    assert (row["hardware_vendor"], row["hardware_model"], row["board_model"]) == (
        "Dell Inc.",
        "PowerEdge R640",
        "0W23H8",
    )
    assert row["hardware_serial"] is None  # absent file -> NULL
    assert row["cpu_logical_cores"] == 3


def test_live_host() -> None:
    row = Database([system_info.SPEC]).execute("SELECT * FROM system_info").dicts()[0]
    assert row["computer_name"] == socket.gethostname()
    assert row["cpu_logical_cores"] == os.cpu_count()
    assert row["cpu_type"] == os.uname().machine
    assert row["physical_memory"] == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert row["uuid"]
