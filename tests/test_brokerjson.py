"""Broker JSON codec: every type's encoding and its edge cases, events and server messages."""

import ipaddress
import json

import pytest

from collector.zeek import brokerjson as bj
from collector.zeek.values import Count, Enum, Interval, Port, Proto, Time


def V(t, d):
    return {"@data-type": t, "data": d}


def enc(value):
    return json.loads(bj.encode(value))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, V("none", {})),
        (True, V("boolean", True)),
        (False, V("boolean", False)),
        (Count(0), V("count", 0)),
        (Count(2**64 - 1), V("count", 18446744073709551615)),
        (-(2**63), V("integer", -(2**63))),
        (2**63 - 1, V("integer", 2**63 - 1)),
        (0, V("integer", 0)),
        (2.5, V("real", 2.5)),
        (1e-7, V("real", 1e-7)),
        (-0.0, V("real", -0.0)),
        ("", V("string", "")),
        ('tab\tnl\n\x00ü日本😀"\\', V("string", 'tab\tnl\n\x00ü日本😀"\\')),
        (b"bytes", V("string", "bytes")),
        (ipaddress.ip_address("10.0.0.1"), V("address", "10.0.0.1")),
        (ipaddress.ip_address("2001:db8::1"), V("address", "2001:db8::1")),
        (ipaddress.ip_network("10.0.0.0/8"), V("subnet", "10.0.0.0/8")),
        (ipaddress.ip_network("2001:db8::/32"), V("subnet", "2001:db8::/32")),
        (Port(80, Proto.TCP), V("port", "80/tcp")),
        (Port(53, Proto.UDP), V("port", "53/udp")),
        (Port(8, Proto.ICMP), V("port", "8/icmp")),
        (Port(0, Proto.UNKNOWN), V("port", "0/?")),
        (Time(0), V("timestamp", "1970-01-01T00:00:00.000000000")),
        (Time(1714564800_123456789), V("timestamp", "2024-05-01T12:00:00.123456789")),
        (Time(-500_000_000), V("timestamp", "1969-12-31T23:59:59.500000000")),
        (Interval(0), V("timespan", "0ns")),
        (Interval(-1_500_000_000), V("timespan", "-1500000000ns")),
        (Enum("osquery::ADD"), V("enum-value", "osquery::ADD")),
        ([], V("vector", [])),
        ([Count(1), "a"], V("vector", [V("count", 1), V("string", "a")])),
        ((1, None), V("vector", [V("integer", 1), V("none", {})])),
        (frozenset(), V("set", [])),
        ({"a": Count(1)}, V("table", [{"key": V("string", "a"), "value": V("count", 1)}])),
    ],
)
def test_encode_each_type(value, expected):
    assert enc(value) == expected


def test_decode_roundtrip_every_type():
    values = [
        None, True, Count(7), -7, 2.5, "s", ipaddress.ip_address("::1"), ipaddress.ip_network("10.0.0.0/8"),
        Port(443, Proto.TCP), Time(1714564800_000000001), Interval(90_000_000_000), Enum("osquery::REMOVE"),
        [Count(1), [2, "x"]], frozenset({"a", "b"}), {Count(1): "one"},
    ]  # fmt: skip
    for value in values:
        assert bj.decode(json.loads(bj.encode(value))) == value, value


def test_set_of_composite_and_order_is_canonical():
    value = frozenset(
        {(ipaddress.ip_address("1.2.3.4"), Port(80, Proto.TCP)), (ipaddress.ip_address("1.2.3.5"), Port(1))}
    )
    text = bj.encode(value)
    assert bj.decode(json.loads(text)) == value
    assert text == bj.encode(frozenset(reversed(list(value))))


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (2**63, "int out of range"),
        (-(2**63) - 1, "int out of range"),
        (float("nan"), "no JSON encoding"),
        (float("inf"), "no JSON encoding"),
        (b"\xff\xfe", "not UTF-8"),
        ("\ud800", "lone surrogate"),
        (object(), "no Broker JSON encoding"),
    ],
)
def test_encode_errors(value, fragment):
    with pytest.raises(bj.EncodeError, match=fragment):
        bj.encode(value)


def test_count_range_is_checked_at_construction():
    with pytest.raises(ValueError, match="count out of range"):
        Count(-1)
    with pytest.raises(ValueError, match="count out of range"):
        Count(2**64)
    with pytest.raises(bj.EncodeError, match="count out of range"):
        bj.enc_count(-1)


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("2023-04-18T14:13:14", 1681827194_000000000),
        ("2023-04-18T14:13:14.5", 1681827194_500000000),
        ("2023-04-18T14:13:14.123456789", 1681827194_123456789),
        ("2023-04-18T14:13:14Z", 1681827194_000000000),
        ("2023-04-18T16:13:14+02:00", 1681827194_000000000),
        ("2023-04-18T16:13:14+0200", 1681827194_000000000),
        ("2023-04-18T09:13:14-05:00", 1681827194_000000000),
        ("1969-12-31T23:59:59.000", -1_000_000_000),
    ],
)
def test_timestamp_forms_zeek_accepts(text, ns):
    assert bj.parse_timestamp(text) == Time(ns)


@pytest.mark.parametrize(
    "text",
    [
        "2023-04-18 14:13:14",
        "2023-04-18",
        "2023-04-18T14:13",
        "1681827194",
        "2023-13-01T00:00:00",
        "2023-04-18T14:13:14.1234567890",
    ],
)
def test_timestamp_rejects(text):
    with pytest.raises(bj.DecodeError):
        bj.parse_timestamp(text)


@pytest.mark.parametrize(
    ("text", "ns"),
    [("1s", 10**9), ("1500ms", 1_500_000_000), ("2.5s", 2_500_000_000), ("1.5min", 90 * 10**9), ("60s", 60 * 10**9),
     ("3600s", 3600 * 10**9), ("1500us", 1_500_000), ("-1s", -(10**9)), ("0s", 0), ("1000000500ns", 1_000_000_500), ("1e3ms", 10**9)],
)  # fmt: skip
def test_timespan_forms(text, ns):
    assert bj.parse_timespan(text) == Interval(ns)


@pytest.mark.parametrize("text", ["1m", "1sec", "1 s", "0", ""])
def test_timespan_rejects(text):
    with pytest.raises(bj.DecodeError):
        bj.parse_timespan(text)


@pytest.mark.parametrize(
    ("text", "port"),
    [
        ("80/tcp", Port(80)),
        ("53/udp", Port(53, Proto.UDP)),
        ("80/?", Port(80, Proto.UNKNOWN)),
        ("80/unknown", Port(80, Proto.UNKNOWN)),
        ("80", Port(80)),
    ],
)
def test_port_forms(text, port):
    assert bj.parse_port(text) == port


@pytest.mark.parametrize(
    "obj",
    [
        V("count", -1),
        V("count", 1.0),
        V("count", "1"),
        V("integer", 1.5),
        V("boolean", 1),
        V("address", "10.0.0.256"),
        V("subnet", "x"),
        V("nope", 1),
        {"data": 1},
        V("table", [{"key": V("count", 1)}]),
    ],
)
def test_decode_rejects(obj):
    with pytest.raises(bj.DecodeError):
        bj.decode(obj)


def test_event_encoding_matches_zeek_docs():
    frame = json.loads(
        bj.encode_event("/zeek/event/my_topic", bj.Event("ping", ("python-websocket-client", Count(42))))
    )
    assert frame == {
        "type": "data-message",
        "topic": "/zeek/event/my_topic",
        "@data-type": "vector",
        "data": [
            V("count", 1),
            V("count", 1),
            V("vector", [V("string", "ping"), V("vector", [V("string", "python-websocket-client"), V("count", 42)])]),
        ],
    }


def test_event_with_metadata():
    ev = bj.Event("ping", (), ((1, Time(1681827194_000000000)),))
    frame = json.loads(bj.encode_event("/t", ev))
    assert frame["data"][2]["data"][2] == V(
        "vector", [V("vector", [V("count", 1), V("timestamp", "2023-04-18T14:13:14.000000000")])]
    )
    assert bj.decode_server_message(json.dumps(frame)).event == ev


def test_server_messages_zeek8_and_zeek7_acks():
    assert bj.decode_server_message(
        '{"type":"ack","endpoint":"f228b1f2-3481-57f8-bc7a-dabc7b5cfe10-websocket-0","version":"8.2.2"}'
    ) == bj.Ack("f228b1f2-3481-57f8-bc7a-dabc7b5cfe10-websocket-0", "8.2.2")
    assert (
        bj.decode_server_message(
            '{"type":"ack","endpoint":"925c9110-5b87-57d9-9d80-b65568e87a44","version":"2.2.0-22"}'
        ).version
        == "2.2.0-22"
    )
    err = bj.decode_server_message(
        '{"type":"error","code":"deserialization_failed","context":"failed to create Zeek event"}'
    )
    assert err == bj.Error("deserialization_failed", "failed to create Zeek event")


def test_literal_zeek_822_event_message():
    text = '{"type":"data-message","topic":"/collector/out","@data-type":"vector","data":[{"@data-type":"count","data":1},{"@data-type":"count","data":1},{"@data-type":"vector","data":[{"@data-type":"string","data":"Collector::ack"},{"@data-type":"vector","data":[{"@data-type":"string","data":"host-1"},{"@data-type":"count","data":1}]}]}]}'
    msg = bj.decode_server_message(text)
    assert isinstance(msg, bj.DataMessage)
    assert msg.event == bj.Event("Collector::ack", ("host-1", Count(1)))


def test_event_with_empty_metadata_vector_and_non_event_values():
    value = [Count(1), Count(1), ["x", [], []]]
    assert bj.event_from_value(value) == bj.Event("x", ())
    assert bj.event_from_value([Count(1), Count(1)]) is None
    assert bj.event_from_value("x") is None
    assert bj.event_from_value([1, 1, ["x", []]]) is None  # integers, not counts


def test_loads_reads_what_zeek_really_writes():
    # Zeek writes raw control bytes, \v, and bare inf/nan reals.
    raw = '{"type":"data-message","topic":"t","@data-type":"vector","data":[{"@data-type":"string","data":"a\x01b\\vc"},{"@data-type":"real","data":inf},{"@data-type":"real","data":-inf}]}'
    msg = bj.decode_server_message(raw)
    assert msg.value == ["a\x01b\x0bc", float("inf"), float("-inf")]
    assert bj.loads('"\\\\v"') == "\\v"  # an escaped backslash followed by v stays text


@pytest.mark.parametrize(
    "text",
    ["{not json", "[]", '{"type":"ack"}', '{"type":"error","code":1}', '{"type":"data-message"}', '{"type":"weird"}'],
)
def test_server_message_errors(text):
    with pytest.raises(bj.DecodeError):
        bj.decode_server_message(text)


def test_handshake():
    assert bj.encode_handshake(["/a", "/b"]) == '["/a","/b"]'
    with pytest.raises(bj.EncodeError):
        bj.encode_handshake(["/a", 1])  # type: ignore[list-item]


def test_client_message_decoding():
    topic, value = bj.decode_client_message(json.loads(bj.encode_event("/t", bj.Event("a::b", (1,)))))
    assert topic == "/t" and bj.event_from_value(value) == bj.Event("a::b", (1,))
    with pytest.raises(bj.DecodeError, match="no topic"):
        bj.decode_client_message({"@data-type": "count", "data": 1})
