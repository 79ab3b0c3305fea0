from __future__ import annotations

import json
import os
import stat
import time

import pytest

from agent.outbox import Action, LogForm, ResultBatch, ResultRun
from agent.results import (
    ResultLog,
    ResultWriter,
    calendar_time,
    encode_batch_lines,
    encode_lines,
    encode_run_line,
    format_batch,
    format_event_lines,
    format_snapshot,
    format_snapshot_lines,
    stringify,
)

LEGACY = ["name", "hostIdentifier", "calendarTime", "unixTime", "epoch", "counter", "numerics"]


def test_calendar_time_is_asctime_in_utc():
    assert calendar_time(1462227452) == "Mon May  2 22:17:32 2016 UTC"
    for t in (0, 1_000_000_000, 1_700_000_000.7, 1_462_227_452):
        assert calendar_time(t) == time.asctime(time.gmtime(int(t))) + " UTC"


def test_event_lines_key_order_and_removed_first():
    lines = format_event_lines(
        "pack_p_q",
        "host1",
        1462227452.9,
        epoch=0,
        counter=3,
        added=[{"pid": "2"}],
        removed=[{"pid": "1"}],
        decorations={"host_uuid": "U"},
    )
    assert [list(line) for line in lines] == [[*LEGACY, "decorations", "columns", "action"]] * 2
    assert [(line["action"], line["columns"]) for line in lines] == [("removed", {"pid": "1"}), ("added", {"pid": "2"})]
    first = lines[0]
    assert (first["unixTime"], first["counter"], first["numerics"]) == (1462227452, 3, False)
    assert first["calendarTime"] == "Mon May  2 22:17:32 2016 UTC"
    assert first["decorations"] == {"host_uuid": "U"}
    assert format_event_lines("q", "h", 0, epoch=0, counter=0) == []


def test_decorations_top_level_and_no_decorations():
    (line,) = format_event_lines(
        "q",
        "h",
        0,
        epoch=0,
        counter=0,
        added=[{"a": "1"}],
        decorations={"name": "over", "zone": "b"},
        decorations_top_level=True,
    )
    assert list(line) == [*LEGACY, "zone", "columns", "action"] and line["name"] == "over"
    (line,) = format_event_lines("q", "h", 0, epoch=0, counter=0, added=[{"a": "1"}])
    assert "decorations" not in line


def test_batch_and_snapshot_forms():
    batch = format_batch("q", "h", 10, epoch=1, counter=2, added=[{"a": "1"}], removed=[])
    assert list(batch) == ["diffResults", *LEGACY]
    assert batch["diffResults"] == {"removed": [], "added": [{"a": "1"}]}
    snap = format_snapshot("q", "h", 10, rows=[{"a": "1"}, {"a": "2"}], decorations={"d": "1"})
    assert list(snap) == ["snapshot", "action", *LEGACY, "decorations"]
    assert snap["action"] == "snapshot" and len(snap["snapshot"]) == 2
    per_row = format_snapshot_lines("q", "h", 10, rows=[{"a": "1"}])
    assert list(per_row[0]) == [*LEGACY, "columns", "action"] and per_row[0]["action"] == "snapshot"


def test_encode_lines_compact_utf8():
    data = encode_lines([{"a": "é", "n": 1}, {"b": None}])
    assert data == '{"a":"é","n":1}\n{"b":null}\n'.encode()


def test_result_log_appends_with_mode_and_rotates(tmp_path):
    path = str(tmp_path / "logs" / "results.log")
    log = ResultLog(path, max_bytes=100, backups=2)
    for i in range(12):
        log.write_lines([{"i": i, "pad": "x" * 10}])  # 27-28 bytes each: 3 per file
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert sorted(os.listdir(tmp_path / "logs")) == ["results.log", "results.log.1", "results.log.2"]

    def ids(p):
        return [json.loads(x)["i"] for x in open(p)]

    assert ids(path) == [9, 10, 11]
    assert ids(path + ".1") == [6, 7, 8] and ids(path + ".2") == [3, 4, 5]
    assert all(os.path.getsize(p) <= 100 for p in (path, path + ".1", path + ".2"))


def test_oversized_line_still_written_alone(tmp_path):
    log = ResultLog(str(tmp_path / "r.log"), max_bytes=10, backups=1)
    log.append(b"a" * 50 + b"\n")
    log.append(b"b\n")
    assert open(tmp_path / "r.log", "rb").read() == b"b\n"
    assert open(tmp_path / "r.log.1", "rb").read() == b"a" * 50 + b"\n"


def test_write_at_is_idempotent_and_repairs_a_torn_write(tmp_path):
    log = ResultLog(str(tmp_path / "r.log"))
    log.append(b"first\n")
    file_id, offset = log.prepare(7)
    assert log.write_at(b"second\n", file_id, offset) is True
    assert log.write_at(b"second\n", file_id, offset) is False  # already there: nothing added
    with open(tmp_path / "r.log", "ab") as f:
        f.write(b"thi")  # a torn write of the next entry
    file_id, _ = log.prepare(0)
    assert log.write_at(b"third\n", file_id, offset + 7) is True
    assert open(tmp_path / "r.log", "rb").read() == b"first\nsecond\nthird\n"


def test_writer_has_results_and_snapshots(tmp_path):
    writer = ResultWriter(str(tmp_path), max_bytes=1000, backups=1)
    writer.results.write_lines([{"a": 1}])
    writer.snapshots.write_lines([{"s": 1}])
    assert sorted(os.listdir(tmp_path)) == ["results.log", "snapshots.log"]
    assert writer.log_for("results") is writer.results
    with pytest.raises(ValueError, match="unknown result log 'x'"):
        writer.log_for("x")
    with pytest.raises(ValueError):
        ResultLog(str(tmp_path / "r"), max_bytes=0)


# -- lines from outbox batches: the same bytes as the reference formatters ----------------------


def _run(form: LogForm, **kw) -> ResultRun:
    base = {"id": 1, "name": "pack_p_q", "form": form, "host_identifier": "host1", "unix_time": 1462227452.9}
    return ResultRun(**{**base, "epoch": 3, "counter": 7, "numerics": False, **kw})


def _batch(run: ResultRun, action: Action, rows, columns=("pid", "name", "size"), batch_id=1) -> ResultBatch:
    return ResultBatch(batch_id, run, action, tuple(columns), tuple(tuple(r) for r in rows))


# typed as SQLite gives them (the outbox keeps them so); text that looks like a number too
ROWS = [(1, "init", 1.5), ("22", "bash ✓", None), (3, 'q"uote\\', "x7"), (-4, "\udcff", 2.0)]
RUN_OPTIONS = [
    {},
    {"decorations": {"host_uuid": "U", "zone": "b"}},
    {"decorations": {"name": "over", "zone": "b"}, "decorations_top_level": True},
    {"decorations": {"columns": "clash", "action": "clash", "diffResults": "x", "snapshot": "y"},
     "decorations_top_level": True},
    {"numerics": True, "numeric_columns": frozenset({"pid", "size"})},
]  # fmt: skip


def _reference_common(run: ResultRun) -> dict:
    return {
        "epoch": run.epoch,
        "counter": run.counter,
        "numerics": run.numerics,
        "decorations": run.decorations,
        "decorations_top_level": run.decorations_top_level,
    }


def _maps(run: ResultRun, rows, columns=("pid", "name", "size")) -> list[dict]:
    """The reference rows: osquery's strings (what the runner logged before the outbox kept values typed)."""
    out = []
    for values in rows:
        row = {c: stringify(v) for c, v in zip(columns, values, strict=True)}
        if run.numerics:
            for c in run.numeric_columns:
                v = row[c]
                if v != "":
                    try:
                        row[c] = int(v)
                    except ValueError:
                        try:
                            row[c] = float(v)
                        except ValueError:
                            pass
        out.append(row)
    return out


@pytest.mark.parametrize("options", RUN_OPTIONS)
def test_batch_lines_equal_the_event_format(options):
    run = _run(LogForm.EVENT, **options)
    removed, added = _batch(run, Action.REMOVED, ROWS[:1]), _batch(run, Action.ADDED, ROWS[1:])
    expected = encode_lines(
        format_event_lines(
            run.name,
            run.host_identifier,
            run.unix_time,
            added=_maps(run, ROWS[1:]),
            removed=_maps(run, ROWS[:1]),
            **_reference_common(run),
        )
    )
    assert encode_batch_lines(removed) + encode_batch_lines(added) == expected
    snap = _run(LogForm.SNAPSHOT_EVENT, **options)
    expected = encode_lines(
        format_snapshot_lines(
            snap.name, snap.host_identifier, snap.unix_time, rows=_maps(snap, ROWS), **_reference_common(snap)
        )
    )
    assert encode_batch_lines(_batch(snap, Action.SNAPSHOT, ROWS)) == expected


@pytest.mark.parametrize("options", RUN_OPTIONS)
@pytest.mark.parametrize(("n_removed", "n_added"), [(0, 4), (4, 0), (1, 3), (3, 1), (0, 0)])
def test_run_line_in_pieces_equals_the_batch_format(options, n_removed, n_added):
    run = _run(LogForm.BATCH, **options)
    removed, added = ROWS[:n_removed], ROWS[len(ROWS) - n_added :]
    batches = [_batch(run, Action.REMOVED, [r], batch_id=i) for i, r in enumerate(removed)]
    batches += [_batch(run, Action.ADDED, added[:2], batch_id=10), _batch(run, Action.ADDED, added[2:], batch_id=11)]
    reference = format_batch(
        run.name,
        run.host_identifier,
        run.unix_time,
        added=_maps(run, added),
        removed=_maps(run, removed),
        **_reference_common(run),
    )
    pieces = list(encode_run_line(run, batches))
    assert b"".join(pieces) == encode_lines([reference])


@pytest.mark.parametrize("options", RUN_OPTIONS)
def test_run_line_in_pieces_equals_the_snapshot_format(options):
    run = _run(LogForm.SNAPSHOT, **options)
    batches = [_batch(run, Action.SNAPSHOT, ROWS[:3], batch_id=1), _batch(run, Action.SNAPSHOT, ROWS[3:], batch_id=2)]
    reference = format_snapshot(
        run.name, run.host_identifier, run.unix_time, rows=_maps(run, ROWS), **_reference_common(run)
    )
    assert b"".join(encode_run_line(run, batches)) == encode_lines([reference])


def test_forms_are_checked():
    with pytest.raises(ValueError, match="use encode_run_line"):
        encode_batch_lines(_batch(_run(LogForm.BATCH), Action.ADDED, ROWS))
    with pytest.raises(ValueError, match="use encode_batch_lines"):
        list(encode_run_line(_run(LogForm.EVENT), []))


def test_write_chunks_at_keeps_what_is_in_place_and_repairs_a_torn_piece(tmp_path):
    log = ResultLog(str(tmp_path / "r.log"))
    log.append(b"before\n")
    chunks = [b'{"a":[', b"1,2", b",3", b"]}\n"]
    file_id, offset = log.prepare(sum(map(len, chunks)))
    with open(tmp_path / "r.log", "ab") as f:
        f.write(b'{"a":[1,')  # torn inside the second piece
    assert log.write_chunks_at(chunks, file_id, offset) is True
    assert open(tmp_path / "r.log", "rb").read() == b'before\n{"a":[1,2,3]}\n'
    assert log.write_chunks_at(chunks, file_id, offset) is False  # all in place: nothing written
    os.rename(tmp_path / "r.log", tmp_path / "r.log.1")  # rotated away by someone else: appended to the new file
    assert log.write_chunks_at([b"x\n"], file_id, offset) is True
    assert open(tmp_path / "r.log", "rb").read() == b"x\n"


def test_rows_with_a_repeated_column_name_or_odd_values_still_equal_json_dumps_of_the_dict():
    run = _run(LogForm.EVENT)
    twice = _batch(run, Action.ADDED, [("1", 2)], columns=("a", "a"))
    odd = _batch(
        run, Action.ADDED, [("1", None, 2.5, b"b\xffytes", 10**18, 1e-07)], columns=("a", "b", "c", "d", "e", "f")
    )
    for batch in (twice, odd):
        rows = [{c: stringify(v) for c, v in zip(batch.columns, r, strict=True)} for r in batch.rows]
        expected = encode_lines(
            format_event_lines(run.name, run.host_identifier, run.unix_time, added=rows, epoch=3, counter=7)
        )
        assert encode_batch_lines(batch) == expected
    (line,) = map(json.loads, encode_batch_lines(odd).splitlines())
    assert line["columns"] == {
        "a": "1",
        "b": "",
        "c": "2.5",
        "d": "b\ufffdytes",
        "e": "1000000000000000000",
        "f": "1e-07",
    }


def test_stringify_prints_values_as_osquery_logs_them():
    assert [stringify(v) for v in (None, 1, -7, 2.5, 3.0, "x", b"y", True)] == [
        "",
        "1",
        "-7",
        "2.5",
        "3.0",
        "x",
        "y",
        "True",
    ]
