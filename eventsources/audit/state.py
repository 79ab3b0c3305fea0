"""The audit state an owner-mode run found, saved on disk so a crashed run can be undone.

Owner mode changes the kernel's ``enabled`` flag and backlog settings.  Before it
changes anything, :class:`AuditSource` writes what it found to a small JSON file
(atomically: temp file, fsync, rename); a clean stop restores it and deletes the
file.  When the file is still there at the next start, the earlier run crashed
(SIGKILL, power loss): the kernel now shows what that run set, and the file is the
state to put back.

``parse_state``/``dump_state`` are pure; ``load_state``/``save_state``/``remove_state``
do the I/O.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

from .netlink import AuditStatus

__all__ = [
    "FORMAT",
    "SavedState",
    "StateFileError",
    "dump_state",
    "load_state",
    "parse_state",
    "remove_state",
    "save_state",
]

FORMAT = 1  # the file's "format" field


class StateFileError(ValueError):
    """A state file that cannot be used (unreadable, not JSON, wrong fields)."""


@dataclass(frozen=True, slots=True)
class SavedState:
    """What the kernel showed before an owner-mode run changed it."""

    enabled: int
    backlog_limit: int
    backlog_wait_time: int
    pid_free: bool  # no audit pid was registered (False: a dead process's pid was left registered)
    agent_pid: int = 0  # the run that wrote the file (for messages)
    saved_at: float = 0.0  # time.time() when it was written

    @classmethod
    def from_status(cls, status: AuditStatus, *, agent_pid: int, pid_free: bool, saved_at: float) -> SavedState:
        return cls(status.enabled, status.backlog_limit, status.backlog_wait_time, pid_free, agent_pid, saved_at)

    def settings(self) -> dict[str, int]:
        """The kernel settings to put back, by AuditStatus field name."""
        return {
            "enabled": self.enabled,
            "backlog_limit": self.backlog_limit,
            "backlog_wait_time": self.backlog_wait_time,
        }


def dump_state(state: SavedState) -> str:
    """The file's text."""
    return json.dumps({"format": FORMAT, **asdict(state)}, sort_keys=True) + "\n"


def parse_state(text: str) -> SavedState:
    """Decode a state file's text; :class:`StateFileError` says what is wrong."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise StateFileError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise StateFileError(f"not a JSON object but {type(data).__name__}")
    if data.get("format") != FORMAT:
        raise StateFileError(f"format {data.get('format')!r} is not {FORMAT}")
    values = {}
    for name, kind, low, high in (
        ("enabled", int, 0, 1),  # 2 (locked) is never saved: owner mode refuses a locked configuration
        ("backlog_limit", int, 0, 0xFFFFFFFF),
        ("backlog_wait_time", int, 0, 0xFFFFFFFF),
        ("agent_pid", int, 0, 0x7FFFFFFF),
    ):
        value = data.get(name)
        if type(value) is not kind or not low <= value <= high:
            raise StateFileError(f"{name} must be an integer in {low}..{high}, not {value!r}")
        values[name] = value
    if type(data.get("pid_free")) is not bool:
        raise StateFileError(f"pid_free must be true or false, not {data.get('pid_free')!r}")
    saved_at = data.get("saved_at", 0.0)
    if type(saved_at) not in (int, float):
        raise StateFileError(f"saved_at must be a number, not {saved_at!r}")
    return SavedState(pid_free=data["pid_free"], saved_at=float(saved_at), **values)


def load_state(path: str) -> SavedState | None:
    """The saved state at ``path``; None when there is no file; StateFileError when it is unusable."""
    try:
        with open(path, "rb") as f:
            raw = f.read(65536)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateFileError(f"cannot read it: {exc}") from exc
    try:
        return parse_state(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise StateFileError(f"not UTF-8: {exc}") from exc


def save_state(path: str, state: SavedState) -> None:
    """Write ``state`` to ``path`` atomically (temp file + fsync + rename + directory fsync)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    data = dump_state(state).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(directory)


def remove_state(path: str) -> None:
    """Delete the state file (gone already is fine)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
