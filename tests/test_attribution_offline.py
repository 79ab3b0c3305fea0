"""collectord attribute (collector.attribution.offline): conn.log in, osq-attribution.log out.

The conn.log texts below have the exact shape Zeek 8.2.2 writes (its ASCII header, field
order and JSON keys, as tests/test_attribution_zeek.py sees from the real Zeek); the
engine state comes from rows as agents send them, saved and loaded like collectord's.
"""

from __future__ import annotations

import datetime
import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from collector.attribution import Action, AttributionEngine, Connection, Table
from collector.attribution.connlog import ConnLogError, ConnLogStats, read_conn_log
from collector.attribution.engine import StateError
from collector.attribution.offline import attribute_conn_log, main
from collector.attribution.persist import load_engine, save_engine, state_path
from collector.zeeklog.writer import LogFormat

REPO = Path(__file__).resolve().parent.parent
T0 = 1_795_000_000.25

HEADER = """#separator \\x09
#set_separator\t,
#empty_field\t(empty)
#unset_field\t-
#path\tconn
#open\t2026-11-29-23-00-23
#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\tmissed_bytes\thistory\torig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\ttunnel_parents\tip_proto\tcommunity_id
#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\tbool\tbool\tcount\tstring\tcount\tcount\tcount\tcount\tset[string]\tcount\tstring
"""


def ascii_line(ts, uid, oh, op, rh, rp, proto="tcp"):
    return f"{ts:.6f}\t{uid}\t{oh}\t{op}\t{rh}\t{rp}\t{proto}\t-\t0.001\t0\t0\tSF\tT\tT\t0\tShAdDaFf\t5\t268\t3\t164\t-\t6\t-\n"


def json_line(ts, uid, oh, op, rh, rp, proto="tcp"):
    return (
        json.dumps(
            {
                "ts": ts,
                "uid": uid,
                "id.orig_h": oh,
                "id.orig_p": op,
                "id.resp_h": rh,
                "id.resp_p": rp,
                "proto": proto,
                "conn_state": "SF",
            }
        )
        + "\n"
    )


CONNS = [
    (T0, "CAAAAAAAAAAAAAAAA1", "10.0.0.1", 40000, "10.0.0.2", 80),
    (T0 + 1, "CAAAAAAAAAAAAAAAA2", "10.0.0.1", 40001, "10.0.0.2", 22),
    (T0 + 2, "CAAAAAAAAAAAAAAAA3", "192.0.2.7", 5353, "10.0.0.2", 80),
]


def state_engine() -> AttributionEngine:
    eng = AttributionEngine()
    eng.set_host("host-a", hostname="alpha", addresses=["10.0.0.1"], now=T0 - 100)
    eng.set_host("host-b", hostname="beta", addresses=["10.0.0.2"], now=T0 - 100)
    eng.ingest("host-a", Table.USERS, [(Action.SNAPSHOT, {"uid": 1000, "username": "alice"})], T0 - 100)
    eng.ingest("host-b", Table.USERS, [(Action.SNAPSHOT, {"uid": 33, "username": "www-data"})], T0 - 100)
    eng.ingest(
        "host-a",
        Table.PROCESS_EVENTS,
        [
            (
                Action.ADDED,
                {
                    "pid": 500,
                    "path": "/usr/bin/curl",
                    "cmdline": "curl http://10.0.0.2/",
                    "uid": 1000,
                    "parent": 1,
                    "time": int(T0 - 1),
                    "timestamp": T0 - 1,
                },
            )
        ],
        T0,
    )
    eng.ingest(
        "host-a",
        Table.SOCKET_EVENTS,
        [
            (
                Action.ADDED,
                {
                    "action": "connect",
                    "pid": 500,
                    "path": "/usr/bin/curl",
                    "family": 2,
                    "protocol": 6,
                    "local_address": "10.0.0.1",
                    "local_port": 40000,
                    "remote_address": "10.0.0.2",
                    "remote_port": 80,
                    "time": int(T0),
                    "timestamp": T0 - 0.002,
                    "status": "succeeded",
                    "uid": 1000,
                },
            )
        ],
        T0,
    )
    eng.ingest(
        "host-b",
        Table.LISTENING_PORTS,
        [
            (
                Action.ADDED,
                {
                    "pid": 700,
                    "port": 80,
                    "protocol": 6,
                    "family": 2,
                    "address": "0.0.0.0",
                    "fd": 3,
                    "socket": 99,
                    "path": "/usr/sbin/nginx",
                    "cmdline": "nginx",
                    "uid": 33,
                    "start_time": int(T0 - 900),
                },
            )
        ],
        T0 - 50,
    )
    return eng


def read_zeek_ascii(path: Path) -> list[dict[str, str]]:
    fields: list[str] = []
    rows = []
    for line in path.read_text().splitlines():
        if line.startswith("#fields"):
            fields = line.split("\t")[1:]
        elif not line.startswith("#"):
            rows.append(dict(zip(fields, line.split("\t"), strict=True)))
    return rows


@pytest.mark.parametrize("kind", ["ascii", "json", "ascii.gz", "json.gz"])
def test_reader_formats(tmp_path, kind) -> None:
    body = HEADER + "".join(ascii_line(*c) for c in CONNS) + "#close\t2026-11-29-23-00-24\n"
    if kind.startswith("json"):
        body = "".join(json_line(*c) for c in CONNS)
    path = tmp_path / f"conn.log{'.gz' if kind.endswith('gz') else ''}"
    if kind.endswith("gz"):
        path.write_bytes(gzip.compress(body.encode()))
    else:
        path.write_text(body)
    stats = ConnLogStats()
    conns = list(read_conn_log(str(path), stats))
    assert [(c.uid, c.orig_h, c.orig_p, c.resp_h, c.resp_p, c.proto) for c in conns] == [
        (u, oh, op, rh, rp, 6) for _, u, oh, op, rh, rp in CONNS
    ]
    assert conns[0].ts == pytest.approx(T0)
    assert (stats.kind, stats.gzipped, stats.records, stats.bad_lines) == (
        kind.split(".")[0],
        kind.endswith("gz"),
        3,
        0,
    )


def test_reader_skips_bad_lines_and_follows_new_headers(tmp_path) -> None:
    text = (
        "garbage before any header?\n".replace("garbage", "#garbage")
        + HEADER
        + ascii_line(*CONNS[0])
        + "only\ttwo\n"
        + ascii_line(T0, "CBadAddr", "not-an-ip", 1, "10.0.0.2", 80)
        + ascii_line(T0, "CBadProto", "10.0.0.1", 1, "10.0.0.2", 80, proto="gre")
        + ascii_line(T0, "CNoUid", "10.0.0.1", 1, "10.0.0.2", 80).replace("CNoUid", "-")
        # a second file appended, with another field order
        + "#separator \\x09\n#fields\tuid\tts\tproto\tid.resp_p\tid.resp_h\tid.orig_p\tid.orig_h\n"
        + f"CSecond\t{T0 + 5}\tudp\t53\t10.0.0.2\t5353\t10.0.0.1\n"
        + "C\\x09tab\t1\tudp\t53\t10.0.0.2\t5353\t10.0.0.1\n"
    )
    path = tmp_path / "conn.log"
    path.write_text(text)
    stats = ConnLogStats()
    conns = list(read_conn_log(str(path), stats))
    assert [c.uid for c in conns] == ["CAAAAAAAAAAAAAAAA1", "CSecond", "C\ttab"]
    assert conns[1].proto == 17 and conns[1].resp_p == 53
    assert stats.bad_lines == 4
    assert stats.examples[0] == "line 11: 2 fields where the header names 23"
    assert "not-an-ip" in stats.examples[1] and "gre" in stats.examples[2] and "no uid" in stats.examples[3]


def test_reader_refuses_what_is_no_conn_log(tmp_path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello\nworld\n")
    with pytest.raises(ConnLogError, match="neither Zeek's ASCII format"):
        list(read_conn_log(str(path)))
    with pytest.raises(ConnLogError, match="No such file"):
        list(read_conn_log(str(tmp_path / "missing.log")))
    bad = tmp_path / "cut.log.gz"
    bad.write_bytes(gzip.compress((HEADER + ascii_line(*CONNS[0])).encode())[:-10])
    with pytest.raises(ConnLogError, match="cannot read it"):
        list(read_conn_log(str(bad)))


def test_json_nested_ids_and_iso_times(tmp_path) -> None:
    line = {
        "ts": "2026-11-17T09:46:40.250000Z",
        "uid": "CIso",
        "id": {"orig_h": "10.0.0.1", "orig_p": 40000, "resp_h": "10.0.0.2", "resp_p": 80},
        "proto": "tcp",
    }
    path = tmp_path / "conn.json"
    path.write_text(json.dumps(line) + "\n[1, 2]\n")
    stats = ConnLogStats()
    (conn,) = read_conn_log(str(path), stats)
    assert (
        conn.ts == datetime.datetime(2026, 11, 17, 9, 46, 40, 250000, tzinfo=datetime.UTC).timestamp()
        and conn.orig_p == 40000
    )
    assert stats.bad_lines == 1 and "not a JSON object" in stats.examples[0]


@pytest.mark.parametrize("fmt", [LogFormat.ASCII, LogFormat.JSON])
def test_attribute_conn_log_writes_both_logs(tmp_path, fmt) -> None:
    conn_log = tmp_path / "conn.log"
    conn_log.write_text(HEADER + "".join(ascii_line(*c) for c in CONNS))
    report = attribute_conn_log(state_engine(), str(conn_log), tmp_path / "out", fmt=fmt)
    assert (report.connections, report.orig_attributed, report.resp_attributed, report.user_connections) == (3, 1, 2, 1)
    assert report.outcomes["orig:no_agent"] == 1 and report.outcomes["resp:no_socket"] == 1
    attribution = tmp_path / "out" / "osq-attribution.log"
    if fmt is LogFormat.ASCII:
        rows = read_zeek_ascii(attribution)
    else:
        rows = [{k: str(v) for k, v in json.loads(line).items()} for line in attribution.read_text().splitlines()]
    by_uid = {r["uid"]: r for r in rows}
    first = by_uid["CAAAAAAAAAAAAAAAA1"]
    assert (
        first["orig_host_id"],
        first["orig_hostname"],
        first["orig_pid"],
        first["orig_user"],
        first["orig_match"],
    ) == (
        "host-a",
        "alpha",
        "500",
        "alice",
        "socket_event",
    )
    assert (first["resp_host_id"], first["resp_pid"], first["resp_path"], first["resp_user"], first["resp_match"]) == (
        "host-b",
        "700",
        "/usr/sbin/nginx",
        "www-data",
        "listening_port",
    )
    assert first["community_id"] == Connection(T0, "x", "10.0.0.1", 40000, "10.0.0.2", 80, 6).community_id
    third = by_uid["CAAAAAAAAAAAAAAAA3"]
    assert third["orig_reason"] == "no_agent" and third.get("orig_host_id", "-") == "-"
    assert by_uid["CAAAAAAAAAAAAAAAA2"]["resp_reason"] == "no_socket"
    user = (tmp_path / "out" / "osq-user_connections.log").read_text()
    assert "curl http://10.0.0.2/" in user and "alice" in user


def test_state_file_round_trip_and_errors(tmp_path) -> None:
    eng = state_engine()
    path = state_path(tmp_path)
    size = save_engine(eng, path)
    assert size == path.stat().st_size and oct(path.stat().st_mode & 0o777) == "0o600"
    again = load_engine(path)
    conn = Connection(T0, "C1", "10.0.0.1", 40000, "10.0.0.2", 80, 6)
    assert again.attribute(conn) == eng.attribute(conn)
    assert not list(tmp_path.glob(".*tmp"))
    with pytest.raises(StateError, match="no attribution state there"):
        load_engine(tmp_path / "none")
    (tmp_path / "junk").write_bytes(b"\xc1\xc1\xc1")
    with pytest.raises(StateError, match="junk: not an attribution state file"):
        load_engine(tmp_path / "junk")


def test_command_line(tmp_path, capsys) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    save_engine(state_engine(), state_path(state_dir))
    conn_log = tmp_path / "conn.log.gz"
    conn_log.write_bytes(gzip.compress("".join(json_line(*c) for c in CONNS).encode()))
    out = tmp_path / "out"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "collector.attribution.offline",
            str(conn_log),
            "-o",
            str(out),
            "--state-dir",
            str(state_dir),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "3 connections: originator attributed 1 (33.3%), responder attributed 2 (66.7%)" in run.stderr
    lines = (out / "osq-attribution.log").read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["orig_pid"] == 500  # JSON in, JSON out
    # user errors: a clear message, no traceback
    for argv, message in [
        ([str(conn_log), "--state-dir", str(tmp_path / "nowhere")], "no attribution state there"),
        ([str(tmp_path / "missing.log"), "--state-dir", str(state_dir)], "No such file"),
    ]:
        assert main(argv) == 1
        assert message in capsys.readouterr().err
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "collector.attribution.offline",
            str(tmp_path / "missing.log"),
            "--state-dir",
            str(state_dir),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "Traceback" not in bad.stderr and "missing.log" in bad.stderr
