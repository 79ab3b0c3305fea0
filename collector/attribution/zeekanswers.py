"""Zeek's attribution questions in collectord: from any Zeek link, answered on the same link.

The Zeek link hands on the events from Zeek that are not its own protocol's; those named
``osquery::attribute_v1`` come here (:meth:`ZeekQuestions.received`).  Answers are due
after the responder's delay (a connection that just started) or at once (a removed one);
:meth:`run` sends each on the link that asked.  A link that went away meanwhile loses its
answers (counted): Zeek asks again when the connection is removed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from collector.zeek.brokerjson import Event

from .responder import Responder
from .zeekproto import ATTRIBUTE_EVENT, BadRequest, parse_request

__all__ = ["AnswerLink", "ZeekQuestions"]

log = logging.getLogger(__name__)


class AnswerLink(Protocol):
    """What an answer needs of a Zeek link (collector.zeek.client.ZeekLink has it)."""

    def send_event(self, event: Event) -> Any: ...


class ZeekQuestions:
    """Attribution questions from Zeek links, and their answers."""

    def __init__(self, responder: Responder, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.responder = responder
        self.clock = clock
        self._links: dict[str, AnswerLink] = {}  # zeek_id -> the link its questions came on
        self._wake = asyncio.Event()
        self.bad_requests = 0
        self.sent = 0
        self.unsent = 0

    def received(self, link: AnswerLink, event: Event) -> bool:
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
            if link is None:
                self.unsent += 1
                continue
            try:
                link.send_event(answer.event())
            except Exception as exc:  # noqa: BLE001 - one link's fault loses its answer, not the others'
                self.unsent += 1
                log.warning("attribution: cannot answer Zeek %s: %s", answer.zeek_id, exc)
                continue
            sent += 1
        self.sent += sent
        return sent

    def forget(self, link: AnswerLink) -> None:
        """A link went away: its pending answers have nowhere to go."""
        for zeek_id in [z for z, known in self._links.items() if known is link]:
            del self._links[zeek_id]

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

    def status(self) -> dict[str, int]:
        return {
            "asked": self.responder.asked,
            "answered": self.responder.answered,
            "pending": len(self.responder),
            "dropped": self.responder.dropped,
            "sent": self.sent,
            "unsent": self.unsent,
            "bad_requests": self.bad_requests,
        }
