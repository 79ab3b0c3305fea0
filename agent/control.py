"""The local control socket: newline-delimited JSON over a UNIX socket, owner-only.

Requests and replies are one JSON object per line::

    {"op": "query", "sql": "SELECT ..."}  ->  {"ok": true, "columns": [...], "rows": [[...], ...]}
    (optional "time_limit": seconds, to interrupt the query sooner than the daemon's default)
    {"op": "status"}                      ->  {"ok": true, "status": {...}}
    {"op": "ping"}                        ->  {"ok": true}
    anything wrong                        ->  {"ok": false, "error": "..."}

Queries run inside the daemon (event tables included).  The server never dies of a bad
request: malformed JSON, unknown ops, oversized lines and failing queries all get an
error reply.  The blocking client helpers (:func:`remote_query`, :func:`remote_status`)
are for ``agent-cli --connect``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from tables.sqlite import QueryError

__all__ = [
    "MAX_REPLY",
    "MAX_REQUEST",
    "ControlError",
    "ControlHandler",
    "ControlServer",
    "FunctionHandler",
    "format_status",
    "remote_query",
    "remote_status",
    "request",
]

log = logging.getLogger(__name__)

#: Longest request line the server reads (a query text of 1 MiB is plenty).
MAX_REQUEST = 1 << 20
#: Longest reply line the client accepts.
MAX_REPLY = 256 << 20
#: Replies with at least this many rows are JSON-encoded in a thread, so events keep flowing meanwhile.
_THREAD_ENCODE_ROWS = 5000


class ControlError(Exception):
    """The control socket could not answer: no daemon, refused, or the daemon reported an error."""


class ControlHandler(Protocol):
    """What the daemon provides to the server."""

    def query(
        self, sql: str, *, time_limit: float | None = None
    ) -> Awaitable[tuple[Sequence[str], Sequence[Sequence[Any]]]]: ...

    def status(self) -> Mapping[str, Any]: ...


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


def _encode(reply: Mapping[str, Any]) -> bytes:
    return json.dumps(reply, separators=(",", ":"), default=str).encode() + b"\n"


# ---------------------------------------------------------------------------
# Server
# ---------------------------------------------------------------------------


class ControlServer:
    """Serves one UNIX socket at ``path`` (mode 0600) until :meth:`close`."""

    def __init__(
        self, path: str, handler: ControlHandler, *, max_request: int = MAX_REQUEST, max_reply: int = MAX_REPLY
    ) -> None:
        self.path = path
        self.handler = handler
        self.max_request = max_request
        self.max_reply = max_reply
        self._server: asyncio.AbstractServer | None = None
        self._bound = False  # the socket file at path is ours to remove
        self._connections: set[asyncio.Task[Any]] = set()
        self.requests = 0
        self.errors = 0

    async def start(self) -> None:
        """Bind, restrict to the owner, then listen (so nobody connects before the chmod)."""
        _remove_stale(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(self.path)
            self._bound = True
            os.chmod(self.path, 0o600)
            sock.listen(16)
            sock.setblocking(False)
            self._server = await asyncio.start_unix_server(self._serve, sock=sock, limit=self.max_request)
        except OSError as exc:
            sock.close()
            await self.close()
            raise ControlError(f"cannot listen on control socket {self.path}: {exc.strerror or exc}") from exc
        log.info("control socket listening on %s", self.path)

    async def close(self) -> None:
        """Stop accepting, end open connections, remove the socket file (only one this server bound)."""
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel("agentd is shutting down")
            if self._connections:
                await asyncio.wait(self._connections, timeout=1.0)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), timeout=1.0)
            self._server = None
        if self._bound:
            self._bound = False
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:
                try:
                    line = await reader.readline()
                except (asyncio.LimitOverrunError, ValueError):
                    writer.write(_encode({"ok": False, "error": f"request longer than {self.max_request} bytes"}))
                    self.errors += 1
                    break  # the rest of the line is unread: this connection cannot continue
                if not line:
                    break
                if not line.strip():
                    continue
                reply = await self._answer(line)
                writer.write(await self._encode_reply(reply))
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._connections.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _encode_reply(self, reply: dict[str, Any]) -> bytes:
        """The reply's bytes; big results are encoded off the event loop, and one over MAX_REPLY becomes an error."""
        rows = reply.get("rows") or []
        data = _encode(reply) if len(rows) < _THREAD_ENCODE_ROWS else await asyncio.to_thread(_encode, reply)
        if len(data) > self.max_reply:
            self.errors += 1
            return _encode(
                {
                    "ok": False,
                    "error": (
                        f"result too large: {len(rows)} rows, {len(data)} bytes encoded (limit {self.max_reply}); "
                        "select fewer columns or add a WHERE or LIMIT"
                    ),
                }
            )
        return data

    async def _answer(self, line: bytes) -> dict[str, Any]:
        self.requests += 1
        try:
            message = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            self.errors += 1
            return {"ok": False, "error": f"malformed request (not JSON): {exc}"}
        if not isinstance(message, dict):
            self.errors += 1
            return {"ok": False, "error": "malformed request: expected a JSON object"}
        op = message.get("op")
        try:
            if op == "query":
                sql = message.get("sql")
                if not isinstance(sql, str) or not sql.strip():
                    self.errors += 1
                    return {"ok": False, "error": "query request needs a non-empty string 'sql'"}
                limit = message.get("time_limit")
                if limit is not None:
                    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit <= 0:
                        self.errors += 1
                        return {"ok": False, "error": "'time_limit' must be a positive number of seconds"}
                    columns, rows = await self.handler.query(sql, time_limit=float(limit))
                else:
                    columns, rows = await self.handler.query(sql)
                return {
                    "ok": True,
                    "columns": list(columns),
                    "rows": [[_jsonable(v) for v in row] for row in rows],
                }
            if op == "status":
                return {"ok": True, "status": self.handler.status()}
            if op == "ping":
                return {"ok": True}
        except (QueryError, ControlError) as exc:
            self.errors += 1
            return {"ok": False, "error": str(exc)}
        except Exception as exc:  # a failing status or handler must not take the server down
            self.errors += 1
            log.exception("control request %r failed", op)
            return {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}
        self.errors += 1
        return {"ok": False, "error": f"unknown op {op!r}; use one of: query, status, ping"}


def _remove_stale(path: str) -> None:
    """Remove a leftover socket file; refuse when a daemon still answers on it."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ControlError(f"control socket path {path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody listens: a stale file from a killed daemon
        return
    finally:
        probe.close()
    raise ControlError(f"another agentd is already listening on {path}")


# ---------------------------------------------------------------------------
# Client (blocking, for agent-cli)
# ---------------------------------------------------------------------------


def request(socket_path: str, message: Mapping[str, Any], *, timeout: float = 60.0) -> dict[str, Any]:
    """Send one request and return the reply object; raise :class:`ControlError` on any failure."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(socket_path)
        except FileNotFoundError:
            raise ControlError(f"no control socket at {socket_path} (is agentd running?)") from None
        except ConnectionRefusedError:
            raise ControlError(f"connection refused on {socket_path} (agentd is not running; stale socket)") from None
        except PermissionError:
            raise ControlError(f"permission denied on {socket_path} (the socket is owner-only; run as root)") from None
        except OSError as exc:
            raise ControlError(f"cannot connect to {socket_path}: {exc.strerror or exc}") from None
        deadline = time.monotonic() + timeout
        try:
            sock.sendall(_encode(message))
            reply = _read_line(sock, deadline)
        except TimeoutError:
            raise ControlError(f"no reply from agentd on {socket_path} within {timeout:g} s") from None
        except OSError as exc:
            raise ControlError(f"connection to {socket_path} failed: {exc.strerror or exc}") from None
    finally:
        sock.close()
    try:
        answer = json.loads(reply)
    except json.JSONDecodeError as exc:
        raise ControlError(f"agentd sent a malformed reply: {exc}") from None
    if not isinstance(answer, dict):
        raise ControlError("agentd sent a malformed reply: not an object")
    return answer


def _read_line(sock: socket.socket, deadline: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        chunk = sock.recv(1 << 16)
        if not chunk:
            if not chunks:
                raise ControlError("agentd closed the connection without a reply")
            break
        end = chunk.find(b"\n")
        if end >= 0:
            chunks.append(chunk[:end])
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_REPLY:
            raise ControlError(f"reply larger than {MAX_REPLY} bytes")
    return b"".join(chunks)


def _checked(answer: dict[str, Any]) -> dict[str, Any]:
    if not answer.get("ok"):
        raise ControlError(str(answer.get("error") or "agentd reported an unknown error"))
    return answer


def remote_query(
    socket_path: str, sql: str, *, timeout: float = 60.0, time_limit: float | None = None
) -> tuple[list[str], list[list[Any]]]:
    """Run ``sql`` inside the daemon; (columns, rows) or :class:`ControlError`.

    ``time_limit`` (seconds) asks the daemon to interrupt the query sooner than its default.
    """
    message: dict[str, Any] = {"op": "query", "sql": sql}
    if time_limit is not None:
        message["time_limit"] = time_limit
    answer = _checked(request(socket_path, message, timeout=timeout))
    return list(answer.get("columns", [])), list(answer.get("rows", []))


def remote_status(socket_path: str, *, timeout: float = 10.0) -> dict[str, Any]:
    """The daemon's status (schedule, event sources and buffers, agent info)."""
    answer = _checked(request(socket_path, {"op": "status"}, timeout=timeout))
    return dict(answer.get("status") or {})


# ---------------------------------------------------------------------------
# Human-readable status
# ---------------------------------------------------------------------------


def _when(ts: Any) -> str:
    if not ts:
        return "never"
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(ts)))
    except (TypeError, ValueError, OverflowError):
        return str(ts)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    cells = [[str("" if v is None else v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  " + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False)).rstrip()]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in cells]
    return lines


def _names(value: Any) -> str:
    if isinstance(value, str):
        return value
    return ",".join(value or ())


def format_status(status: Mapping[str, Any]) -> str:
    """``agent-cli --connect SOCKET status`` output: agent, schedule, event sources, buffers."""
    lines: list[str] = []
    agent = status.get("agent") or {}
    if agent:
        uptime = agent.get("uptime")
        lines.append(
            f"agentd {agent.get('version', '?')} pid {agent.get('pid', '?')}"
            + (f", up {int(uptime)} s" if isinstance(uptime, (int, float)) else "")
            + (f", host {agent['host_identifier']}" if agent.get("host_identifier") else "")
        )
        labels = {
            "config_path": "config",
            "state_dir": "state dir",
            "results_log": "results log",
            "socket": "socket",
            "rss_bytes": "memory (RSS)",
            "cpu_percent": "CPU",
            "running": "running now",
        }
        for key, label in labels.items():
            if agent.get(key) is None:
                continue
            value = agent[key]
            if key == "rss_bytes" and isinstance(value, (int, float)):
                value = f"{value / 1048576:.1f} MB"
            elif key == "cpu_percent" and isinstance(value, (int, float)):
                value = f"{value:g} % (all cores, last watchdog interval)"
            lines.append(f"  {label + ':':<14}{value}")
    schedule = status.get("schedule") or []
    lines.append(f"schedule ({len(schedule)} queries):")
    if schedule:
        rows = [
            (
                q.get("name"),
                q.get("interval"),
                q.get("executions", 0),
                _when(q.get("last_executed")),
                q.get("last_rows", ""),
                q.get("last_wall_time_ms", ""),
                ("until " + _when(q.get("denylisted_until"))) if q.get("denylisted") else "no",
                q.get("last_error") or "",
            )
            for q in schedule
        ]
        lines += _table(("name", "interval", "runs", "last run", "rows", "wall ms", "denylisted", "error"), rows)
    events = status.get("events") or {}
    sources = events.get("sources") or []
    lines.append(f"event sources ({len(sources)}):")
    if sources:
        rows = [
            (
                s.get("name"),
                s.get("mode"),
                _names(s.get("tables")),
                s.get("events_seen", 0),
                s.get("kernel_lost", 0),
                s.get("parse_errors", 0),
                s.get("detail", ""),
            )
            for s in sources
        ]
        lines += _table(("source", "mode", "tables", "events", "lost", "errors", "detail"), rows)
    buffers = events.get("buffers") or []
    lines.append(f"event buffers ({len(buffers)}):")
    if buffers:
        rows = [
            (
                b.get("table") or b.get("name"),
                b.get("buffered", 0),
                b.get("added", 0),
                b.get("dropped_overflow", 0),
                b.get("dropped_expired", 0),
                b.get("consumers", 0),
            )
            for b in buffers
        ]
        lines += _table(("table", "buffered", "added", "dropped(max)", "expired", "consumers"), rows)
    return "\n".join(lines) + "\n"


#: A handler built from two callables (tests and simple composers).
class FunctionHandler:
    """Adapts ``query(sql)`` (async) and ``status()`` callables to :class:`ControlHandler`."""

    def __init__(
        self,
        query: Callable[[str], Awaitable[tuple[Sequence[str], Sequence[Sequence[Any]]]]],
        status: Callable[[], Mapping[str, Any]],
    ) -> None:
        self.query = query  # type: ignore[assignment]
        self.status = status  # type: ignore[assignment]
