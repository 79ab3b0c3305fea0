"""Waiting on real processes: a bound on waiting, never a timing assertion."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], what: str, timeout: float = 90.0) -> T:
    """Poll ``predicate`` every 0.1 s until it returns something truthy, and return that; fail the
    test, naming ``what``, if ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")
