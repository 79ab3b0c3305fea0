"""The one APSW adapter: every TableSpec becomes an eponymous, read-only virtual table.

``Database`` is the query engine the CLI and the daemon share: a SQLite connection with
every registered table, an authorizer that refuses writes, and a per-query time limit.

Constraint pushdown (habits of osquery's virtual_table.cpp):

* ``=`` and ``IN`` on ``index``/``required``/``additional`` columns reach generate() as
  sets of values; ``LIKE`` on them arrives as patterns (``file``/``hash`` use it);
  ``<``, ``<=``, ``>``, ``>=`` on ``additional`` columns arrive as ranges (event ``time``).
* ``colUsed`` tells generate() which columns the query reads.
* A required column with no constraint at all raises :class:`MissingRequiredConstraint`;
  one constrained but unusable in this join order makes BestIndex return False so
  SQLite plans another order.
* SQLite re-checks every constraint (``omit`` stays false): generate() may over-return.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from typing import Any

import apsw

from .functions import register_functions
from .rowsets import MISSING, TupleRows
from .spec import HostPaths, QueryContext, QueryDeadline, TableError, TableSpec
from .text import from_sql, to_sql

__all__ = [
    "Database",
    "MissingRequiredConstraint",
    "QueryError",
    "QueryResult",
    "QueryStream",
    "QueryTimeout",
]

DEFAULT_TIME_LIMIT = 10.0

_OPS = {
    apsw.SQLITE_INDEX_CONSTRAINT_EQ: "eq",
    apsw.SQLITE_INDEX_CONSTRAINT_LIKE: "like",
    apsw.SQLITE_INDEX_CONSTRAINT_GT: "gt",
    apsw.SQLITE_INDEX_CONSTRAINT_GE: "ge",
    apsw.SQLITE_INDEX_CONSTRAINT_LT: "lt",
    apsw.SQLITE_INDEX_CONSTRAINT_LE: "le",
}
_RANGE_OPS = frozenset({"gt", "ge", "lt", "le"})
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1

#: PRAGMAs that only read schema information (osquery allows a similar short list).
_READ_PRAGMAS = frozenset(
    {"table_info", "table_xinfo", "function_list", "collation_list", "module_list", "pragma_list", "table_list"}
)
#: PRAGMAs (and their pragma_* table functions) that list every table or module: a lazy catalog is loaded first.
_LISTING_PRAGMAS = frozenset({"module_list", "table_list"})
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ALLOWED_ACTIONS = frozenset({apsw.SQLITE_SELECT, apsw.SQLITE_READ, apsw.SQLITE_FUNCTION, apsw.SQLITE_RECURSIVE})


class QueryError(Exception):
    """A query failed: bad SQL, a refused action, a table error or the time limit."""


class QueryTimeout(QueryError):
    """The query ran past its time limit and was interrupted."""


class MissingRequiredConstraint(apsw.ConstraintError):
    """A table with required columns was queried without constraining any of them."""


@dataclass(slots=True)
class QueryResult:
    """Column names in SELECT order and rows as tuples."""

    columns: list[str]
    rows: list[tuple[Any, ...]]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, r, strict=False)) for r in self.rows]


@dataclass(slots=True)
class QueryStream:
    """Column names in SELECT order; iterating gives the rows (tuples) as SQLite produces them."""

    columns: list[str]
    _rows: Iterator[tuple[Any, ...]]  # the APSW cursor: its errors are translated by __iter__ and fetch()
    _limit: float

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return _translating(self._rows, self._limit)

    def fetch(self, max_rows: int | None = None) -> list[tuple[Any, ...]]:
        """Every remaining row (collected by SQLite's cursor, no Python loop); at most ``max_rows``."""
        with _translated(self._limit):
            if max_rows is None:
                return list(self._rows)
            rows = list(islice(self._rows, max_rows + 1))
        if len(rows) > max_rows:
            raise QueryError(f"result too large: more than {max_rows:,} rows; narrow it with WHERE or LIMIT")
        return rows


@dataclass(slots=True)
class _Run:
    """Per-query state the cursors read: the deadline and who is asking."""

    deadline: float = float("inf")
    time_limit: float = DEFAULT_TIME_LIMIT
    consumer: str | None = None


# ---------------------------------------------------------------------------
# The virtual table module, generic over TableSpec
# ---------------------------------------------------------------------------


class _Module:
    def __init__(self, spec: TableSpec, db: Database) -> None:
        self.spec = spec
        self.db = db

    def Create(self, connection: apsw.Connection, modulename: str, dbname: str, tablename: str, *args: Any):
        return self.spec.create_sql(), _Table(self.spec, self.db)

    Connect = Create


class _Table:
    def __init__(self, spec: TableSpec, db: Database) -> None:
        self.spec = spec
        self.db = db
        self.names = spec.column_names

    def BestIndexObject(self, info: apsw.IndexInfo) -> bool:
        columns = self.spec.columns
        pushed: list[tuple[str, str]] = []
        mentioned: set[str] = set()
        argv = 0
        for i in range(info.nConstraint):
            col_index = info.get_aConstraint_iColumn(i)
            if col_index < 0:
                continue  # rowid
            col = columns[col_index]
            op = _OPS.get(info.get_aConstraint_op(i))
            if op is None or not col.pushdown:
                continue
            if op in _RANGE_OPS and not col.additional:
                continue
            mentioned.add(col.name)
            if not info.get_aConstraint_usable(i):
                continue
            argv += 1
            info.set_aConstraintUsage_argvIndex(i, argv)
            if op == "eq" and info.get_aConstraintUsage_in(i):
                info.set_aConstraintUsage_in(i, True)  # IN (...) arrives in Filter as one set
            pushed.append((col.name, op))

        required = self.spec.required_columns
        if required:
            satisfied = any(n == c.name and op in ("eq", "like") for n, op in pushed for c in required)
            if not satisfied:
                if any(c.name in mentioned for c in required):
                    return False  # constrained, but not usable in this join order: try another
                names = " or ".join(c.name for c in required)
                raise MissingRequiredConstraint(
                    f"Table {self.spec.name} was queried without a required column in the WHERE clause: "
                    f"constrain {names} with = , IN or LIKE, e.g. "
                    f"SELECT * FROM {self.spec.name} WHERE {required[0].name} = '...'"
                )

        used = info.colUsed
        n = len(columns)
        used_names = sorted(columns[i].name for i in used if i < n) if not any(i >= n for i in used) else None
        info.idxStr = json.dumps({"pushed": pushed, "used": used_names})
        eq_pushed = any(op == "eq" for _, op in pushed)
        if eq_pushed:
            info.estimatedCost, info.estimatedRows = 10.0, 10
        elif pushed:
            info.estimatedCost, info.estimatedRows = 1e4, 1_000
        else:
            info.estimatedCost, info.estimatedRows = 1e6, 100_000
        return True

    def Open(self) -> _Cursor:
        return _Cursor(self)

    def Disconnect(self) -> None:
        pass

    Destroy = Disconnect


class _Cursor:
    __slots__ = ("names", "positions", "row", "rowid", "rows", "run", "source", "table")

    def __init__(self, table: _Table) -> None:
        self.table = table
        self.names = table.names
        self.rows: Iterator[Any] = iter(())
        self.source: Any = None  # what generate() returned, closed with the cursor
        self.positions: list[int] | None = None  # TupleRows: the tuple index of each column
        self.row: Any = None
        self.rowid = 0
        self.run = table.db._run

    def Filter(self, idx_num: int, idx_str: str | None, args: tuple[Any, ...]) -> None:
        self.Close()  # SQLite may re-Filter one cursor (the inner side of a JOIN)
        spec = self.table.spec
        plan = json.loads(idx_str) if idx_str else {"pushed": [], "used": None}
        eq: dict[str, set[Any]] = {}
        like: dict[str, set[str]] = {}
        ranges: dict[str, list[tuple[str, Any]]] = {}
        for (name, op), arg in zip(plan["pushed"], args, strict=True):
            col_type = spec.column(name).type
            if op == "eq":
                values = arg if isinstance(arg, set) else (arg,)
                eq.setdefault(name, set()).update(_coerce(v, col_type) for v in values)
            elif op == "like":
                like.setdefault(name, set()).add(from_sql(arg) if isinstance(arg, str) else str(arg))
            else:
                ranges.setdefault(name, []).append((op, _coerce(arg, col_type)))
        used = plan["used"]
        context = QueryContext(
            table=spec.name,
            constraints={k: frozenset(v) for k, v in eq.items()},
            columns_used=frozenset(used) if used is not None else None,
            paths=self.table.db.paths,
            consumer=self.run.consumer,
            services=self.table.db.services,
            likes={k: frozenset(v) for k, v in like.items()},
            ranges=ranges,
            deadline=self.run.deadline,
        )
        result = spec.generate(context)
        self.source = result
        if isinstance(result, TupleRows):  # rows as tuples: map the columns once, not per row
            self.__class__ = _ReadyTupleCursor if result.sql_ready else _TupleCursor
            self.positions = [*result.positions(self.names), MISSING]  # [-1] (the rowid) is MISSING too
            self.rows = result.tuples()
        else:
            self.__class__ = _Cursor
            self.positions = None
            self.rows = iter(result)
        self.rowid = 0
        self.Next()

    def Next(self) -> None:
        if not self.rowid & 63 and time.monotonic() > self.run.deadline:  # between rows, every 64 rows
            raise QueryTimeout(f"query exceeded the time limit of {self.run.time_limit:g} s and was interrupted")
        self.row = next(self.rows, None)
        self.rowid += 1

    def Eof(self) -> bool:
        return self.row is None

    def Column(self, which: int) -> Any:
        if which == -1:
            return self.rowid
        value = self.row.get(self.names[which])
        if value.__class__ is str:
            # bytes that are not UTF-8 become \xHH escapes (tables.text); plain text is returned as it is
            return value if value.isascii() and "\\x" not in value else to_sql(value)
        if value.__class__ is int and (value > _INT64_MAX or value < _INT64_MIN):
            return str(value)  # beyond SQLite's integers (an overlayfs inode): exact, as decimal text
        return value

    def Rowid(self) -> int:
        return self.rowid

    def Close(self) -> None:
        for it in (self.rows, self.source):
            close = getattr(it, "close", None)
            if close is not None:
                close()  # run the generator's finally blocks now (LIMIT, errors)
        self.rows = iter(())
        self.source = None


class _TupleCursor(_Cursor):
    """A cursor over :class:`TupleRows` (Filter switches a cursor's class): a column is an index."""

    __slots__ = ()

    def Column(self, which: int) -> Any:
        try:
            value = self.row[self.positions[which]]  # type: ignore[index]
        except IndexError:  # the rowid (-1), or a column the stored tuple does not have
            return self.rowid if which == -1 else None
        if value.__class__ is str:  # as _Cursor.Column
            return value if value.isascii() and "\\x" not in value else to_sql(value)
        if value.__class__ is int and (value > _INT64_MAX or value < _INT64_MIN):
            return str(value)
        return value


class _ReadyTupleCursor(_Cursor):
    """A cursor over :class:`TupleRows` whose values are converted already (``sql_ready``: the event stores)."""

    __slots__ = ()

    def Column(self, which: int) -> Any:
        try:
            return self.row[self.positions[which]]  # type: ignore[index]
        except IndexError:  # the rowid (-1), or a column the stored tuple does not have
            return self.rowid if which == -1 else None


def _coerce(value: Any, sql_type: str) -> Any:
    """Give generate() values of the column's type: ``WHERE pid = '1'`` means pid 1.

    TEXT arrives as the host text it stands for: :func:`tables.text.from_sql` undoes the
    escapes :meth:`_Cursor.Column` wrote for bytes that are not UTF-8.
    """
    if sql_type in ("INTEGER", "BIGINT", "UNSIGNED_BIGINT") and isinstance(value, (str, float)):
        try:
            return int(value)
        except ValueError:
            return value
    if sql_type == "DOUBLE" and isinstance(value, (str, int)):
        try:
            return float(value)
        except ValueError:
            return value
    if sql_type == "TEXT":
        if isinstance(value, str):
            return from_sql(value)
        if isinstance(value, (int, float)):
            return str(value)
    return value


# ---------------------------------------------------------------------------
# The query engine
# ---------------------------------------------------------------------------


class Database:
    """A read-only SQLite connection over registered table specs.

    Args:
        specs: tables to register (usually :func:`tables.registry.all_specs`).
        paths: where /proc, /sys and the host's files are (tests use fixture trees).
        time_limit: seconds a query may run before it is interrupted.
        services: runtime objects generate() may need (event stores, agent status),
            handed to every QueryContext; tables/ never imports who provides them.
        catalog: tables registered on first use: name -> a function returning its spec
            (:func:`tables.registry.catalog`).  Before a statement is prepared, every word
            of it that names a catalog table registers that table, so a query imports
            only the table modules it needs.
    """

    def __init__(
        self,
        specs: Iterable[TableSpec] = (),
        *,
        paths: HostPaths | None = None,
        time_limit: float = DEFAULT_TIME_LIMIT,
        services: Mapping[str, Any] | None = None,
        catalog: Mapping[str, Callable[[], TableSpec]] | None = None,
    ) -> None:
        self.paths = paths or HostPaths()
        self._catalog = {name.lower(): load for name, load in (catalog or {}).items()}
        self.time_limit = time_limit
        self.services: dict[str, Any] = dict(services or {})
        self.specs: dict[str, TableSpec] = {}
        self._run = _Run(time_limit=time_limit)
        self._reads: set[str] | None = None  # tables_read() collects READ actions here
        self._tables_read: dict[str, frozenset[str]] = {}
        self.connection = apsw.Connection(":memory:")
        self.connection.authorizer = self._authorize
        self.connection.set_progress_handler(self._progress, 1000)
        register_functions(self.connection)
        for spec in specs:
            self.register(spec)

    def register(self, spec: TableSpec) -> None:
        """Make ``spec`` queryable by its name (eponymous: no CREATE VIRTUAL TABLE)."""
        if spec.name in self.specs:
            raise ValueError(f"table {spec.name} is registered twice")
        self._catalog.pop(spec.name.lower(), None)
        self.specs[spec.name] = spec
        self.connection.create_module(
            spec.name,
            _Module(spec, self),  # type: ignore[arg-type]  # duck-typed, as apsw.ext does
            use_bestindex_object=True,
            eponymous=True,
            eponymous_only=True,
            read_only=True,
        )

    def tables(self) -> list[str]:
        """Every table name: registered, and in the catalog (not yet loaded)."""
        return sorted({*self.specs, *self._catalog})

    def load_tables(self, sql: str) -> None:
        """Register the catalog's tables that ``sql`` may name.

        Every word of the text is looked up (strings and comments too: a table loaded for
        nothing costs only its import); PRAGMAs that list tables or modules load them all.
        """
        catalog = self._catalog
        if not catalog:
            return
        words = {word.lower() for word in _WORD.findall(sql)}
        listing = any(w.removeprefix("pragma_") in _LISTING_PRAGMAS for w in words)
        names = list(catalog) if listing else [w for w in words if w in catalog]
        for name in names:
            load = catalog.pop(name, None)
            if load is None:
                continue
            try:
                spec = load()
            except Exception as exc:  # noqa: BLE001 - a table module that cannot be imported here
                raise QueryError(f"table {name} cannot be loaded: {type(exc).__name__}: {exc}") from None
            if spec.name not in self.specs:
                self.register(spec)

    def execute(
        self,
        sql: str,
        bindings: Sequence[Any] | Mapping[str, Any] = (),
        *,
        consumer: str | None = None,
        time_limit: float | None = None,
        max_rows: int | None = None,
    ) -> QueryResult:
        """Run one SQL statement and return every row; raise :class:`QueryError` with a clear message.

        ``consumer`` names the scheduled query asking, so event tables return only the
        events it has not seen yet (and, once the statement completed, it has seen them);
        ad-hoc queries pass None and see the whole buffer.
        ``max_rows`` bounds the result held in memory (ad-hoc queries from the network).
        Several statements in one call are refused: their rows would share one header.
        """
        try:
            with self.stream(sql, bindings, consumer=consumer, time_limit=time_limit) as result:
                rows = result.fetch(max_rows)
        except BaseException:
            if consumer is not None:
                self.discard_reads(consumer)
            raise
        if consumer is not None:
            self.commit_reads(consumer)
        return QueryResult(result.columns, rows)

    @contextmanager
    def stream(
        self,
        sql: str,
        bindings: Sequence[Any] | Mapping[str, Any] = (),
        *,
        consumer: str | None = None,
        time_limit: float | None = None,
    ) -> Iterator[QueryStream]:
        """Run one SQL statement; its rows are read as SQLite produces them, inside the ``with``.

        Nothing is held beyond what SQLite itself needs (a sort, a GROUP BY): a scheduled
        query over a full event buffer streams into its results.  The time limit covers the
        whole ``with`` block.  ``consumer``'s event reads stay pending: the caller commits them
        (:meth:`commit_reads`) once the results are stored, or discards them.
        """
        self.load_tables(sql)
        limit = self.time_limit if time_limit is None else time_limit
        self._run.time_limit = limit
        self._run.deadline = time.monotonic() + limit if limit and limit > 0 else float("inf")
        self._run.consumer = consumer
        columns: list[str] = []
        statements = 0

        def trace(cursor: apsw.Cursor, statement: str, _bindings: Any) -> bool:
            nonlocal statements
            statements += 1
            if statements > 1:
                return False  # aborts with ExecTraceAbort, reported below
            columns[:] = [d[0] for d in cursor.get_description()]
            return True

        cursor = self.connection.cursor()
        cursor.exec_trace = trace
        try:
            with _translated(limit):
                rows = cursor.execute(sql, bindings)
            yield QueryStream(columns, rows, limit)
        finally:
            cursor.close(True)  # end an abandoned statement now: its generate() runs its cleanup
            self._run.deadline = float("inf")
            self._run.consumer = None

    def commit_reads(self, consumer: str) -> None:
        """``consumer``'s results are stored: event tables move its position past what it read."""
        from .events import EVENT_STORES, commit_reads  # event tables are loaded on use

        commit_reads(self.services.get(EVENT_STORES, {}), consumer)

    def discard_reads(self, consumer: str) -> None:
        """``consumer``'s run failed: event tables show it the same events next time."""
        from .events import EVENT_STORES, discard_reads

        discard_reads(self.services.get(EVENT_STORES, {}), consumer)

    def interrupt(self) -> None:
        """Abort the running query from another thread (the watchdog uses this)."""
        self.connection.interrupt()

    def close(self) -> None:
        self.connection.close()

    # -- SQLite callbacks --------------------------------------------------

    def _progress(self) -> bool:
        return time.monotonic() > self._run.deadline  # True interrupts the statement

    def tables_read(self, sql: str) -> frozenset[str]:
        """The tables ``sql`` reads, as SQLite resolves them (aliases, subqueries, CTEs).

        Found by preparing the statement (``EXPLAIN``, which runs no table) with the
        authorizer noting every READ; cached per SQL text. Raises QueryError for bad SQL.
        """
        found = self._tables_read.get(sql)
        if found is None:
            self.load_tables(sql)
            reads: set[str] = set()
            self._reads = reads
            try:
                self.connection.execute("EXPLAIN " + sql).fetchall()
            except apsw.Error as exc:
                raise QueryError(_message(exc)) from None
            finally:
                self._reads = None
            found = frozenset(reads)
            if len(self._tables_read) < 1024:
                self._tables_read[sql] = found
        return found

    def _authorize(self, action: int, p1: str | None, p2: str | None, dbname: str | None, trigger: str | None) -> int:
        if action == apsw.SQLITE_READ and self._reads is not None and p1:
            self._reads.add(p1)
        if action in _ALLOWED_ACTIONS:
            if action == apsw.SQLITE_FUNCTION and p2 and p2.lower() == "load_extension":
                return apsw.SQLITE_DENY
            return apsw.SQLITE_OK
        if action == apsw.SQLITE_PRAGMA and p1 and p1.lower() in _READ_PRAGMAS:
            return apsw.SQLITE_OK
        import logging  # only here: agent-cli does not import logging to start

        logging.getLogger(__name__).debug("authorizer refused action %d (%s, %s)", action, p1, p2)
        return apsw.SQLITE_DENY


@contextmanager
def _translated(limit: float) -> Iterator[None]:
    """SQLite's and the tables' exceptions as :class:`QueryError` with a clear message."""
    try:
        yield
    except apsw.ExecTraceAbort:
        raise QueryError("one SQL statement per query, please: this one has several") from None
    except QueryError:
        raise
    except (QueryDeadline, apsw.InterruptError):
        raise QueryTimeout(f"query exceeded the time limit of {limit:g} s and was interrupted") from None
    except apsw.AuthError as exc:
        raise QueryError(f"{_message(exc)} (queries are read-only)") from None
    except apsw.SQLError as exc:
        message = _message(exc)
        if "may not be modified" in message:  # SQLite refuses writes to read-only tables before the authorizer
            message = f"not authorized: {message} (queries are read-only)"
        raise QueryError(message) from None
    except (apsw.Error, TableError) as exc:
        raise QueryError(_message(exc)) from None
    except TypeError as exc:  # apsw: wrong number/type of bindings
        raise QueryError(str(exc)) from None


def _translating(rows: Iterator[tuple[Any, ...]], limit: float) -> Iterator[tuple[Any, ...]]:
    with _translated(limit):
        yield from rows


def _message(exc: BaseException) -> str:
    """SQLite's message without APSW's ``ErrorName:`` prefix."""
    text = str(exc)
    for prefix in ("SQLError: ", "AuthError: ", "ConstraintError: ", "ExecutionCompleteError: "):
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text
