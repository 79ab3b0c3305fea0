"""agent-cli as users run it: a real subprocess, real tables, exit codes and stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": ROOT, "HOME": os.environ.get("HOME", "/root")}
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        input=stdin, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT,
    )


def test_query_pretty_finds_this_process() -> None:
    me = os.getpid()
    out = cli("query", f"SELECT pid, parent FROM processes WHERE pid = {me}")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [c.strip() for c in lines[1].split("|")[1:3]] == ["pid", "parent"]
    assert lines[3].split("|")[1].strip() == str(me)
    assert lines[3].split("|")[2].strip() == str(os.getppid())


def test_query_json_is_an_array_of_string_objects() -> None:
    out = cli("query", "--json", "SELECT 1 AS one, 'x' AS two, NULL AS three")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [{"one": "1", "three": "", "two": "x"}]


def test_query_csv_and_line() -> None:
    assert cli("query", "--csv", "SELECT 1 AS a, 'b,c' AS b").stdout == 'a,b\n1,"b,c"\n'
    assert cli("query", "--line", "SELECT 1 AS a").stdout == "    a = 1\n\n"


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELEC 1", 'near "SELEC": syntax error'),
        ("SELECT * FROM no_such_table", "no such table: no_such_table"),
        ("SELECT * FROM hash", "Table hash was queried without a required column"),
        ("DELETE FROM processes", ""),
        ("ATTACH ':memory:' AS x", "not authorized"),
    ],
)
def test_bad_query_prints_error_and_exits_1(sql: str, message: str) -> None:
    out = cli("query", sql)
    assert out.returncode == 1
    assert out.stderr.startswith("Error: ") and message in out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""


def test_time_limit_flag() -> None:
    sql = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    out = cli("--time-limit", "0.3", "query", sql)
    assert out.returncode == 1 and "time limit of 0.3 s" in out.stderr


def test_tables_and_schema() -> None:
    tables = cli("tables")
    assert tables.returncode == 0
    names = [line.split()[0] for line in tables.stdout.splitlines()]
    for expected in ("processes", "listening_ports", "users", "hash", "file", "usb_devices"):
        assert expected in names
    schema = cli("schema", "processes")
    assert schema.returncode == 0 and schema.stdout.startswith("CREATE TABLE processes(`pid` BIGINT")
    missing = cli("schema", "nope")
    assert missing.returncode == 1 and missing.stderr == "Error: no such table: nope\n"


def test_shell_reads_statements_and_meta_commands_from_stdin() -> None:
    script = "\n".join(
        [
            ".tables proc",
            "SELECT 1 AS a;",
            "SELECT",
            "  2 AS b;",
            ".mode json",
            "SELECT 3 AS c;",
            ".mode xml",
            "SELECT nope;",
            ".schema time",
            ".frobnicate",
            ".quit",
            "SELECT 'never reached';",
        ]
    )
    out = cli("shell", stdin=script + "\n")
    assert "  => processes" in out.stdout and "  => users" not in out.stdout
    assert "| a |" in out.stdout and "| 2 |" in out.stdout
    assert '{"c":"3"}' in out.stdout
    assert "CREATE TABLE time(" in out.stdout
    assert "never reached" not in out.stdout
    errors = out.stderr.splitlines()
    assert errors[0] == "Error: near line 7: mode should be one of: pretty json csv line"
    assert errors[1].startswith("Error: near line 8: no such column: nope")
    assert errors[2].startswith('Error: near line 10: unknown command or invalid arguments: ".frobnicate"')
    assert out.returncode == 1, "errors in piped input give a non-zero exit, as osqueryi"


def test_status_without_connect_is_a_clear_error() -> None:
    out = cli("status")
    assert out.returncode == 1 and "--connect" in out.stderr


def test_connect_to_missing_socket_is_a_clear_error(tmp_path) -> None:
    out = cli("--connect", str(tmp_path / "none.sock"), "query", "SELECT 1")
    assert out.returncode == 1 and out.stderr.startswith("Error: ") and "Traceback" not in out.stderr
