"""The local control socket: newline-delimited JSON over a UNIX socket, owner-only.

The messages and their one codec live in :mod:`agent.control_messages`; this module is
the asyncio server (agentd) and the blocking client (agent-cli) around them.  Queries
run inside the daemon (event tables included).  The server never dies of a bad request:
malformed JSON, unknown ops, oversized lines and failing queries all get an error reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar, assert_never

from tables.sqlite import QueryError

from .control_messages import (
    ErrorReply,
    PingReply,
    PingRequest,
    ProtocolError,
    QueryReply,
    QueryRequest,
    Reply,
    Request,
    StatusReply,
    StatusRequest,
    decode_reply,
    decode_request,
    encode,
)
from .status import Status, format_status

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

#: What a query returns: (columns, rows).
QueryAnswer = tuple[Sequence[str], Sequence[Sequence[Any]]]


class ControlError(Exception):
    """The control socket could not answer: no daemon, refused, or the daemon reported an error."""


class ControlHandler(Protocol):
    """What the daemon provides to the server."""

    def query(self, sql: str, *, time_limit: float | None = None) -> Awaitable[QueryAnswer]: ...

    def status(self) -> Status: ...


# ---------------------------------------------------------------------------
# Server
# ---------------------------------------------------------------------------


class ControlServer:
    """Serves one UNIX socket at ``path`` (mode 0600) until :meth:`close`."""

    name = "control socket"

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

    async def stop(self) -> None:
        await self.close()

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
        assert task is not None  # a connection handler always runs in a task
        self._connections.add(task)
        try:
            while True:
                try:
                    line = await reader.readline()
                except (asyncio.LimitOverrunError, ValueError):
                    writer.write(encode(ErrorReply(f"request longer than {self.max_request} bytes")))
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

    async def _encode_reply(self, reply: Reply) -> bytes:
        """The reply's bytes; big results are encoded off the event loop, and one over MAX_REPLY becomes an error."""
        rows = reply.rows if isinstance(reply, QueryReply) else ()
        data = encode(reply) if len(rows) < _THREAD_ENCODE_ROWS else await asyncio.to_thread(encode, reply)
        if len(data) > self.max_reply:
            self.errors += 1
            return encode(
                ErrorReply(
                    f"result too large: {len(rows)} rows, {len(data)} bytes encoded (limit {self.max_reply}); "
                    "select fewer columns or add a WHERE or LIMIT"
                )
            )
        return data

    async def _answer(self, line: bytes) -> Reply:
        self.requests += 1
        try:
            message = decode_request(line)
        except ProtocolError as exc:
            self.errors += 1
            return ErrorReply(str(exc))
        try:
            match message:
                case QueryRequest(sql=sql, time_limit=limit):
                    columns, rows = await self.handler.query(sql, time_limit=limit)
                    return QueryReply(tuple(columns), rows)
                case StatusRequest():
                    return StatusReply(self.handler.status())
                case PingRequest():
                    return PingReply()
        except (QueryError, ControlError) as exc:
            self.errors += 1
            return ErrorReply(str(exc))
        except Exception as exc:  # a failing status or handler must not take the server down
            self.errors += 1
            log.exception("control request %r failed", message)
            return ErrorReply(f"internal error: {type(exc).__name__}: {exc}")
        assert_never(message)


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


def request(socket_path: str, message: Request, *, timeout: float = 60.0) -> Reply:
    """Send one request and return the reply; raise :class:`ControlError` when no valid reply comes."""
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
            sock.sendall(encode(message))
            line = _read_line(sock, deadline)
        except TimeoutError:
            raise ControlError(f"no reply from agentd on {socket_path} within {timeout:g} s") from None
        except OSError as exc:
            raise ControlError(f"connection to {socket_path} failed: {exc.strerror or exc}") from None
    finally:
        sock.close()
    try:
        return decode_reply(line, message)
    except ProtocolError as exc:
        raise ControlError(f"agentd sent a malformed reply: {exc}") from None


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


R = TypeVar("R", QueryReply, StatusReply, PingReply)


def _expect(reply: Reply, kind: type[R]) -> R:
    """The reply as ``kind``; an error reply becomes :class:`ControlError` with agentd's message."""
    if isinstance(reply, ErrorReply):
        raise ControlError(reply.error)
    if not isinstance(reply, kind):
        raise ControlError(f"agentd sent a {type(reply).__name__} where a {kind.__name__} was expected")
    return reply


def remote_query(
    socket_path: str, sql: str, *, timeout: float = 60.0, time_limit: float | None = None
) -> tuple[list[str], list[list[Any]]]:
    """Run ``sql`` inside the daemon; (columns, rows) or :class:`ControlError`.

    ``time_limit`` (seconds) asks the daemon to interrupt the query sooner than its default.
    """
    reply = _expect(request(socket_path, QueryRequest(sql, time_limit), timeout=timeout), QueryReply)
    return list(reply.columns), [list(row) for row in reply.rows]


def remote_status(socket_path: str, *, timeout: float = 10.0) -> Status:
    """The daemon's status (schedule, event sources and buffers, agent info)."""
    return _expect(request(socket_path, StatusRequest(), timeout=timeout), StatusReply).status


class FunctionHandler:
    """Adapts a ``query(sql, time_limit=...)`` coroutine function and a ``status()`` callable to ControlHandler."""

    def __init__(self, query: Callable[..., Awaitable[QueryAnswer]], status: Callable[[], Status]) -> None:
        self._query = query
        self._status = status

    def query(self, sql: str, *, time_limit: float | None = None) -> Awaitable[QueryAnswer]:
        if time_limit is None:
            return self._query(sql)
        return self._query(sql, time_limit=time_limit)

    def status(self) -> Status:
        return self._status()
