"""collector.attribution.zeekproto and .responder: the attribution events and when answers go out."""

from __future__ import annotations

import ipaddress
import json

import pytest

from collector.attribution import Action, AttributionEngine, Connection, Table
from collector.attribution.responder import Responder
from collector.attribution.zeekproto import (
    ATTRIBUTE_EVENT,
    ATTRIBUTION_EVENT,
    AttributionRequest,
    BadRequest,
    answer_event,
    parse_request,
)
from collector.zeek import brokerjson as bj
from collector.zeek.values import Port, Proto, Time

T0 = 1_795_000_000.5


def request_event(*, final=False, **over) -> bj.Event:
    args = {
        "zeek_id": "zeek_1",
        "uid": "CAbc",
        "ts": Time.from_seconds(T0),
        "orig_h": ipaddress.ip_address("10.0.0.1"),
        "orig_p": Port(40000, Proto.TCP),
        "resp_h": ipaddress.ip_address("10.0.0.2"),
        "resp_p": Port(80, Proto.TCP),
        "community_id": "1:x",
        "final": final,
    }
    args.update(over)
    return bj.Event(ATTRIBUTE_EVENT, tuple(args.values()))


def test_a_request_as_zeek_sends_it() -> None:
    # through Broker JSON and back, as the WebSocket carries it
    frame = bj.encode_event("/osquery/collector/", request_event(final=True))
    message = bj.decode_server_message(frame)
    req = parse_request(message.event)
    assert req == AttributionRequest(
        "zeek_1", Connection(T0, "CAbc", "10.0.0.1", 40000, "10.0.0.2", 80, 6), "1:x", True
    )
    udp = parse_request(request_event(orig_p=Port(5353, Proto.UDP), resp_p=Port(53, Proto.UDP)))
    assert udp.conn.proto == 17


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (bj.Event("osquery::other", ()), "not osquery::attribute_v1"),
        (bj.Event(ATTRIBUTE_EVENT, ("a",)), "1 arguments, expected 9"),
        (request_event(uid=5), "argument types (str, int, Time"),
        (request_event(orig_p=80), "argument types"),
        (request_event(final="yes"), "argument types"),
    ],
)
def test_malformed_requests_are_refused_clearly(event, message) -> None:
    with pytest.raises(BadRequest, match=message.replace("(", r"\(")):
        parse_request(event)


def engine() -> AttributionEngine:
    eng = AttributionEngine()
    eng.set_host("h", hostname="alpha", addresses=["10.0.0.1"], now=T0 - 10)
    eng.ingest("h", Table.USERS, [(Action.ADDED, {"uid": 1000, "username": "alice"})], T0 - 10)
    return eng


def connect_row(t: float) -> dict:
    return {
        "action": "connect",
        "pid": 42,
        "path": "/usr/bin/curl",
        "family": 2,
        "protocol": 6,
        "local_address": "10.0.0.1",
        "local_port": 40000,
        "remote_address": "10.0.0.2",
        "remote_port": 80,
        "time": int(t),
        "timestamp": t,
        "status": "succeeded",
        "uid": 1000,
    }


def test_answer_event_matches_the_declared_record() -> None:
    eng = engine()
    eng.ingest("h", Table.SOCKET_EVENTS, [(Action.ADDED, connect_row(T0 - 0.001))], T0)
    answer = eng.attribute(Connection(T0, "CAbc", "10.0.0.1", 40000, "10.0.0.2", 80, 6))
    frame = bj.encode_event("/osquery/zeek/", answer_event(answer, final=False))
    event = bj.decode_server_message(frame).event
    assert event.name == ATTRIBUTION_EVENT
    uid, final, orig, resp = event.args
    assert (uid, final) == ("CAbc", False)
    # osquery::AttributionSide's fields, in order; unset ones are none
    assert orig == ["h", "alpha", 42, "/usr/bin/curl", None, 1000, "alice", None, None, "socket_event", None, None]
    assert resp == [None] * 10 + ["no_agent", None]
    # the Broker types Zeek checks strictly: int (not count) for pid and user id
    data = json.loads(frame)["data"][2]["data"][1]["data"][2]["data"]
    assert data[2] == {"@data-type": "integer", "data": 42} and data[5] == {"@data-type": "integer", "data": 1000}


def test_responder_waits_for_the_hosts_rows_then_answers() -> None:
    eng = engine()
    responder = Responder(eng, delay=1.0, max_pending=3)
    first = parse_request(request_event())
    responder.ask(first, now=100.0)
    assert responder.due(100.5) == [] and responder.next_due() == 101.0
    # the agent's row arrives meanwhile: the delayed answer has it
    eng.ingest("h", Table.SOCKET_EVENTS, [(Action.ADDED, connect_row(T0 - 0.001))], T0)
    (answer,) = responder.due(101.0)
    assert (answer.zeek_id, answer.final, answer.attribution.orig.pid) == ("zeek_1", False, 42)
    # a removed connection's question is due at once
    responder.ask(parse_request(request_event(final=True)), now=200.0)
    (answer,) = responder.due(200.0)
    assert answer.final and answer.event().args[1] is True
    # bounded: what does not fit is dropped and counted
    for _ in range(5):
        responder.ask(first, now=300.0)
    assert (len(responder), responder.dropped, responder.asked) == (3, 2, 7)
    assert len(responder.due(301.0)) == 3 and responder.answered == 5


async def test_questions_from_endpoints_are_answered_on_the_endpoint_that_asked() -> None:
    from collector.attribution.zeekanswers import QuestionStats, ZeekQuestions, event_json

    class Endpoint:  # ZeekSink's two members that answering uses
        def __init__(self) -> None:
            self.event_handlers: list = []
            self.sent: list[str] = []
            self.connected = True

        def send_event(self, event_json: str) -> bool:
            if self.connected:
                self.sent.append(event_json)
            return self.connected

        def events(self) -> list[bj.Event]:
            out = []
            for text in self.sent:
                event = bj.event_from_value(bj.decode(bj.loads(text)))
                assert event is not None
                out.append(event)
            return out

    now = [100.0]
    questions = ZeekQuestions(Responder(engine(), delay=1.0), clock=lambda: now[0])
    a, b = Endpoint(), Endpoint()
    questions.attach(a)
    questions.attach(b)
    (handle_a,), (handle_b,) = a.event_handlers, b.event_handlers
    assert not questions.received(a, bj.Event("osquery::zeek_hello_v1", ()))  # not ours: left to the link
    handle_a(request_event(zeek_id="zeek_a"))
    handle_b(request_event(zeek_id="zeek_b", final=True))
    handle_b(bj.Event(ATTRIBUTE_EVENT, ("short",)))  # ours, malformed: counted
    assert questions.send_due() == 1 and len(b.sent) == 1 and not a.sent  # the final one at once
    now[0] = 101.0
    assert questions.send_due() == 1
    (answer,) = a.events()
    assert answer.name == ATTRIBUTION_EVENT and answer.args[0] == "CAbc" and answer.args[1] is False
    # what goes out is the answer's Broker JSON, as bj encodes the event
    assert a.sent[0] == event_json(answer)
    handle_a(request_event(zeek_id="zeek_a"))
    a.connected = False  # Zeek went away before the answer was due: counted, not sent
    now[0] = 103.0
    assert questions.send_due() == 0
    assert questions.stats() == QuestionStats(
        asked=3, answered=3, pending=0, dropped=0, sent=2, unsent=1, bad_requests=1
    )
