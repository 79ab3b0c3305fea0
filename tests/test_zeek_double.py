"""The Zeek double itself: declarations read from the package, the handshake, ack and error replies of
Zeek 7.2+'s endpoint and of Broker's (Zeek 6.0-7.1)."""

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from collector.zeek import brokerjson as bj
from collector.zeek.values import Count, Enum, Time
from tests.zeek_double import BROKER_VERSION, Declarations, Flavour, ZeekDouble


def decls():
    d = Declarations()
    d.add_package()
    return d


def test_declarations_come_from_the_package():
    d = decls()
    assert [f.name for f in d.events["osquery::table_socket_events"]][:4] == ["resultInfo", "action", "pid", "fd_str"]
    assert str(d.events["osquery::batch_begin_v1"][1].type) == "count"
    assert [f[0] for f in d.records["osquery::ResultInfo"]] == ["host", "utype", "cookie"]
    assert d.enums["osquery::UpdateType"] == ("osquery::ADD", "osquery::REMOVE", "osquery::BOTH", "osquery::SNAPSHOT")
    assert str(d.events["osquery::zeek_hello_v1"][2].type) == "table[string] of count"


async def _session(double, first, *messages):
    async with connect(double.url + "/v1/messages/json") as ws:
        await ws.send(first)
        replies = [json.loads(await ws.recv())]
        for m in messages:
            await ws.send(m)
            replies.append(json.loads(await ws.recv()))
        return replies


async def test_handshake_ack_and_strict_typing():
    double = ZeekDouble(decls())
    await double.start()
    try:
        good = bj.encode_event("/osquery/zeek/", bj.Event("osquery::batch_end_v1", ("h", Count(1))))
        bad = bj.encode_event("/osquery/zeek/", bj.Event("osquery::batch_end_v1", ("h", 1)))  # int for count
        unknown = bj.encode_event("/osquery/zeek/", bj.Event("osquery::nope", ()))
        ack, acked, err1, err2 = await _session(double, '["/osquery/collector/"]', good, bad, unknown)
        assert ack["type"] == "ack" and ack["version"] == "8.2.2" and ack["endpoint"].endswith("-websocket-0")
        assert bj.decode_server_message(json.dumps(acked)).event == bj.Event(
            "osquery::batch_ack_v1", (double.zeek_id, "h", Count(1))
        )
        assert (
            err1
            == err2
            == {"type": "error", "code": "deserialization_failed", "context": "failed to create Zeek event"}
        )
        # the record ResultInfo: enum of the declared type only, all fields present
        ok_row = bj.Event("osquery::table_usb_devices", (["h", Enum("osquery::ADD"), "c"], "v", "m", "s", 1))
        wrong_enum = bj.Event("osquery::table_usb_devices", (["h", Enum("ADD"), "c"], "v", "m", "s", 1))
        short = bj.Event("osquery::table_usb_devices", (["h", Enum("osquery::ADD")], "v", "m", "s", 1))
        count_col = bj.Event("osquery::table_usb_devices", (["h", Enum("osquery::ADD"), "c"], "v", "m", "s", Count(1)))
        replies = await _session(
            double, "[]", *(bj.encode_event("/osquery/zeek/", e) for e in (wrong_enum, short, count_col))
        )
        assert [r.get("context") for r in replies[1:]] == ["failed to create Zeek event"] * 3
        await _session(double, "[]")
        async with connect(double.url + "/v1/messages/json") as ws:
            await ws.send("[]")
            await ws.recv()
            await ws.send(bj.encode_event("/osquery/zeek/", ok_row))
            await ws.send("{not json")
            assert json.loads(await ws.recv())["context"] == "failed to decode JSON object"
        assert ok_row in double.rows()
    finally:
        await double.stop()


async def test_refused_handshakes_and_uri():
    double = ZeekDouble(decls())
    await double.start()
    try:
        assert (await _session(double, "{}"))[0] == {
            "type": "error",
            "code": "deserialization_failed",
            "context": "subscriptions not an array",
        }
        assert (await _session(double, '["/a", 2]'))[0]["context"] == "individual subscription not a string"
        async with connect(double.url + "/v1/messages/json/") as ws:
            assert json.loads(await ws.recv())["code"] == "invalid_uri"
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 1008
    finally:
        await double.stop()


async def test_broker_flavour_ack_metadata_and_errors_as_zeek_6_to_7_1():
    """Broker's endpoint (Zeek 6.0-7.1, as Zeek 7.0.11 answered): libbroker's version in the ack,
    network time on every event Zeek publishes, ``input #N`` errors, a refused handshake and a
    message without a topic left unanswered, mistyped events dropped inside Zeek without a word."""
    double = ZeekDouble(decls(), flavour=Flavour.BROKER)
    await double.start()
    try:
        good = bj.encode_event("/osquery/zeek/", bj.Event("osquery::batch_end_v1", ("h", Count(1))))
        bad = bj.encode_event("/osquery/zeek/", bj.Event("osquery::batch_end_v1", ("h", 1)))  # int for count
        async with connect(double.url + "/v1/messages/json") as ws:
            await ws.send('["/osquery/collector/"]')
            ack = json.loads(await ws.recv())
            assert ack == {"type": "ack", "endpoint": double._node, "version": BROKER_VERSION}
            await ws.send(bad)  # dropped by Zeek's engine: no reply
            await ws.send(good)
            reply = bj.decode_server_message(await ws.recv())
            assert reply.event.name == "osquery::batch_ack_v1" and reply.event.args[1:] == ("h", Count(1))
            ((meta_id, when),) = reply.event.metadata
            assert meta_id == 1 and isinstance(when, Time)
            await ws.send("{not json")
            assert json.loads(await ws.recv())["context"].startswith("input #3 contained malformed JSON")
            await ws.send("[1]")
            assert json.loads(await ws.recv())["context"] == "input #4 contained invalid data"
            await ws.send('{"@data-type": "count", "data": 1}')  # no topic: dropped without a reply
            await ws.send('{"topic": "/osquery/zeek/", "@data-type": "count", "data": -1}')
            assert json.loads(await ws.recv())["context"] == "input #6 contained invalid data"
        assert len(double.reporter_errors) == 1 and "osquery::batch_end_v1" in double.reporter_errors[0]
        async with connect(double.url + "/v1/messages/json") as ws:
            await ws.send("{}")  # a refused handshake: no ack, no error, nothing more
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.5)
    finally:
        await double.stop()
