"""collector.zeek.requests: a Zeek script's requests as registry subscriptions (pure)."""

from __future__ import annotations

import pytest

from collector.model import host_query_id
from collector.zeek.protocol import QueryRequest, RequestOp, UpdateType
from collector.zeek.requests import RequestError, Route, execute_targets, subscription_for, subscription_name
from protocol.messages import Action, Mode
from protocol.operator import Targets

EXAMPLE = "event(resultInfo:osquery::ResultInfo, username:string, name:string, port_number:int)"
SQL = "SELECT u.username, p.name, l.port FROM listening_ports l, users u, processes p WHERE l.pid=p.pid"


def req(op=RequestOp.SUBSCRIBE, *, query=SQL, ev="host_server_apps", ev_type=EXAMPLE, utype=UpdateType.ADD, **kw):
    fields = {"interval": 10, "cookie": "", "hosts": (), "groups": (), "zeek_id": "zeek_1"}
    fields.update(kw)
    return QueryRequest(op, ev_name=ev, ev_type=ev_type, query=query, utype=utype, **fields)


def test_identical_subscriptions_are_one_as_same_event_says():
    a = subscription_for("zeek:z", req(cookie="one", zeek_id="zeek_1"))
    b = subscription_for("zeek:z", req(cookie="two", zeek_id="zeek_2"))  # another cookie, a restarted Zeek
    assert a.name == b.name and a.query == b.query and a.targets == b.targets
    assert a.route.cookie == "one" and b.route.cookie == "two"
    # what same_event compares, and the targets, make another subscription
    others = [
        req(query=SQL + " AND 1=1"),
        req(ev="other_event"),
        req(utype=UpdateType.BOTH),
        req(interval=11),
        req(hosts=("h1",)),
        req(groups=("lab",)),
    ]
    names = {subscription_name(r) for r in others} | {a.name}
    assert len(names) == len(others) + 1


def test_the_host_query_runs_on_its_own_and_asks_for_what_the_utype_wants():
    sub = subscription_for("zeek:z", req(utype=UpdateType.ADD))
    assert sub.query.sql == SQL and sub.query.interval == 10 and sub.query.mode is Mode.DIFFERENTIAL
    assert sub.query.removed is False and sub.route.actions == {Action.ADDED}
    assert sub.query.instance == f"zeek:z/{sub.name}"
    # its own run: not the host query of the same definition wanted by another owner (or endpoint)
    shared = host_query_id(type(sub.query)(SQL, 10, Mode.DIFFERENTIAL, False))
    assert sub.query.id != shared
    assert subscription_for("zeek:other", req()).query.id != sub.query.id
    both = subscription_for("zeek:z", req(utype=UpdateType.BOTH))
    assert both.query.removed is True and both.route.actions == {Action.ADDED, Action.REMOVED}
    removed = subscription_for("zeek:z", req(utype=UpdateType.REMOVE))
    assert removed.query.removed is True and removed.route.actions == {Action.REMOVED}


def test_targets():
    assert subscription_for("zeek:z", req()).targets == Targets(all=True)
    sub = subscription_for("zeek:z", req(hosts=("web1", "web1"), groups=("lab",)))
    assert sub.targets == Targets(hosts=("web1",), groups=("lab",))


def test_route_round_trip_and_unreadable_route():
    route = subscription_for("zeek:z", req(cookie="c")).route
    assert Route.from_json(route.to_json()) == route
    with pytest.raises(RequestError, match="unreadable"):
        Route.from_json("{")


@pytest.mark.parametrize(
    ("request_", "fragment"),
    [
        (req(ev_type="event(pid:int)"), "first parameter must be of type osquery::ResultInfo"),
        (req(ev_type="event(r:osquery::ResultInfo, v:vector of string)"), "parameter v"),
        (req(ev=""), "bad event name"),
        (req(query="  "), "the query is empty"),
        (req(interval=0), "interval 0 s is outside"),
        (req(op=RequestOp.EXECUTE), "one-time query"),
    ],
)
def test_requests_collectord_cannot_serve(request_, fragment):
    with pytest.raises(RequestError, match=fragment):
        subscription_for("zeek:z", request_)


def test_execute_is_a_snapshot_of_its_targets():
    route, targets = execute_targets(req(op=RequestOp.EXECUTE, groups=("lab",), cookie="k"))
    assert route.utype is UpdateType.SNAPSHOT and route.cookie == "k" and targets == Targets(groups=("lab",))
    assert Action.SNAPSHOT in route.actions
    with pytest.raises(RequestError):
        execute_targets(req(op=RequestOp.EXECUTE, ev_type="event(x:int)"))
