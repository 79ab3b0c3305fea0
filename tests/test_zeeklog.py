"""Zeek-format logs: the real Zeek's output for the same values, independent readers, rotation."""

import ipaddress
import json
import os
import shutil
import subprocess
import time

import pytest

from collector.zeek.columns import ColumnError
from collector.zeek.values import Count, Enum, Interval, Port, Proto, Time
from collector.zeek.ztypes import parse_type
from collector.zeeklog.formats import format_double
from collector.zeeklog.writer import LogField, LogFormat, ZeekLogWriter

FIELDS = [
    LogField(n, parse_type(t))
    for n, t in [
        ("s", "string"),
        ("n", "count"),
        ("d", "double"),
        ("t", "time"),
        ("iv", "interval"),
        ("a", "addr"),
        ("p", "port"),
        ("e", "transport_proto"),
        ("v", "vector of string"),
        ("st", "set[string]"),
    ]
]
A1 = ipaddress.ip_address("10.0.0.1")
ROWS = [
    [
        "plain",
        Count(1),
        3.14,
        Time(1714564800_500000000),
        Interval(1_500_000_000),
        ipaddress.ip_address("2001:db8::1"),
        Port(443),
        Enum("tcp"),
        ["a", "b"],
        frozenset({"x"}),
    ],
    ["", None, 1.0, Time(1000), Interval(-90_000_000_000), A1, Port(53, Proto.UDP), Enum("udp"), [], frozenset()],
    [
        "-",
        None,
        1e-7,
        Time(1714564800_000000000),
        Interval(0),
        A1,
        Port(0, Proto.ICMP),
        Enum("icmp"),
        ["", "-"],
        frozenset({""}),
    ],
    [
        "#a,b\tc\nd",
        None,
        0.1 + 0.2,
        Time(1714564800_000000000),
        Interval(1000),
        A1,
        Port(80),
        Enum("tcp"),
        ["a,b", "(empty)"],
        None,
    ],
    [
        "ü日本",
        None,
        1e20,
        Time(1714564800_000000000),
        Interval(1_000_000_000),
        A1,
        Port(80),
        Enum("tcp"),
        [b"\xc3\xa9\xe9", "\x01"],
        None,
    ],
]
# Zeek 8.2.2's own lines for these records (checked: the script in test_same_as_real_zeek writes them)
ZEEK_LINES = [
    "plain\t1\t3.14\t1714564800.500000\t1.500000\t2001:db8::1\t443\ttcp\ta,b\tx",
    "(empty)\t-\t1.0\t0.000001\t-90.000000\t10.0.0.1\t53\tudp\t(empty)\t(empty)",
    "\\x2d\t-\t0\t1714564800.000000\t0.000000\t10.0.0.1\t0\ticmp\t(empty),\\x2d\t(empty)",
    "\\x23a,b\\x09c\\x0ad\t-\t0.3\t1714564800.000000\t0.000001\t10.0.0.1\t80\ttcp\ta\\x2cb,\\x28empty)\t-",
    "ü日本\t-\t100000000000000000000.0\t1714564800.000000\t1.000000\t10.0.0.1\t80\ttcp\t\\xc3\\xa9\\xe9,\\x01\t-",
]


def write_log(tmp_path, fmt=LogFormat.ASCII, rows=ROWS):
    w = ZeekLogWriter(tmp_path, "mini", FIELDS, fmt=fmt)
    for r in rows:
        w.write(r)
    w.close()
    return (tmp_path / "mini.log").read_text()


def test_ascii_matches_zeek(tmp_path):
    lines = write_log(tmp_path).splitlines()
    assert lines[:5] == [
        "#separator \\x09",
        "#set_separator\t,",
        "#empty_field\t(empty)",
        "#unset_field\t-",
        "#path\tmini",
    ]
    assert lines[5].startswith("#open\t") and lines[-1].startswith("#close\t")
    time.strptime(lines[5].split("\t")[1], "%Y-%m-%d-%H-%M-%S")
    assert lines[6] == "#fields\ts\tn\td\tt\tiv\ta\tp\te\tv\tst"
    assert lines[7] == "#types\tstring\tcount\tdouble\ttime\tinterval\taddr\tport\tenum\tvector[string]\tset[string]"
    assert lines[8:-1] == ZEEK_LINES


@pytest.mark.parametrize(
    ("x", "text"),
    [
        (3.14, "3.14"),
        (1.0, "1.0"),
        (0.0, "0.0"),
        (-0.0, "0.0"),
        (1e-7, "0"),
        (1.2e-6, "0.000001"),
        (123456789.123457, "123456789.123457"),
        (50000.0, "50000.0"),
        (float("inf"), "inf"),
        (float("-inf"), "-inf"),
        (float("nan"), "nan"),
    ],
)
def test_double_formatting(x, text):
    assert format_double(x) == text


def test_json_matches_zeek(tmp_path):
    lines = write_log(tmp_path, LogFormat.JSON).splitlines()
    assert (
        lines[0]
        == '{"s":"plain","n":1,"d":3.14,"t":1714564800.5,"iv":1.5,"a":"2001:db8::1","p":443,"e":"tcp","v":["a","b"],"st":["x"]}'
    )
    assert lines[1] == '{"s":"","d":1.0,"t":1e-06,"iv":-90.0,"a":"10.0.0.1","p":53,"e":"udp","v":[],"st":[]}'
    assert json.loads(lines[3])["s"] == "#a,b\tc\nd"
    assert lines[4].endswith('"v":["\\\\xc3\\\\xa9\\\\xe9","\\\\x01"]}')
    assert all(isinstance(json.loads(line), dict) for line in lines)


def test_parsezeeklogs_reads_it_back(tmp_path):
    parsezeeklogs = pytest.importorskip("parsezeeklogs", reason="parsezeeklogs (test extra) is not installed")
    write_log(tmp_path)
    rec = list(parsezeeklogs.read_zeek(tmp_path / "mini.log", on_error="raise"))
    assert rec[0] == {
        "s": "plain",
        "n": 1,
        "d": 3.14,
        "t": 1714564800.5,
        "iv": 1.5,
        "a": "2001:db8::1",
        "p": 443,
        "e": "tcp",
        "v": ["a", "b"],
        "st": ["x"],
    }
    assert rec[1]["s"] == "" and rec[1]["n"] is None and rec[1]["v"] == [] and rec[1]["st"] == []
    assert rec[2]["s"] == "-" and rec[2]["v"] == ["", "-"]
    assert rec[3]["s"] == "#a,b\tc\nd" and rec[3]["v"] == ["a,b", "(empty)"] and rec[3]["st"] is None
    assert rec[4]["s"] == "ü日本" and len(rec) == 5


def test_bro_cut_reads_it(tmp_path):
    cut = shutil.which("zeek-cut") or shutil.which("bro-cut")
    if not cut:
        pytest.skip("neither zeek-cut nor bro-cut is installed (Debian: apt-get install bro-aux)")
    write_log(tmp_path)
    out = subprocess.run(
        [cut, "s", "p", "e"], stdin=open(tmp_path / "mini.log"), capture_output=True, text=True, check=True
    ).stdout
    assert out.splitlines() == [
        "plain\t443\ttcp",
        "(empty)\t53\tudp",
        "\\x2d\t0\ticmp",
        "\\x23a,b\\x09c\\x0ad\t80\ttcp",
        "ü日本\t80\ttcp",
    ]


def test_same_as_real_zeek(tmp_path):
    zeek = os.environ.get("ZEEK") or shutil.which("zeek")
    if not zeek:
        pytest.skip("no Zeek binary: put zeek on PATH or set $ZEEK")
    script = tmp_path / "mini.zeek"
    script.write_text(r"""
module M;
export { redef enum Log::ID += { LOG };
  type Info: record { s: string &log; n: count &log &optional; d: double &log; t: time &log; iv: interval &log; a: addr &log; p: port &log; e: transport_proto &log; v: vector of string &log; st: set[string] &log &optional; }; }
event zeek_init() {
  Log::create_stream(LOG, [$columns=Info, $path="mini"]);
  Log::write(LOG, Info($s="plain", $n=1, $d=3.14, $t=double_to_time(1714564800.5), $iv=1.5sec, $a=[2001:db8::1], $p=443/tcp, $e=tcp, $v=vector("a", "b"), $st=set("x")));
  Log::write(LOG, Info($s="", $d=1.0, $t=double_to_time(0.000001), $iv=-90sec, $a=10.0.0.1, $p=53/udp, $e=udp, $v=vector(), $st=set()));
  Log::write(LOG, Info($s="-", $d=1e-7, $t=double_to_time(1714564800.0), $iv=0sec, $a=10.0.0.1, $p=0/icmp, $e=icmp, $v=vector("", "-"), $st=set("")));
  Log::write(LOG, Info($s="#a,b\tc\nd", $d=0.1+0.2, $t=double_to_time(1714564800.0), $iv=0.000001sec, $a=10.0.0.1, $p=80/tcp, $e=tcp, $v=vector("a,b", "(empty)")));
  Log::write(LOG, Info($s="ü日本", $d=1e20, $t=double_to_time(1714564800.0), $iv=1sec, $a=10.0.0.1, $p=80/tcp, $e=tcp, $v=vector("é\xe9", "\x01")));
}
""")
    real = tmp_path / "real"
    real.mkdir()
    subprocess.run([zeek, "-b", str(script)], cwd=real, check=True, capture_output=True, timeout=120)
    zeek_lines = (real / "mini.log").read_text().splitlines()
    ours = write_log(tmp_path).splitlines()
    assert ours[:5] == zeek_lines[:5] and ours[6:8] == zeek_lines[6:8]
    assert ours[8:-1] == zeek_lines[8:-1]


def test_rotation_with_zeek_naming(tmp_path):
    now = [1714564801.0]
    w = ZeekLogWriter(tmp_path, "rot", FIELDS[:1], rotation_interval=2.0, clock=lambda: now[0])
    for step in range(6):
        w.write([f"r{step}"])
        now[0] += 0.7
    w.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert not (tmp_path / "rot.log").exists()
    assert len(names) == len(w.rotated) >= 2
    for p in w.rotated:
        text = p.read_text().splitlines()
        assert text[0] == "#separator \\x09" and text[-1].startswith("#close\t")
        assert (
            p.name
            == "rot."
            + time.strftime(
                "%Y-%m-%d-%H-%M-%S",
                time.localtime(time.mktime(time.strptime(text[5].split("\t")[1], "%Y-%m-%d-%H-%M-%S"))),
            )
            + ".log"
        )
    bodies = [line for p in w.rotated for line in p.read_text().splitlines() if not line.startswith("#")]
    assert bodies == [f"r{i}" for i in range(6)]


def test_sql_rows_follow_the_column_typing_rules(tmp_path):
    fields = [
        LogField("t", parse_type("time")),
        LogField("host", parse_type("string")),
        LogField("pid", parse_type("int")),
        LogField("fd_str", parse_type("string")),
        LogField("addr", parse_type("addr")),
    ]
    w = ZeekLogWriter(tmp_path, "osq-socket_events", fields)
    w.write_sql_row([4242, "3", "10.0.0.1"], prefix=[Time(0), "h"])
    w.write_sql_row(["77", "x", None], prefix=[Time(0), "h"])
    with pytest.raises(ColumnError, match="field pid"):
        w.write_sql_row(["abc", "3", None], prefix=[Time(0), "h"])
    w.close()
    body = [line for line in (tmp_path / "osq-socket_events.log").read_text().splitlines() if not line.startswith("#")]
    assert body == ["0.000000\th\t4242\t3\t10.0.0.1", "0.000000\th\t77\tx\t-"]
