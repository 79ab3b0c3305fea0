"""collectord: the process next to Zeek that agents connect to.

``Collectord.serve()`` = :meth:`startup` -> serve until a shutdown trigger (SIGTERM/SIGINT
or an injected awaitable) -> :meth:`shutdown`, the last in a ``finally`` and bounded by
``shutdown_timeout`` (uvicorn's shape, hypercorn's injectable trigger).

Startup: state directory, credentials, registry, config subscriptions, sinks, the group
committer, the listener, READY=1.  Shutdown, in order: stop accepting, ``bye`` to every
connection and wait for them, stop the sinks, commit what was submitted (and the sinks'
cursors), close the registry.  A failure at startup logs one line and exits 1; shutdown still runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from protocol import OPERATOR_PATH
from protocol.operator import ComponentInfo, Counter

from .config import (
    CollectorConfig,
    ConfigError,
    LogsConfig,
    ResultsConfig,
    check_listen_policy,
    is_loopback_host,
    load_config,
    parse_listen,
    parse_zeek_urls,
)
from .credentials import CredentialError, load_secret
from .fleet import LEASE_TTL, Fleet
from .jsonl import JsonLinesSink
from .listener import Listener
from .localagent import LocalAgent
from .model import CONFIG_OWNER, HostQuery, Targets
from .outbox import Sink, Sinks
from .registry import Registry, RegistryError
from .sdnotify import Notifier, watchdog_interval
from .store import Committer, Store
from .tls import server_context
from .zeek.sink import ZeekSink
from .zeeklog.sink import ZeekLogSink, log_subscriptions

__all__ = ["Collectord", "apply_overrides", "build_parser", "main"]

log = logging.getLogger("collectord")

EXIT_OK, EXIT_FAILURE = 0, 1


class Collectord:
    """The daemon: ``await Collectord(config).serve()`` returns the exit status."""

    def __init__(
        self,
        config: CollectorConfig,
        *,
        shutdown_trigger: Callable[[], Awaitable[Any]] | None = None,
        notifier: Notifier | None = None,
        environ: dict[str, str] | None = None,
        extra_sinks: Sequence[Sink] = (),
        local_agent: bool = False,
    ) -> None:
        self.config = config
        self.with_local_agent = local_agent
        self.local_agent: LocalAgent | None = None
        self.shutdown_trigger = shutdown_trigger
        env = dict(os.environ if environ is None else environ)
        self.notifier = notifier if notifier is not None else Notifier.from_environment(env)
        self.sd_watchdog = watchdog_interval(env)
        self.extra_sinks = list(extra_sinks)
        self.exit_code = EXIT_OK
        self.should_exit = False
        self.store: Store | None = None
        self.fleet: Fleet | None = None
        self.committer: Committer | None = None
        self.sinks: Sinks | None = None
        self.zeek: list[ZeekSink] = []
        self.logs: ZeekLogSink | None = None
        self.listener: Listener | None = None
        self.enroll_secret = ""
        self.operator_token = ""
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- lifecycle -------------------------------------------------------------------------

    async def serve(self) -> int:
        with self._capture_signals():
            try:
                await self.startup()
                if not self.should_exit:
                    if self.shutdown_trigger is not None:
                        self._spawn(self._await_trigger(), "shutdown-trigger")
                    await self._stop.wait()
            finally:
                await self.shutdown()
        return self.exit_code

    def request_stop(self, reason: str = "requested") -> None:
        if not self.should_exit:
            log.info("collectord stopping: %s", reason)
        self.should_exit = True
        self._stop.set()

    def _fail(self, message: str) -> None:
        log.error("%s", message)
        self.exit_code = EXIT_FAILURE
        self.should_exit = True

    async def startup(self) -> None:
        """Everything up to READY=1; a failure logs one clear line and sets should_exit (status 1)."""
        config = self.config
        try:
            os.makedirs(config.state_dir, mode=0o700, exist_ok=True)
            check_listen_policy(config.listen)
            server_context(config.listen)  # fail now, with the key, if a TLS file is unusable
            self.enroll_secret = self._secret(config.auth.enroll_secret_file, "enroll-secret", "enroll secret")
            self.operator_token = self._secret(config.auth.operator_token_file, "operator-token", "operator token")
            registry = Registry(os.path.join(config.state_dir, "registry.db"))
        except (OSError, ConfigError, CredentialError, RegistryError) as exc:
            self._fail(f"cannot start: {exc}")
            return
        self.store = store = Store(registry)
        collector_id = await store.call(lambda r: r.collector_id())
        released = await store.call(lambda r: r.release_all(collector_id))
        if released:
            log.info("%d hosts left online by the previous run are offline until they reconnect", released)
        self.fleet = fleet = Fleet(
            store, collector_id=collector_id, enroll_secret=self.enroll_secret, limits=config.limits
        )
        await fleet.sync_owner(
            CONFIG_OWNER,
            [
                (s.name, HostQuery(s.sql, s.interval, s.mode, s.removed), Targets(s.hosts, s.groups, s.all), "")
                for s in config.subscriptions
            ],
        )
        sinks: list[Sink] = []
        if config.results.file is not None:
            sinks.append(JsonLinesSink(config.results.file, fsync=config.results.fsync))
        if config.logs.dir is not None:
            self.logs = ZeekLogSink(
                config.logs.dir,
                log_subscriptions(config.subscriptions),
                fmt=config.logs.format,
                rotation=config.logs.rotation,
            )
            sinks.append(self.logs)
        self.zeek = [ZeekSink(zeek, fleet) for zeek in config.zeek]
        sinks.extend(self.zeek)
        await self._forget_zeek_endpoints(fleet)
        sinks.extend(self.extra_sinks)
        self.committer = Committer(store, delay=config.limits.ack_delay)
        self.sinks = Sinks(sinks, store, committer=self.committer)
        self.committer.stored = self.sinks.notify
        self.committer.start()
        self.sinks.start()
        self.listener = Listener(
            config.listen,
            config.limits,
            fleet,
            self.committer,
            operator_token=self.operator_token,
            status=self.components,
        )
        try:
            await self.listener.start()
        except OSError as exc:
            self._fail(f"cannot listen on {config.listen.address}: {exc.strerror or exc}")
            return
        if self.with_local_agent:
            secret = config.auth.enroll_secret_file or os.path.join(config.state_dir, "enroll-secret")
            self.local_agent = LocalAgent(self.listener.url(""), secret, on_exit=self._local_agent_exited)
            try:
                await self.local_agent.start()
            except OSError as exc:
                self._fail(f"cannot start the local agent: {exc.strerror or exc}")
                return
        self._spawn(self._lease_loop(), "leases")
        if self.sd_watchdog:
            self._spawn(self._sd_watchdog_loop(self.sd_watchdog), "sd-watchdog")
        url = self.listener.url()
        log.info(
            "collectord %s listening on %s (operators: %s); state in %s%s",
            collector_id,
            url,
            self.listener.url(OPERATOR_PATH),
            config.state_dir,
            f"; results in {config.results.file}" if config.results.file else "",
        )
        for zeek in config.zeek:
            log.info("zeek %s: sending results to %s (the osquery package's listener)", zeek.name, zeek.url)
        if config.logs.dir is not None:
            logged = sum(1 for s in config.subscriptions if s.log is not None)
            fmt = config.logs.format.value
            log.info("Zeek-format logs of %d subscriptions in %s (%s)", logged, config.logs.dir, fmt)
        self.notifier.ready(f"listening on {url}")

    def components(self) -> list[ComponentInfo]:
        """The downstream parts as operators see them (``agent-cli --collector URL status``)."""
        out: list[ComponentInfo] = []
        for zeek in self.zeek:
            st = zeek.status()
            detail = st.url + (f" (Zeek {st.zeek_id})" if st.zeek_id else "")
            if st.last_error:
                detail += f"; last error: {st.last_error}"
            counters = {
                "subscriptions": st.subscriptions,
                "delivered_batches": st.delivered_batches,
                "delivered_rows": st.delivered_rows,
                "unacknowledged": st.unacknowledged,
                "buffered": st.buffered,
                "resent_batches": st.resent_batches,
                "partial_batches": st.partial_batches,
                "dropped_batches": st.dropped_batches,
                "dropped_rows": st.dropped_rows,
                "conversion_errors": st.conversion_errors,
                "refused_requests": st.refused_requests,
                "zeek_errors": st.zeek_errors,
                "connects": st.connects,
            }
            out.append(ComponentInfo(f"zeek:{st.name}", "zeek", st.state.value, detail, _counters(counters)))
        if self.logs is not None:
            logs = self.logs
            counters = {"records_written": logs.records_written, "errors": logs.errors}
            detail = f"{logs.directory} ({logs.format.value}, rotation {logs.rotation:g} s)"
            out.append(ComponentInfo("logs", "logs", "writing", detail, _counters(counters)))
        return out

    def _local_agent_exited(self, code: int) -> None:
        self.exit_code = EXIT_FAILURE
        self.request_stop(f"the local agent exited with status {code}")

    async def _forget_zeek_endpoints(self, fleet: Fleet) -> None:
        """Subscriptions and subnet groups of Zeek endpoints no longer configured go (their hosts stop them)."""
        configured = {z.owner for z in self.config.zeek}
        stale = {s.owner for s in await fleet.subscriptions() if s.owner.startswith("zeek:")} - configured
        for owner in sorted(stale):
            log.info("%s is no longer configured: its subscriptions are removed", owner)
            await fleet.sync_owner(owner, [])
            await fleet.set_subnet_groups(owner, {})

    def _secret(self, path: str | None, default_name: str, what: str) -> str:
        generate = path is None
        path = path or os.path.join(self.config.state_dir, default_name)
        secret, created = load_secret(path, what=what, generate=generate)
        if created and default_name == "enroll-secret":
            log.warning("generated a new enroll secret in %s: %s", path, secret)
        elif created:
            log.warning("generated a new %s in %s", what, path)
        else:
            log.info("%s from %s", what, path)
        return secret

    async def shutdown(self) -> None:
        """Ordered and time-boxed: listener and connections, pending commits, sinks, registry."""
        self.should_exit = True
        self._stop.set()
        self.notifier.stopping()
        if self.local_agent is not None:
            await self.local_agent.stop()  # first: its last results and its bye still reach us
        deadline = time.monotonic() + self.config.shutdown_timeout
        for task in list(self._tasks):
            task.cancel("collectord is shutting down")
        if self.listener is not None:
            await self.listener.close(_left(deadline, 3.0))
        if self.sinks is not None:
            await self.sinks.stop()  # what they have not delivered they get again at the next start
        for zeek in self.zeek:
            st = zeek.status()
            log.info(
                "zeek %s: %d batches (%d rows) delivered, %d resent, %d dropped, %d conversion errors",
                st.name,
                st.delivered_batches,
                st.delivered_rows,
                st.resent_batches,
                st.dropped_batches,
                st.conversion_errors,
            )
        if self.committer is not None:
            try:
                await asyncio.wait_for(self.committer.stop(), _left(deadline, 2.0))
            except TimeoutError:
                log.error("shutdown: pending results were not committed in time (agents resend them)")
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=_left(deadline, 0.5))
        if self.store is not None:
            await asyncio.to_thread(self.store.close)
        self.notifier.close()
        log.info("collectord stopped")

    # -- background tasks -------------------------------------------------------------------

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=f"collectord-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("%s failed: %s: %s", task.get_name(), type(exc).__name__, exc, exc_info=exc)
            self.exit_code = EXIT_FAILURE
            self.request_stop(f"{task.get_name()} failed")

    async def _await_trigger(self) -> None:
        assert self.shutdown_trigger is not None
        await self.shutdown_trigger()
        self.request_stop("shutdown trigger")

    async def _lease_loop(self) -> None:
        assert self.fleet is not None
        while True:
            await asyncio.sleep(LEASE_TTL / 3)
            try:
                await self.fleet.renew_leases()
            except RegistryError as exc:
                log.warning("renewing leases failed: %s", exc)

    async def _sd_watchdog_loop(self, interval: float) -> None:
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(interval)

    @contextlib.contextmanager
    def _capture_signals(self) -> Iterator[None]:
        """SIGTERM/SIGINT request a stop; the previous handlers come back afterwards."""
        if self.shutdown_trigger is not None or threading.current_thread() is not threading.main_thread():
            yield
            return
        loop = asyncio.get_running_loop()
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        for sig in previous:
            loop.add_signal_handler(sig, self.request_stop, f"signal {signal.Signals(sig).name}")
        try:
            yield
        finally:
            for sig, handler in previous.items():
                loop.remove_signal_handler(sig)
                signal.signal(sig, handler)


def _counters(values: dict[str, int]) -> tuple[Counter, ...]:
    return tuple(Counter(name, max(0, int(value))) for name, value in values.items())


def _left(deadline: float, cap: float) -> float:
    return max(0.05, min(cap, deadline - time.monotonic()))


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """collectord's options; flags override the config file for the common cases."""
    p = argparse.ArgumentParser(
        prog="collectord",
        description="The collector next to Zeek: agents push results over WebSocket; operators query the fleet.",
    )
    p.add_argument(
        "--config", metavar="FILE", help="TOML config (default: the embedded config, plaintext on 127.0.0.1)"
    )
    p.add_argument("--config-check", metavar="FILE", help="validate FILE and exit (0 valid, 1 invalid)")
    p.add_argument("--listen", metavar="HOST:PORT", help="listen address (overrides listen.address)")
    p.add_argument("--state-dir", metavar="DIR", help="registry and generated secrets (overrides state.dir)")
    p.add_argument("--results", metavar="FILE", help="JSON-lines results file (overrides results.file; '' for none)")
    p.add_argument("--enroll-secret-file", metavar="FILE", help="agents' enroll secret (overrides auth.*)")
    p.add_argument("--operator-token-file", metavar="FILE", help="operators' token (overrides auth.*)")
    p.add_argument(
        "--zeek",
        metavar="URL",
        action="append",
        help="a Zeek running the osquery package, ws://HOST:PORT (repeatable; overrides the [[zeek]] endpoints)",
    )
    p.add_argument(
        "--logs", metavar="DIR", help="directory of collectord's own Zeek-format logs (overrides logs.dir; '' for none)"
    )
    p.add_argument(
        "--with-local-agent",
        action="store_true",
        help="also run agentd on this machine (state in ./state), connected to this collectord; Ctrl-C stops both",
    )
    p.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    return p


def apply_overrides(config: CollectorConfig, args: argparse.Namespace) -> CollectorConfig:
    """The config with the command line's flags applied (ConfigError naming the flag if one is wrong)."""
    if args.listen is not None:
        host, port = parse_listen(args.listen, "--listen")
        config = dataclasses.replace(config, listen=dataclasses.replace(config.listen, host=host, port=port))
        try:
            check_listen_policy(config.listen)
        except ConfigError as exc:
            raise ConfigError(f"--listen: {str(exc).split(': ', 1)[1]}") from None
    if args.state_dir is not None:
        config = dataclasses.replace(config, state_dir=args.state_dir)
        if config.source == "<embedded default>" and args.results is None:
            config = dataclasses.replace(
                config, results=ResultsConfig(os.path.join(args.state_dir, "results.jsonl"), config.results.fsync)
            )
    if args.results is not None:
        config = dataclasses.replace(config, results=ResultsConfig(args.results or None, config.results.fsync))
    if args.zeek:
        config = dataclasses.replace(config, zeek=parse_zeek_urls(args.zeek))
        if config.source == "<embedded default>" and args.logs is None:
            # The embedded default's own logs and standard subscriptions stand in for a Zeek; with one,
            # its scripts say what they want.
            config = dataclasses.replace(
                config, logs=LogsConfig(), subscriptions=tuple(s for s in config.subscriptions if s.log is None)
            )
    if args.logs is not None:
        config = dataclasses.replace(config, logs=dataclasses.replace(config.logs, dir=args.logs or None))
    if args.enroll_secret_file is not None or args.operator_token_file is not None:
        auth = config.auth
        if args.enroll_secret_file is not None:
            auth = dataclasses.replace(auth, enroll_secret_file=args.enroll_secret_file)
        if args.operator_token_file is not None:
            auth = dataclasses.replace(auth, operator_token_file=args.operator_token_file)
        config = dataclasses.replace(config, auth=auth)
    return config


def config_check_main(path: str) -> int:
    try:
        config = load_config(path)
        server_context(config.listen)
    except ConfigError as exc:
        print(f"{path}: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"{path}: OK ({len(config.subscriptions)} subscriptions, listen {config.listen.address})")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """The ``collectord`` console script."""
    args = build_parser().parse_args(argv)
    if args.config_check:
        return config_check_main(args.config_check)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s"
        if os.environ.get("INVOCATION_ID")
        else "%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:
        logging.getLogger("collectord.websockets").setLevel(logging.WARNING)
    try:
        config = apply_overrides(load_config(args.config), args)
    except ConfigError as exc:
        log.error("config error: %s", exc)
        return EXIT_FAILURE
    if args.with_local_agent and (config.listen.tls or not is_loopback_host(config.listen.host)):
        log.error("config error: --with-local-agent needs a plaintext listener on a loopback address")
        return EXIT_FAILURE
    _tune_gc()
    return asyncio.run(Collectord(config, local_agent=args.with_local_agent).serve())


def _tune_gc() -> None:
    """Fewer full collections: with thousands of connections a full one takes hundreds of ms, found nothing
    in our measurements, and stalled every agent's acknowledgements meanwhile.  The young generations
    still collect as usual; startup's objects are moved out of the collector's way."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 50, 1000)


if __name__ == "__main__":
    raise SystemExit(main())
