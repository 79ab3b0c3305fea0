from __future__ import annotations

import os
import sqlite3
import stat

import pytest

from agent.outbox import Action, LogForm, ResultRun
from agent.state import ResultsPacker, StateDB, StateError, iter_results, pack_rows, unpack_rows


def test_rows_round_trip_compactly():
    rows = [{"pid": "1", "name": "init"}, {"pid": "2", "name": "kthreadd"}, {"name": "odd", "pid": "3", "x": ""}]
    assert unpack_rows(pack_rows(rows)) == rows
    assert unpack_rows(pack_rows([])) == []
    big = [{"pid": str(i), "name": f"p{i}", "path": "/usr/bin/x"} for i in range(1000)]
    import json

    assert len(pack_rows(big)) < len(json.dumps(big)) / 2


def test_rows_pack_row_by_row_and_read_lazily():
    packer = ResultsPacker(("pid", "name"))
    for i in range(3):
        packer.add((str(i), f"p{i}"))
    blob = packer.blob()
    assert blob == pack_rows([{"pid": str(i), "name": f"p{i}"} for i in range(3)])
    columns, rows = iter_results(blob)
    assert columns == ("pid", "name") and next(rows) == ("0", "p0") and list(rows) == [("1", "p1"), ("2", "p2")]
    assert ResultsPacker(("a",)).blob() == pack_rows([]) and iter_results(pack_rows([]))[0] == ()
    with pytest.raises(ValueError, match="cut short"):
        list(iter_results(blob[:-3])[1])


def test_wal_mode_private_file_and_persistence(tmp_path):
    path = str(tmp_path / "state" / "agentd.db")
    db = StateDB(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.commit_run("q", sql="select 1", epoch=0, counter=0, results=pack_rows([{"a": "1"}]), last_run=10.0)
    db.close()
    again = StateDB(path)
    st = again.get_query("q")
    assert (st.sql, st.epoch, st.counter, st.rows, st.last_run) == ("select 1", 0, 0, [{"a": "1"}], 10.0)
    assert again.get_query("other") is None
    assert again.last_runs() == {"q": 10.0} and again.query_names() == ["q"]


def test_results_none_keeps_previous_results(tmp_path):
    db = StateDB(str(tmp_path / "s.db"))
    db.commit_run("q", sql="select 1", epoch=0, counter=0, results=pack_rows([{"a": "1"}]), last_run=1.0)
    db.commit_run("q", sql="select 2", epoch=0, counter=0, results=None, last_run=2.0)
    st = db.get_query("q")
    assert (st.sql, st.rows, st.last_run) == ("select 2", [{"a": "1"}], 2.0)
    db.commit_run("new", sql="s", epoch=0, counter=None, results=None, last_run=3.0)
    assert db.get_query("new").rows == []
    run = _run(db, "snap", LogForm.SNAPSHOT)
    db.stage_batch(run, Action.SNAPSHOT, ("x",), [("1",)])
    assert db.commit_run(
        "snap", sql="s", epoch=0, counter=0, results=None, last_run=3.0, run_id=run, update_query=False
    )
    assert db.get_query("snap") is None and [b.rows for b in db.outbox()] == [(("1",),)]
    assert db.last_runs() == {"q": 2.0, "new": 3.0, "snap": 3.0}  # snapshot queries' runs count too
    db.set_last_run("failed", 4.0)
    assert db.last_runs()["failed"] == 4.0


def _run(db: StateDB, name: str = "q", form: LogForm = LogForm.EVENT, **kw) -> int:
    return db.begin_run(name, form=form, host_identifier="h", unix_time=100.0, epoch=2, **kw)


def test_staged_batches_are_invisible_until_the_commit_and_gone_if_never_committed(tmp_path):
    path = str(tmp_path / "s.db")
    db = StateDB(path)
    run = _run(db, decorations={"d": "1"}, numerics=True)
    db.stage_batch(run, Action.ADDED, ("a", "b"), [("1", "x"), ("2", "y")])
    assert db.runs() == [] and list(db.outbox()) == []
    staged_elsewhere = _run(db, "killed")
    db.stage_batch(staged_elsewhere, Action.ADDED, ("a",), [("9",)])
    assert db.commit_run(
        "q", sql="s", epoch=2, counter=5, results=None, last_run=1.0, run_id=run, numeric_columns={"a"}
    )
    (header,) = db.runs()
    assert header == ResultRun(
        id=run,
        name="q",
        form=LogForm.EVENT,
        host_identifier="h",
        unix_time=100.0,
        epoch=2,
        counter=5,
        numerics=True,
        numeric_columns=frozenset({"a"}),
        decorations={"d": "1"},
    )
    (batch,) = db.outbox()
    assert (batch.run, batch.action, batch.columns, batch.rows) == (
        header,
        Action.ADDED,
        ("a", "b"),
        (("1", "x"), ("2", "y")),
    )
    assert batch.dicts() == [{"a": "1", "b": "x"}, {"a": "2", "b": "y"}]
    db.close()
    db = StateDB(path)  # the process that staged "killed" died before committing it
    assert [r.name for r in db.runs()] == ["q"]
    assert db._db.execute("SELECT count(*) FROM result_batches").fetchone()[0] == 1
    assert db._db.execute("SELECT count(*) FROM result_runs WHERE committed = 0").fetchone()[0] == 0


def test_a_run_without_batches_leaves_nothing_and_a_discarded_run_is_gone(tmp_path):
    db = StateDB(str(tmp_path / "s.db"))
    run = _run(db)
    db.stage_batch(run, Action.ADDED, ("a",), [])  # empty batches are not stored
    assert not db.commit_run("q", sql="s", epoch=0, counter=0, results=None, last_run=1.0, run_id=run)
    assert db.runs() == [] and db.get_query("q").counter == 0
    failed = _run(db)
    db.stage_batch(failed, Action.ADDED, ("a",), [("1",)])
    db.discard_run(failed)
    assert db._db.execute("SELECT count(*) FROM result_batches").fetchone()[0] == 0


def test_outbox_order_removed_first_then_by_commit(tmp_path):
    db = StateDB(str(tmp_path / "s.db"))
    first = _run(db, "one")
    second = _run(db, "two")
    db.stage_batch(second, Action.ADDED, ("a",), [("s1",)])
    db.stage_batch(first, Action.ADDED, ("a",), [("f1",)])
    db.stage_batch(first, Action.ADDED, ("a",), [("f2",)])
    db.stage_batch(first, Action.REMOVED, ("a",), [("f0",)])  # known last, logged first
    db.commit_run("one", sql="s", epoch=0, counter=1, results=None, last_run=1.0, run_id=first)
    db.commit_run("two", sql="s", epoch=0, counter=1, results=None, last_run=1.0, run_id=second)
    order = [(b.run.name, b.action.value, b.rows[0][0]) for b in db.outbox()]
    assert order == [("one", "removed", "f0"), ("one", "added", "f1"), ("one", "added", "f2"), ("two", "added", "s1")]


def test_a_failed_transaction_leaves_the_old_state(tmp_path):
    db = StateDB(str(tmp_path / "s.db"))
    run = _run(db)
    db.stage_batch(run, Action.ADDED, ("a",), [("1",)])
    db.commit_run("q", sql="s", epoch=0, counter=0, results=pack_rows([{"a": "1"}]), last_run=1.0, run_id=run)
    with pytest.raises(RuntimeError), db.transaction() as conn:
        conn.execute("UPDATE queries SET counter = 5")
        conn.execute("DELETE FROM result_batches")
        raise RuntimeError("crash")
    assert db.get_query("q").counter == 0 and len(list(db.outbox())) == 1


def test_outbox_delivery_marks(tmp_path):
    db = StateDB(str(tmp_path / "s.db"))
    run = _run(db)
    db.stage_batch(run, Action.ADDED, ("a",), [("1",)])
    db.stage_batch(run, Action.ADDED, ("a",), [("2",)])
    db.commit_run("q", sql="s", epoch=0, counter=0, results=None, last_run=1.0, run_id=run)
    one, two = db.outbox()
    assert (one.file_id, one.file_offset) == (None, None)
    db.outbox_started(one.id, 42, 100)
    assert (next(db.outbox()).file_id, next(db.outbox()).file_offset) == (42, 100)
    db.outbox_done([one.id])
    assert [b.id for b in db.outbox()] == [two.id] and len(db.runs()) == 1
    db.outbox_done([two.id])
    assert list(db.outbox()) == [] and db.runs() == []  # the run goes with its last batch


def test_legacy_outbox_of_an_earlier_version_is_still_delivered(tmp_path):
    path = str(tmp_path / "s.db")
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, target TEXT NOT NULL, data BLOB NOT NULL,"
                " file_id INTEGER, file_offset INTEGER)")  # fmt: skip
    old.execute("INSERT INTO outbox (target, data) VALUES ('results', x'610a')")
    old.commit()
    old.close()
    db = StateDB(path)
    (entry,) = db.legacy_pending()
    assert (entry.target, entry.data, entry.file_id) == ("results", b"a\n", None)
    db.legacy_started(entry.id, 7, 0)
    assert db.legacy_pending()[0].file_id == 7
    db.legacy_done(entry.id)
    assert db.legacy_pending() == []
    assert db._db.execute("SELECT name FROM sqlite_master WHERE name = 'outbox'").fetchone() is None


def test_denylist_splay_kv_and_instance_id(tmp_path):
    path = str(tmp_path / "s.db")
    db = StateDB(path)
    db.deny("slow", until=1000.0, reason="query exceeded the time limit")
    assert db.denylisted("slow", 999.0) and not db.denylisted("slow", 1000.0) and not db.denylisted("x", 0)
    assert db.denylist(999.0) == {"slow": (1000.0, "query exceeded the time limit")}
    assert db.denylist(2000.0) == {}
    db.set_splay("q", 3600, 3500)
    db.set("k", "v")
    ident = db.instance_id()
    db.close()
    db = StateDB(path)
    assert db.splay() == {"q": (3600, 3500)} and db.get("k") == "v" and db.get("nope") is None
    assert db.instance_id() == ident and len(ident) == 36
    db.undeny("slow")
    assert db.denylist() == {}


def test_damaged_results_and_unopenable_paths_are_clear_errors(tmp_path):
    db = StateDB(str(tmp_path / "s.db"))
    db.commit_run("q", sql="s", epoch=0, counter=0, results=pack_rows([]), last_run=1.0)
    db._db.execute("UPDATE queries SET results = x'c1'")
    with pytest.raises(StateError, match="stored results of 'q' are damaged"):
        db.get_query("q")
    (tmp_path / "file").write_text("")
    with pytest.raises(StateError, match="cannot open state database"):
        StateDB(str(tmp_path / "file" / "s.db"))


def test_batches_keep_values_typed_and_extra_writes_in_the_commit_transaction(tmp_path):
    db = StateDB(str(tmp_path / "s.db"))
    typed = [(1, 2.5, None, "caf\u00e9 \udcff", b"\x00\xff", -(2**63))]
    run = _run(db)
    db.stage_batch(run, Action.ADDED, ("i", "f", "n", "t", "b", "big"), typed)
    seen = []

    def extra(conn, header):
        assert conn.in_transaction and header.id == run and header.counter == 3
        seen.append([b.rows for b in db.batches(header)])  # readable inside the transaction

    assert db.commit_run("q", sql="s", epoch=0, counter=3, results=None, last_run=1.0, run_id=run, extra=extra)
    assert seen == [[tuple(typed)]] and [b.rows for b in db.outbox()] == [tuple(typed)]


def test_a_failing_extra_rolls_the_whole_run_back(tmp_path):
    db = StateDB(str(tmp_path / "s.db"))
    db.commit_run("q", sql="s", epoch=0, counter=1, results=pack_rows([{"a": 1}]), last_run=1.0)
    run = _run(db)
    db.stage_batch(run, Action.ADDED, ("a",), [(2,)])

    def extra(conn, header):
        conn.execute("INSERT INTO kv VALUES ('written', 'in the run')")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        db.commit_run(
            "q", sql="s", epoch=0, counter=2, results=pack_rows([{"a": 2}]), last_run=2.0, run_id=run, extra=extra
        )
    st = db.get_query("q")
    assert (st.counter, st.rows, db.get("written"), db.runs()) == (1, [{"a": 1}], None, [])
    assert (
        db.commit_run("q", sql="s", epoch=0, counter=9, results=None, last_run=3.0, run_id=None, extra=extra) is False
    )
