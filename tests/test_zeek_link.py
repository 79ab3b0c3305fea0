"""The Zeek link: the sans-I/O core on canned frames, and the asyncio client against the strict double."""

import asyncio
import json

from collector.zeek import brokerjson as bj
from collector.zeek import protocol as p
from collector.zeek.client import EndpointError, ZeekEndpoint, ZeekLink
from collector.zeek.columns import Action, EventSignature, RowEncoder
from collector.zeek.link import (
    BROKER_MIN_FRAME,
    Delivered,
    Dropped,
    LinkCore,
    LinkDown,
    LinkState,
    LinkUp,
    Request,
    Synced,
    ZeekBatch,
    ZeekError,
    is_broker_endpoint,
)
from collector.zeek.values import Count
from tests.zeek_double import Declarations, ZeekDouble

USB = "event(resultInfo:osquery::ResultInfo, vendor:string, model:string, serial:string, removable:int)"


def usb_batch(host, seq, n=3):
    enc = RowEncoder(
        EventSignature.parse("osquery::table_usb_devices", USB), ["vendor", "model", "serial", "removable"]
    )
    info = enc.result_info(host, Action.ADDED, "")
    return ZeekBatch(host, seq, tuple(enc.encode(info, [f"v{seq}", f"m{i}", "s", i % 2]) for i in range(n)))


def from_zeek(name, *args):
    return bj.encode_event("/osquery/collector/", bj.Event(name, args))


def ready_core(**kw):
    core = LinkCore(("/osquery/collector/",), "/osquery/zeek/", "c1", **kw)
    core.connection_made(0)
    assert core.frames() == ['["/osquery/collector/"]']  # the handshake travels alone
    core.data_received('{"type":"ack","endpoint":"x-websocket-0","version":"8.2.2"}', 0)
    (hello,) = core.frames()
    assert bj.decode_client_message(json.loads(hello))[0] == "/osquery/zeek/"
    core.data_received(from_zeek(p.ZEEK_HELLO, "z1", "1.0", {}, {}), 0)
    req = ["ev", "event(resultInfo:osquery::ResultInfo)", "SELECT 1", "BOTH", Count(2), "", [""], ["g"]]
    core.data_received(from_zeek(p.SUBSCRIBE, "z1", req), 0)
    core.data_received(from_zeek(p.SYNC_DONE, "z1", Count(1)), 0)
    return core


def test_core_handshake_sync_and_acks():
    core = ready_core()
    notes = core.notifications()
    assert isinstance(notes[0], LinkUp) and notes[0].version == "8.2.2"
    assert (
        isinstance(notes[1], Synced)
        and notes[1].requests[0].query == "SELECT 1"
        and notes[1].requests[0].groups == ("g",)
    )
    assert core.state is LinkState.READY
    core.submit(usb_batch("h", 1, 2), 1)
    names = [bj.event_from_value(bj.decode_client_message(json.loads(f))[1]).name for f in core.frames()]
    assert names == [p.BATCH_BEGIN, "osquery::table_usb_devices", "osquery::table_usb_devices", p.BATCH_END]
    core.data_received(from_zeek(p.BATCH_ACK, "z1", "h", Count(1)), 2)
    assert core.notifications() == [Delivered((("h", 1),))] and core.unacknowledged == 0
    core.data_received(
        from_zeek(
            p.UNSUBSCRIBE,
            "z1",
            ["ev", "event(resultInfo:osquery::ResultInfo)", "SELECT 1", "BOTH", Count(2), "", [""], ["g"]],
        ),
        3,
    )
    (note,) = core.notifications()
    assert isinstance(note, Request) and note.request.op is p.RequestOp.UNSUBSCRIBE


def test_core_window_timeout_and_reconcile():
    core = ready_core(max_inflight=2, ack_timeout=5)
    core.notifications()
    for seq in (1, 2, 3):
        core.submit(usb_batch("h", seq, 1), 0)
    assert core.unacknowledged == 2 and core.buffered == 1
    core.frames()
    core.tick(6)  # no ack within the timeout: ask the framework before anything goes again
    (query,) = core.frames()
    assert bj.event_from_value(bj.decode_client_message(json.loads(query))[1]).name == p.STATE_QUERY
    core.data_received(from_zeek(p.STATE, "z1", {"h": Count(1)}, {}), 7)
    assert core.notifications() == [Delivered((("h", 1),))]
    sent = [bj.event_from_value(bj.decode_client_message(json.loads(f))[1]) for f in core.frames()]
    assert [(e.name, e.args[1]) for e in sent if e.name == p.BATCH_BEGIN] == [(p.BATCH_BEGIN, 2), (p.BATCH_BEGIN, 3)]
    assert core.stats.resent_batches == 1


def test_core_reconnect_partial_and_buffer_bound():
    core = ready_core(max_buffer=2)
    core.notifications()
    core.submit(usb_batch("h", 1), 0)
    core.submit(usb_batch("h", 2), 0)
    core.connection_lost(1, "gone")
    for seq in (3, 4, 5):
        core.submit(usb_batch("h", seq), 1)
    notes = core.notifications()
    assert isinstance(notes[0], LinkDown)
    assert [n for n in notes if isinstance(n, Dropped)] == [Dropped(1, 3)]
    assert core.stats.dropped_batches == 1 and core.buffered == 2
    core.connection_made(2)
    core.frames()
    core.data_received('{"type":"ack","endpoint":"e","version":"8.2.2"}', 2)
    core.data_received(from_zeek(p.ZEEK_HELLO, "z2", "1.0", {"h": Count(1)}, {"h": Count(2)}), 2)
    core.data_received(from_zeek(p.SYNC_DONE, "z2", Count(0)), 2)
    sent = [bj.event_from_value(bj.decode_client_message(json.loads(f))[1]) for f in core.frames()]
    assert [e.args[1] for e in sent if e.name == p.BATCH_BEGIN] == [2, 4, 5]
    assert core.stats.partial_batches == 1


def test_core_zeek_error_names_the_batches_in_flight_and_refused_handshake():
    core = ready_core()
    core.notifications()
    core.submit(usb_batch("h", 9), 0)
    core.data_received('{"type":"error","code":"deserialization_failed","context":"failed to create Zeek event"}', 1)
    (err,) = core.notifications()
    assert err == ZeekError(
        "deserialization_failed", "failed to create Zeek event", (("h", 9, ("osquery::table_usb_devices",)),)
    )
    fresh = LinkCore(("/t",), "/z", "c")
    fresh.connection_made(0)
    fresh.data_received('{"type":"error","code":"deserialization_failed","context":"subscriptions not an array"}', 0)
    notes = fresh.notifications()
    assert isinstance(notes[0], ZeekError) and isinstance(notes[1], LinkDown) and fresh.state is LinkState.DISCONNECTED


def test_endpoint_parsing():
    assert ZeekEndpoint.parse("ws://127.0.0.1:27759").url == "ws://127.0.0.1:27759/v1/messages/json"
    assert ZeekEndpoint.parse("wss://zeek:1/v1/messages/json").url == "wss://zeek:1/v1/messages/json"
    for bad in ("http://x:1", "ws://", "ws://x:1/other"):
        try:
            ZeekEndpoint.parse(bad)
        except EndpointError:
            continue
        raise AssertionError(bad)


def _decls():
    d = Declarations()
    d.add_package()
    return d


async def _wait(cond, timeout=20.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_client_against_double_restart_loses_nothing_and_repeats_nothing():
    state = None
    double = ZeekDouble(_decls())
    await double.start()
    port = double.port
    notes = []
    link = ZeekLink(
        ZeekEndpoint.parse(double.url),
        "c1",
        lambda _l, n: notes.append(n),
        backoff_initial=0.05,
        backoff_max=0.2,
        max_inflight=4,
    )
    await link.start()
    try:
        await _wait(lambda: link.core.state is LinkState.READY)
        link.host_connected("h", "host-h", ["10.0.0.1", "fe80::1%eth0"], ["all"])
        for seq in range(1, 21):
            link.submit(usb_batch("h", seq))
            if seq == 10:
                state = double.state
                await double.stop()
                double = ZeekDouble(_decls(), state=state, port=port)  # restarted, with its state file
                await double.start()
        await _wait(
            lambda: link.core.unacknowledged == 0 and link.core.buffered == 0 and link.core.state is LinkState.READY
        )
        delivered = [n for n in notes if isinstance(n, Delivered)]
        acked = sorted(k for d in delivered for k in d.batches)
        assert acked == [("h", s) for s in range(1, 21)]
        assert double.repeated_batches == 0
        assert state is not None and state.done["h"] == 20
        assert link.status().connects >= 2
    finally:
        await link.stop()
        await double.stop()


async def test_client_reports_zeek_errors_and_keeps_going():
    double = ZeekDouble(_decls())
    await double.start()
    notes = []
    link = ZeekLink(ZeekEndpoint.parse(double.url), "c1", lambda _l, n: notes.append(n))
    await link.start()
    try:
        await _wait(lambda: link.core.state is LinkState.READY)
        undeclared = RowEncoder(EventSignature.parse("my_undeclared", USB), ["a", "b", "c", "d"])
        bad = ZeekBatch("h", 1, (undeclared.encode(undeclared.result_info("h", Action.ADDED, ""), ["a", "b", "c", 1]),))
        link.submit(bad)
        link.submit(usb_batch("h", 2))
        await _wait(lambda: any(isinstance(n, Delivered) and ("h", 2) in n.batches for n in notes))
        errors = [n for n in notes if isinstance(n, ZeekError)]
        assert errors and errors[0].suspects[0][:2] == ("h", 1) and "my_undeclared" in errors[0].suspects[0][2]
        assert len(double.rows()) == 3
    finally:
        await link.stop()
        await double.stop()


def test_core_pads_every_frame_after_brokers_ack():
    """Broker's endpoint (Zeek 5.0-7.1) is known by libbroker's version in its ack; after it every
    frame is longer than Broker's 2,048-byte reads, so no read holds two frames (Zeek 7.0.11's reader
    drops the connection now and then when one does)."""
    assert is_broker_endpoint("2.8.0-dev") and is_broker_endpoint("2.3.0-22")
    assert not is_broker_endpoint("8.2.2") and not is_broker_endpoint("7.2.0") and not is_broker_endpoint("x")
    core = LinkCore(("/osquery/collector/",), "/osquery/zeek/", "c1")
    core.connection_made(0)
    assert core.frames() == ['["/osquery/collector/"]'] and not core.broker_endpoint
    core.data_received('{"type":"ack","endpoint":"925c9110-5b87-57d9-9d80-b65568e87a44","version":"2.8.0-dev"}', 0)
    (up,) = core.notifications()
    assert isinstance(up, LinkUp) and up.broker and core.broker_endpoint
    (hello,) = core.frames()
    assert len(hello) == BROKER_MIN_FRAME and json.loads(hello)["topic"] == "/osquery/zeek/"
    core.data_received(from_zeek(p.ZEEK_HELLO, "z1", "1.0", {}, {}), 0)
    core.data_received(from_zeek(p.SYNC_DONE, "z1", Count(0)), 0)
    core.submit(usb_batch("h", 1, 2), 1)
    frames = core.frames()
    assert len(frames) == 4 and all(len(f) >= BROKER_MIN_FRAME for f in frames)
    assert bj.event_from_value(bj.decode_client_message(json.loads(frames[0]))[1]).name == p.BATCH_BEGIN
    core.connection_lost(2)
    core.connection_made(3)  # a Zeek 8 answering on the same address next: no padding
    core.data_received('{"type":"ack","endpoint":"x-websocket-1","version":"8.2.2"}', 3)
    assert not core.broker_endpoint and all(len(f) < BROKER_MIN_FRAME for f in core.frames())
