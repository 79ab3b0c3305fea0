"""agent.control_messages: every message encodes to one line and decodes back; bad lines say what is wrong."""

from __future__ import annotations

import json

import pytest

from agent.control_messages import (
    ErrorReply,
    PingReply,
    PingRequest,
    ProtocolError,
    QueryReply,
    QueryRequest,
    StatusReply,
    StatusRequest,
    decode_reply,
    decode_request,
    encode,
)
from agent.status import AgentSummary, QueryStatus, Status


@pytest.mark.parametrize(
    "request_",
    [QueryRequest("SELECT 1"), QueryRequest("SELECT 2", time_limit=2.5), StatusRequest(), PingRequest()],
)
def test_requests_round_trip(request_):
    line = encode(request_)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode_request(line) == request_


def test_wire_format_is_what_agent_cli_has_always_sent():
    assert json.loads(encode(QueryRequest("SELECT 1", 3))) == {"op": "query", "sql": "SELECT 1", "time_limit": 3}
    assert json.loads(encode(QueryRequest("SELECT 1"))) == {"op": "query", "sql": "SELECT 1"}
    assert json.loads(encode(StatusRequest())) == {"op": "status"}
    assert json.loads(encode(PingReply())) == {"ok": True}
    assert json.loads(encode(ErrorReply("no such table: x"))) == {"ok": False, "error": "no such table: x"}


def test_replies_round_trip_as_answers_to_their_requests():
    status = Status(agent=AgentSummary(pid=7, running=None), schedule=(QueryStatus(name="q", executions=2),))
    query = QueryRequest("SELECT 1")
    assert decode_reply(encode(QueryReply(("a", "b"), [[1, "x"]])), query) == QueryReply(("a", "b"), [[1, "x"]])
    assert decode_reply(encode(StatusReply(status)), StatusRequest()) == StatusReply(status)
    assert decode_reply(encode(PingReply()), PingRequest()) == PingReply()
    for request_ in (query, StatusRequest(), PingRequest()):
        assert decode_reply(encode(ErrorReply("refused")), request_) == ErrorReply("refused")


def test_query_values_become_json():
    line = encode(QueryReply(("blob", "nan", "text"), [(b"\x00\xffok", float("nan"), "é")]))
    assert json.loads(line)["rows"] == [["\x00\\xffok", None, "é"]]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"not json", "malformed request (not JSON)"),
        (b"\xff\xfe", "malformed request (not JSON)"),
        (b"[1, 2]", "malformed request: expected a JSON object"),
        (b'{"op": "explode"}', "unknown op 'explode'; use one of: query, status, ping"),
        (b'{"sql": "SELECT 1"}', "unknown op None"),
        (b'{"op": "query"}', "query request needs a non-empty string 'sql'"),
        (b'{"op": "query", "sql": "   "}', "query request needs a non-empty string 'sql'"),
        (b'{"op": "query", "sql": "SELECT 1", "time_limit": "x"}', "'time_limit' must be a positive number"),
        (b'{"op": "query", "sql": "SELECT 1", "time_limit": 0}', "'time_limit' must be a positive number"),
        (b'{"op": "query", "sql": "SELECT 1", "time_limit": true}', "'time_limit' must be a positive number"),
    ],
)
def test_bad_requests_say_what_is_wrong(line, message):
    with pytest.raises(ProtocolError, match=message.replace("(", r"\(").replace(")", r"\)")):
        decode_request(line)


@pytest.mark.parametrize(
    ("line", "request_", "message"),
    [
        (b'{"ok": true, "columns": "a"}', QueryRequest("SELECT 1"), "'columns' must be a list of strings"),
        (b'{"ok": true, "columns": ["a"], "rows": [1]}', QueryRequest("SELECT 1"), "'rows' must be a list of lists"),
        (
            b'{"ok": true, "status": {"agent": {"pid": "x"}}}',
            StatusRequest(),
            r"status\.agent\.pid: expected an integer",
        ),
        (b'{"ok": 1}', PingRequest(), "'ok' must be true or false"),
        (b"{", PingRequest(), r"malformed reply \(not JSON\)"),
    ],
)
def test_bad_replies_say_what_is_wrong(line, request_, message):
    with pytest.raises(ProtocolError, match=message):
        decode_reply(line, request_)


def test_an_error_reply_without_a_message_still_says_something():
    assert decode_reply(b'{"ok": false}', PingRequest()) == ErrorReply("agentd reported an unknown error")
