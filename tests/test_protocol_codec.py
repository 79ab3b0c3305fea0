"""protocol.codec on canned frames: every message round-trips, every bad frame gets its code."""

from __future__ import annotations

import math
import random

import msgpack
import pytest

from protocol import operator as op
from protocol.codec import (
    FROM_AGENT,
    FROM_COLLECTOR_TO_AGENT,
    FROM_COLLECTOR_TO_OPERATOR,
    FROM_OPERATOR,
    decode,
    encode,
)
from protocol.errors import ErrorCode, ProtocolError
from protocol.messages import (
    Ack,
    Action,
    Bye,
    ByeReason,
    Dropped,
    Error,
    Execute,
    ExecuteResult,
    Hello,
    Mode,
    Ping,
    Pong,
    Results,
    Subscribe,
    Unsubscribe,
    Welcome,
)


def hello(**changes):
    fields = {
        "versions": (1,),
        "host_id": "4C4C4544-0042-4210-8048-B4C04F4B4D32",
        "hostname": "web1",
        "addresses": ("10.0.0.5", "fe80::1"),
        "platform": "linux",
        "agent_version": "0.1.0",
        "tables": ("processes", "process_events"),
        "groups": ("web",),
        "node_key": None,
        "enroll_secret": "s3cret",
        "stream": "6f1c0a2e-stream",
        "acked_seq": 0,
        "subscriptions": (),
    }
    fields.update(changes)
    return Hello(**fields)


def results(**changes):
    fields = {
        "seq": 1,
        "subscription": "q1a2b3",
        "name": "procs",
        "columns": ("pid", "name", "blob", "load", "note"),
        "rows": (
            (Action.ADDED, (1, "systemd", b"\x00\xff", 0.5, None)),
            (Action.REMOVED, (-(2**63), "x", b"", -1.0, "")),
        ),
        "counter": 3,
        "epoch": 0,
        "time": 1700000000.25,
    }
    fields.update(changes)
    return Results(**fields)


FROM_AGENT_EXAMPLES = [
    hello(),
    hello(node_key="k" * 64, enroll_secret=None, acked_seq=41, subscriptions=("q1",)),
    results(),
    results(subscription=None, rows=()),
    Dropped(from_seq=5, to_seq=9, batches=5, rows=1234, time=1.0),
    ExecuteResult(query_id="x1", columns=("a",), rows=((1,), (None,)), last=False),
    ExecuteResult(query_id="x1", columns=(), rows=(), last=True, error="no such table: nope", timed_out=False),
    Error(ErrorCode.INTERNAL, "disk full"),
    Ping(7),
    Pong(7),
    Bye(ByeReason.SHUTDOWN, "agentd stopping"),
]
FROM_COLLECTOR_EXAMPLES = [
    Welcome(version=1, collector_id="c-1", node_key="n" * 43, last_seq=0, max_frame=4 << 20, max_rate=500.0),
    Subscribe(id="q1", name="procs", sql="SELECT pid FROM processes", interval=10, mode=Mode.SNAPSHOT, removed=False),
    Unsubscribe(id="q1"),
    Execute(query_id="x1", sql="SELECT 1", timeout=5.0),
    Ack(12),
    Error(ErrorCode.BAD_SEQUENCE, "results seq 9 skipped ahead: expected 7"),
    Ping(1),
    Pong(2),
    Bye(ByeReason.REVOKED, ""),
]
TARGETS = op.Targets(hosts=("web1",), groups=("db",), all=False)
FROM_OPERATOR_EXAMPLES = [
    op.Auth(versions=(1,), token="t" * 40, client="agent-cli 0.1.0"),
    op.ListHosts(1),
    op.ListSubscriptions(2),
    op.AddSubscription(3, "procs", "SELECT 1", 60, Mode.DIFFERENTIAL, True, TARGETS),
    op.RemoveSubscription(4, "procs"),
    op.RunQuery(5, "SELECT 1", op.Targets(all=True), 10.0),
    op.Revoke(6, "web1"),
]
HOST = op.HostInfo("h1", "web1", ("10.0.0.5",), "linux", "0.1.0", ("web",), True, False, 1.0, 2.0, 17, 0)
FROM_COLLECTOR_TO_OPERATOR_EXAMPLES = [
    op.Authorized(1, "c-1"),
    op.HostList(1, (HOST,)),
    op.SubscriptionList(
        2, (op.SubscriptionInfo("s1", "procs", "operator", "SELECT 1", 60, Mode.DIFFERENTIAL, True, TARGETS),)
    ),
    op.Done(3, "subscribed 2 hosts"),
    op.QueryStarted(5, "x9", ("h1", "h2")),
    op.QueryRows(5, "h1", "web1", ("one",), ((1,),)),
    op.QueryStatus(5, "h1", "web1", op.HostQueryStatus.ROWS, 1, ""),
    op.QueryDone(5),
    op.OperatorError(4, ErrorCode.BAD_REQUEST, "no subscription named 'procs'"),
]


@pytest.mark.parametrize(
    ("message", "vocabulary"),
    [(m, FROM_AGENT) for m in FROM_AGENT_EXAMPLES]
    + [(m, FROM_COLLECTOR_TO_AGENT) for m in FROM_COLLECTOR_EXAMPLES]
    + [(m, FROM_OPERATOR) for m in FROM_OPERATOR_EXAMPLES]
    + [(m, FROM_COLLECTOR_TO_OPERATOR) for m in FROM_COLLECTOR_TO_OPERATOR_EXAMPLES],
    ids=lambda v: getattr(v, "TYPE", "") or None,
)
def test_every_message_round_trips(message, vocabulary):
    frame = encode(message)
    assert decode(frame, vocabulary) == message


def test_canned_ack_frame():
    """The bytes of docs/protocol.md's ack example."""
    frame = bytes.fromhex("82a474797065a361636ba3736571cd0400")
    assert decode(frame, FROM_COLLECTOR_TO_AGENT) == Ack(1024)
    assert encode(Ack(1024)) == frame


def test_canned_results_frame_from_another_encoder():
    """A frame packed by plain msgpack (not our encoder), as another implementation would send it."""
    frame = msgpack.packb(
        {
            "type": "results",
            "seq": 3,
            "subscription": None,
            "name": "pack_web_procs",
            "columns": ["pid", "path"],
            "rows": [["added", [42, "/bin/sh"]], ["snapshot", [7, None]]],
            "counter": 0,
            "epoch": 2,
            "time": 1700000000,
        }
    )
    message = decode(frame, FROM_AGENT)
    assert message == Results(
        3,
        None,
        "pack_web_procs",
        ("pid", "path"),
        ((Action.ADDED, (42, "/bin/sh")), (Action.SNAPSHOT, (7, None))),
        0,
        2,
        1.7e9,
    )
    assert isinstance(message.time, float) and message.rows[0][0] is Action.ADDED


def test_values_keep_their_sqlite_types():
    message = decode(encode(results()), FROM_AGENT)
    assert [type(v) for v in message.rows[0][1]] == [int, str, bytes, float, type(None)]


def packed(body) -> bytes:
    return msgpack.packb(body, use_bin_type=True)


def results_body(**changes):
    body = {
        "type": "results",
        "seq": 1,
        "subscription": None,
        "name": "q",
        "columns": ["a"],
        "rows": [["added", [1]]],
        "counter": 0,
        "epoch": 0,
        "time": 1.0,
    }
    body.update(changes)
    return body


BAD_FRAMES = [
    ("empty", b"", ErrorCode.BAD_FRAME, "not a msgpack message"),
    ("never-used byte", b"\xc1", ErrorCode.BAD_FRAME, "not a msgpack message"),
    ("truncated", packed(results_body())[:-3], ErrorCode.BAD_FRAME, "not a msgpack message"),
    ("two objects", packed({"type": "ping", "nonce": 1}) * 2, ErrorCode.BAD_FRAME, "not a msgpack message"),
    ("array", packed(["results", 1]), ErrorCode.BAD_FRAME, "msgpack map, got tuple"),
    ("integer", packed(5), ErrorCode.BAD_FRAME, "msgpack map, got int"),
    ("invalid utf-8", b"\x81\xa4type\xa2\xff\xfe", ErrorCode.BAD_FRAME, "not a msgpack message"),
    ("int map key", packed({1: 2}), ErrorCode.BAD_FRAME, "not a msgpack message"),
    ("ext type", packed({"type": "ping", "nonce": msgpack.ExtType(5, b"x")}), ErrorCode.BAD_FRAME, "extension type 5"),
    ("no type", packed({"nonce": 1}), ErrorCode.BAD_MESSAGE, "missing or non-string 'type'"),
    ("binary type", packed({"type": b"ping", "nonce": 1}), ErrorCode.BAD_MESSAGE, "non-string 'type'"),
    ("unknown type", packed({"type": "launch"}), ErrorCode.UNKNOWN_TYPE, "'launch' is not accepted here"),
    ("collector-only type", packed({"type": "ack", "seq": 1}), ErrorCode.UNKNOWN_TYPE, "'ack'"),
    ("operator-only type", packed({"type": "revoke", "req": 1, "host": "x"}), ErrorCode.UNKNOWN_TYPE, "'revoke'"),
    ("missing field", packed({"type": "ping"}), ErrorCode.BAD_MESSAGE, "ping: missing field 'nonce'"),
    ("unknown field", packed({"type": "ping", "nonce": 1, "x": 2}), ErrorCode.BAD_MESSAGE, "unknown field 'x'"),
    ("seq as string", packed(results_body(seq="1")), ErrorCode.BAD_MESSAGE, "results.seq: expected an integer"),
    ("seq zero", packed(results_body(seq=0)), ErrorCode.BAD_MESSAGE, "results.seq: expected an integer in 1.."),
    ("seq bool", packed(results_body(seq=True)), ErrorCode.BAD_MESSAGE, "results.seq: expected an integer"),
    ("uint64 value", packed(results_body(rows=[["added", [2**64 - 1]]])), ErrorCode.BAD_MESSAGE, "rows[0][1][0]"),
    ("nan time", packed(results_body(time=math.nan)), ErrorCode.BAD_MESSAGE, "results.time: expected a finite number"),
    ("negative time", packed(results_body(time=-1.0)), ErrorCode.BAD_MESSAGE, "results.time"),
    ("bad action", packed(results_body(rows=[["changed", [1]]])), ErrorCode.BAD_MESSAGE, "added, removed or snapshot"),
    ("short row", packed(results_body(rows=[["added"]])), ErrorCode.BAD_MESSAGE, "results.rows[0]: expected [action"),
    ("map value", packed(results_body(rows=[["added", [{"a": 1}]]])), ErrorCode.BAD_MESSAGE, "an SQLite value"),
    ("list value", packed(results_body(rows=[["added", [[1]]]])), ErrorCode.BAD_MESSAGE, "an SQLite value"),
    ("bool value", packed(results_body(rows=[["added", [True]]])), ErrorCode.BAD_MESSAGE, "an SQLite value"),
    ("width", packed(results_body(rows=[["added", [1, 2]]])), ErrorCode.BAD_MESSAGE, "2 values for 1 columns"),
    ("empty column name", packed(results_body(columns=[""], rows=[])), ErrorCode.BAD_MESSAGE, "columns[0]"),
    ("long name", packed(results_body(name="n" * 257)), ErrorCode.BAD_MESSAGE, "results.name: expected 1..256"),
    (
        "columns not array",
        packed(results_body(columns="a")),
        ErrorCode.BAD_MESSAGE,
        "results.columns: expected an array",
    ),
    ("negative nonce", packed({"type": "ping", "nonce": -1}), ErrorCode.BAD_MESSAGE, "ping.nonce"),
    (
        "dropped backwards",
        packed({"type": "dropped", "from_seq": 5, "to_seq": 4, "batches": 1, "rows": 0, "time": 0}),
        ErrorCode.BAD_MESSAGE,
        "to_seq 4 < from_seq 5",
    ),
    (
        "timestamp ext",
        b"\x82\xa4type\xa4ping\xa5nonce\xd6\xff\x00\x00\x00\x01",
        ErrorCode.BAD_MESSAGE,
        "ping.nonce: expected an integer",
    ),
]


@pytest.mark.parametrize(("frame", "code", "text"), [b[1:] for b in BAD_FRAMES], ids=[b[0] for b in BAD_FRAMES])
def test_bad_frames_get_their_code(frame, code, text):
    with pytest.raises(ProtocolError) as caught:
        decode(frame, FROM_AGENT)
    assert caught.value.code is code
    assert text in str(caught.value)


def encode_map(message) -> dict:
    return msgpack.unpackb(encode(message), raw=False)


def test_hello_needs_exactly_one_credential():
    both = {**encode_map(hello()), "node_key": "k"}
    with pytest.raises(ProtocolError, match="exactly one of node_key and enroll_secret"):
        decode(packed(both), FROM_AGENT)
    neither = {**encode_map(hello()), "enroll_secret": None}
    with pytest.raises(ProtocolError, match="exactly one"):
        decode(packed(neither), FROM_AGENT)


def test_hello_tolerates_fields_of_newer_versions():
    """hello precedes version negotiation: a newer agent's extra fields are ignored, not refused."""
    body = {**encode_map(hello(versions=(1, 2))), "future_field": [1, 2, 3]}
    assert decode(packed(body), FROM_AGENT) == hello(versions=(1, 2))


def test_credentials_never_appear_in_repr():
    assert "s3cret" not in repr(hello())
    assert "k" * 64 not in repr(hello(node_key="k" * 64, enroll_secret=None))
    assert "t" * 40 not in repr(FROM_OPERATOR_EXAMPLES[0])


def test_text_frames_are_refused():
    with pytest.raises(ProtocolError) as caught:
        decode('{"type": "ping"}', FROM_AGENT)
    assert caught.value.code is ErrorCode.BAD_FRAME


def test_oversized_frame_is_refused_before_decoding():
    frame = encode(results(rows=((Action.ADDED, (1, "x" * 5000, b"", 0.0, None)),)))
    with pytest.raises(ProtocolError) as caught:
        decode(frame, FROM_AGENT, max_frame=4096)
    assert caught.value.code is ErrorCode.TOO_LARGE


def test_encode_refuses_a_frame_over_the_peer_limit():
    with pytest.raises(ProtocolError) as caught:
        encode(results(rows=((Action.ADDED, (1, "x" * 5000, b"", 0.0, None)),)), max_frame=4096)
    assert caught.value.code is ErrorCode.TOO_LARGE
    assert "exceeds the frame limit of 4096" in str(caught.value)


def test_nested_records_are_checked():
    body = encode_map(FROM_COLLECTOR_TO_OPERATOR_EXAMPLES[1])
    body["hosts"][0]["online"] = "yes"
    with pytest.raises(ProtocolError, match=r"hosts.hosts\[0\].online: expected true or false"):
        decode(packed(body), FROM_COLLECTOR_TO_OPERATOR)
    body = encode_map(FROM_OPERATOR_EXAMPLES[3])
    body["targets"]["extra"] = 1
    with pytest.raises(ProtocolError, match=r"add_subscription\.targets: unknown field 'extra'"):
        decode(packed(body), FROM_OPERATOR)


def test_operator_and_agent_vocabularies_are_disjoint_where_it_matters():
    """An agent credential message on the operator path, or an operator order sent to an agent, is unknown."""
    with pytest.raises(ProtocolError) as caught:
        decode(encode(hello()), FROM_OPERATOR)
    assert caught.value.code is ErrorCode.UNKNOWN_TYPE
    for message in FROM_OPERATOR_EXAMPLES:
        with pytest.raises(ProtocolError) as caught:
            decode(encode(message), FROM_COLLECTOR_TO_AGENT)
        assert caught.value.code is ErrorCode.UNKNOWN_TYPE


def test_random_and_mutated_bytes_only_ever_raise_protocol_errors():
    rng = random.Random(20240901)
    valid = [encode(m) for m in FROM_AGENT_EXAMPLES]
    for i in range(3000):
        if i % 2:
            frame = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        else:
            frame = bytearray(rng.choice(valid))
            for _ in range(rng.randrange(1, 4)):
                frame[rng.randrange(len(frame))] = rng.randrange(256)
            frame = bytes(frame)
        try:
            decode(frame, FROM_AGENT)
        except ProtocolError:
            pass
