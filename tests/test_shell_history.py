"""shell_history: bash, bash with timestamps and zsh extended history in a fixture tree."""

from __future__ import annotations

from pathlib import Path

from tables import shell_history
from tables.shell_history import parse_history
from tables.spec import HostPaths
from tables.sqlite import Database


def test_parse_history_formats() -> None:
    assert parse_history("ls -la\n\ncd /tmp\n") == [(0, "ls -la"), (0, ""), (0, "cd /tmp")]  # blank kept (osquery)
    assert parse_history("#1700000000\nwhoami\nuptime\n") == [(1700000000, "whoami"), (0, "uptime")]
    # a timestamp dates the next line whatever it is; the last line needs no newline
    assert parse_history("#1700000000\n#1700000009\n\nx\r") == [(1700000000, "#1700000009"), (0, ""), (0, "x\r")]
    assert parse_history(": 1700000001:0;echo hi; echo there\n:   1700000002:12;make\n") == [
        (1700000001, "echo hi; echo there"),
        (1700000002, "make"),
    ]


def test_fixture_homes(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/bash\n"
        "alice:x:1000:1000::/home/alice:/bin/zsh\n"
        "nohome:x:1001:1001::nowhere:/bin/sh\n"
    )
    (tmp_path / "root").mkdir()
    (tmp_path / "root/.bash_history").write_text("#1700000000\nid\n")
    (tmp_path / "home/alice").mkdir(parents=True)
    (tmp_path / "home/alice/.zsh_history").write_text(": 1700000005:0;git status\n")
    (tmp_path / "home/alice/.sh_history").write_text("ls\n")
    (tmp_path / "home/alice/.ash_history").write_text("\n")
    (tmp_path / "home/alice/.bash_sessions").mkdir()
    (tmp_path / "home/alice/.bash_sessions/ABC.history").write_text("pwd\n")
    db = Database([shell_history.SPEC], paths=HostPaths(root=str(tmp_path)))
    rows = db.execute("SELECT uid, time, command, history_file FROM shell_history").rows
    assert rows == [
        (0, 1700000000, "id", "/root/.bash_history"),
        (1000, 1700000005, "git status", "/home/alice/.zsh_history"),
        (1000, 0, "ls", "/home/alice/.sh_history"),
        (1000, 0, "", "/home/alice/.ash_history"),
        (1000, 0, "pwd", "/home/alice/.bash_sessions/ABC.history"),
    ]
    assert db.execute("SELECT command FROM shell_history WHERE uid = 1000").rows == [
        ("git status",),
        ("ls",),
        ("",),
        ("pwd",),
    ]
