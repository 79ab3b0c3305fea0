"""The asyncio shell around :class:`collector.zeek.link.LinkCore`: one WebSocket connection to one
Zeek endpoint, kept up with jittered exponential backoff, always reading.

Zeek closes a client that stops reading (its pongs stop) and a client whose backlog outlasts
the ping interval: the reader here never waits on anything but the socket, and the core bounds
what is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import websockets
from websockets.asyncio.client import ClientConnection, connect

from collector.zeek.link import LinkCore, LinkState, Notification, ZeekBatch

log = logging.getLogger(__name__)

DEFAULT_SUBSCRIBE_TOPICS = ("/osquery/collector/",)
DEFAULT_PUBLISH_TOPIC = "/osquery/zeek/"
WEBSOCKET_PATH = "/v1/messages/json"


class EndpointError(ValueError):
    """A Zeek endpoint URL or option that cannot work (names what is wrong)."""


@dataclass(frozen=True, slots=True)
class ZeekEndpoint:
    """Where one Zeek (or cluster manager) listens, and the topics of the framework's config."""

    url: str
    subscribe_topics: tuple[str, ...] = DEFAULT_SUBSCRIBE_TOPICS
    publish_topic: str = DEFAULT_PUBLISH_TOPIC
    ca_file: str | None = None
    cert_file: str | None = None  # collectord's client certificate (PEM), for a listener that asks for one
    key_file: str | None = None  # its key (None: in cert_file)
    application_name: str = "collectord"

    @classmethod
    def parse(cls, text: str, **kwargs: object) -> ZeekEndpoint:
        """``ws://HOST:PORT`` or ``wss://...``; the API path is added when missing."""
        url = text.strip()
        if not url.startswith(("ws://", "wss://")):
            raise EndpointError(f"Zeek endpoint {text!r}: use ws://HOST:PORT or wss://HOST:PORT")
        scheme, _, rest = url.partition("://")
        hostport, slash, path = rest.partition("/")
        if not hostport:
            raise EndpointError(f"Zeek endpoint {text!r}: no host")
        if slash and path and "/" + path != WEBSOCKET_PATH:
            raise EndpointError(f"Zeek endpoint {text!r}: Zeek serves its API at {WEBSOCKET_PATH} only")
        return cls(url=f"{scheme}://{hostport}{WEBSOCKET_PATH}", **kwargs)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class LinkStatus:
    url: str
    state: LinkState
    zeek_id: str
    unacknowledged: int
    buffered: int
    delivered_batches: int
    resent_batches: int
    partial_batches: int
    dropped_batches: int
    dropped_events: int
    zeek_errors: int
    connects: int


Handler = Callable[["ZeekLink", Notification], None]


class ZeekLink:
    """Keeps one Zeek endpoint connected and feeds its :class:`LinkCore`.

    ``handler`` gets every notification (requests, syncs, deliveries, Zeek errors, drops) in
    order, on the event loop.
    """

    def __init__(
        self,
        endpoint: ZeekEndpoint,
        collector_id: str,
        handler: Handler,
        *,
        max_inflight: int = 64,
        max_inflight_events: int = 5000,
        max_buffer: int = 10_000,
        ack_timeout: float = 10.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        max_message: int = 64 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoint = endpoint
        self.core = LinkCore(
            subscribe_topics=endpoint.subscribe_topics,
            publish_topic=endpoint.publish_topic,
            collector_id=collector_id,
            max_inflight=max_inflight,
            max_inflight_events=max_inflight_events,
            max_buffer=max_buffer,
            ack_timeout=ack_timeout,
        )
        self._handler = handler
        self._clock = clock
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._max_message = max_message
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._ws: ClientConnection | None = None

    # --- what collectord calls -------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name=f"zeek-link {self.endpoint.url}")

    async def stop(self, grace: float = 5.0) -> None:
        """Close the connection (code 1000) and end the task, within ``grace`` seconds."""
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        if task is None:
            return
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(1000, "collectord stopping"), grace / 2)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, grace / 2)

    def submit(self, batch: ZeekBatch) -> None:
        self.core.submit(batch, self._clock())
        self._after_core()

    def resume(self, batch: ZeekBatch) -> None:
        """Queue a batch that may already be in Zeek (sent before collectord restarted)."""
        self.core.resume(batch, self._clock())
        self._after_core()

    def host_connected(self, host_id: str, hostname: str, addresses: Sequence[str], groups: Sequence[str]) -> None:
        self.core.host_connected(host_id, hostname, addresses, groups)
        self._after_core()

    def host_disconnected(self, host_id: str) -> None:
        self.core.host_disconnected(host_id)
        self._after_core()

    def send_event(self, event_json: str) -> bool:
        sent = self.core.send_event(event_json)
        self._after_core()
        return sent

    def status(self) -> LinkStatus:
        s = self.core.stats
        return LinkStatus(
            url=self.endpoint.url,
            state=self.core.state,
            zeek_id=self.core.zeek_id,
            unacknowledged=self.core.unacknowledged,
            buffered=self.core.buffered,
            delivered_batches=s.delivered_batches,
            resent_batches=s.resent_batches,
            partial_batches=s.partial_batches,
            dropped_batches=s.dropped_batches,
            dropped_events=s.dropped_events,
            zeek_errors=s.zeek_errors,
            connects=s.connects,
        )

    # --- the connection --------------------------------------------------------------------

    def _after_core(self) -> None:
        for note in self.core.notifications():
            try:
                self._handler(self, note)
            except Exception:
                log.exception("zeek link %s: notification handler failed on %r", self.endpoint.url, note)
        if self.core.has_frames and self._ws is not None:
            self._wake.set()

    def _ssl(self) -> ssl.SSLContext | None:
        if not self.endpoint.url.startswith("wss://"):
            return None
        ctx = ssl.create_default_context(cafile=self.endpoint.ca_file)
        if self.endpoint.cert_file is not None:
            # Zeek's listener with a CA set (osquery::websocket_tls_ca), and Broker's with
            # Broker::ssl_cafile (Zeek 6.0-7.1), accept only clients with a certificate of that CA.
            ctx.load_cert_chain(self.endpoint.cert_file, self.endpoint.key_file)
        return ctx

    async def _run(self) -> None:
        delay = self._backoff_initial
        last_failure = ""
        while not self._stopping:
            try:
                async with connect(
                    self.endpoint.url,
                    ssl=self._ssl(),
                    max_size=self._max_message,
                    max_queue=None,
                    additional_headers={"X-Application-Name": self.endpoint.application_name},
                    open_timeout=10,
                    compression=None,
                ) as ws:
                    self._ws = ws
                    log.info("zeek link %s: connected", self.endpoint.url)
                    last_failure = ""
                    delay = self._backoff_initial
                    await self._serve(ws)
                    reason = f"closed ({ws.close_code} {ws.close_reason})".strip()
            except (TimeoutError, OSError, websockets.exceptions.WebSocketException) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            finally:
                self._ws = None
            self.core.connection_lost(self._clock(), reason)
            self._after_core()
            if self._stopping:
                break
            if reason != last_failure:  # one line per change, not per attempt
                log.warning("zeek link %s: %s; reconnecting", self.endpoint.url, reason)
                last_failure = reason
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, self._backoff_max)

    async def _serve(self, ws: ClientConnection) -> None:
        self.core.connection_made(self._clock())
        self._after_core()
        writer = asyncio.create_task(self._write(ws))
        try:
            async for message in ws:
                self.core.data_received(message, self._clock())
                if self.core.broker_endpoint and ws.keepalive_task is not None and not ws.keepalive_task.done():
                    # Broker's reader can drop the connection when a small frame shares a read with
                    # the next (collector.zeek.link): no pings there; ack timeouts notice a dead Zeek.
                    ws.keepalive_task.cancel()
                self._after_core()
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer

    async def _write(self, ws: ClientConnection) -> None:
        while True:
            frames = self.core.frames()
            for frame in frames:
                await ws.send(frame)
            if frames:
                continue
            self._wake.clear()
            deadline = self.core.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self._clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self.core.tick(self._clock())
            self._after_core()
