"""agent-cli as users run it: a real subprocess, real tables, exit codes and stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests._terminal import Terminal

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": ROOT, "HOME": os.environ.get("HOME", "/root")}
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
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
        ("DELETE FROM processes", "not authorized: table processes may not be modified"),
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


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "ten"])
def test_time_limit_flag_refuses_bad_values(value: str) -> None:
    out = cli("--time-limit", value, "query", "SELECT 1")
    assert out.returncode == 2 and "--time-limit" in out.stderr and "Traceback" not in out.stderr


async def test_time_limit_flag_reaches_a_running_agent(tmp_path, capsys) -> None:
    """With --connect, agentd (here a ControlServer like its own) interrupts the query at --time-limit."""
    import asyncio

    from agent.cli import main
    from agent.control import ControlServer, FunctionHandler
    from tables.sqlite import Database

    db = Database([], time_limit=60)

    async def query(sql: str, time_limit: float | None = None):
        result = await asyncio.to_thread(db.execute, sql, time_limit=time_limit)
        return result.columns, result.rows

    server = ControlServer(str(tmp_path / "agentd.sock"), FunctionHandler(query, dict))
    await server.start()
    try:
        sql = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
        code = await asyncio.to_thread(
            main, ["--connect", str(tmp_path / "agentd.sock"), "--time-limit", "0.3", "query", sql]
        )
    finally:
        await server.close()
        db.close()
    assert code == 1 and "time limit of 0.3 s" in capsys.readouterr().err


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


def test_osquery_utility_tables_describe_this_process_like_osqueryi() -> None:
    out = cli("query", "--json", "SELECT pid, version, build_platform, extensions FROM osquery_info")
    assert out.returncode == 0, out.stderr
    (row,) = json.loads(out.stdout)
    assert row["build_platform"] == "linux" and row["extensions"] == "inactive" and row["version"]
    assert int(row["pid"]) > 0 and int(row["pid"]) != os.getpid()
    flags = cli("query", "--csv", "SELECT name FROM osquery_flags WHERE name = 'host_identifier'")
    assert flags.stdout.splitlines() == ["name", "host_identifier"], flags.stderr
    names = [line.split()[0] for line in cli("tables", "osquery_").stdout.splitlines()]
    assert {"osquery_info", "osquery_flags", "osquery_schedule", "osquery_packs"} <= set(names)
    schema = cli("shell", stdin=".schema osquery_info\n")
    assert schema.stdout.startswith("CREATE TABLE osquery_info(`pid` INTEGER, `uuid` TEXT")


def test_each_statement_prints_its_own_result() -> None:
    out = cli("query", "--csv", "SELECT 1 AS a; SELECT 2 AS b, ';' AS c;")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "a\n1\nb,c\n2,;\n"
    failed = cli("query", "SELECT 1 AS a; SELEC 2")
    assert failed.returncode == 1 and failed.stderr == 'Error: near "SELEC": syntax error\n'


def test_split_statements_and_incomplete_lines() -> None:
    from agent.cli import _incomplete, split_statements

    assert split_statements("SELECT ';'; SELECT 2 ;  ;") == ["SELECT ';';", " SELECT 2 ;"]
    assert split_statements("SELECT 1") == ["SELECT 1"] and split_statements(" ; ") == []
    assert _incomplete("SELECT pid,") and _incomplete("SELECT * FROM processes WHERE")
    assert not _incomplete("SELECT pid FROM processes") and not _incomplete("SELEC 1")


def _shell(home: str) -> Terminal:
    """agent-cli shell on a real pseudo-terminal, as a user at a keyboard drives it."""
    env = {**os.environ, "PYTHONPATH": ROOT, "HOME": home, "TERM": "dumb"}
    return Terminal([sys.executable, "-m", "agent.cli", "--time-limit", "120", "shell"], env=env, cwd=ROOT)


def test_interactive_shell_on_a_terminal(tmp_path) -> None:
    """Prompt, a multi-line statement, Ctrl-C (line and running query), Ctrl-D, history across sessions."""
    term = _shell(str(tmp_path))
    try:
        term.expect("agent> ")
        term.send("SELECT 40 +\r")  # not a whole statement: the shell asks for more
        term.expect("...> ")
        term.send("2 AS answer;\r")
        assert "| 42     |" in term.expect("agent> ")
        term.send("SELECT 'typed, then abandoned'\x03")  # Ctrl-C clears the line
        term.expect("agent> ")
        term.send("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c\r")
        term.expect("FROM c\r\n")
        term.send("\x03")  # Ctrl-C stops the running query (it would never end), not the shell
        assert "count(*)" not in term.expect("agent> ")
        term.send(".mode line\r")
        term.expect("agent> ")
        term.send("SELECT 1 AS one\r")
        assert "one = 1" in term.expect("agent> ")
        term.send("\x04")  # Ctrl-D leaves
        assert term.close() == 0
    finally:
        term.kill()
    history = (tmp_path / ".agent_cli_history").read_text().splitlines()
    assert history[-2:] == [".mode line", "SELECT 1 AS one"], history
    assert "SELECT 40 +" in history and "SELECT 'typed, then abandoned'" not in history

    again = _shell(str(tmp_path))  # a new session recalls the last one's lines with Up
    try:
        again.expect("agent> ")
        again.send("\x1b[A\r")  # Up, Enter: runs "SELECT 1 AS one" again
        assert "| one |" in again.expect("agent> ")
        again.send(".quit\r")
        assert again.close() == 0
    finally:
        again.kill()


@pytest.mark.parametrize("command", ["query", "shell"])
def test_reader_closing_the_pipe_early_is_not_an_error(command: str) -> None:
    """`agent-cli ... | head -1`: exit 0, nothing on stderr (no "Broken pipe", no traceback)."""
    sql = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 200000) SELECT x FROM c"
    args = ["query", sql] if command == "query" else ["shell"]
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdin.write(f"{sql};\n".encode() if command == "shell" else b"")
    proc.stdin.close()
    assert proc.stdout.readline().startswith(b"+---")  # far more is coming than a pipe holds
    proc.stdout.close()
    assert proc.wait(timeout=60) == 0
    assert proc.stderr.read() == b""


def test_the_status_table_names_agent_cli_knows_are_the_status_tables() -> None:
    from agent.cli import STATUS_TABLES
    from agent.status_tables import SPECS

    assert set(STATUS_TABLES) == {s.name for s in SPECS}


def test_every_table_is_listed_and_queryable_though_loaded_on_use() -> None:
    from tables.registry import TABLE_MODULES

    names = {line.split()[0] for line in cli("tables").stdout.splitlines()}
    assert names >= set(TABLE_MODULES) | {"osquery_info", "agent_info"}
    shell = cli("shell", stdin=".tables osquery_f\n.schema time\nSELECT count(*) AS n FROM time;\n.mode line\n")
    assert shell.returncode == 0, shell.stderr
    assert "  => osquery_flags" in shell.stdout and "CREATE TABLE time(" in shell.stdout
    assert "n = 1" not in shell.stdout and "| 1 |" in shell.stdout


def test_watch_is_offered_and_parsed_without_importing_it_for_other_commands() -> None:
    assert "watch" in cli("--help").stdout
    usage = cli("watch", "--help")
    assert usage.returncode == 0 and "--audit-log FILE" in usage.stdout
    bad = cli("watch")
    assert bad.returncode == 2 and "the following arguments are required: table" in bad.stderr
