"""The column typing rules: SQL values to declared Zeek types, or a clear error."""

import ipaddress
import json

import pytest

from collector.zeek import brokerjson as bj
from collector.zeek.columns import Action, ColumnError, EventSignature, RowEncoder, SignatureError, convert
from collector.zeek.values import Count, Enum, Interval, Port, Proto, Time
from collector.zeek.ztypes import parse_type

EXAMPLE = "event(resultInfo:osquery::ResultInfo, username:string, name:string, port_number:int)"


def conv(value, type_text):
    return bj.decode(json.loads(convert(value, parse_type(type_text))))


@pytest.mark.parametrize(
    ("value", "zeek", "expected"),
    [
        (5, "int", 5), (-5, "int", -5), (2**63 - 1, "int", 2**63 - 1), ("42", "int", 42), ("-42", "int", -42), (3.0, "int", 3),
        (5, "count", Count(5)), ("7", "count", Count(7)), (0, "count", Count(0)),
        (1.5, "double", 1.5), (2, "double", 2.0), ("2.5", "double", 2.5), ("1e3", "double", 1000.0),
        ("text", "string", "text"), ("", "string", ""), (12, "string", "12"), (1.5, "string", "1.5"), (b"blob", "string", "blob"),
        ("7", "string", "7"),
        (1, "bool", True), (0, "bool", False), ("true", "bool", True), ("0", "bool", False),
        ("10.0.0.1", "addr", ipaddress.ip_address("10.0.0.1")),
        ("::1", "addr", ipaddress.ip_address("::1")),
        ("10.1.2.3/8", "subnet", ipaddress.ip_network("10.0.0.0/8")),
        (80, "port", Port(80, Proto.UNKNOWN)), ("53/udp", "port", Port(53, Proto.UDP)),
        (1714564800, "time", Time(1714564800_000000000)), (1714564800.5, "time", Time(1714564800_500000000)),
        ("1714564800", "time", Time(1714564800_000000000)),
        (90, "interval", Interval(90_000_000_000)), (0.25, "interval", Interval(250_000_000)),
        (6, "transport_proto", Enum("tcp")), ("udp", "transport_proto", Enum("udp")),
    ],
)  # fmt: skip
def test_conversions(value, zeek, expected):
    assert conv(value, zeek) == expected


@pytest.mark.parametrize(
    ("value", "zeek", "fragment"),
    [
        (None, "int", "NULL cannot be sent as int"),
        (None, "string", "NULL"),
        (-1, "count", "out of range for count"),
        ("-1", "count", "out of range for count"),
        (2**63, "int", "out of range for int"),
        (2**64, "count", "out of range"),
        ("12abc", "int", "not an integer"),
        (" 12", "int", "not an integer"),
        ("", "int", "not an integer"),
        (1.5, "int", "not a whole number"),
        (float("nan"), "int", "not a whole number"),
        ("abc", "double", "not a number"),
        (float("inf"), "double", "not finite"),
        (2**53 + 1, "double", "cannot be represented exactly"),
        (b"\xff", "string", "not UTF-8"),
        (2, "bool", "not a boolean"),
        ("yes", "bool", "not a boolean"),
        ("", "addr", "not an IP address"),
        ("fe80::1%eth0", "addr", "zone index"),
        (167772161, "addr", "not an address"),
        ("10.0.0.0", "subnet", "not a subnet"),
        (70000, "port", "out of range for port"),
        ("x", "time", "not a number"),
        (47, "transport_proto", "not a transport protocol"),
        (1, "vector of string", "cannot take an SQL column value"),
        (1, "osquery::Other", "cannot take an SQL column value"),
    ],
)
def test_conversion_errors(value, zeek, fragment):
    with pytest.raises(ColumnError, match=fragment):
        convert(value, parse_type(zeek))


def test_readme_example_row():
    sig = EventSignature.parse("host_server_apps", EXAMPLE)
    enc = RowEncoder(sig, ["username", "name", "port"])
    text = enc.encode(enc.result_info("host-1", Action.ADDED, ""), ["root", "sshd", 22])
    ev = bj.event_from_value(bj.decode(json.loads(text)))
    assert ev == bj.Event("host_server_apps", (["host-1", Enum("osquery::ADD"), ""], "root", "sshd", 22))


def test_fd_str_and_numeric_text():
    sig = EventSignature.parse(
        "osquery::table_socket_events", "event(resultInfo:osquery::ResultInfo, fd_str:string, pid:int, start_time:int)"
    )
    enc = RowEncoder(sig, ["fd", "pid", "time"])
    ev = bj.event_from_value(
        bj.decode(json.loads(enc.encode(enc.result_info("h", Action.SNAPSHOT, "c"), ["3", "77", 1714564800])))
    )
    assert ev is not None
    assert ev.args[1:] == ("3", 77, 1714564800)
    assert ev.args[0] == ["h", Enum("osquery::SNAPSHOT"), "c"]


def test_column_count_mismatch():
    sig = EventSignature.parse("e", EXAMPLE)
    with pytest.raises(ColumnError, match=r"returns 2 column\(s\) \(username, name\) but the event declares 3"):
        RowEncoder(sig, ["username", "name"])
    enc = RowEncoder(sig, ["a", "b", "c"])
    with pytest.raises(ColumnError, match="row has 2 value"):
        enc.encode(enc.result_info("h", Action.ADDED, ""), ["x", "y"])


def test_row_error_names_column_and_value():
    enc = RowEncoder(EventSignature.parse("e", EXAMPLE), ["username", "name", "port"])
    info = enc.result_info("h", Action.ADDED, "")
    with pytest.raises(
        ColumnError, match=r"column port value 'abc' cannot be sent as port_number:int: text 'abc' is not an integer"
    ):
        enc.encode(info, ["u", "n", "abc"])
    with pytest.raises(ColumnError, match=r"column port is NULL, which cannot be sent as port_number:int"):
        enc.encode(info, ["u", "n", None])
    # osquery's text for a NULL is "": a string parameter gets it, as the original framework's scripts did
    assert enc.encode(info, ["u", None, 1]) == enc.encode(info, ["u", "", 1])


@pytest.mark.parametrize(
    ("name", "signature", "fragment"),
    [
        ("e", "event(pid:int)", "first parameter must be of type osquery::ResultInfo"),
        ("e", "event()", "first parameter"),
        ("e", "event(r:osquery::ResultInfo, v:vector of string)", "parameter v: type vector of string cannot"),
        ("e", "event(r:osquery::ResultInfo, x:", "event e:"),
        ("bad name", EXAMPLE, "bad event name"),
        ("", EXAMPLE, "bad event name"),
    ],
)
def test_signature_errors(name, signature, fragment):
    with pytest.raises(SignatureError, match=fragment):
        EventSignature.parse(name, signature)
