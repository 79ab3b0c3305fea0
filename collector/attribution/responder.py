"""Answering Zeek's questions at the right moment, pure (the caller's clock).

A question about a connection that just started comes before the hosts' rows about it
(the agent sees the connect some milliseconds later, and its results reach collectord in
batches of up to ~100 ms): answered at once it would say ``no_socket``.  Zeek writes
conn.log only when the connection is removed (for TCP at least ``tcp_close_delay``, 5 s,
after it closed), so the first question is answered after ``delay``; a question about a
removed connection is answered at once.  The queue is bounded; what does not fit is
counted and dropped (Zeek asks again when the connection is removed).
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass

from collector.zeek.brokerjson import Event

from .engine import AttributionEngine
from .model import Attribution
from .zeekproto import AttributionRequest, answer_event

__all__ = ["Answer", "Responder"]


@dataclass(frozen=True)
class Answer:
    """An answer ready to send to the Zeek endpoint that asked."""

    zeek_id: str
    attribution: Attribution
    final: bool

    def event(self) -> Event:
        return answer_event(self.attribution, final=self.final)


class Responder:
    """Questions in, answers out when they are due."""

    def __init__(self, engine: AttributionEngine, *, delay: float = 1.0, max_pending: int = 100_000) -> None:
        self.engine = engine
        self.delay = delay
        self.max_pending = max_pending
        self._queue: list[tuple[float, int, AttributionRequest]] = []
        self._order = itertools.count()
        self.asked = 0
        self.answered = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._queue)

    def ask(self, request: AttributionRequest, now: float) -> None:
        """Queue a question; a removed connection's is due at once."""
        self.asked += 1
        if len(self._queue) >= self.max_pending:
            self.dropped += 1
            return
        due = now if request.final else now + self.delay
        heapq.heappush(self._queue, (due, next(self._order), request))

    def due(self, now: float) -> list[Answer]:
        """The answers whose time has come (attributed now, with everything the hosts sent)."""
        answers: list[Answer] = []
        while self._queue and self._queue[0][0] <= now:
            _, _, request = heapq.heappop(self._queue)
            answers.append(Answer(request.zeek_id, self.engine.attribute(request.conn), request.final))
        self.answered += len(answers)
        return answers

    def next_due(self) -> float | None:
        return self._queue[0][0] if self._queue else None
