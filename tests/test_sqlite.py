"""The APSW adapter: pushdown, used columns, required columns, read-only SQL, time limit."""

from __future__ import annotations

import threading
import time

import pytest

from tables.rowsets import TupleRows
from tables.spec import Column, QueryContext, TableError, TableSpec
from tables.sqlite import Database, QueryError, QueryTimeout

CALLS: list[QueryContext] = []


def _numbers(context: QueryContext):
    CALLS.append(context)
    wanted = context.values("n")
    for n in sorted(wanted) if wanted is not None else range(100):
        if isinstance(n, int) and 0 <= n < 100:
            row = {"n": n, "square": n * n}
            if context.is_column_used("label"):
                row["label"] = f"#{n}"
            yield row


NUMBERS = TableSpec(
    "numbers",
    "The numbers 0 to 99.",
    (
        Column("n", "BIGINT", index=True),
        Column("square", "BIGINT"),
        Column("label", "TEXT"),
        Column("secret", "TEXT", hidden=True),
    ),
    _numbers,
)


def _files(context: QueryContext):
    CALLS.append(context)
    for path in sorted(context.values("path") or ()):
        yield {"path": path, "size": len(path)}
    for pattern in sorted(context.likes.get("path", ())):
        yield {"path": pattern, "size": -1}


FILES = TableSpec(
    "files",
    "Paths given in the query.",
    (
        Column("path", "TEXT", required=True, index=True),
        Column("directory", "TEXT", required=True),
        Column("size", "BIGINT"),
    ),
    _files,
)


def _forever(context: QueryContext):
    while True:
        yield {"x": 1}


FOREVER = TableSpec("forever", "Rows without end.", (Column("x", "INTEGER"),), _forever)


def _slow_row(context: QueryContext):
    while True:  # one long row, e.g. hashing a huge file: generate() checks the deadline itself
        context.check_deadline()
        time.sleep(0.01)


SLOW = TableSpec("slow", "One row that takes forever.", (Column("x", "INTEGER"),), _slow_row)


def _vanishing(context: QueryContext):
    yield {"x": 1}
    raise TableError("table vanishing: the source disappeared")


VANISHING = TableSpec("vanishing", "Fails after one row.", (Column("x", "INTEGER"),), _vanishing)


@pytest.fixture
def db() -> Database:
    CALLS.clear()
    return Database([NUMBERS, FILES, FOREVER, SLOW, VANISHING], time_limit=0.5)


def test_equality_is_pushed_down(db: Database) -> None:
    assert db.execute("SELECT n, square FROM numbers WHERE n = 7").rows == [(7, 49)]
    assert CALLS[-1].constraints == {"n": frozenset({7})}


def test_in_list_arrives_as_one_set(db: Database) -> None:
    assert db.execute("SELECT n FROM numbers WHERE n IN (3, 5, 99, 200)").rows == [(3,), (5,), (99,)]
    assert len(CALLS) == 1 and CALLS[0].constraints == {"n": frozenset({3, 5, 99, 200})}


def test_text_literal_is_coerced_to_the_column_type(db: Database) -> None:
    assert db.execute("SELECT n FROM numbers WHERE n = '4'").rows == [(4,)]
    assert CALLS[-1].constraints == {"n": frozenset({4})}


def test_bound_parameters(db: Database) -> None:
    assert db.execute("SELECT square FROM numbers WHERE n = ?", (9,)).rows == [(81,)]


def test_unconstrained_scan_and_sqlite_rechecks_other_columns(db: Database) -> None:
    assert db.execute("SELECT count(*) FROM numbers WHERE square > 9000").rows == [(5,)]
    assert CALLS[-1].constraints == {}


def test_columns_used_are_reported(db: Database) -> None:
    rows = db.execute("SELECT n FROM numbers WHERE n = 1").rows
    assert rows == [(1,)]
    assert CALLS[-1].columns_used == frozenset({"n"})
    assert not CALLS[-1].is_column_used("label")
    assert db.execute("SELECT label FROM numbers WHERE n = 2").rows == [("#2",)]
    assert CALLS[-1].is_column_used("label")


def test_hidden_columns_are_not_in_select_star(db: Database) -> None:
    assert db.execute("SELECT * FROM numbers WHERE n = 1").columns == ["n", "square", "label"]


def test_join_drives_constraints_into_the_inner_table(db: Database) -> None:
    rows = db.execute(
        "SELECT a.n, b.square FROM numbers AS a JOIN numbers AS b ON b.n = a.n + 1 WHERE a.n IN (1, 2)"
    ).rows
    assert rows == [(1, 4), (2, 9)]
    inner = [c for c in CALLS if c.constraints.get("n") in ({2}, {3})]
    assert inner, "the inner side must be filtered by pushdown, not scanned"


def test_missing_required_column_names_table_and_columns(db: Database) -> None:
    with pytest.raises(QueryError) as err:
        db.execute("SELECT * FROM files")
    message = str(err.value)
    assert "files" in message and "path" in message and "directory" in message
    with pytest.raises(QueryError, match="required column"):
        db.execute("SELECT * FROM files WHERE size = 3")


def test_required_column_from_equality_like_or_join(db: Database) -> None:
    assert db.execute("SELECT path, size FROM files WHERE path = '/etc'").rows == [("/etc", 4)]
    assert db.execute("SELECT path FROM files WHERE path LIKE '/etc/%'").rows == [("/etc/%",)]
    assert CALLS[-1].likes == {"path": frozenset({"/etc/%"})}
    rows = db.execute("SELECT n, f.size FROM numbers JOIN files AS f ON f.path = numbers.label WHERE n = 12").rows
    assert rows == [(12, 3)]


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO numbers VALUES (1, 2, 3, 4)",
        "DELETE FROM numbers",
        "CREATE TABLE t(a)",
        "CREATE TEMP VIEW v AS SELECT 1",
        "ATTACH DATABASE ':memory:' AS other",
        "PRAGMA writable_schema = 1",
        "PRAGMA journal_mode = delete",
        "SELECT load_extension('/tmp/evil.so')",
    ],
)
def test_writes_and_escapes_are_not_authorized(db: Database, sql: str) -> None:
    with pytest.raises(QueryError, match="not authorized"):
        db.execute(sql)


def test_read_only_pragmas_are_allowed(db: Database) -> None:
    names = [r[1] for r in db.execute("PRAGMA table_info(numbers)").rows]
    assert names == ["n", "square", "label"]


def test_time_limit_interrupts_a_scan(db: Database) -> None:
    with pytest.raises(QueryTimeout, match=r"time limit of 0\.5 s"):
        db.execute("SELECT count(*) FROM forever")


def test_time_limit_interrupts_pure_sql(db: Database) -> None:
    with pytest.raises(QueryTimeout):
        db.execute("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c")


def test_time_limit_reaches_generate(db: Database) -> None:
    with pytest.raises(QueryTimeout):
        db.execute("SELECT * FROM slow")


def test_connection_is_usable_after_errors(db: Database) -> None:
    for bad in ("SELECT count(*) FROM forever", "SELEC 1", "SELECT * FROM files", "SELECT * FROM vanishing"):
        with pytest.raises(QueryError):
            db.execute(bad)
    assert db.execute("SELECT n FROM numbers WHERE n = 3").rows == [(3,)]


def test_table_errors_become_query_errors(db: Database) -> None:
    with pytest.raises(QueryError, match="the source disappeared"):
        db.execute("SELECT * FROM vanishing")


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELEC 1", "syntax error"),
        ("SELECT * FROM nope", "no such table: nope"),
        ("SELECT nope FROM numbers", "no such column"),
    ],
)
def test_bad_sql_has_sqlite_message(db: Database, sql: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        db.execute(sql)


def test_columns_known_for_empty_results(db: Database) -> None:
    result = db.execute("SELECT n, square AS sq FROM numbers WHERE n = 500")
    assert result.columns == ["n", "sq"] and result.rows == []


def test_interrupt_from_another_thread() -> None:
    db = Database([FOREVER], time_limit=0)
    timer = threading.Timer(0.2, db.interrupt)
    timer.start()
    try:
        with pytest.raises(QueryTimeout):
            db.execute("SELECT count(*) FROM forever")
    finally:
        timer.cancel()


def test_consumer_reaches_generate() -> None:
    seen: list[str | None] = []

    def gen(context: QueryContext):
        seen.append(context.consumer)
        return [{"x": 1}]

    db = Database([TableSpec("who", "Who asks.", (Column("x", "INTEGER"),), gen)])
    db.execute("SELECT * FROM who", consumer="pack_x_q")
    db.execute("SELECT * FROM who")
    assert seen == ["pack_x_q", None]


def test_registering_a_name_twice_fails(db: Database) -> None:
    with pytest.raises(ValueError, match="twice"):
        db.register(NUMBERS)


def test_several_statements_are_refused(db: Database) -> None:
    with pytest.raises(QueryError, match="one SQL statement per query"):
        db.execute("SELECT 1; SELECT 2, 3")
    assert db.execute("SELECT 1;  ").rows == [(1,)], "a trailing semicolon is one statement"


def test_max_rows_bounds_the_result(db: Database) -> None:
    with pytest.raises(QueryError, match="more than 10 rows"):
        db.execute("SELECT n FROM numbers", max_rows=10)
    assert len(db.execute("SELECT n FROM numbers", max_rows=100).rows) == 100
    assert db.execute("SELECT n FROM numbers WHERE n = 1").rows == [(1,)], "usable afterwards"


def test_tables_read_resolves_aliases_subqueries_and_ctes(db: Database) -> None:
    assert db.tables_read("SELECT 1") == frozenset()
    assert db.tables_read("SELECT a.n FROM numbers AS a WHERE a.n = 1") == {"numbers"}
    assert db.tables_read(
        "WITH f AS (SELECT path FROM files WHERE path = '/x') SELECT * FROM f JOIN numbers ON numbers.n = 1"
    ) == {"files", "numbers"}
    assert db.tables_read("SELECT 'numbers' AS name") == frozenset(), "a string literal is not a table"
    assert CALLS == [], "preparing runs no table"
    with pytest.raises(QueryError, match="no such table"):
        db.tables_read("SELECT * FROM nope")


def test_values_from_the_host_never_fail_a_query() -> None:
    """Text holding bytes that are not UTF-8 comes out escaped (tables.text); a u64 beyond SQLite's range as text."""
    values = [{"t": "bad\udcffname", "n": 2**64 - 1}, {"t": "plain", "n": -(2**63)}, {"t": "a\\xFF", "n": 2**63}]
    spec = TableSpec(
        "hostile",
        "Values no query may fail on.",
        (Column("t", "TEXT"), Column("n", "BIGINT")),
        lambda ctx: iter(values),
    )
    db = Database([spec])
    assert db.execute("SELECT t, n FROM hostile").rows == [
        ("bad\\xFFname", "18446744073709551615"),
        ("plain", -(2**63)),
        ("a\\x5CxFF", "9223372036854775808"),
    ]
    assert db.execute("SELECT t || '/x', upper(t), length(t) FROM hostile WHERE t LIKE 'bad%'").rows == [
        ("bad\\xFFname/x", "BAD\\XFFNAME", 11)
    ]


def test_constraints_arrive_as_the_host_text_they_stand_for() -> None:
    seen: list[frozenset] = []

    def generate(ctx):
        seen.append(ctx.values("t"))
        seen.append(ctx.likes.get("t", frozenset()))
        return iter([{"t": "bad\udcffname"}])

    spec = TableSpec("pushed", "Constraints pushed down.", (Column("t", "TEXT", index=True),), generate)
    db = Database([spec])
    assert db.execute("SELECT t FROM pushed WHERE t = 'bad\\xFFname'").rows == [("bad\\xFFname",)]
    assert seen[-2] == frozenset({"bad\udcffname"})
    db.execute("SELECT t FROM pushed WHERE t LIKE 'bad\\xFF%'")
    assert seen[-1] == frozenset({"bad\udcff%"})
    db.execute("SELECT t FROM pushed WHERE t = 'caf\\xC3\\xA9'")  # not what to_sql writes for "café": literal
    assert seen[-2] == frozenset({"caf\\xC3\\xA9"})


# -- streaming and tuple rows -----------------------------------------------------------------


def test_stream_reads_rows_as_sqlite_produces_them() -> None:
    pulled: list[int] = []

    def counting(context: QueryContext):
        for n in range(100_000):
            pulled.append(n)
            yield {"x": n}

    db = Database([TableSpec("counting", "Counts.", (Column("x", "INTEGER"),), counting)])
    with db.stream("SELECT x FROM counting") as result:
        assert result.columns == ["x"]
        rows = iter(result)
        assert [next(rows) for _ in range(3)] == [(0,), (1,), (2,)]
        assert len(pulled) <= 4, "generate() is read lazily, not materialised"
    assert len(pulled) <= 4, "leaving the with ends the scan"
    assert db.execute("SELECT count(*) FROM counting").rows == [(100_000,)]


def test_stream_errors_arrive_as_query_errors_while_iterating(db: Database) -> None:
    with db.stream("SELECT x FROM vanishing") as result, pytest.raises(QueryError, match="the source disappeared"):
        list(result)
    with pytest.raises(QueryError, match="no such table"), db.stream("SELECT * FROM nope"):
        pass
    with db.stream("SELECT x FROM forever", time_limit=0.2) as result, pytest.raises(QueryTimeout):
        for _ in result:  # the time limit covers what the caller does with the rows too
            time.sleep(0.001)
    assert db.execute("SELECT n FROM numbers WHERE n = 4").rows == [(4,)]


def test_tuple_rows_map_columns_by_name_and_missing_values_are_null() -> None:
    def tuples(context: QueryContext) -> TupleRows:
        return TupleRows(("c", "a"), iter([("c1", "a1"), ("c2",)]))  # no "b"; the second row is short

    spec = TableSpec("tuples", "Tuple rows.", (Column("a", "TEXT"), Column("b", "TEXT"), Column("c", "TEXT")), tuples)
    db = Database([spec])
    assert db.execute("SELECT a, b, c FROM tuples").rows == [("a1", None, "c1"), (None, None, "c2")]
    assert db.execute("SELECT count(*) FROM tuples WHERE c = 'c2'").rows == [(1,)]
    assert list(tuples(QueryContext(table="tuples"))) == [{"c": "c1", "a": "a1"}, {"c": "c2"}], "iterating gives dicts"


def test_tuple_rows_carry_host_values_as_dict_rows_do() -> None:
    """An event table's tuples get the same escapes and integer rule as dict rows (tables.text)."""

    def tuples(context: QueryContext) -> TupleRows:
        return TupleRows(("t", "n"), iter([("bad\udcffname", 2**64 - 1), ("a\\xFF", -(2**63))]))

    spec = TableSpec("hostile_tuples", "Tuple rows.", (Column("t", "TEXT"), Column("n", "BIGINT")), tuples)
    assert Database([spec]).execute("SELECT t, n FROM hostile_tuples").rows == [
        ("bad\\xFFname", "18446744073709551615"),
        ("a\\x5CxFF", -(2**63)),
    ]
