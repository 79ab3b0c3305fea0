"""load_average: loadavg parsing and the live rows."""

from __future__ import annotations

import os

import pytest

from tables import load_average
from tables.load_average import parse_loadavg
from tables.sqlite import Database


def test_parse_loadavg() -> None:
    assert parse_loadavg(b"0.52 1.05 10.00 2/789 12345\n") == [
        ("1m", "0.520000"),
        ("5m", "1.050000"),
        ("15m", "10.000000"),
    ]
    with pytest.raises(ValueError):
        parse_loadavg(b"")


def test_live_matches_getloadavg() -> None:
    rows = Database([load_average.SPEC]).execute("SELECT period, average FROM load_average").rows
    assert [r[0] for r in rows] == ["1m", "5m", "15m"]
    # the 15 minute average moves slowly: compare loosely against os.getloadavg() read just after
    assert abs(float(rows[2][1]) - os.getloadavg()[2]) < 1.0
