"""agent-cli watch: live rows from a real source, an audit log replay, errors, Ctrl-C, --connect."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.cli import main
from agent.control import ControlServer, FunctionHandler
from agent.events import EventManager, EventOptions
from tables.registry import all_specs
from tables.sqlite import Database

REPO = Path(__file__).resolve().parent.parent


def _hex(text: str) -> str:
    return text.encode().hex().upper()


AUDIT_LOG = [
    "type=SYSCALL msg=audit(1700000000.123:100): arch=c000003e syscall=59 success=yes exit=0 a0=55d0 a1=55d1 "
    "a2=55d2 a3=0 items=2 ppid=1000 pid=1001 auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 "
    'egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=1 comm="true" exe="/usr/bin/true" key="zeek-agent"',
    f'type=EXECVE msg=audit(1700000000.123:100): argc=3 a0="/bin/true" a1="hello" a2={_hex("big world")}',
    'type=CWD msg=audit(1700000000.123:100): cwd="/home/user"',
    'type=PATH msg=audit(1700000000.123:100): item=0 name="/bin/true" inode=123 dev=08:01 mode=0100755 '
    "ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0",
    "this line is not an audit record at all",
    f"type=PROCTITLE msg=audit(1700000000.123:100): proctitle={_hex('/bin/true')}",
    "type=EOE msg=audit(1700000000.123:100):",
]


def _cli(*args: str, **kw) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, "-m", "agent.cli", *args],
        cwd=REPO,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )


def test_unknown_table_is_an_error(capsys) -> None:
    assert main(["watch", "no_such_events"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: no event table named 'no_such_events'") and "process_events" in err
    assert main(["watch", "processes"]) == 1  # a table, but not an event table
    assert main(["watch", "process_events", "--columns", "pid,bogus"]) == 1
    assert "no column bogus" in capsys.readouterr().err


def test_rows_print_control_characters_escaped() -> None:
    """A command line with a terminal escape or a newline cannot drive the terminal or break the line."""
    import io

    from agent.watch import RowPrinter

    spec = next(s for s in all_specs() if s.name == "process_events")
    out = io.StringIO()
    RowPrinter(spec, as_json=False, columns=["pid", "cmdline"], out=out).print(
        {"pid": 7, "cmdline": "evil \x1b[2J\nnext\tline"}
    )
    _header, line = out.getvalue().splitlines()
    assert line.split(None, 1) == ["7", "evil \\x1b[2J\\nnext\\tline"]


def test_audit_log_replay_prints_rows_and_a_summary(tmp_path: Path, capsys) -> None:
    log = tmp_path / "audit.log"
    log.write_text("\n".join(AUDIT_LOG) + "\n")
    assert main(["watch", "process_events", "--json", "--audit-log", str(log)]) == 0
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 1
    row = rows[0]
    assert (row["pid"], row["parent"], row["path"], row["cmdline"], row["cwd"], row["uid"]) == (
        1001,
        1000,
        "/usr/bin/true",
        "/bin/true hello big world",
        "/home/user",
        1000,
    )
    assert "7 lines read" in err and "1 malformed" in err
    assert "malformed line 5: not an audit record" in err

    assert main(["watch", "process_events", "--audit-log", str(log)]) == 0  # text view
    out, _ = capsys.readouterr()
    header, line = out.splitlines()
    assert header.split()[:3] == ["time", "pid", "parent"]
    assert "1001" in line and line.endswith("/bin/true hello big world")


def test_bytes_that_are_not_utf8_print_as_a_query_shows_them(tmp_path: Path, capsys) -> None:
    """An executable and an argument that are not UTF-8: printed as \\xHH, the form SQL over the table gives."""
    exe, arg = b"/usr/bin/tr\xfeue", b"a\xffb"
    lines = [line.replace('exe="/usr/bin/true"', f"exe={exe.hex().upper()}") for line in AUDIT_LOG]
    lines = [
        line.replace(f"a2={_hex('big world')}", f"a2={arg.hex().upper()}") if line.startswith("type=EXECVE") else line
        for line in lines
    ]
    log = tmp_path / "audit.log"
    log.write_text("\n".join(lines) + "\n")
    assert main(["watch", "process_events", "--json", "--audit-log", str(log)]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["path"] == "/usr/bin/tr\\xFEue" and row["cmdline"] == "/bin/true hello a\\xFFb"
    assert main(["watch", "process_events", "--audit-log", str(log)]) == 0
    _header, line = capsys.readouterr().out.splitlines()
    assert line.endswith("/bin/true hello a\\xFFb")


def test_audit_log_errors(tmp_path: Path, capsys) -> None:
    assert main(["watch", "process_events", "--audit-log", str(tmp_path / "missing.log")]) == 1
    assert "Error: cannot read the audit log" in capsys.readouterr().err
    assert main(["watch", "process_events", "--audit-log", str(tmp_path)]) == 1  # a directory
    assert "Error: cannot read the audit log" in capsys.readouterr().err
    assert main(["watch", "hardware_events", "--audit-log", str(tmp_path)]) == 1
    assert "--audit-log yields" in capsys.readouterr().err


def test_audit_log_from_standard_input_compressed_or_not(tmp_path: Path) -> None:
    import gzip

    text = "\n".join(AUDIT_LOG) + "\n"
    for data in (text.encode(), gzip.compress(text.encode())):
        proc = subprocess.run(
            [sys.executable, "-m", "agent.cli", "watch", "process_events", "--json", "--audit-log", "-"],
            cwd=REPO,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
            input=data,
            capture_output=True,
            timeout=60,
        )
        out, err = proc.stdout.decode(), proc.stderr.decode()
        assert proc.returncode == 0, err
        assert [json.loads(line)["cmdline"] for line in out.splitlines()] == ["/bin/true hello big world"]
        assert err.startswith("standard input") and "7 lines read" in err


def test_gzip_compressed_log_file(tmp_path: Path, capsys) -> None:
    import gzip

    log = tmp_path / "audit.log.1.gz"
    log.write_bytes(gzip.compress(("\n".join(AUDIT_LOG) + "\n").encode()))
    assert main(["watch", "process_events", "--json", "--audit-log", str(log)]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["pid"] == 1001
    assert err.startswith(f"{log} (gzip): 7 lines read")
    log.write_bytes(gzip.compress(("\n".join(AUDIT_LOG) + "\n").encode())[:-12])  # the end of the stream is missing
    assert main(["watch", "process_events", "--json", "--audit-log", str(log)]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["pid"] == 1001  # the rows it could read
    assert "Error: " in err and "the gzip data ends early" in err


def test_closed_stdout_ends_the_replay_quietly(tmp_path: Path) -> None:
    """``agent-cli watch ... --audit-log big.log | head -1``."""
    log = tmp_path / "audit.log"
    with log.open("w") as f:
        for serial in range(1, 5001):
            for line in AUDIT_LOG:
                f.write(line.replace(":100)", f":{serial})") + "\n")
    proc = _cli("watch", "process_events", "--audit-log", str(log))
    first = proc.stdout.readline()
    proc.stdout.close()  # as head does after its line
    proc.wait(timeout=120)
    err = proc.stderr.read()
    proc.stderr.close()
    assert first.split()[:3] == ["time", "pid", "parent"]
    assert proc.returncode == 0, err
    assert err == ""  # no "Broken pipe", no traceback, no summary of a replay nobody reads


def test_interpreted_input_gets_told_to_use_the_raw_format(tmp_path: Path, capsys) -> None:
    log = tmp_path / "ausearch-i.txt"
    log.write_text(
        "----\ntype=PROCTITLE msg=audit(11/14/2023 22:13:20.123:100) : proctitle=/bin/true\n"
        "type=SYSCALL msg=audit(11/14/2023 22:13:20.123:100) : arch=x86_64 syscall=execve success=yes exit=0\n"
    )
    assert main(["watch", "process_events", "--audit-log", str(log)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"Error: {log}: line 2: this is ausearch's interpreted output")
    assert "ausearch --raw" in err and "Traceback" not in err


def test_summary_names_the_bad_record_and_what_was_skipped(tmp_path: Path, capsys) -> None:
    log = tmp_path / "audit.log"
    log.write_text(
        "type=SYSCALL msg=audit(1700000100.002:21): arch=c000003e syscall=42 success=no exit=-115 a0=3 a1=7ff a2=10 "
        'a3=0 items=0 ppid=1 pid=950 auid=0 uid=33 gid=33 euid=33 suid=33 fsuid=33 egid=33 sgid=33 fsgid=33 exe="/usr/bin/php"\n'
        "type=SOCKADDR msg=audit(1700000100.002:21): saddr=0A00005020\n"
        'type=PROCTITLE msg=audit(1700000100.002:21): proctitle="php"\n'
        "type=SYSCALL msg=audit(1700000100.003:22): arch=8 syscall=11 success=yes exit=0 a0=3 pid=1\n"
        "type=USER_LOGIN msg=audit(1700000100.004:23): pid=1 uid=0 msg='op=login res=success'\n"
    )
    assert main(["watch", "socket_events", "--json", "--columns", "action,overflows", "--audit-log", str(log)]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["overflows"] == "sockaddr"
    assert "2 events, 1 rows (1 socket_events), 1 malformed" in err
    assert "  malformed line 2: SOCKADDR record of event 1700000100.002:21: saddr: AF_INET6 sockaddr too short" in err
    assert "  events without a row: 1 unknown_arch (0x00000008: 1)" in err
    assert "  records of other types (no rows are built from them): 1 (USER_LOGIN 1)" in err


def _await_line(stream, prefix: str, seconds: float = 30.0) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        if line.startswith(prefix):
            return line
    raise AssertionError(f"no line starting with {prefix!r}")


def _rows_until(stream, pred, seconds: float = 30.0) -> list[dict]:
    """JSON rows read from ``stream`` until one matches ``pred`` (bounded wait)."""
    rows: list[dict] = []
    buf = b""
    fd = stream.fileno()  # raw reads: a buffered readline would hide lines from select()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            rows.append(json.loads(line))
            if pred(rows[-1]):
                return rows
    raise AssertionError(f"no matching row among {len(rows)} rows")


def test_watch_prints_rows_from_the_proc_connector_until_ctrl_c(tmp_path: Path) -> None:
    watcher = _cli("watch", "process_events", "--json", "--source", "proc_connector")
    try:
        ready = watcher.stderr.readline()
        if not ready.startswith("watching"):
            watcher.kill()
            pytest.skip(f"no process source here: {ready.strip()} {watcher.stderr.read().strip()}")
        # A process that lives long enough for /proc to be read at exec time.
        child = subprocess.run(["/bin/sleep", "0.2"], cwd=tmp_path)
        rows = _rows_until(watcher.stdout, lambda r: r["cmdline"] == "/bin/sleep 0.2" and r["cwd"] == str(tmp_path))
        watcher.send_signal(signal.SIGINT)
        _out, err = watcher.communicate(timeout=30)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert rows[-1]["path"] == os.path.realpath("/bin/sleep") and rows[-1]["parent"] == os.getpid()
    assert child.returncode == 0


def test_duration_ends_watch(tmp_path: Path) -> None:
    watcher = _cli("watch", "hardware_events", "--duration", "0")
    out, err = watcher.communicate(timeout=60)
    if "Error:" in err:
        pytest.skip(f"no uevent source here: {err.strip()}")
    assert watcher.returncode == 0 and out == "" and "Traceback" not in err


def test_ctrl_c_ends_watch_quietly() -> None:
    watcher = _cli("watch", "hardware_events")
    try:
        ready = watcher.stderr.readline()
        if not ready.startswith("watching"):
            watcher.kill()
            pytest.skip(f"no uevent source here: {ready.strip()}")
        watcher.send_signal(signal.SIGINT)
        _out, err = watcher.communicate(timeout=30)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 0
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


async def test_watch_through_a_running_agents_control_socket(tmp_path: Path, capsys) -> None:
    """--connect polls the daemon for rows newer than the last printed (a ControlServer like agentd's)."""
    manager = EventManager(EventOptions(disable_events=True))
    specs = [s for s in all_specs() if s.name == "hardware_events"]
    db = Database(specs, services=manager.services)

    async def query(sql: str):
        result = db.execute(sql)
        return result.columns, result.rows

    server = ControlServer(str(tmp_path / "agentd.sock"), FunctionHandler(query, dict))
    await server.start()
    try:
        manager.sink("hardware_events", {"action": "add", "vendor_id": "0001"})  # before watch: not shown
        watching = asyncio.create_task(
            asyncio.to_thread(
                main,
                [
                    "--connect",
                    str(tmp_path / "agentd.sock"),
                    "watch",
                    "hardware_events",
                    "--json",
                    "--count",
                    "2",
                    "--duration",
                    "120",
                ],
            )
        )
        deadline = time.monotonic() + 30
        while "watching" not in capsys.readouterr().err and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        manager.sink("hardware_events", {"action": "add", "vendor_id": "046d", "model_id": "c52b"})
        manager.sink("hardware_events", {"action": "remove", "vendor_id": "046d", "model_id": "c52b"})
        assert await watching == 0
    finally:
        await server.close()
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["action"], r["vendor_id"]) for r in rows] == [("add", "046d"), ("remove", "046d")]
