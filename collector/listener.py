"""The WebSocket listener: /agent and /operator on one port, TLS, limits before any allocation.

Refused at the HTTP upgrade (nothing allocated per connection yet): an unknown path
(404), plaintext from a non-loopback peer (403), more connections than allowed (503).
Frames above ``limits.max_frame`` close the connection (1009), done by websockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from protocol import AGENT_PATH, OPERATOR_PATH
from protocol.messages import ByeReason

from .agents import AgentLink
from .config import Limits, ListenConfig
from .fleet import Fleet
from .operators import OperatorLink, StatusProvider
from .store import Committer
from .tls import is_loopback_peer, server_context

__all__ = ["Listener"]

log = logging.getLogger("collectord.listener")


class Listener:
    """Accepts agent and operator connections and runs a link for each."""

    def __init__(
        self,
        listen: ListenConfig,
        limits: Limits,
        fleet: Fleet,
        committer: Committer,
        *,
        operator_token: str,
        status: StatusProvider | None = None,
    ) -> None:
        self.status = status
        self.listen = listen
        self.limits = limits
        self.fleet = fleet
        self.committer = committer
        self._operator_token = operator_token
        self._ssl = server_context(listen)
        self._server: Server | None = None
        self.agent_links: set[AgentLink] = set()
        self.operator_links: set[OperatorLink] = set()
        self.refused_upgrades = 0
        self._idle = asyncio.Event()  # set while no link runs
        self._idle.set()

    @property
    def scheme(self) -> str:
        return "wss" if self._ssl is not None else "ws"

    async def start(self) -> None:
        self._server = await serve(
            self._handler,
            self.listen.host,
            self.listen.port,
            ssl=self._ssl,
            process_request=self._process_request,
            compression=None,  # no inflation bombs, and no CPU spent on it
            max_size=self.limits.max_frame,
            max_queue=16,
            ping_interval=self.limits.ping_interval,
            ping_timeout=self.limits.ping_timeout,
            open_timeout=self.limits.hello_timeout,
            close_timeout=2.0,
            server_header="collectord",
            logger=logging.getLogger("collectord.websockets"),
        )

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def url(self, path: str = AGENT_PATH) -> str:
        host = self.listen.host
        shown = f"[{host}]" if ":" in host else host
        return f"{self.scheme}://{shown}:{self.port}{path}"

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        peer = _peer(connection)
        if request.path not in (AGENT_PATH, OPERATOR_PATH):
            self.refused_upgrades += 1
            return connection.respond(HTTPStatus.NOT_FOUND, f"unknown path; use {AGENT_PATH} or {OPERATOR_PATH}\n")
        if self._ssl is None and not is_loopback_peer(peer.rsplit(":", 1)[0].strip("[]")):
            self.refused_upgrades += 1
            return connection.respond(HTTPStatus.FORBIDDEN, "plaintext is only accepted from loopback addresses\n")
        if len(self.agent_links) + len(self.operator_links) >= self.limits.max_connections:
            self.refused_upgrades += 1
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "too many connections; retry later\n")
        return None

    async def _handler(self, connection: ServerConnection) -> None:
        peer = _peer(connection)
        path = connection.request.path if connection.request is not None else ""
        if path == OPERATOR_PATH:
            operator = OperatorLink(
                connection, self.fleet, self.limits, token=self._operator_token, peer=peer, status=self.status
            )
            self.operator_links.add(operator)
            await self._run(operator.run(), peer, lambda: self.operator_links.discard(operator))
        else:
            agent = AgentLink(connection, self.fleet, self.committer, self.limits, peer=peer)
            self.agent_links.add(agent)
            await self._run(agent.run(), peer, lambda: self.agent_links.discard(agent))

    async def _run(self, run: Awaitable[None], peer: str, done: Callable[[], None]) -> None:
        self._idle.clear()
        try:
            await run
        except Exception:
            log.exception("connection from %s failed", peer)
        finally:
            done()
            if not self.agent_links and not self.operator_links:
                self._idle.set()

    async def close(self, grace: float) -> None:
        """Stop accepting, say bye to everyone, wait (bounded) for the connections to end."""
        if self._server is None:
            return
        self._server.close(close_connections=False)
        for link in list(self.agent_links) + list(self.operator_links):
            link.close(ByeReason.SHUTDOWN, "collectord is stopping")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace)
        # Whatever is left is closed by websockets (and its handler cancelled).
        self._server.close(close_connections=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), max(0.5, grace / 2))


def _peer(connection: ServerConnection) -> str:
    address = connection.remote_address
    if not address:
        return "?"
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
