"""system_controls: sysctl.conf parsing, a fixture /proc/sys, and live values."""

from __future__ import annotations

from pathlib import Path

from tables import system_controls
from tables.spec import HostPaths
from tables.sqlite import Database
from tables.system_controls import parse_sysctl_conf


def test_parse_sysctl_conf() -> None:
    text = "# comment\n; also comment\nnet.ipv4.ip_forward = 1\nkernel/sysrq=0\n-vm.swappiness = 10\nbogus\n"
    assert parse_sysctl_conf(text) == {"net.ipv4.ip_forward": "1", "kernel.sysrq": "0", "vm.swappiness": "10"}


def test_fixture_tree(tmp_path: Path) -> None:
    sys_dir = tmp_path / "proc/sys"
    (sys_dir / "net/ipv4").mkdir(parents=True)
    (sys_dir / "kernel").mkdir()
    (sys_dir / "net/ipv4/ip_forward").write_text("1\n")
    (sys_dir / "kernel/hostname").write_text("box\n")
    (sys_dir / "kernel/printk").write_text("4\t4\t1\t7\n")
    (tmp_path / "etc/sysctl.d").mkdir(parents=True)
    (tmp_path / "usr/lib/sysctl.d").mkdir(parents=True)
    (tmp_path / "usr/lib/sysctl.d/50-default.conf").write_text("net.ipv4.ip_forward = 0\nkernel.hostname = x\n")
    (tmp_path / "etc/sysctl.d/99-local.conf").write_text("net.ipv4.ip_forward = 1\n")
    paths = HostPaths(proc=str(tmp_path / "proc"), root=str(tmp_path))
    db = Database([system_controls.SPEC], paths=paths)
    assert db.execute("SELECT * FROM system_controls").dicts() == [
        {
            "name": "kernel.hostname",
            "oid": "",
            "subsystem": "kernel",
            "current_value": "box",
            "config_value": "x",
            "type": "string",
        },
        {
            "name": "kernel.printk",
            "oid": "",
            "subsystem": "kernel",
            "current_value": "4\t4\t1\t7",
            "config_value": None,
            "type": "string",
        },
        {
            "name": "net.ipv4.ip_forward",
            "oid": "",
            "subsystem": "net",
            "current_value": "1",
            "config_value": "1",
            "type": "string",
        },
    ]
    assert db.execute("SELECT name FROM system_controls WHERE subsystem = 'net'").rows == [("net.ipv4.ip_forward",)]


def test_live_name_pushdown() -> None:
    db = Database([system_controls.SPEC])
    rows = db.execute("SELECT name, current_value FROM system_controls WHERE name = 'kernel.ostype'").rows
    assert rows == [("kernel.ostype", Path("/proc/sys/kernel/ostype").read_text().strip())]
    assert db.execute("SELECT * FROM system_controls WHERE name = 'no.such.control'").rows == []
