"""A CPU budget for an event source: what it may spend, and how it degrades to keep to it (pure).

agentd's watchdog holds the whole process to a CPU limit.  When reading events is what
pushes it over, the watchdog gives the event sources a budget (CPU seconds per second,
a fraction of one core) instead of stopping agentd, and a source keeps to it by doing
less, in steps, each counted:

* :attr:`Level.FULL`: every event, with what is read from /proc at event time;
* :attr:`Level.LEAN`: every event, without the /proc reads (their columns are NULL);
* :attr:`Level.SHED`: new events are dropped unread; events already begun are finished.

:class:`CpuBudget` is a token bucket of CPU time.  It fills at ``rate`` and holds at most
``burst`` seconds of it; the source :meth:`~CpuBudget.charge`-s what each batch of work
cost (its thread's CPU time) and asks for the :meth:`~CpuBudget.level` before the next
batch: FULL while the bucket holds time, LEAN once it is empty, SHED once it is
``lean`` seconds of budget in debt; the debt is capped, so recovery is quick when the
load falls.  The caller supplies the clock.
"""

from __future__ import annotations

import enum

__all__ = ["BURST", "LEAN", "OVERSPEND", "CpuBudget", "Level"]

BURST = 1.0  # seconds of budget a full bucket holds
LEAN = 0.5  # seconds of budget in debt before new events are dropped
#: Seconds of budget a source may spend beyond ``rate * elapsed`` over any stretch of time: the full
#: bucket a new budget starts with, and the most debt it may end that stretch in (twice LEAN).
OVERSPEND = BURST + 2 * LEAN


class Level(enum.Enum):
    """How much of its work an event source does (see the module docstring)."""

    FULL = "full"
    LEAN = "lean"
    SHED = "shed"


class CpuBudget:
    """A token bucket of CPU seconds; ``rate`` None: no budget (always :attr:`Level.FULL`)."""

    def __init__(self, rate: float | None = None, *, burst: float = BURST, lean: float = LEAN) -> None:
        self.burst = burst  # seconds of budget the bucket holds when full
        self.lean = lean  # seconds of budget in debt before new events are dropped
        self.rate: float | None = None
        self.tokens = 0.0  # CPU seconds
        self._last: float | None = None
        self.set_rate(rate)

    def set_rate(self, rate: float | None, now: float | None = None) -> None:
        """A new budget (CPU seconds per second), or None for none.

        A first budget starts with a full bucket; a changed one keeps what the bucket held (within the new
        bounds), so that tightening a budget never hands out a fresh burst.
        """
        if rate is not None and rate <= 0:
            raise ValueError(f"a CPU budget must be positive, not {rate!r}")
        if now is not None:
            self._refill(now)
        if rate is None:
            self.tokens = 0.0
        elif self.rate is None:
            self.tokens = rate * self.burst
        else:
            self.tokens = max(min(self.tokens, rate * self.burst), -2 * rate * self.lean)
        self.rate = rate
        self._last = now

    def _refill(self, now: float) -> float:
        rate = self.rate
        if rate is None:
            return 0.0
        last, self._last = self._last, now
        if last is not None and now > last:
            self.tokens = min(self.tokens + (now - last) * rate, rate * self.burst)
        return rate

    def level(self, now: float) -> Level:
        """What the next batch of work may do."""
        rate = self._refill(now)
        if self.rate is None or self.tokens > 0:
            return Level.FULL
        return Level.LEAN if self.tokens > -rate * self.lean else Level.SHED

    def charge(self, spent: float, now: float) -> None:
        """``spent`` CPU seconds of work were done (a debt of more than twice ``lean`` is forgiven)."""
        rate = self._refill(now)
        if self.rate is not None:
            self.tokens = max(self.tokens - spent, -2 * rate * self.lean)
