"""agent-cli against the fleet: an operator client of collectord (``agent-cli --collector URL ...``).

    agent-cli --collector wss://c:9440 --token-file T hosts [--json]
    agent-cli --collector URL query [--host H]... [--group G]... [--all] [--timeout S] [--json|--csv] "SQL"
    agent-cli --collector URL subscribe NAME --interval S [--group G]... [--host H]... [--snapshot] "SQL"
    agent-cli --collector URL unsubscribe NAME | subscriptions | revoke HOST

Rows stream as hosts answer, with a ``host`` column first (json, csv and line stream; the
pretty box is drawn once every host has answered); a status per host follows on stderr
(rows, no rows, error and its message, offline, timed out) and the exit status is 1 if any
host failed.  A progress line is shown on stderr when it is a terminal.  Only the operator
path of protocol/ is used; websockets is imported only here, only when these commands run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from protocol import OPERATOR_PATH
from protocol import operator as op
from protocol.messages import ByeReason, Message, Mode
from protocol.opsession import OperatorClientSession

from .fleet_cli import TOKEN_ENV, FleetError
from .output import escape_controls, render

__all__ = [
    "FleetClient",
    "QueryPrinter",
    "cmd_collector_status",
    "cmd_hosts",
    "cmd_revoke",
    "cmd_subscribe",
    "cmd_subscriptions",
    "cmd_unsubscribe",
    "run_query",
]

#: Where agent-cli looks for the operator token without --token-file (collectord's default state dir).
DEFAULT_TOKEN_FILES = ("collector-state/operator-token",)
_VERSION = "0.1.0"


def operator_url(url: str) -> str:
    """``ws(s)://host:port`` (any path) -> the operator path on it."""
    if not url.startswith(("ws://", "wss://")):
        raise FleetError(f"--collector must be a ws:// or wss:// URL, got {url!r}")
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0]
    if not host:
        raise FleetError(f"--collector needs a host: {url!r}")
    return f"{scheme}://{host}{OPERATOR_PATH}"


def read_token(path: str | None) -> str:
    """The operator token from ``path``, ``$AGENT_CLI_TOKEN_FILE`` or collectord's default state dir."""
    candidates = [path] if path else [p for p in (os.environ.get(TOKEN_ENV), *DEFAULT_TOKEN_FILES) if p]
    for candidate in candidates:
        try:
            with open(candidate, encoding="utf-8") as handle:
                token = handle.read().strip()
        except FileNotFoundError:
            if path:
                raise FleetError(f"token file {candidate} does not exist") from None
            continue
        except OSError as exc:
            raise FleetError(f"cannot read the token file {candidate}: {exc.strerror or exc}") from None
        if not token:
            raise FleetError(f"the token file {candidate} is empty")
        return token
    raise FleetError("an operator token is needed: --token-file FILE (collectord writes one in its state directory)")


class FleetClient:
    """One operator session with collectord (async context manager)."""

    def __init__(self, url: str, token: str, *, ca: str | None = None, open_timeout: float = 10.0) -> None:
        self.url = operator_url(url)
        self.session = OperatorClientSession(token, client=f"agent-cli {_VERSION}")
        self.ca = ca
        self.open_timeout = open_timeout
        self._ws: Any = None

    def _ssl(self) -> ssl.SSLContext | None:
        if not self.url.startswith("wss://"):
            return None
        try:
            return ssl.create_default_context(cafile=self.ca) if self.ca else ssl.create_default_context()
        except (OSError, ssl.SSLError) as exc:
            raise FleetError(f"cannot load the CA file {self.ca}: {exc}") from None

    async def __aenter__(self) -> FleetClient:
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidHandshake, InvalidURI

        try:
            self._ws = await connect(
                self.url, ssl=self._ssl(), compression=None, max_size=None, open_timeout=self.open_timeout
            )
        except ssl.SSLCertVerificationError as exc:
            raise FleetError(f"{self.url}: the collector's certificate is not trusted: {exc.verify_message}") from None
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            raise FleetError(f"cannot connect to {self.url}: {_reason(exc)}") from None
        self.session.start()
        await self._flush()
        while self.session.version is None:
            await self._read()
            if self.session.closed:
                refusal = self.session.refusal
                raise FleetError(f"{self.url} refused: {refusal.message if refusal else self.session.failure}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ws is not None:
            if not self.session.closed:
                self.session.send(_bye())
                await self._flush()
            await self._ws.close()

    async def _flush(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            for frame in self.session.data_to_send():
                await self._ws.send(frame)
        except ConnectionClosed as exc:
            raise FleetError(f"the collector closed the connection: {_reason(exc)}") from None

    async def _read(self) -> list[Message]:
        from websockets.exceptions import ConnectionClosed

        try:
            frame = await self._ws.recv()
        except ConnectionClosed as exc:
            raise FleetError(f"the collector closed the connection: {_reason(exc)}") from None
        self.session.receive_frame(frame)
        await self._flush()
        if self.session.failure is not None:
            raise FleetError(f"the collector broke the protocol: {self.session.failure}")
        return self.session.events_received()

    async def request(self, message: Message, on_reply: Callable[[Message], None] | None = None) -> list[Message]:
        """Send a request; its replies (each also handed to ``on_reply`` as it arrives) until it is finished."""
        self.session.send(message)
        await self._flush()
        req = message.req  # type: ignore[attr-defined]
        replies: list[Message] = []
        while req in self.session.pending:
            for reply in await self._read():
                if getattr(reply, "req", None) != req:
                    continue
                if isinstance(reply, op.OperatorError):
                    raise FleetError(reply.message)
                replies.append(reply)
                if on_reply is not None:
                    on_reply(reply)
        return replies

    def next_req(self) -> int:
        return self.session.next_req()


def _bye() -> Message:
    from protocol.messages import Bye

    return Bye(ByeReason.DONE, "")


def _reason(exc: BaseException) -> str:
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    if isinstance(exc, InvalidStatus):
        body = exc.response.body.decode(errors="replace").strip() if exc.response.body else ""
        return f"HTTP {exc.response.status_code}" + (f": {body}" if body else "")
    if isinstance(exc, ConnectionClosed):
        frame = exc.rcvd
        if frame is None:
            return "no close frame"
        return f"code {frame.code}" + (f" ({frame.reason})" if frame.reason else "")
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)  # "Connection refused", not asyncio's "Connect call failed (...)"
    return str(exc) or type(exc).__name__


# ---------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> FleetClient:
    return FleetClient(args.collector, read_token(args.token_file), ca=args.ca)


def _targets(args: argparse.Namespace, *, default_all: bool) -> op.Targets:
    hosts, groups = tuple(args.host or ()), tuple(args.group or ())
    everything = bool(args.all) or (default_all and not hosts and not groups)
    return op.Targets(hosts, groups, everything)


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) if ts else ""


HOST_COLUMNS = [
    "host_id",
    "hostname",
    "online",
    "groups",
    "addresses",
    "platform",
    "agent_version",
    "last_seen",
    "last_seq",
    "dropped_rows",
    "revoked",
]


def cmd_hosts(args: argparse.Namespace) -> int:
    async def run() -> list[op.HostInfo]:
        async with _client(args) as client:
            (reply,) = await client.request(op.ListHosts(client.next_req()))
            assert isinstance(reply, op.HostList)
            return list(reply.hosts)

    hosts = asyncio.run(run())
    rows = [
        (
            h.host_id,
            h.hostname,
            "yes" if h.online else "no",
            ",".join(h.groups),
            ",".join(h.addresses),
            h.platform,
            h.agent_version,
            _when(h.last_seen),
            h.last_seq,
            h.dropped_rows,
            "yes" if h.revoked else "no",
        )
        for h in hosts
    ]
    sys.stdout.write(render(args.mode, HOST_COLUMNS, rows))
    return 0


def cmd_collector_status(args: argparse.Namespace) -> int:
    """collectord's hosts online and each downstream part (Zeek links, logs) with its counters."""

    async def run() -> op.CollectorStatus:
        async with _client(args) as client:
            (reply,) = await client.request(op.GetStatus(client.next_req()))
            assert isinstance(reply, op.CollectorStatus)
            return reply

    status = asyncio.run(run())
    if getattr(args, "json", False):
        body = {
            "collector_id": status.collector_id,
            "hosts_online": status.hosts_online,
            "hosts_enrolled": status.hosts_enrolled,
            "components": [
                {
                    "name": c.name,
                    "kind": c.kind,
                    "state": c.state,
                    "detail": c.detail,
                    "counters": {k.name: k.value for k in c.counters},
                }
                for c in status.components
            ],
        }
        print(json.dumps(body, indent=2))
        return 0
    print(f"collector {status.collector_id}: {status.hosts_online} of {status.hosts_enrolled} hosts online")
    for c in status.components:
        print(f"{c.name}: {c.state} - {escape_controls(c.detail)}")
        if c.counters:
            print("  " + ", ".join(f"{k.name} {k.value}" for k in c.counters))
    return 0


def cmd_subscriptions(args: argparse.Namespace) -> int:
    async def run() -> list[op.SubscriptionInfo]:
        async with _client(args) as client:
            (reply,) = await client.request(op.ListSubscriptions(client.next_req()))
            assert isinstance(reply, op.SubscriptionList)
            return list(reply.subscriptions)

    subs = asyncio.run(run())
    columns = ["name", "owner", "interval", "mode", "removed", "targets", "sql"]
    rows = []
    for s in subs:
        t = s.targets
        targets = "all" if t.all else " ".join([*(f"host:{h}" for h in t.hosts), *(f"group:{g}" for g in t.groups)])
        rows.append((s.name, s.owner, s.interval, s.mode.value, "yes" if s.removed else "no", targets, s.sql))
    sys.stdout.write(render(args.mode, columns, rows))
    return 0


def cmd_subscribe(args: argparse.Namespace) -> int:
    message_text = asyncio.run(
        _simple(
            args,
            lambda req: op.AddSubscription(
                req,
                args.name,
                args.sql,
                args.interval,
                Mode.SNAPSHOT if args.snapshot else Mode.DIFFERENTIAL,
                not args.no_removed,
                _targets(args, default_all=True),
            ),
        )
    )
    print(message_text)
    return 0


def cmd_unsubscribe(args: argparse.Namespace) -> int:
    print(asyncio.run(_simple(args, lambda req: op.RemoveSubscription(req, args.name))))
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    print(asyncio.run(_simple(args, lambda req: op.Revoke(req, args.host))))
    return 0


async def _simple(args: argparse.Namespace, make: Callable[[int], Message]) -> str:
    async with _client(args) as client:
        (reply,) = await client.request(make(client.next_req()))
        assert isinstance(reply, op.Done)
        return reply.message


# -- query ------------------------------------------------------------------------------------


STATUS_TEXT = {
    op.HostQueryStatus.ROWS: "{rows} rows",
    op.HostQueryStatus.NO_ROWS: "no rows",
    op.HostQueryStatus.ERROR: "error: {message}",
    op.HostQueryStatus.OFFLINE: "offline",
    op.HostQueryStatus.TIMEOUT: "timed out",
    op.HostQueryStatus.UNKNOWN: "unknown host",
}


class QueryPrinter:
    """Writes rows as they arrive (host column first) in one of agent-cli's modes."""

    def __init__(self, mode: str, out: TextIO) -> None:
        self.mode = mode
        self.out = out
        self.columns: list[str] | None = None
        self.buffered: list[tuple[Any, ...]] = []
        self.rows = 0
        self._json_open = False

    def add(self, hostname: str, host_id: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        header = ["host", *columns]
        host = hostname or host_id
        full = [(host, *row) for row in rows]
        self.rows += len(full)
        if self.mode == "pretty":
            if self.columns is None:
                self.columns = header
            self.buffered.extend(full)
            return
        if self.mode == "csv":
            text = render("csv", header, full)
            if self.columns == header:
                text = text.split("\n", 1)[1]  # the header is already out
            self.columns = header
            self.out.write(text)
        elif self.mode == "json":
            body = render("json", header, full)[2:-3]  # the row lines, without "[\n" and "\n]\n"
            if body:
                self.out.write(("[\n" if not self._json_open else ",\n") + body)
                self._json_open = True
        else:
            self.out.write(render(self.mode, header, full))
        self.out.flush()

    def finish(self) -> None:
        if self.mode == "pretty" and self.columns is not None:
            self.out.write(render("pretty", self.columns, self.buffered))
        elif self.mode == "json":
            self.out.write("\n]\n" if self._json_open else "[\n\n]\n")
        self.out.flush()


def run_query(args: argparse.Namespace) -> int:
    """``agent-cli --collector URL query ...``; 1 if any host failed."""
    targets = _targets(args, default_all=False)
    if targets.empty:
        raise FleetError("which hosts? give --host H, --group G or --all")
    printer = QueryPrinter(args.mode, sys.stdout)
    progress = Progress(sys.stderr) if sys.stderr.isatty() else None
    statuses: list[op.QueryStatus] = []

    def on_reply(reply: Message) -> None:
        if isinstance(reply, op.QueryStarted) and progress is not None:
            progress.expect(len(reply.hosts))
        elif isinstance(reply, op.QueryRows):
            if progress is not None:
                progress.clear()
            printer.add(reply.hostname, reply.host_id, reply.columns, reply.rows)
        elif isinstance(reply, op.QueryStatus):
            statuses.append(reply)
        if progress is not None:
            progress.show(len(statuses), printer.rows)

    async def run() -> None:
        async with _client(args) as client:
            await client.request(op.RunQuery(client.next_req(), args.sql, targets, args.timeout), on_reply)

    try:
        asyncio.run(run())
    finally:
        if progress is not None:
            progress.clear()
        printer.finish()
    failed = 0
    for status in sorted(statuses, key=lambda s: (s.hostname or s.host_id, s.host_id)):
        text = STATUS_TEXT[status.status].format(rows=status.rows, message=escape_controls(status.message))
        who = f"{status.hostname} ({status.host_id})" if status.hostname else status.host_id
        print(f"{who}: {text}", file=sys.stderr)
        failed += status.status.failed
    if failed:
        print(f"Error: {failed} of {len(statuses)} hosts failed", file=sys.stderr)
        return 1
    return 0


class Progress:
    """``3/5 hosts answered, 120 rows`` on one terminal line, redrawn in place."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.total = 0
        self._shown = False

    def expect(self, total: int) -> None:
        self.total = total

    def show(self, done: int, rows: int) -> None:
        self.stream.write(f"\r\x1b[K{done}/{self.total} hosts answered, {rows} rows")
        self.stream.flush()
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False
