"""A clock the tests step by hand (the scheduler, the event stores and agentd take an injected clock)."""

from __future__ import annotations


class Clock:
    """Returns ``now`` when called; tests move it with :meth:`advance` or by setting ``now``."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
