"""crontab: canned crontab text and a fixture tree of system and user crontabs."""

from __future__ import annotations

from pathlib import Path

from tables import crontab
from tables.crontab import parse_crontab
from tables.spec import HostPaths
from tables.sqlite import Database

SYSTEM = """# /etc/crontab: system-wide crontab
SHELL=/bin/sh
PATH=/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin
MAILTO = ""

17 *\t* * *\troot    cd / && run-parts --report /etc/cron.hourly
25 6 * * 1-5 root test -x /usr/sbin/anacron || ( cd / && run-parts --report /etc/cron.daily )
@reboot\troot  /usr/local/bin/on-boot.sh   --flag
@hourly
* * * *
"""


def test_parse_crontab() -> None:
    rows = parse_crontab(SYSTEM)
    assert rows[0] == {
        "event": "",
        "minute": "17",
        "hour": "*",
        "day_of_month": "*",
        "month": "*",
        "day_of_week": "*",
        "command": "root cd / && run-parts --report /etc/cron.hourly",  # runs of blanks collapse (osquery)
    }
    assert rows[1]["day_of_week"] == "1-5"
    assert rows[2] == {
        "event": "@reboot",
        "minute": "",
        "hour": "",
        "day_of_month": "",
        "month": "",
        "day_of_week": "",
        "command": "root /usr/local/bin/on-boot.sh --flag",
    }
    assert len(rows) == 3  # env lines, comments, blank and short lines, an @event alone are skipped


def test_fixture_tree(tmp_path: Path) -> None:
    (tmp_path / "etc/cron.d").mkdir(parents=True)
    (tmp_path / "var/spool/cron/crontabs").mkdir(parents=True)
    (tmp_path / "etc/crontab").write_text(SYSTEM)
    (tmp_path / "etc/cron.d/backup").write_text("MAILTO=root\n0 2 * * * root /usr/bin/backup\n")
    (tmp_path / "var/spool/cron/crontabs/alice").write_text("# user crontab\n*/5 * * * * /home/alice/poll\n")
    db = Database([crontab.SPEC], paths=HostPaths(root=str(tmp_path)))
    rows = db.execute("SELECT path, event, minute, command FROM crontab").rows
    assert [r[0] for r in rows] == ["/etc/crontab"] * 3 + ["/etc/cron.d/backup", "/var/spool/cron/crontabs/alice"]
    assert rows[-1][1:] == ("", "*/5", "/home/alice/poll")
    assert db.execute("SELECT command FROM crontab WHERE event = '@reboot'").rows == [
        ("root /usr/local/bin/on-boot.sh --flag",)
    ]


def test_live_host_paths_exist() -> None:
    rows = Database([crontab.SPEC]).execute("SELECT DISTINCT path FROM crontab").rows
    for (path,) in rows:
        assert Path(path).is_file()
