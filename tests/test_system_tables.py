"""Every system/account table: each value matches its declared osquery type (or is NULL).

Runs each table on the live host and on a fixture tree that fills the columns the
live VM may leave empty (utmp, DMI, kernel modules, crontabs).
"""

from __future__ import annotations

import importlib
import os

import pytest

from tables.spec import HostPaths, TableSpec
from tables.sqlite import Database

MODULES = (
    "users",
    "groups",
    "user_groups",
    "logged_in_users",
    "system_info",
    "os_version",
    "kernel_info",
    "uptime",
    "clock",
    "etc_hosts",
    "kernel_modules",
    "deb_packages",
    "crontab",
)
SPECS: list[TableSpec] = [importlib.import_module(f"tables.{m}").SPEC for m in MODULES]

_PY_TYPES = {"INTEGER": int, "BIGINT": int, "UNSIGNED_BIGINT": int, "DOUBLE": float, "TEXT": str, "BLOB": bytes}


def _check(db: Database, spec: TableSpec) -> int:
    names = ", ".join(f"`{c.name}`" for c in spec.columns)  # hidden columns too
    result = db.execute(f"SELECT {names} FROM {spec.name}")
    for row in result.rows:
        for column, value in zip(spec.columns, row, strict=False):
            if value is None:
                continue
            assert isinstance(value, _PY_TYPES[column.type]) and not isinstance(value, bool), (
                f"{spec.name}.{column.name} is {column.type} but holds {value!r}"
            )
            if column.type == "INTEGER":
                assert -(2**31) <= value < 2**31, f"{spec.name}.{column.name}={value} overflows INTEGER"
            if column.type == "UNSIGNED_BIGINT":
                assert value >= 0
    return len(result.rows)


@pytest.fixture(scope="module")
def fixture_paths(tmp_path_factory: pytest.TempPathFactory) -> HostPaths:
    from tests.test_crontab import SYSTEM
    from tests.test_deb_packages import STATUS
    from tests.test_kernel_modules import MODULES as PROC_MODULES
    from tests.test_logged_in_users import utmp_fixture
    from tests.test_system_info import CPUINFO

    base = tmp_path_factory.mktemp("systables")
    root, proc, sys_ = base / "root", base / "proc", base / "sys"
    files = {
        root / "etc/passwd": "root:x:0:0:root:/root:/bin/bash\nnobody:x:4294967294:4294967294::/:/bin/false\n",
        root / "etc/group": "root:x:0:\nusers:x:100:nobody\n",
        root / "etc/hosts": "127.0.0.1 localhost\n::1 localhost ip6-localhost\n",
        root / "etc/os-release": 'NAME="Ubuntu"\nVERSION="22.04.3 LTS"\nVERSION_ID="22.04"\nID=ubuntu\n',
        root / "etc/crontab": SYSTEM,
        root / "var/lib/dpkg/status": STATUS,
        proc / "cpuinfo": CPUINFO,
        proc / "meminfo": "MemTotal: 1024 kB\n",
        proc / "uptime": "100000.5 1.0\n",
        proc / "version": "Linux version 6.1.0 (x) #1\n",
        proc / "cmdline": "BOOT_IMAGE=/vmlinuz root=/dev/vda1 ro\n",
        proc / "modules": PROC_MODULES,
        proc / "sys/kernel/hostname": "fixture\n",
        sys_ / "class/dmi/id/product_uuid": "4c4c4544-0042-3510-8052-b2c04f4e4e31\n",
        sys_ / "class/dmi/id/sys_vendor": "QEMU\n",
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "var/run").mkdir(parents=True)
    (root / "var/run/utmp").write_bytes(utmp_fixture())
    return HostPaths(proc=str(proc), sys=str(sys_), root=str(root))


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_column_types_live_host(spec: TableSpec) -> None:
    _check(Database([spec]), spec)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_column_types_fixture_tree(spec: TableSpec, fixture_paths: HostPaths) -> None:
    assert _check(Database([spec], paths=fixture_paths), spec) > 0, f"{spec.name} returned no rows on the fixture"


def test_pid_with_namespace_tables_return_the_pid() -> None:
    me = os.getpid()
    for spec in SPECS:
        if "pid_with_namespace" not in spec.column_names:
            continue
        rows = (
            Database([spec])
            .execute(f"SELECT DISTINCT pid_with_namespace FROM {spec.name} WHERE pid_with_namespace = ?", (me,))
            .rows
        )
        if spec.name == "crontab":
            assert rows in ([], [(me,)])  # a host may have no crontab at all
        else:
            assert rows == [(me,)], spec.name


def test_every_table_registered_once() -> None:
    from tables.registry import all_specs

    names = {s.name for s in all_specs()}
    assert {s.name for s in SPECS} <= names
