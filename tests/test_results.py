from __future__ import annotations

import json
import os
import stat
import time

import pytest

from agent.results import (
    ResultLog,
    ResultWriter,
    calendar_time,
    encode_lines,
    format_batch,
    format_event_lines,
    format_snapshot,
    format_snapshot_lines,
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
