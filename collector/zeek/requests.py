"""Requests from a Zeek script (``osquery::subscribe``, ``execute``, ...) as collector subscriptions, pure.

A subscription of Zeek endpoint ``zeek:<name>`` becomes one registry subscription of that
owner. Its name is derived from what zeek-osquery's ``same_event`` compares (query, event,
utype, interval) and the targets, so identical subscriptions are one, and a Zeek that
restarts with the same scripts finds its subscriptions as it left them: nothing changes on
the hosts. Each runs on its own on a host (``HostQuery.instance``): a script needs its own
first run, every current row as ``osquery::ADD``, as osquery's first run gave it.

Its :class:`Route` (the registry's opaque ``route``) says what the results become: the event,
its signature, the utype (which rows) and the cookie.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from protocol.messages import MAX_INTERVAL, MAX_SQL, Action, Mode
from protocol.operator import Targets

from ..model import HostQuery
from .columns import Action as ZeekAction
from .columns import EventSignature, SignatureError
from .protocol import QueryRequest, RequestOp, UpdateType

__all__ = ["RequestError", "Route", "ZeekSubscription", "execute_targets", "subscription_for", "subscription_name"]


class RequestError(ValueError):
    """A request collectord cannot serve (sent back to Zeek as ``osquery::error``)."""


#: Which result rows a utype reports.
_ACTIONS: dict[UpdateType, frozenset[Action]] = {
    UpdateType.ADD: frozenset({Action.ADDED}),
    UpdateType.REMOVE: frozenset({Action.REMOVED}),
    UpdateType.BOTH: frozenset({Action.ADDED, Action.REMOVED}),
    UpdateType.SNAPSHOT: frozenset({Action.ADDED, Action.REMOVED, Action.SNAPSHOT}),
}

#: A result row's action as the ResultInfo's utype.
ZEEK_ACTION = {Action.ADDED: ZeekAction.ADDED, Action.REMOVED: ZeekAction.REMOVED, Action.SNAPSHOT: ZeekAction.SNAPSHOT}


@dataclass(frozen=True, slots=True)
class Route:
    """What a Zeek subscription's result rows become: ``ev_name(resultInfo, ...)`` events."""

    ev_name: str
    ev_type: str
    utype: UpdateType
    cookie: str

    @property
    def actions(self) -> frozenset[Action]:
        return _ACTIONS[self.utype]

    def signature(self) -> EventSignature:
        """The checked signature (SignatureError when collectord cannot fill it)."""
        return EventSignature.parse(self.ev_name, self.ev_type)

    def to_json(self) -> str:
        return json.dumps(
            {"ev": self.ev_name, "type": self.ev_type, "utype": self.utype.value, "cookie": self.cookie},
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Route:
        try:
            body = json.loads(text)
            return cls(str(body["ev"]), str(body["type"]), UpdateType(body["utype"]), str(body["cookie"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise RequestError(f"a Zeek subscription's route is unreadable: {text!r:.200} ({exc})") from None


@dataclass(frozen=True, slots=True)
class ZeekSubscription:
    """A Zeek script's subscription as the registry keeps it."""

    name: str
    query: HostQuery
    targets: Targets
    route: Route

    def entry(self) -> tuple[str, HostQuery, Targets, str]:
        """The ``(name, query, targets, route)`` of ``Fleet.sync_owner``."""
        return self.name, self.query, self.targets, self.route.to_json()


def subscription_name(req: QueryRequest) -> str:
    """The registry name of a subscription: the same for requests ``same_event`` calls equal (same targets)."""
    identity = json.dumps(
        [req.query, req.ev_name, req.utype.value, req.interval, sorted(req.hosts), sorted(req.groups)],
        separators=(",", ":"),
    )
    return "zeek-" + hashlib.sha256(identity.encode()).hexdigest()[:20]


def _targets(req: QueryRequest) -> Targets:
    if not req.hosts and not req.groups:
        return Targets(all=True)
    return Targets(hosts=tuple(sorted(set(req.hosts))), groups=tuple(sorted(set(req.groups))))


def _check(req: QueryRequest) -> Route:
    what = f"{req.op.value} of '{req.query:.200}' (event {req.ev_name or '?'})"
    if not req.query.strip():
        raise RequestError(f"{what}: the query is empty")
    if len(req.query) > MAX_SQL:
        raise RequestError(f"{what}: the query is longer than {MAX_SQL} characters")
    route = Route(req.ev_name, req.ev_type, req.utype, req.cookie)
    try:
        route.signature()
    except SignatureError as exc:
        raise RequestError(f"{what}: {exc}") from None
    return route


def subscription_for(owner: str, req: QueryRequest) -> ZeekSubscription:
    """The registry subscription of a subscribe (or unsubscribe) request; RequestError says why not."""
    if req.op is RequestOp.EXECUTE:
        raise RequestError("an execute is a one-time query, not a subscription")
    route = _check(req)
    if not 1 <= req.interval <= MAX_INTERVAL:
        raise RequestError(
            f"{req.op.value} of '{req.query:.200}': interval {req.interval} s is outside 1..{MAX_INTERVAL} s"
        )
    name = subscription_name(req)
    # Removed rows are asked for unless only added ones are wanted. SNAPSHOT is a one-time query's
    # utype; a subscription asking for it reports both, as the original framework did.
    query = HostQuery(req.query, req.interval, Mode.DIFFERENTIAL, req.utype is not UpdateType.ADD, f"{owner}/{name}")
    return ZeekSubscription(name, query, _targets(req), route)


def execute_targets(req: QueryRequest) -> tuple[Route, Targets]:
    """The route and targets of a one-time query (RequestError when it cannot be served)."""
    route = _check(req)
    return Route(route.ev_name, route.ev_type, UpdateType.SNAPSHOT, route.cookie), _targets(req)
