from __future__ import annotations

import os
import sqlite3
import stat

import pytest

from agent.state import StateDB, StateError, pack_rows, unpack_rows


def test_rows_round_trip_compactly():
    rows = [{"pid": "1", "name": "init"}, {"pid": "2", "name": "kthreadd"}, {"name": "odd", "pid": "3", "x": ""}]
    assert unpack_rows(pack_rows(rows)) == rows
    assert unpack_rows(pack_rows([])) == []
    big = [{"pid": str(i), "name": f"p{i}", "path": "/usr/bin/x"} for i in range(1000)]
    import json

    assert len(pack_rows(big)) < len(json.dumps(big)) / 2


def test_wal_mode_private_file_and_persistence(tmp_path):
    path = str(tmp_path / "state" / "agentd.db")
    db = StateDB(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.commit_run("q", sql="select 1", epoch=0, counter=0, rows=[{"a": "1"}], last_run=10.0)
    db.close()
    again = StateDB(path)
    st = again.get_query("q")
    assert (st.sql, st.epoch, st.counter, st.rows, st.last_run) == ("select 1", 0, 0, [{"a": "1"}], 10.0)
    assert again.get_query("other") is None
    assert again.last_runs() == {"q": 10.0} and again.query_names() == ["q"]


def test_rows_none_keeps_previous_results(tmp_path):
    db = StateDB(str(tmp_path / "s.db"))
    db.commit_run("q", sql="select 1", epoch=0, counter=0, rows=[{"a": "1"}], last_run=1.0)
    db.commit_run("q", sql="select 2", epoch=0, counter=0, rows=None, last_run=2.0)
    st = db.get_query("q")
    assert (st.sql, st.rows, st.last_run) == ("select 2", [{"a": "1"}], 2.0)
    db.commit_run("new", sql="s", epoch=0, counter=None, rows=None, last_run=3.0)
    assert db.get_query("new").rows == []
    db.commit_run(
        "snap",
        sql="s",
        epoch=0,
        counter=None,
        rows=None,
        last_run=3.0,
        update_query=False,
        outbox=[("snapshots", b"x\n")],
    )
    assert db.get_query("snap") is None and [e.data for e in db.pending()] == [b"x\n"]
    assert db.last_runs() == {"q": 2.0, "new": 3.0, "snap": 3.0}  # snapshot queries' runs count too
    db.set_last_run("failed", 4.0)
    assert db.last_runs()["failed"] == 4.0


def test_a_failed_transaction_leaves_the_old_state(tmp_path):
    db = StateDB(str(tmp_path / "s.db"))
    db.commit_run("q", sql="s", epoch=0, counter=0, rows=[{"a": "1"}], last_run=1.0, outbox=[("results", b"one\n")])
    with pytest.raises(RuntimeError), db.transaction() as conn:
        conn.execute("UPDATE queries SET counter = 5")
        conn.execute("INSERT INTO outbox (target, data) VALUES ('results', x'00')")
        raise RuntimeError("crash")
    assert db.get_query("q").counter == 0 and len(db.pending()) == 1


def test_outbox_lifecycle(tmp_path):
    db = StateDB(str(tmp_path / "s.db"))
    ids = db.commit_run(
        "q", sql="s", epoch=0, counter=0, rows=[], last_run=1.0, outbox=[("results", b"a\n"), ("results", b"")]
    )
    assert len(ids) == 1  # empty payloads are not stored
    (entry,) = db.pending()
    assert (entry.target, entry.data, entry.file_id, entry.file_offset) == ("results", b"a\n", None, None)
    db.outbox_started(entry.id, 42, 100)
    assert (db.pending()[0].file_id, db.pending()[0].file_offset) == (42, 100)
    db.outbox_done(entry.id)
    assert db.pending() == []


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
    db.commit_run("q", sql="s", epoch=0, counter=0, rows=[], last_run=1.0)
    db._db.execute("UPDATE queries SET results = x'c1'")
    with pytest.raises(StateError, match="stored results of 'q' are damaged"):
        db.get_query("q")
    (tmp_path / "file").write_text("")
    with pytest.raises(StateError, match="cannot open state database"):
        StateDB(str(tmp_path / "file" / "s.db"))
