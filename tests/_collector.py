"""Test helpers: a real collectord process, and protocol-level clients that talk to it.

``Collectord`` runs ``python -m collector.daemon`` in a directory of its own on a free
loopback port (port 0, read back from its log line), and can SIGTERM or SIGKILL it and
start it again on the same port and state.  ``RawAgent`` speaks the wire protocol with
the sans-I/O session but also lets a test send anything at all (bad frames, gaps).
``Operator`` is a minimal operator client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from protocol import operator as op
from protocol.codec import FROM_COLLECTOR_TO_AGENT, decode
from protocol.messages import Action, Error, Hello, Message, Results, Welcome
from protocol.opsession import OperatorClientSession
from protocol.session import AgentSession
from tests._jsonlines import read_json_lines

ROOT = Path(__file__).resolve().parent.parent
_LISTENING = re.compile(r"listening on (wss?)://([^ ]+?)/agent")


class Collectord:
    """A collectord process in ``directory`` (its config written there)."""

    def __init__(
        self, directory: Path, config: str = "", *, extra_args: Sequence[str] = (), attribution: bool = False
    ) -> None:
        self.directory = directory
        self.config_path = directory / "collectord.toml"
        if not attribution and "[attribution]" not in config:
            # attribution (on by default) subscribes every host to its own queries: tests of the
            # core see only the subscriptions they make
            config += "\n[attribution]\nenabled = false\n"
        self.config_path.write_text(config)
        self.extra_args = list(extra_args)
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self.address = ""
        self.log_path = directory / "collectord.log"
        self.results = directory / "state" / "results.jsonl"

    @property
    def state(self) -> Path:
        return self.directory / "state"

    @property
    def enroll_secret(self) -> str:
        return (self.state / "enroll-secret").read_text().strip()

    @property
    def operator_token(self) -> str:
        return (self.state / "operator-token").read_text().strip()

    def start(self, *, listen: str | None = None, timeout: float = 30.0) -> Collectord:
        listen = listen or self.address or "127.0.0.1:0"
        args = [
            sys.executable,
            "-m",
            "collector.daemon",
            "--config",
            str(self.config_path),
            "--listen",
            listen,
            "--state-dir",
            str(self.state),
            "--results",
            str(self.results),
            *self.extra_args,
        ]
        log = open(self.log_path, "a")
        offset = self.log_path.stat().st_size
        self.process = subprocess.Popen(
            args, cwd=self.directory, stdout=log, stderr=subprocess.STDOUT, text=True, env=_env()
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_text()[offset:]
            found = _LISTENING.search(text)
            if found:
                scheme, self.address = found.group(1), found.group(2)
                self.url = f"{scheme}://{self.address}"
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"collectord exited with {self.process.returncode}:\n{text}")
            time.sleep(0.05)
        raise RuntimeError(f"collectord did not start within {timeout} s:\n{self.log_path.read_text()[offset:]}")

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; the exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def rows(self) -> list[dict[str, Any]]:
        return read_json_lines(self.results)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("NOTIFY_SOCKET", None)
    return env


def hello(
    host_id: str,
    *,
    secret: str | None = None,
    node_key: str | None = None,
    stream: str = "stream-1",
    acked: int = 0,
    groups: Sequence[str] = (),
    subscriptions: Sequence[str] = (),
    hostname: str | None = None,
    addresses: Sequence[str] = ("127.0.0.1",),
) -> Hello:
    return Hello(
        versions=(1,),
        host_id=host_id,
        hostname=hostname or host_id,
        addresses=tuple(addresses),
        platform="linux",
        agent_version="test",
        tables=("processes",),
        groups=tuple(groups),
        node_key=node_key,
        enroll_secret=secret if node_key is None else None,
        stream=stream,
        acked_seq=acked,
        subscriptions=tuple(subscriptions),
    )


class RawAgent:
    """A protocol-level agent: ``connect`` does hello/welcome; the rest sends whatever a test wants."""

    def __init__(self, url: str, hello_message: Hello, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.url = url.rstrip("/") + "/agent"
        self.hello = hello_message
        self.ssl = ssl_context
        self.ws: ClientConnection | None = None
        self.session = AgentSession(hello_message)
        self.welcome: Welcome | None = None
        self.received: list[Message] = []

    async def open(self) -> ClientConnection:
        self.ws = await connect(self.url, ssl=self.ssl, compression=None, max_size=None, open_timeout=10)
        return self.ws

    async def connect(self) -> Welcome:
        ws = await self.open()
        self.session.start()
        await self.flush()
        while self.welcome is None:
            self.session.receive_frame(await ws.recv())
            for message in self.session.events_received():
                if isinstance(message, Welcome):
                    self.welcome = message
                else:
                    self.received.append(message)
            if self.session.closed and self.welcome is None:
                peer = self.session.peer_error
                reason = f"{peer.code.value}: {peer.message}" if peer is not None else str(self.session.failure)
                raise RuntimeError(f"refused: {reason}")
        return self.welcome

    async def flush(self) -> None:
        assert self.ws is not None
        for frame in self.session.data_to_send():
            await self.ws.send(frame)

    async def send(self, message: Message) -> None:
        self.session.send(message)
        await self.flush()

    async def send_rows(self, first: int, count: int, *, name: str = "numbers", subscription: str | None = None) -> int:
        """One results batch of rows ``first``..``first+count-1`` (column ``n``); its seq."""
        seq = self.session.next_seq
        rows = tuple((Action.ADDED, (first + i, f"row {first + i}")) for i in range(count))
        await self.send(Results(seq, subscription, name, ("n", "text"), rows, 0, 0, time.time()))
        return seq

    async def recv(self, timeout: float = 10.0) -> Message:
        """The next message from the collector (pings are answered by the session)."""
        assert self.ws is not None
        while True:
            if self.received:
                return self.received.pop(0)
            frame = await asyncio.wait_for(self.ws.recv(), timeout)
            self.session.receive_frame(frame)
            self.received.extend(self.session.events_received())
            await self.flush()

    async def wait_ack(self, seq: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while self.session.acked < seq:
            await self.recv(max(0.1, deadline - time.monotonic()))

    async def refusal(self, timeout: float = 15.0) -> tuple[Error | None, int | None]:
        """Read until the collector closes: its error message (if any) and the close code."""
        assert self.ws is not None
        error: Error | None = None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    frame = await self.ws.recv()
                    with contextlib.suppress(Exception):
                        message = decode(frame, FROM_COLLECTOR_TO_AGENT)
                        if isinstance(message, Error):
                            error = message
        except ConnectionClosed as closed:
            return error, closed.rcvd.code if closed.rcvd is not None else None
        return error, None

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


class Operator:
    """A minimal operator client over the protocol (agent-cli's fleet commands are tested on their own)."""

    def __init__(self, url: str, token: str, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.url = url.rstrip("/") + "/operator"
        self.session = OperatorClientSession(token, client="tests")
        self.ssl = ssl_context
        self.ws: ClientConnection | None = None

    async def __aenter__(self) -> Operator:
        self.ws = await connect(self.url, ssl=self.ssl, compression=None, max_size=None)
        self.session.start()
        await self._flush()
        while self.session.version is None:
            await self._read()
            if self.session.closed:
                raise RuntimeError(f"operator refused: {self.session.refusal}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.ws is not None
        await self.ws.close()

    async def _flush(self) -> None:
        assert self.ws is not None
        for frame in self.session.data_to_send():
            await self.ws.send(frame)

    async def _read(self) -> list[Message]:
        assert self.ws is not None
        self.session.receive_frame(await asyncio.wait_for(self.ws.recv(), 30))
        await self._flush()
        return self.session.events_received()

    async def request(self, message: Message) -> list[Message]:
        """Send one request; every reply to it until it is finished."""
        self.session.send(message)
        await self._flush()
        req = message.req  # type: ignore[attr-defined]
        replies: list[Message] = []
        while req in self.session.pending:
            replies.extend(m for m in await self._read() if getattr(m, "req", None) == req)
        return replies

    async def hosts(self) -> list[op.HostInfo]:
        (reply,) = await self.request(op.ListHosts(self.session.next_req()))
        assert isinstance(reply, op.HostList)
        return list(reply.hosts)


class Agentd:
    """An agentd process with its own state and log directories, pointed at collectors."""

    def __init__(
        self, directory: Path, config: dict[str, Any], *, extra_args: Sequence[str] = (), prefix: Sequence[str] = ()
    ) -> None:
        self.directory = directory
        self.config_path = directory / "agentd.conf"
        self.config_path.write_text(json.dumps(config))
        self.extra_args = list(extra_args)
        self.prefix = list(prefix)  # e.g. ip netns exec NAME: it execs agentd, so the pid is agentd's
        self.process: subprocess.Popen[str] | None = None
        self.log_path = directory / "agentd.log"
        self.socket = directory / "agentd.sock"

    def start(self) -> Agentd:
        log = open(self.log_path, "a")
        offset = log.tell()
        self.process = subprocess.Popen(
            [
                *self.prefix,
                sys.executable,
                "-m",
                "agent.daemon",
                "--config",
                str(self.config_path),
                "--state-dir",
                str(self.directory / "state"),
                "--log-dir",
                str(self.directory / "log"),
                "--socket",
                str(self.socket),
                *self.extra_args,
            ],
            cwd=self.directory,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            env=_env(),
        )
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if "ready:" in self.log()[offset:]:
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"agentd exited with {self.process.returncode}:\n{self.log()}")
            time.sleep(0.05)
        raise RuntimeError(f"agentd did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def status(self) -> Any:
        from agent.control import remote_status

        return remote_status(str(self.socket))

    def stop(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)
        # A SIGKILLed agentd leaves its socket file; the next start replaces a stale one.

    def close(self) -> None:
        """Stop it as systemd would (SIGTERM: agentd gives kernel audit back), SIGKILL if it hangs."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def growing_query(start: float, total: int, per_second: int) -> str:
    """SQL whose result grows by ``per_second`` rows a second up to ``total`` (each new row reported once)."""
    return (
        "WITH RECURSIVE c(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM c WHERE n + 1 < "
        f"min({total}, (CAST(strftime('%s', 'now') AS INTEGER) - {int(start)} + 1) * {per_second})) "
        "SELECT n, 'row ' || n AS text FROM c"
    )
