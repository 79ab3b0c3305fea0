from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from agent import runner as runner_module
from agent.config import Decorators, ScheduledQuery
from agent.options import parse_options
from agent.results import ResultWriter
from agent.runner import DecorationRunner, QueryRunner, event_tables_in, stringify
from agent.state import StateDB, pack_rows
from agent.uplink.queue import EntryKind, UplinkQueue
from tables.events import EVENT_STORES, EventStore, event_table
from tables.spec import Column, TableSpec
from tables.sqlite import Database
from tests._jsonlines import read_json_lines

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Items:
    """A small real table whose rows the test sets (what a /proc table would return)."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def spec(self) -> TableSpec:
        return TableSpec(
            name="items",
            description="Rows the test controls.",
            columns=(Column("id", "INTEGER"), Column("name", "TEXT"), Column("size", "DOUBLE")),
            generate=lambda context: [dict(r) for r in self.rows],
        )


def _forever(context):
    while True:
        context.check_deadline()
        yield {"n": 1}


@pytest.fixture()
def env(tmp_path):
    items = Items()
    store = EventStore("thing_events", clock=lambda: 1000.0)
    specs = [
        items.spec(),
        event_table("thing_events", "Things that happened.", [Column("what", "TEXT"), Column("time", "BIGINT")]),
        TableSpec(name="forever", description="Never ends.", columns=(Column("n", "INTEGER"),), generate=_forever),
    ]
    db = Database(specs, services={EVENT_STORES: {"thing_events": store}})
    state = StateDB(str(tmp_path / "state.db"))
    writer = ResultWriter(str(tmp_path / "log"))

    def make(**options) -> QueryRunner:
        opts, _ = parse_options(options)
        return QueryRunner(db, state, host_identifier="host-a", options=opts)

    return items, store, db, state, writer, make, tmp_path


def q(sql="select id, name from items", name="items_q", **kw) -> ScheduledQuery:
    return ScheduledQuery(name=name, query=sql, interval=60, **kw)


def logged(tmp_path, which="results") -> list[dict]:
    return read_json_lines(tmp_path / "log" / f"{which}.log")


def lines_of(tmp_path, out, which="results") -> list[dict]:
    """The log lines the run ``out`` wrote (the log's last ``out.line_count`` lines)."""
    lines = logged(tmp_path, which)
    return lines[len(lines) - out.line_count :] if out.line_count else []


def test_first_run_then_diff_then_no_change(env):
    items, _store, _db, state, writer, make, tmp = env
    runner = make()
    items.rows = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    out = runner.run(q(), 1000.0, writer)
    assert (out.error, out.rows, out.added, out.removed, out.counter) == (None, 2, 2, 0, 0)
    lines = logged(tmp)
    assert [(x["action"], x["columns"], x["counter"], x["epoch"]) for x in lines] == [
        ("added", {"id": "1", "name": "a"}, 0, 0),
        ("added", {"id": "2", "name": "b"}, 0, 0),
    ]
    assert lines[0]["hostIdentifier"] == "host-a" and lines[0]["unixTime"] == 1000

    out = runner.run(q(), 1060.0, writer)  # nothing changed: nothing logged, counter stays
    assert (out.line_count, out.counter) == (0, 0) and len(logged(tmp)) == 2
    assert state.get_query("items_q").last_run == 1060.0

    items.rows = [{"id": 2, "name": "b"}, {"id": 3, "name": "c"}]
    out = runner.run(q(), 1120.0, writer)
    assert [(x["action"], x["columns"]["id"], x["counter"]) for x in logged(tmp)[2:]] == [
        ("removed", "1", 1),
        ("added", "3", 1),
    ]
    items.rows.append({"id": 4, "name": "d"})
    assert runner.run(q(), 1180.0, writer).counter == 2


def test_first_run_with_no_rows_stores_state(env):
    items, _store, _db, state, writer, make, _tmp = env
    runner = make()
    assert runner.run(q(), 1.0, writer).line_count == 0
    assert state.get_query("items_q").counter == 0
    items.rows = [{"id": 1, "name": "a"}]
    out = runner.run(q(), 2.0, writer)
    assert (out.added, out.counter) == (1, 1)


def test_removed_false_suppresses_removals(env):
    items, _store, _db, _state, writer, make, tmp = env
    runner = make()
    items.rows = [{"id": 1, "name": "a"}]
    runner.run(q(removed=False), 1.0, writer)
    items.rows = []
    out = runner.run(q(removed=False), 2.0, writer)
    assert (out.line_count, out.removed, out.counter) == (0, 0, 1)  # state still moves on
    items.rows = [{"id": 1, "name": "a"}]
    out = runner.run(q(removed=False), 3.0, writer)
    assert [x["action"] for x in lines_of(tmp, out)] == ["added"] and len(logged(tmp)) == 2


def test_snapshot_form_goes_to_the_snapshot_log_without_state(env):
    items, _store, _db, state, writer, make, tmp = env
    items.rows = [{"id": 1, "name": "a"}, {"id": 2, "name": None}]
    out = make().run(q(snapshot=True, name="snap"), 5.0, writer)
    (line,) = logged(tmp, "snapshots")
    assert line["snapshot"] == [{"id": "1", "name": "a"}, {"id": "2", "name": ""}]
    assert (line["action"], line["counter"], line["name"]) == ("snapshot", 0, "snap")
    assert logged(tmp) == [] and state.get_query("snap") is None and out.rows == 2
    make(logger_snapshot_event_type=True).run(q(snapshot=True, name="snap"), 6.0, writer)
    assert [x["columns"]["id"] for x in logged(tmp, "snapshots")[1:]] == ["1", "2"]


def test_new_epoch_reports_everything_again(env):
    items, _store, _db, state, writer, make, tmp = env
    items.rows = [{"id": 1, "name": "a"}]
    make().run(q(), 1.0, writer)
    make().run(q(), 2.0, writer)
    out = make(schedule_epoch=7).run(q(), 3.0, writer)
    assert [(x["action"], x["epoch"], x["counter"]) for x in lines_of(tmp, out)] == [("added", 7, 0)]
    assert state.get_query("items_q").epoch == 7


def test_changed_sql_is_noted_and_still_diffed(env):
    items, _store, _db, state, writer, make, _tmp = env
    items.rows = [{"id": 1, "name": "a"}]
    make().run(q(), 1.0, writer)
    out = make().run(q("select id, name from items where 1"), 2.0, writer)
    assert out.messages == ["Scheduled query has been updated: items_q"] and out.line_count == 0
    assert state.get_query("items_q").sql == "select id, name from items where 1"


def test_numerics_and_batch_format_and_decorations(env):
    items, _store, _db, _state, writer, make, tmp = env
    items.rows = [{"id": 1, "name": "a", "size": 1.5}]
    runner = make(logger_numerics=True, logger_event_type=False)
    runner.decorations_provider = lambda now: {"host_uuid": "U"}
    out = runner.run(q("select id, name, size from items"), 1.0, writer)
    (line,) = lines_of(tmp, out)
    assert list(line) == [
        "diffResults",
        "name",
        "hostIdentifier",
        "calendarTime",
        "unixTime",
        "epoch",
        "counter",
        "numerics",
        "decorations",
    ]
    assert line["diffResults"] == {"removed": [], "added": [{"id": 1, "name": "a", "size": 1.5}]}
    assert (line["numerics"], line["decorations"]) == (True, {"host_uuid": "U"})


def test_event_queries_see_only_new_events_and_count_from_one(env):
    _items, store, db, state, writer, make, tmp = env
    runner = make()
    eq = q("select what from thing_events", name="ev")
    other = q("select what from thing_events", name="ev2")
    assert event_tables_in(db, eq.query) == {"thing_events"}
    assert event_tables_in(db, "select 'thing_events' as name") == frozenset(), "a string is not a table"
    late = q("select what from thing_events", name="late")
    assert runner.run(late, 1.0, writer).counter is None  # a first run without events stores no counter
    store.extend([{"what": "a"}, {"what": "b"}])
    out = runner.run(eq, 2.0, writer)  # first run (new epoch) with events: counter 1, not 0
    assert [(x["action"], x["columns"], x["counter"]) for x in lines_of(tmp, out)] == [
        ("added", {"what": "a"}, 1),
        ("added", {"what": "b"}, 1),
    ]
    assert runner.run(eq, 3.0, writer).line_count == 0  # no new events: nothing, counter kept
    store.add({"what": "c"})
    out = runner.run(eq, 4.0, writer)
    assert [(x["columns"]["what"], x["counter"]) for x in lines_of(tmp, out)] == [("c", 2)]
    # another scheduled query has its own position: it sees all three events
    out = runner.run(other, 5.0, writer)
    assert [(x["columns"]["what"], x["counter"]) for x in lines_of(tmp, out)] == [("a", 1), ("b", 1), ("c", 1)]
    # osquery's edge: after a first run without events, the next batch counts from 0
    assert [x["counter"] for x in lines_of(tmp, runner.run(late, 7.0, writer))] == [0, 0, 0]
    assert state.get_query("ev").rows == []  # event results are not kept for diffing


def test_errors_and_timeouts_change_nothing(env):
    _items, _store, _db, state, writer, make, tmp = env
    out = make().run(q("select * from no_such_table", name="bad"), 1.0, writer)
    assert out.error == "no such table: no_such_table" and not out.timed_out and out.line_count == 0
    assert state.get_query("bad") is None
    out = make(schedule_timeout="0.05").run(q("select count(*) from forever", name="slow"), 1.0, writer)
    assert out.timed_out and "time limit of 0.05 s" in out.error
    assert state.get_query("slow") is None and logged(tmp) == []


def test_decoration_runner_merges_load_always_interval(env):
    items, _store, db, _state, _writer, _make, _tmp = env
    items.rows = [{"id": 1, "name": "a"}]
    execute = lambda sql: db.execute(sql).dicts()  # noqa: E731
    decorators = Decorators(
        load=["select 'L' as load_col", "select * from no_such_table"],
        always=["select count(*) as n from items"],
        interval={60: ["select name as first_name from items order by id limit 1"]},
    )
    deco = DecorationRunner(execute, decorators)
    deco.load()
    assert deco(120.0) == {"first_name": "a", "load_col": "L", "n": "1"}
    assert deco.errors == ["decorator query failed: 'select * from no_such_table': no such table: no_such_table"]
    items.rows = [{"id": 0, "name": "z"}, {"id": 1, "name": "a"}]
    assert deco(150.0) == {"first_name": "a", "load_col": "L", "n": "2"}  # same period: interval kept
    assert deco(180.0)["first_name"] == "z"  # a new period re-runs interval decorators


def test_stringify():
    assert [stringify(v) for v in (None, 1, 2.5, 3.0, "x", b"y")] == ["", "1", "2.5", "3.0", "x", "y"]


# -- streaming: rows go to the outbox in batches, never all in memory ------------------------


@pytest.fixture()
def small_batches(monkeypatch):
    monkeypatch.setattr(runner_module, "BATCH_ROWS", 3)


def _count_staging(monkeypatch, state) -> list[int]:
    sizes: list[int] = []
    stage = state.stage_packed

    def counting(run_id, action, columns, count, body):
        sizes.append(count)
        stage(run_id, action, columns, count, body)

    monkeypatch.setattr(state, "stage_packed", counting)
    return sizes


def test_an_event_run_streams_in_batches_and_logs_every_row_once(env, small_batches, monkeypatch):
    _items, store, _db, state, writer, make, tmp = env
    sizes = _count_staging(monkeypatch, state)
    store.extend({"what": f"w{i}"} for i in range(10))
    out = make().run(q("select what from thing_events", name="ev"), 2.0, writer)
    assert (out.rows, out.added, out.line_count, sizes) == (10, 10, 10, [3, 3, 3, 1])
    assert [x["columns"]["what"] for x in logged(tmp)] == [f"w{i}" for i in range(10)]
    assert {x["counter"] for x in logged(tmp)} == {1} and out.output_bytes == os.path.getsize(writer.results.path)
    assert list(state.outbox()) == [] and state.runs() == []


def test_a_failed_run_leaves_no_batches_and_its_events_are_read_again(env, small_batches):
    _items, store, _db, state, writer, make, tmp = env
    store.extend({"what": f"w{i}"} for i in range(5))
    runaway = q("select what from thing_events, forever", name="ev")  # rows without end: batches staged, then
    out = make(schedule_timeout="0.2").run(runaway, 1.0, writer)  # the time limit
    assert out.timed_out and out.line_count == 0 and logged(tmp) == []
    assert state._db.execute("SELECT count(*) FROM result_batches").fetchone() == (0,)
    assert state._db.execute("SELECT count(*) FROM result_runs").fetchone() == (0,)
    out = make().run(q("select what from thing_events", name="ev"), 2.0, writer)
    assert [x["columns"]["what"] for x in logged(tmp)] == [f"w{i}" for i in range(5)]


def test_a_differential_run_across_batches_logs_removed_before_added(env, small_batches):
    items, _store, _db, state, writer, make, tmp = env
    runner = make()
    items.rows = [{"id": i, "name": f"n{i}"} for i in range(8)]
    runner.run(q(), 1.0, writer)
    items.rows = [r for r in items.rows if r["id"] % 3] + [{"id": 100 + i, "name": "new"} for i in range(4)]
    out = runner.run(q(), 2.0, writer)
    assert (out.added, out.removed, out.counter, out.rows) == (4, 3, 1, 9)
    changes = [(x["action"], x["columns"]["id"]) for x in lines_of(tmp, out)]
    assert changes == [("removed", "0"), ("removed", "3"), ("removed", "6")] + [("added", f"10{i}") for i in range(4)]
    assert sorted(r["id"] for r in state.get_query("items_q").rows) == sorted(r["id"] for r in items.rows), "typed"
    assert runner.run(q(), 3.0, writer).line_count == 0  # compared with what the last run stored


def test_batch_and_snapshot_forms_are_one_line_across_batches(env, small_batches):
    items, _store, _db, _state, writer, make, tmp = env
    items.rows = [{"id": i, "name": f"n{i}"} for i in range(7)]
    runner = make(logger_event_type=False)
    runner.run(q(), 1.0, writer)
    items.rows = [*items.rows[2:], {"id": 9, "name": "n9"}]
    out = runner.run(q(), 2.0, writer)
    (line,) = lines_of(tmp, out)
    assert [r["id"] for r in line["diffResults"]["removed"]] == ["0", "1"]
    assert [r["id"] for r in line["diffResults"]["added"]] == ["9"] and line["counter"] == 1
    out = make().run(q(snapshot=True, name="snap"), 3.0, writer)
    (snap,) = lines_of(tmp, out, "snapshots")
    assert [r["id"] for r in snap["snapshot"]] == [str(r["id"]) for r in items.rows]


def test_numeric_columns_are_decided_over_the_whole_run(env, small_batches):
    items, _store, _db, _state, writer, make, tmp = env
    items.rows = [{"id": i, "name": str(i), "size": None} for i in range(4)] + [{"id": 4, "name": "4", "size": 2.5}]
    out = make(logger_numerics=True).run(q("select id, name, size from items"), 1.0, writer)
    lines = lines_of(tmp, out)
    assert [x["columns"] for x in lines[:1]] == [{"id": 0, "name": "0", "size": ""}]
    assert lines[-1]["columns"] == {"id": 4, "name": "4", "size": 2.5}, "size is numeric: one row had a number"


# -- kill -9 between and inside runs: no duplicate, no missed change -----------------------

CHILD = textwrap.dedent(
    """
    import json, os, signal, sys
    sys.path.insert(0, {repo!r})
    from agent import runner as runner_module
    from agent.config import ScheduledQuery
    from agent.options import Options
    from agent.results import ResultWriter
    from agent.runner import QueryRunner
    from agent.state import StateDB
    from agent.uplink.queue import UplinkQueue
    from tables.spec import Column, TableSpec
    from tables.sqlite import Database

    state_dir, items_path, phase, now, form = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5]
    runner_module.BATCH_ROWS = 1  # every row its own batch: kills land between batches of one run

    def generate(context):
        with open(items_path) as f:
            return json.load(f)

    spec = TableSpec(name="items", description="Rows from a file.", columns=(Column("id", "INTEGER"),
                     Column("name", "TEXT")), generate=generate)
    state = StateDB(os.path.join(state_dir, "state.db"))
    writer = ResultWriter(os.path.join(state_dir, "log"))
    options = Options(logger_event_type=form == "event")
    runner = QueryRunner(Database([spec]), state, host_identifier="h", options=options)
    queue = UplinkQueue(state, max_rows=10**9, max_bytes=10**12)  # never acknowledged: it keeps every run
    runner.uplink = queue.enqueue
    runner.deliver(writer)  # recovery of what a killed predecessor committed

    def die(*_args, **_kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    def after(fn, calls=1):
        seen = []
        def wrapped(*args, **kwargs):
            fn(*args, **kwargs)
            seen.append(1)
            if len(seen) >= calls:
                die()
        return wrapped

    if phase == "before_commit":
        runner.commit = die
    elif phase == "mid_stage":
        state.stage_packed = after(state.stage_packed)
    elif phase == "after_commit":
        runner.commit = after(runner.commit)
    elif phase == "in_uplink":  # inside the commit transaction, the run queued for the collector
        runner.uplink = after(queue.enqueue)
    elif phase == "after_started":
        state.outbox_started = after(state.outbox_started)
    elif phase == "torn_write":
        def torn(data, file_id, offset):
            with open(writer.results.path, "ab") as f:
                f.write(data[: len(data) // 2])
                f.flush()
            die()
        def torn_chunks(chunks, file_id, offset):
            torn(b"".join(chunks), file_id, offset)
        writer.results.write_at = torn
        writer.results.write_chunks_at = torn_chunks
    elif phase == "after_write":
        state.outbox_done = die
    elif phase == "between_batches" and form == "event":
        state.outbox_done = after(state.outbox_done, 2)
    elif phase == "between_batches":  # the run's one line: killed after its first pieces
        def pieces(chunks, file_id, offset):
            chunks = iter(chunks)
            with open(writer.results.path, "ab") as f:
                f.write(next(chunks) + next(chunks))
                f.flush()
            die()
        writer.results.write_chunks_at = pieces
    query = ScheduledQuery(name="items_q", query="select id, name from items", interval=60)
    runner.run(query, now, writer)
    """
)


def replay(lines: list[dict]) -> list[tuple]:
    """Apply logged added/removed lines in order; any impossible removal is a duplicate."""
    current: dict[tuple, int] = {}
    changes = []
    for line in lines:
        if "diffResults" in line:  # the batch form: one line per run, removed first
            changes += [("removed", r) for r in line["diffResults"]["removed"]]
            changes += [("added", r) for r in line["diffResults"]["added"]]
        else:
            changes.append((line["action"], line["columns"]))
    for action, columns in changes:
        key = tuple(sorted(columns.items()))
        if action == "added":
            current[key] = current.get(key, 0) + 1
        else:
            assert current.get(key, 0) > 0, f"removal of a row never added (duplicate line?): {columns}"
            current[key] -= 1
    return sorted(k for k, n in current.items() for _ in range(n))


def expected(rows: list[dict], as_text: bool = True) -> list[tuple]:
    return sorted(tuple(sorted({k: str(v) if as_text else v for k, v in r.items()}.items())) for r in rows)


def uplinked(state: StateDB) -> list[dict]:
    """What the uplink queue holds, as result lines (typed values), checking its sequence is gapless."""
    entries = UplinkQueue(state, max_rows=10**9, max_bytes=10**12).read(0, 10**6)
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    assert all(e.kind is EntryKind.RESULTS for e in entries)
    return [
        {"action": action.value, "columns": dict(zip(e.message.columns, values, strict=True)), "counter": counter}
        for e in entries
        for action, values in e.message.rows
        for counter in [e.message.counter]
    ]


@pytest.mark.parametrize("form", ["event", "batch"])
def test_kill_9_between_and_inside_runs(tmp_path, form):
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(repo=REPO))
    items_path = tmp_path / "items.json"
    phases = [
        "none",
        "before_commit",
        "none",
        "mid_stage",
        "none",
        "after_commit",
        "none",
        "after_started",
        "none",
        "torn_write",
        "none",
        "after_write",
        "none",
        "between_batches",
        "none",
        "in_uplink",
        "none",
        "after_commit",
        "after_write",
        "torn_write",
        "none",
    ]
    rows: list[dict] = []
    now = 1000.0
    for step, phase in enumerate(phases):
        rows = [r for r in rows if r["id"] % 3 != step % 3] + [
            {"id": step, "name": f"n{step}"},
            {"id": step + 100, "name": "x"},
        ]
        items_path.write_text(json.dumps(rows))
        proc = subprocess.run(
            [sys.executable, str(script), str(tmp_path), str(items_path), phase, str(now), form],
            capture_output=True,
            text=True,
            timeout=60,
        )
        now += 60
        if phase == "none":
            assert proc.returncode == 0, proc.stderr
            assert replay(logged(tmp_path)) == expected(rows), f"step {step}"
            state = StateDB(str(tmp_path / "state.db"))
            assert replay(uplinked(state)) == expected(rows, as_text=False), f"step {step}: the uplink, typed"
            state.close()
        else:
            assert proc.returncode == -signal.SIGKILL, proc.stderr
    lines = logged(tmp_path)
    assert lines[0]["counter"] == 0
    counters = [x["counter"] for x in lines]
    assert counters == sorted(counters)  # each committed run once, in order
    assert len(lines) == len({json.dumps(x, sort_keys=True) for x in lines})  # no line twice
    state = StateDB(str(tmp_path / "state.db"))
    assert list(state.outbox()) == [] and state._db.execute("SELECT count(*) FROM result_runs").fetchone() == (0,)
    sent = uplinked(state)
    assert [x["counter"] for x in sent] == sorted(x["counter"] for x in sent) and sent[0]["counter"] == 0
    assert len({x["counter"] for x in sent}) == len({x["counter"] for x in lines}), (
        "each committed run once, both sinks"
    )


# -- typed values: the uplink gets them as SQLite gave them; the diff compares osquery's text -------


def _hooked(runner: QueryRunner) -> list[tuple]:
    """Install an uplink hook that records (columns, rows, counter, epoch, time) of each part it gets."""
    seen: list[tuple] = []

    def hook(db, run):
        assert db.in_transaction  # the run's own commit transaction
        seen.append((run.columns, tuple(run.rows), run.counter, run.epoch, run.time))

    runner.uplink = hook
    return seen


def test_uplink_hook_gets_typed_rows_in_the_run_transaction(env):
    """The collector gets values as SQLite gave them (never strings), removed rows first, in the commit."""
    items, _store, _db, state, writer, make, _tmp = env
    runner = make()
    seen = _hooked(runner)
    items.rows = [{"id": 1, "name": "a", "size": 1.5}, {"id": 2, "name": None, "size": 0.0}]
    runner.run(q("select id, name, size from items"), 1000.0, writer)
    (first,) = seen
    assert first == (("id", "name", "size"), (("added", (1, "a", 1.5)), ("added", (2, None, 0.0))), 0, 0, 1000.0)
    runner.run(q("select id, name, size from items"), 1060.0, writer)  # no change: nothing for the uplink
    assert len(seen) == 1
    items.rows = [{"id": 2, "name": None, "size": 0.0}, {"id": 3, "name": "c", "size": 2.25}]
    runner.run(q("select id, name, size from items"), 1120.0, writer)
    assert seen[1][1:3] == ((("removed", (1, "a", 1.5)), ("added", (3, "c", 2.25))), 1)
    runner.run(q("select id, name from items", name="snap", snapshot=True), 1180.0, writer)
    assert seen[2][:2] == (("id", "name"), (("snapshot", (2, None)), ("snapshot", (3, "c"))))
    assert state.get_query("items_q").rows == items.rows, "previous results are stored typed"


def test_uplink_rows_stream_across_batches_and_removed_rows_keep_their_columns(env, small_batches):
    items, _store, _db, _state, writer, make, _tmp = env
    runner = make()
    seen = _hooked(runner)
    items.rows = [{"id": i, "name": f"n{i}", "size": i / 2} for i in range(8)]
    runner.run(q("select id, name from items"), 1.0, writer)
    assert [v for _a, v in seen[0][1]] == [(i, f"n{i}") for i in range(8)], "one part over three batches"
    items.rows = items.rows[:2]
    runner.run(q("select id, name, size from items"), 2.0, writer)  # the SQL changed: other columns
    removed, added = seen[1:]
    assert removed[0] == ("id", "name") and [a for a, _v in removed[1]] == ["removed"] * 8
    assert added[:2] == (("id", "name", "size"), (("added", (0, "n0", 0.0)), ("added", (1, "n1", 0.5))))
    assert removed[2] == added[2] == 1


def test_previous_results_stored_as_strings_still_diff_as_osquery_does(env):
    """State written by an older agentd (strings) against typed rows: no spurious changes."""
    items, _store, _db, state, writer, make, tmp = env
    state.commit_run(
        "items_q",
        sql="select id, name from items",
        epoch=0,
        counter=4,
        results=pack_rows([{"id": "1", "name": "a"}]),
        last_run=1.0,
    )
    items.rows = [{"id": 1, "name": "a"}]
    runner = make()
    seen = _hooked(runner)
    out = runner.run(q(), 100.0, writer)
    assert (out.added, out.removed, out.counter, out.line_count) == (0, 0, 4, 0)
    assert logged(tmp) == [] and seen == []
    items.rows = [{"id": 1, "name": "b"}]
    out = runner.run(q(), 200.0, writer)
    assert [(x["action"], x["columns"]) for x in lines_of(tmp, out)] == [
        ("removed", {"id": "1", "name": "a"}),
        ("added", {"id": "1", "name": "b"}),
    ]
    assert seen[0][1] == (("removed", ("1", "a")), ("added", (1, "b"))), "each row as it was stored or produced"


def test_values_that_print_the_same_are_no_change_and_duplicates_count(env):
    """osquery compares rows as text: 1 and "1", 2.0 and "2.0", NULL and "" are equal; rows are a multiset."""
    items, _store, _db, state, writer, make, tmp = env
    runner = make()
    items.rows = [{"id": 1, "name": None, "size": 2.0}, {"id": 1, "name": None, "size": 2.0}]
    runner.run(q("select id, name, size from items"), 1.0, writer)
    items.rows = [{"id": "1", "name": "", "size": "2.0"}, {"id": 1, "name": None, "size": 2.0}]
    out = runner.run(q("select id, name, size from items"), 2.0, writer)
    assert (out.added, out.removed, out.counter, out.line_count) == (0, 0, 0, 0)
    items.rows = [{"id": 1, "name": None, "size": 2.0}]
    out = runner.run(q("select id, name, size from items"), 3.0, writer)
    assert [(x["action"], x["columns"]) for x in lines_of(tmp, out)] == [
        ("removed", {"id": "1", "name": "", "size": "2.0"})
    ]
    assert (out.removed, out.counter) == (1, 1) and state.get_query("items_q").rows == items.rows
