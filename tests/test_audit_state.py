"""eventsources.audit.state: the saved audit state's text format and its atomic file I/O."""

from __future__ import annotations

import json
import os

import pytest

from eventsources.audit.netlink import AuditStatus
from eventsources.audit.state import (
    SavedState,
    StateFileError,
    dump_state,
    load_state,
    parse_state,
    remove_state,
    save_state,
)

STATE = SavedState(
    enabled=0, backlog_limit=64, backlog_wait_time=15000, pid_free=True, agent_pid=4242, saved_at=1700000000.5
)


def test_round_trip_and_from_status() -> None:
    assert parse_state(dump_state(STATE)) == STATE
    status = AuditStatus(enabled=1, pid=77, backlog_limit=320, backlog_wait_time=0, lost=9)
    state = SavedState.from_status(status, agent_pid=12, pid_free=False, saved_at=3.0)
    assert state == SavedState(1, 320, 0, False, 12, 3.0)
    assert state.settings() == {"enabled": 1, "backlog_limit": 320, "backlog_wait_time": 0}
    assert json.loads(dump_state(state))["format"] == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"format": 1, "enabled": 0', "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"format": 2}', "format 2"),
        (
            '{"format": 1, "enabled": 2, "backlog_limit": 1, "backlog_wait_time": 1, "agent_pid": 1, "pid_free": true}',
            "enabled must be",
        ),
        (
            '{"format": 1, "enabled": 0, "backlog_limit": -1, "backlog_wait_time": 1, "agent_pid": 1, "pid_free": true}',
            "backlog_limit must be",
        ),
        (
            '{"format": 1, "enabled": 0, "backlog_limit": 1, "backlog_wait_time": "0", "agent_pid": 1, "pid_free": true}',
            "backlog_wait_time must be",
        ),
        (
            '{"format": 1, "enabled": true, "backlog_limit": 1, "backlog_wait_time": 0, "agent_pid": 1, "pid_free": true}',
            "enabled must be",
        ),
        (
            '{"format": 1, "enabled": 0, "backlog_limit": 1, "backlog_wait_time": 0, "agent_pid": 1, "pid_free": 1}',
            "pid_free must be",
        ),
        (
            '{"format": 1, "enabled": 0, "backlog_limit": 1, "backlog_wait_time": 0, "agent_pid": 1, "pid_free": true, '
            '"saved_at": "now"}',
            "saved_at must be",
        ),
    ],
)
def test_parse_errors_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(StateFileError, match=message):
        parse_state(text)


def test_save_load_remove(tmp_path) -> None:
    path = tmp_path / "sub" / "audit-state.json"
    assert load_state(str(path)) is None
    save_state(str(path), STATE)  # creates the directory
    assert load_state(str(path)) == STATE
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["audit-state.json"]  # the temp file was renamed
    changed = SavedState(1, 8192, 0, False, 1, 2.0)
    save_state(str(path), changed)  # replaces the file whole
    assert load_state(str(path)) == changed
    remove_state(str(path))
    assert not path.exists()
    remove_state(str(path))  # gone already: fine


def test_load_of_an_unusable_file(tmp_path) -> None:
    path = tmp_path / "audit-state.json"
    path.write_bytes(b"\xff\xfe not text")
    with pytest.raises(StateFileError, match="UTF-8"):
        load_state(str(path))
    path.write_text("")
    with pytest.raises(StateFileError, match="not JSON"):
        load_state(str(path))
    with pytest.raises(StateFileError, match="cannot read"):
        load_state(str(tmp_path))  # a directory


def test_a_failed_save_leaves_no_temp_file(tmp_path) -> None:
    target = tmp_path / "audit-state.json"
    target.mkdir()  # rename onto a directory fails
    with pytest.raises(OSError):
        save_state(str(target), STATE)
    assert [p.name for p in tmp_path.iterdir()] == ["audit-state.json"]
