"""tables.rowsets: TupleRows, and the bulk conversion of a column's values for SQLite."""

from __future__ import annotations

import random

from tables.rowsets import TupleRows, sql_column, sql_value
from tables.text import to_sql


def test_sql_value_is_the_adapters_rule():
    assert sql_value("plain") == "plain" and sql_value(None) is None and sql_value(2.5) == 2.5
    assert sql_value("bad\udcffname") == to_sql("bad\udcffname") == "bad\\xFFname"
    assert sql_value("a\\xFF") == "a\\x5CxFF"
    assert sql_value("caf\u00e9") == "caf\u00e9"
    assert (sql_value(2**64 - 1), sql_value(-(2**63)), sql_value(2**63)) == (
        "18446744073709551615",
        -(2**63),
        "9223372036854775808",
    )
    assert sql_value(b"\xff") == b"\xff" and sql_value(True) is True


def test_usual_columns_come_back_as_they_are():
    for column in (
        ("a", None, "", "/usr/bin/x"),
        (1, None, 0, -5, 2**63 - 1, -(2**63)),
        (1.5, None, 2, -3.25),
        (None, None),
        (),
    ):
        assert sql_column(column) is column


def test_every_column_equals_its_values_converted_one_by_one():
    rng = random.Random(3)
    pool = ["x", "", None, "bad\udcff", "a\\xFF", "caf\u00e9", 0, 7, 2**64 - 1, -(2**63) - 1, 1.5, 1e30, b"\x00", True]
    for _ in range(2000):
        column = tuple(rng.choice(pool) for _ in range(rng.randrange(0, 6)))
        assert sql_column(column) == tuple(map(sql_value, column)), column


def test_tuple_rows_say_whether_their_values_are_converted():
    rows = TupleRows(("a",), [("x",)])
    assert not rows.sql_ready and TupleRows(("a",), [], sql_ready=True).sql_ready
    assert list(rows) == [{"a": "x"}] and rows.positions(("b", "a")) == [1 << 30, 0]
