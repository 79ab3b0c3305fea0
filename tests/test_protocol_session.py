"""protocol.session: both sides' rules, driven with canned frames (no sockets)."""

from __future__ import annotations

import msgpack
import pytest

from protocol.codec import FROM_AGENT, FROM_COLLECTOR_TO_AGENT, decode, encode
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
    Ping,
    Pong,
    Results,
    Subscribe,
    Unsubscribe,
    Welcome,
)
from protocol.session import AgentSession, CollectorSession, State


def hello(versions=(1,)) -> Hello:
    return Hello(
        versions=versions,
        host_id="host-1",
        hostname="web1",
        addresses=("127.0.0.1",),
        platform="linux",
        agent_version="0.1.0",
        tables=("processes",),
        groups=(),
        node_key="key",
        enroll_secret=None,
        stream="stream-1",
        acked_seq=0,
        subscriptions=(),
    )


def welcome(last_seq=0, version=1) -> Welcome:
    return Welcome(
        version=version, collector_id="c1", node_key=None, last_seq=last_seq, max_frame=1 << 20, max_rate=100.0
    )


def batch(seq: int, rows=1) -> Results:
    return Results(seq, "q1", "procs", ("pid",), tuple((Action.ADDED, (i,)) for i in range(rows)), 0, 0, 1.0)


def sent(session) -> list:
    """The messages a session queued, decoded as its peer would."""
    vocabulary = FROM_AGENT if isinstance(session, AgentSession) else FROM_COLLECTOR_TO_AGENT
    return [decode(f, vocabulary) for f in session.data_to_send()]


def open_collector(last_seq=0) -> CollectorSession:
    session = CollectorSession()
    session.receive_frame(encode(hello()))
    assert session.events_received() == [hello()]
    assert session.state is State.HANDSHAKE
    session.accept(welcome(last_seq))
    assert sent(session) == [welcome(last_seq)]
    return session


def open_agent(last_seq=0) -> AgentSession:
    session = AgentSession(hello())
    session.start()
    assert sent(session) == [hello()]
    session.receive_frame(encode(welcome(last_seq)))
    assert session.events_received() == [welcome(last_seq)]
    return session


def refused(session) -> Error:
    """The session closed on a broken rule: the last frame it queued is that error."""
    assert session.state is State.CLOSED
    frames = session.data_to_send()
    error = msgpack.unpackb(frames[-1])
    assert error["type"] == "error"
    assert session.failure is not None and session.failure.code.value == error["code"]
    return Error(ErrorCode(error["code"]), error["message"])


# -- the two sides wired together -----------------------------------------------------


def test_both_sides_agree_through_a_whole_session():
    agent, collector = AgentSession(hello()), CollectorSession()
    agent.start()

    def pump():
        for frame in agent.data_to_send():
            collector.receive_frame(frame)
        for frame in collector.data_to_send():
            agent.receive_frame(frame)

    pump()
    assert collector.events_received() == [hello()]
    collector.accept(welcome(last_seq=10))
    pump()
    assert agent.state is collector.state is State.OPEN
    assert agent.next_seq == 11 and collector.expected_seq == 11

    collector.send(Subscribe("q1", "procs", "SELECT pid FROM processes", 10))
    collector.send(Execute("x1", "SELECT 1", 5.0))
    pump()
    assert [type(m) for m in agent.events_received()] == [Welcome, Subscribe, Execute]

    agent.send(batch(11))
    agent.send(Dropped(12, 14, 3, 30, 2.0))
    agent.send(batch(15))
    agent.send(ExecuteResult("x1", ("1",), ((1,),), last=True))
    pump()
    assert [type(m) for m in collector.events_received()] == [Results, Dropped, Results, ExecuteResult]
    assert collector.expected_seq == 16 and agent.in_flight == 5

    collector.send(Ack(15))
    collector.send(Ping(99))
    pump()
    pump()
    assert agent.acked == 15 and agent.in_flight == 0
    assert collector.events_received() == [Pong(99)]  # the agent answered the ping by itself

    agent.send(Bye(ByeReason.SHUTDOWN, "stopping"))
    assert agent.state is State.CLOSING
    pump()
    assert collector.events_received() == [Bye(ByeReason.SHUTDOWN, "stopping")]
    assert collector.state is State.CLOSED


# -- collector side ---------------------------------------------------------------------


def test_version_negotiation_picks_the_highest_common():
    session = CollectorSession(versions=(1, 2))
    session.receive_frame(encode(hello(versions=(1, 2, 3))))
    assert session.version == 2


def test_no_common_version_is_refused():
    session = CollectorSession(versions=(1,))
    session.receive_frame(encode(hello(versions=(2, 3))))
    error = refused(session)
    assert error.code is ErrorCode.UNSUPPORTED_VERSION
    assert "agent speaks versions [2, 3], collector [1]" in error.message


def test_results_before_hello_are_out_of_state():
    session = CollectorSession()
    session.receive_frame(encode(batch(1)))
    error = refused(session)
    assert error.code is ErrorCode.BAD_STATE
    assert error.message == "results may not be sent in state start"
    assert session.events_received() == []


def test_results_during_the_handshake_are_out_of_state():
    session = CollectorSession()
    session.receive_frame(encode(hello()))
    session.events_received()
    session.receive_frame(encode(batch(1)))
    assert refused(session).code is ErrorCode.BAD_STATE
    with pytest.raises(ProtocolError):
        session.accept(welcome())


def test_a_second_hello_is_out_of_state():
    session = open_collector()
    session.receive_frame(encode(hello()))
    assert refused(session).message == "hello may not be sent in state open"


@pytest.mark.parametrize(("seq", "word"), [(5, "replayed"), (7, "replayed"), (9, "skipped ahead")])
def test_results_must_carry_the_next_sequence(seq, word):
    session = open_collector(last_seq=6)
    session.receive_frame(encode(batch(7)))
    assert session.events_received() == [batch(7)]
    session.receive_frame(encode(batch(seq)))
    error = refused(session)
    assert error.code is ErrorCode.BAD_SEQUENCE
    assert error.message == f"results seq {seq} {word}: expected 8"
    assert session.events_received() == []


def test_dropped_must_start_at_the_next_sequence_and_moves_it():
    session = open_collector(last_seq=2)
    session.receive_frame(encode(Dropped(3, 9, 7, 70, 1.0)))
    session.receive_frame(encode(batch(10)))
    assert [type(m) for m in session.events_received()] == [Dropped, Results]
    session.receive_frame(encode(Dropped(12, 12, 1, 1, 1.0)))
    assert refused(session).message == "dropped from_seq 12 skipped ahead: expected 11"


def test_acks_cover_only_what_was_received_and_never_go_back():
    session = open_collector(last_seq=3)
    with pytest.raises(ProtocolError, match=r"ack 4 outside 3..3"):
        session.send(Ack(4))
    session.receive_frame(encode(batch(4)))
    session.send(Ack(4))
    with pytest.raises(ProtocolError, match=r"ack 3 outside 4..4"):
        session.send(Ack(3))


def test_execute_results_must_answer_an_execute():
    session = open_collector()
    session.receive_frame(encode(ExecuteResult("nope", (), (), last=True)))
    assert refused(session).message == "execute_result for unknown query 'nope'"


def test_execute_answer_in_parts_then_finished():
    session = open_collector()
    session.send(Execute("x", "SELECT 1", 1.0))
    session.receive_frame(encode(ExecuteResult("x", ("a",), ((1,),), last=False)))
    session.receive_frame(encode(ExecuteResult("x", ("a",), (), last=True)))
    session.receive_frame(encode(ExecuteResult("x", ("a",), (), last=True)))
    assert refused(session).code is ErrorCode.BAD_MESSAGE


def test_pong_must_answer_a_ping():
    session = open_collector()
    session.send(Ping(5))
    session.receive_frame(encode(Pong(5)))
    assert session.events_received() == [Pong(5)]
    session.receive_frame(encode(Pong(5)))
    assert refused(session).message == "pong 5 answers no ping"


def test_peer_error_closes_without_answering():
    session = open_collector()
    session.receive_frame(encode(Error(ErrorCode.INTERNAL, "state database damaged")))
    assert session.state is State.CLOSED
    assert session.peer_error == Error(ErrorCode.INTERNAL, "state database damaged")
    assert session.data_to_send() == [] and session.failure is None


def test_frames_after_close_are_ignored():
    session = open_collector()
    session.fail(ErrorCode.RATE_LIMITED, "more than 100 messages per second")
    assert refused(session).code is ErrorCode.RATE_LIMITED
    session.receive_frame(b"\xc1garbage")
    session.receive_frame(encode(batch(1)))
    assert session.events_received() == [] and session.data_to_send() == []


def test_messages_in_flight_after_our_bye_are_dropped_quietly():
    session = open_collector()
    session.send(Bye(ByeReason.SHUTDOWN, "collectord stopping"))
    session.data_to_send()
    session.receive_frame(encode(batch(1)))
    assert session.state is State.CLOSING
    assert session.events_received() == [] and session.data_to_send() == []
    with pytest.raises(ProtocolError, match="the session is closing"):
        session.send(Ack(0))


def test_collector_cannot_send_agent_messages_or_before_open():
    session = CollectorSession()
    with pytest.raises(ProtocolError, match="cannot send subscribe in state start"):
        session.send(Subscribe("q", "n", "SELECT 1", 1))
    session = open_collector()
    with pytest.raises(ProtocolError, match="never sends results"):
        session.send(batch(1))
    with pytest.raises(ProtocolError, match="sent by accept"):
        session.send(welcome())


def test_garbage_frame_closes_with_bad_frame():
    session = open_collector()
    session.receive_frame(b"GET / HTTP/1.1\r\n")
    assert refused(session).code is ErrorCode.BAD_FRAME


# -- agent side ---------------------------------------------------------------------------


def test_agent_resumes_after_the_acknowledged_sequence():
    session = open_agent(last_seq=41)
    assert session.next_seq == 42 and session.acked == 41
    with pytest.raises(ProtocolError, match="results seq 41, expected 42"):
        session.send(batch(41))
    session.send(batch(42))
    with pytest.raises(ProtocolError, match="dropped from_seq 44, expected 43"):
        session.send(Dropped(44, 45, 2, 2, 0.0))


def test_agent_refuses_a_welcome_with_a_version_it_did_not_offer():
    session = AgentSession(hello(versions=(1,)))
    session.start()
    session.data_to_send()
    session.receive_frame(encode(welcome(version=2)))
    error = refused(session)
    assert error.code is ErrorCode.UNSUPPORTED_VERSION


def test_agent_refuses_orders_before_welcome():
    session = AgentSession(hello())
    session.start()
    session.data_to_send()
    session.receive_frame(encode(Subscribe("q", "n", "SELECT 1", 1)))
    assert refused(session).message == "subscribe may not be sent in state handshake"


def test_agent_refuses_operator_messages():
    session = open_agent()
    session.receive_frame(msgpack.packb({"type": "revoke", "req": 1, "host": "web1"}))
    assert refused(session).code is ErrorCode.UNKNOWN_TYPE


def test_agent_refuses_an_ack_beyond_what_it_sent():
    session = open_agent(last_seq=5)
    session.send(batch(6))
    session.receive_frame(encode(Ack(7)))
    error = refused(session)
    assert error.code is ErrorCode.BAD_SEQUENCE and error.message == "ack 7 outside the sent range 5..6"


def test_agent_refuses_a_duplicate_execute():
    session = open_agent()
    session.receive_frame(encode(Execute("x", "SELECT 1", 1.0)))
    session.receive_frame(encode(Execute("x", "SELECT 1", 1.0)))
    assert refused(session).message == "execute 'x' is already running"


def test_agent_can_only_answer_queries_it_was_given():
    session = open_agent()
    with pytest.raises(ProtocolError, match="no execute 'x' to answer"):
        session.send(ExecuteResult("x", (), (), last=True))


def test_bye_from_the_collector_closes_the_agent_session():
    session = open_agent()
    session.receive_frame(encode(Bye(ByeReason.REVOKED, "revoked by an operator")))
    assert session.state is State.CLOSED and session.peer_bye == Bye(ByeReason.REVOKED, "revoked by an operator")
    with pytest.raises(ProtocolError, match="the session is closed"):
        session.send(batch(1))


def test_unsubscribe_passes_through():
    session = open_agent()
    session.receive_frame(encode(Unsubscribe("q1")))
    assert session.events_received() == [Unsubscribe("q1")]


def test_start_twice_is_a_local_error():
    session = AgentSession(hello())
    session.start()
    with pytest.raises(ProtocolError, match="hello is sent once"):
        session.start()
