"""Zeek's attribution questions in collectord: from any Zeek endpoint, answered on the same one.

Each Zeek endpoint's sink (collector.zeek.sink.ZeekSink) hands on the events from Zeek that
are not the collector protocol (``ZeekSink.event_handlers``); :meth:`ZeekQuestions.attach`
registers there, and those named ``osquery::attribute_v1`` come to :meth:`received`.
Answers are due after the responder's delay (a connection that just started: its hosts'
rows are still in flight) or at once (a removed one); :meth:`run` sends each with
``ZeekSink.send_event`` to the endpoint that asked.  An endpoint that is not connected when
its answer is due loses it (counted): Zeek asks again when the connection is removed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from collector.zeek import brokerjson as bj

from .responder import Responder
from .zeekproto import ATTRIBUTE_EVENT, BadRequest, parse_request

__all__ = ["AnswerLink", "QuestionStats", "ZeekQuestions", "event_json"]

log = logging.getLogger(__name__)


class AnswerLink(Protocol):
    """What answering needs of a Zeek endpoint (collector.zeek.sink.ZeekSink has it)."""

    event_handlers: list[Callable[[bj.Event], None]]

    def send_event(self, event_json: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class QuestionStats:
    """Counters for collectord's status (``agent-cli --collector URL status``)."""

    asked: int
    answered: int
    pending: int
    dropped: int  # questions the bounded queue had no room for
    sent: int
    unsent: int  # answers whose endpoint was not connected when they were due
    bad_requests: int


def event_json(event: bj.Event) -> str:
    """An event's Broker JSON value (what ZeekSink.send_event publishes on the endpoint's topic)."""
    return bj.encode_event_args(event.name, (bj.encode(a) for a in event.args))


class ZeekQuestions:
    """Attribution questions from Zeek endpoints, and their answers."""

    def __init__(self, responder: Responder, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.responder = responder
        self.clock = clock
        self._links: dict[str, AnswerLink] = {}  # zeek_id -> the endpoint its questions came from
        self._wake = asyncio.Event()
        self.bad_requests = 0
        self.sent = 0
        self.unsent = 0

    def attach(self, link: AnswerLink) -> None:
        """Take the attribution questions among ``link``'s events from Zeek."""

        def handler(event: bj.Event) -> None:
            self.received(link, event)

        link.event_handlers.append(handler)

    def received(self, link: AnswerLink, event: bj.Event) -> bool:
        """Take ``event`` if it is an attribution question (True), else leave it (False)."""
        if event.name != ATTRIBUTE_EVENT:
            return False
        try:
            request = parse_request(event)
        except BadRequest as exc:
            self.bad_requests += 1
            log.warning("attribution: %s", exc)
            return True
        self._links[request.zeek_id] = link
        self.responder.ask(request, self.clock())
        self._wake.set()
        return True

    def send_due(self) -> int:
        """Send every answer that is due; returns how many went out."""
        sent = 0
        for answer in self.responder.due(self.clock()):
            link = self._links.get(answer.zeek_id)
            if link is None or not link.send_event(event_json(answer.event())):
                self.unsent += 1
                continue
            sent += 1
        self.sent += sent
        return sent

    async def run(self) -> None:
        """Send answers as they fall due (until cancelled)."""
        while True:
            self.send_due()
            due = self.responder.next_due()
            self._wake.clear()
            timeout = None if due is None else max(0.0, due - self.clock())
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    def stats(self) -> QuestionStats:
        r = self.responder
        return QuestionStats(r.asked, r.answered, len(r), r.dropped, self.sent, self.unsent, self.bad_requests)
