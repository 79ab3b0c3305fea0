"""The engine's state on disk: one msgpack file, replaced atomically.

collectord saves :meth:`AttributionEngine.to_state` every few seconds and at shutdown, so
a restart keeps recent history; ``collectord attribute`` reads the same file while
collectord runs (a reader always sees a whole file: the writer renames a finished one
into place).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from .engine import AttributionEngine, EngineConfig, StateError

__all__ = [
    "STATE_FILE",
    "LogMark",
    "Saved",
    "load_engine",
    "load_saved",
    "load_state",
    "save_engine",
    "state_path",
    "write_state",
]

STATE_FILE = "attribution.msgpack"


@dataclass(frozen=True, slots=True)
class LogMark:
    """How far osq-user_connections.log was written (and fsynced) when the state was saved:
    a restart cuts the live file back to ``size`` and writes again what followed."""

    inode: int
    size: int
    opened: float


@dataclass(frozen=True, slots=True)
class Saved:
    """What a state file holds."""

    engine: AttributionEngine
    position: int | None  # the outbox position the state reflects
    log_mark: LogMark | None


def state_path(state_dir: str | os.PathLike[str]) -> Path:
    """Where collectord keeps the attribution state inside its state directory."""
    return Path(state_dir) / STATE_FILE


def save_engine(engine: AttributionEngine, path: str | os.PathLike[str], *, position: int | None = None) -> int:
    """Write the engine's state to ``path`` (atomically, fsynced); returns its size in bytes.

    ``position`` is the outbox position the state reflects (collectord resumes after it)."""
    return write_state(engine.to_state(), path, position=position)


def write_state(
    state: dict[str, Any],
    path: str | os.PathLike[str],
    *,
    position: int | None = None,
    log_mark: LogMark | None = None,
) -> int:
    """:func:`save_engine` for a state already taken (``to_state`` on the event loop, this on a thread)."""
    target = Path(path)
    mark = None if log_mark is None else [log_mark.inode, log_mark.size, log_mark.opened]
    data = msgpack.packb({**state, "position": position, "user_connections_log": mark}, use_bin_type=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dir_fd = os.open(target.parent, os.O_RDONLY)
    except OSError:
        return len(data)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return len(data)


def load_engine(path: str | os.PathLike[str], config: EngineConfig | None = None) -> AttributionEngine:
    """An engine restored from ``path``; StateError (naming the file) when it cannot be."""
    return load_state(path, config)[0]


def load_state(
    path: str | os.PathLike[str], config: EngineConfig | None = None
) -> tuple[AttributionEngine, int | None]:
    """(engine, outbox position it reflects) restored from ``path``; StateError when it cannot be."""
    saved = load_saved(path, config)
    return saved.engine, saved.position


def load_saved(path: str | os.PathLike[str], config: EngineConfig | None = None) -> Saved:
    """Everything ``path`` holds; StateError (naming the file) when it cannot be read."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise StateError(f"{path}: no attribution state there (is attribution on in collectord?)") from None
    except OSError as exc:
        raise StateError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    try:
        state = msgpack.unpackb(data, raw=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise StateError(f"{path}: not an attribution state file ({exc})") from None
    try:
        engine = AttributionEngine.from_state(state, config)
    except StateError as exc:
        raise StateError(f"{path}: {exc}") from None
    position = state.get("position")
    mark = state.get("user_connections_log")
    log_mark = None
    if isinstance(mark, list) and len(mark) == 3 and all(isinstance(v, int | float) for v in mark):
        log_mark = LogMark(int(mark[0]), int(mark[1]), float(mark[2]))
    return Saved(engine, position if isinstance(position, int) else None, log_mark)
