"""protocol.opsession: the operator path's rules on canned frames."""

from __future__ import annotations

import msgpack
import pytest

from protocol import operator as op
from protocol.codec import FROM_COLLECTOR_TO_OPERATOR, FROM_OPERATOR, decode, encode
from protocol.errors import ErrorCode, ProtocolError
from protocol.messages import Hello, Mode, Ping, Pong
from protocol.opsession import OperatorClientSession, OperatorServerSession
from protocol.session import State


def pump(client: OperatorClientSession, server: OperatorServerSession) -> None:
    for frame in client.data_to_send():
        server.receive_frame(frame)
    for frame in server.data_to_send():
        client.receive_frame(frame)


def opened() -> tuple[OperatorClientSession, OperatorServerSession]:
    client, server = OperatorClientSession("tok", client="test"), OperatorServerSession()
    client.start()
    pump(client, server)
    (auth,) = server.events_received()
    assert isinstance(auth, op.Auth) and auth.token == "tok"
    server.accept("c1")
    pump(client, server)
    assert client.events_received() == [op.Authorized(1, "c1")]
    assert client.state is server.state is State.OPEN
    return client, server


def test_a_query_conversation():
    client, server = opened()
    req = client.next_req()
    client.send(op.RunQuery(req, "SELECT 1", op.Targets(all=True), 5.0))
    pump(client, server)
    assert [type(m) for m in server.events_received()] == [op.RunQuery]
    server.send(op.QueryStarted(req, "x1", ("h1", "h2")))
    server.send(op.QueryRows(req, "h1", "web1", ("1",), ((1,),)))
    server.send(op.QueryStatus(req, "h1", "web1", op.HostQueryStatus.ROWS, 1))
    server.send(op.QueryStatus(req, "h2", "", op.HostQueryStatus.OFFLINE, 0, "not connected"))
    server.send(op.QueryDone(req))
    pump(client, server)
    kinds = [type(m) for m in client.events_received()]
    assert kinds == [op.QueryStarted, op.QueryRows, op.QueryStatus, op.QueryStatus, op.QueryDone]
    assert client.pending == {} and server.open_requests == set()
    with pytest.raises(ProtocolError, match="for request 1 that is not open"):
        server.send(op.QueryDone(req))


def test_a_request_refused_keeps_the_session_open():
    client, server = opened()
    client.send(op.RemoveSubscription(client.next_req(), "nope"))
    pump(client, server)
    server.events_received()
    server.send(op.OperatorError(1, ErrorCode.BAD_REQUEST, "no subscription named 'nope'"))
    pump(client, server)
    assert client.events_received() == [op.OperatorError(1, ErrorCode.BAD_REQUEST, "no subscription named 'nope'")]
    assert client.state is State.OPEN and client.pending == {}


def test_a_wrong_token_is_refused_and_closes():
    client, server = OperatorClientSession("wrong"), OperatorServerSession()
    client.start()
    pump(client, server)
    server.events_received()
    server.fail(ErrorCode.AUTH_FAILED, "wrong operator token")
    pump(client, server)
    assert server.state is State.CLOSED and client.state is State.CLOSED
    assert client.refusal == op.OperatorError(None, ErrorCode.AUTH_FAILED, "wrong operator token")


def test_requests_before_auth_are_out_of_state():
    server = OperatorServerSession()
    server.receive_frame(encode(op.ListHosts(1)))
    assert server.state is State.CLOSED
    (frame,) = server.data_to_send()
    assert decode(frame, FROM_COLLECTOR_TO_OPERATOR) == op.OperatorError(
        None, ErrorCode.BAD_STATE, "list_hosts may not be sent in state start"
    )


def test_an_agent_hello_on_the_operator_path_is_an_unknown_type():
    hello = Hello((1,), "h", "n", (), "linux", "0", (), (), "nodekey", None, "s", 0, ())
    server = OperatorServerSession()
    server.receive_frame(encode(hello))
    (frame,) = server.data_to_send()
    error = decode(frame, FROM_COLLECTOR_TO_OPERATOR)
    assert error.code is ErrorCode.UNKNOWN_TYPE and error.req is None


def test_a_request_number_cannot_be_reused_while_open():
    _client, server = opened()
    server.receive_frame(encode(op.ListHosts(7)))
    server.receive_frame(encode(op.ListHosts(7)))
    assert server.state is State.CLOSED
    assert server.failure is not None and server.failure.detail == "request 7 is still open"


def test_replies_to_requests_never_made_close_the_client():
    client, _server = opened()
    client.receive_frame(encode(op.Done(3, "ok")))
    assert client.state is State.CLOSED
    assert client.failure is not None and client.failure.detail == "done for request 3 that is not open"
    assert client.data_to_send() == []  # the client just closes


def test_query_parts_answer_only_run_query():
    client, _server = opened()
    client.send(op.ListHosts(client.next_req()))
    client.receive_frame(encode(op.QueryRows(1, "h", "", (), ())))
    assert client.failure is not None and client.failure.detail == "query_rows answers list_hosts"


def test_ping_is_answered_and_subscription_lists_decode():
    client, server = opened()
    server.send(Ping(3))
    pump(client, server)
    pump(client, server)
    assert server.events_received() == [Pong(3)]
    client.send(op.ListSubscriptions(client.next_req()))
    pump(client, server)
    server.events_received()
    info = op.SubscriptionInfo("s1", "procs", "operator", "SELECT 1", 10, Mode.DIFFERENTIAL, True, op.Targets(all=True))
    server.send(op.SubscriptionList(1, (info,)))
    pump(client, server)
    assert client.events_received() == [op.SubscriptionList(1, (info,))]


def test_server_cannot_end_a_session_with_a_request_error():
    _client, server = opened()
    with pytest.raises(ProtocolError, match="sent by fail"):
        server.send(op.OperatorError(None, ErrorCode.INTERNAL, "x"))


def test_operator_messages_on_the_wire_are_plain_maps():
    frame = encode(op.AddSubscription(1, "n", "SELECT 1", 5, Mode.SNAPSHOT, False, op.Targets(groups=("db",))))
    assert msgpack.unpackb(frame) == {
        "type": "add_subscription",
        "req": 1,
        "name": "n",
        "sql": "SELECT 1",
        "interval": 5,
        "mode": "snapshot",
        "removed": False,
        "targets": {"hosts": [], "groups": ["db"], "all": False},
    }
    assert decode(frame, FROM_OPERATOR).targets.groups == ("db",)
