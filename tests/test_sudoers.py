"""sudoers: rules, continuations and includes in a fixture tree."""

from __future__ import annotations

from pathlib import Path

from tables import sudoers
from tables.spec import HostPaths
from tables.sqlite import Database
from tables.sudoers import parse_sudoers


def test_parse() -> None:
    text = (
        "# comment\nDefaults\tenv_reset\nroot ALL=(ALL:ALL) ALL\n%admin ALL=(ALL) \\\n    NOPASSWD: ALL\n"
        "#includedir /etc/sudoers.d\n@include extra\n"
    )
    assert parse_sudoers(text) == [
        ("Defaults", "env_reset"),
        ("root", "ALL=(ALL:ALL) ALL"),
        ("%admin", "ALL=(ALL) NOPASSWD: ALL"),  # one space, as osquery joins it
        ("#includedir", "/etc/sudoers.d"),
        ("@include", "extra"),
    ]


def test_continuations_as_osquery_joins_them() -> None:
    text = (
        "Cmnd_Alias SVC = /usr/bin/systemctl start,\\\n  /usr/bin/systemctl stop, \\\n\t/usr/bin/systemctl status\n"
        "Defaults\\\n  env_reset\n"
        "#include\n"  # no target: a comment
    )
    assert parse_sudoers(text) == [
        ("Cmnd_Alias", "SVC = /usr/bin/systemctl start,/usr/bin/systemctl stop, /usr/bin/systemctl status"),
        ("Defaults", "env_reset"),
    ]


def test_fixture_includes(tmp_path: Path) -> None:
    (tmp_path / "etc/sudoers.d").mkdir(parents=True)
    (tmp_path / "etc/sudoers").write_text("root ALL=(ALL) ALL\n@includedir /etc/sudoers.d\n@include extra\n")
    (tmp_path / "etc/sudoers.d/ops").write_text("%ops ALL=(ALL) NOPASSWD: /usr/bin/systemctl\n")
    (tmp_path / "etc/sudoers.d/README.txt").write_text("ignored ALL=(ALL) ALL\n")  # files with a dot are skipped
    (tmp_path / "etc/extra").write_text("Defaults use_pty\n")
    db = Database([sudoers.SPEC], paths=HostPaths(root=str(tmp_path)))
    assert db.execute("SELECT * FROM sudoers").rows == [
        ("/etc/sudoers", "root", "ALL=(ALL) ALL"),
        ("/etc/sudoers", "@includedir", "/etc/sudoers.d"),
        ("/etc/sudoers.d/ops", "%ops", "ALL=(ALL) NOPASSWD: /usr/bin/systemctl"),
        ("/etc/sudoers", "@include", "extra"),
        ("/etc/extra", "Defaults", "use_pty"),
    ]


def test_self_include_terminates(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/sudoers").write_text("#include /etc/sudoers\n")
    rows = Database([sudoers.SPEC], paths=HostPaths(root=str(tmp_path))).execute("SELECT * FROM sudoers").rows
    assert len(rows) == 129  # bounded by sudo's include depth
