"""collectord's TOML config: typed, checked, with every error naming the key at fault.

A config that cannot work raises :class:`ConfigError` whose message starts with the key
(``listen.address: ...``, ``subscriptions[2].interval: ...``); an unknown key is an error
too (a typo must not silently fall back to a default).  Relative paths in a config file
are relative to the file's directory; on the command line, to the working directory.

Without ``--config`` collectord runs :data:`DEFAULT_CONFIG`: plaintext on 127.0.0.1 only,
state in ./collector-state, the enroll secret and operator token generated there, and the
standard subscriptions (the Zeek package's table scripts) written as osq-<name>.log in ./logs.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from protocol.messages import MAX_INTERVAL, MAX_NAME, MAX_SQL, Mode

from .zeek.client import EndpointError, ZeekEndpoint
from .zeek.columns import SignatureError, converter_for
from .zeek.ztypes import TypeSyntaxError, parse_type
from .zeeklog.standard import standard_toml
from .zeeklog.writer import LogField, LogFormat

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_PORT",
    "AttributionConfig",
    "AuthConfig",
    "CollectorConfig",
    "ConfigError",
    "Limits",
    "ListenConfig",
    "LogsConfig",
    "ResultsConfig",
    "SubscriptionConfig",
    "ZeekConfig",
    "check_listen_policy",
    "is_loopback_host",
    "load_config",
    "parse_config",
    "parse_listen",
]

DEFAULT_PORT = 9440
USER_CONNECTIONS_LOG = "osq-user_connections"  # attribution's log (collector.attribution.logs), in [logs] dir

#: What collectord runs without --config (docs/install.md shows a full config).
DEFAULT_CONFIG = f"""\
# collectord's embedded default: plaintext WebSocket on the loopback address only.
[listen]
address = "127.0.0.1:{DEFAULT_PORT}"

[state]
dir = "collector-state"

[results]
file = "collector-state/results.jsonl"

# With no Zeek configured, collectord writes Zeek-format logs itself: osq-<name>.log of the
# subscriptions that name a log (here: the standard ones, as the Zeek package's table scripts).
[logs]
dir = "logs"
format = "ascii"
rotation = 3600

""" + standard_toml()


class ConfigError(Exception):
    """The config cannot be used; the message starts with the key at fault."""


@dataclass(frozen=True, slots=True)
class ListenConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    tls_cert: str | None = None  # PEM certificate chain; with tls_key: wss://
    tls_key: str | None = None
    client_ca: str | None = None  # agents must present a certificate signed by this CA

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class AuthConfig:
    enroll_secret_file: str | None = None  # None: generated into the state directory
    operator_token_file: str | None = None  # None: generated into the state directory


@dataclass(frozen=True, slots=True)
class Limits:
    max_frame: int = 4 * 1024 * 1024  # bytes per WebSocket frame
    max_rate: float = 1000.0  # messages per second per connection, sustained (burst: twice as many)
    hello_timeout: float = 10.0  # seconds to send hello/auth after connecting
    ping_interval: float = 20.0  # WebSocket keepalive
    ping_timeout: float = 20.0
    max_connections: int = 20000
    ack_delay: float = 0.005  # group commit: collect results this long before committing


@dataclass(frozen=True, slots=True)
class ResultsConfig:
    file: str | None = None  # the JSON-lines sink; None: no file
    fsync: bool = True  # each write is durable before its cursor moves (exactly once across crashes)


@dataclass(frozen=True, slots=True)
class SubscriptionConfig:
    """A subscription the config owns (owner ``config``): kept in the registry as the config says.

    With ``log``, its rows are written to ``<log>.log`` in the log directory (``[logs]``), each
    column as the Zeek type ``fields`` declares (by position; without fields: as strings under
    the columns' own names).
    """

    name: str
    sql: str
    interval: int
    mode: Mode = Mode.DIFFERENTIAL
    removed: bool = True
    hosts: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    all: bool = False
    log: str | None = None
    fields: tuple[LogField, ...] | None = None


@dataclass(frozen=True, slots=True)
class LogsConfig:
    """collectord's own Zeek-format logs (osq-<name>.log, osquery.log); ``dir`` None: none."""

    dir: str | None = None
    format: LogFormat = LogFormat.ASCII
    rotation: float = 3600.0  # seconds; 0: never rotate


@dataclass(frozen=True, slots=True)
class ZeekConfig:
    """One Zeek endpoint (a Zeek, or a cluster's manager) running the package (zeek/)."""

    url: str  # ws://HOST:PORT or wss://HOST:PORT (the API path is added)
    name: str  # names the endpoint's sink cursor and its subscriptions' owner (zeek:<name>)
    zeek_topic: str = "/osquery/zeek/"  # the package's osquery::zeek_topic: collectord publishes here
    collector_topic: str = "/osquery/collector/"  # osquery::collector_topic: collectord subscribes to it
    ca: str | None = None  # CA to pin for wss://
    cert: str | None = None  # client certificate (PEM) for a listener that asks for one (wss://)
    key: str | None = None  # its key (default: in ``cert``)
    max_inflight: int = 64  # batches sent and not yet acknowledged
    max_inflight_events: int = 5000  # events in those batches (Zeek closes a client whose backlog outlasts a ping)
    batch_rows: int = 100  # rows per batch at most (a connection cut mid-batch repeats at most these)
    ack_timeout: float = 10.0  # then Zeek's delivery marks are asked before anything goes again
    max_backlog: int = 100_000  # result batches kept for Zeek while it is away; older ones are dropped (counted)
    execute_timeout: float = 30.0  # how long a one-time query (osquery::execute) waits for hosts

    @property
    def owner(self) -> str:
        return f"zeek:{self.name}"

    def endpoint(self) -> ZeekEndpoint:
        return ZeekEndpoint.parse(
            self.url,
            subscribe_topics=(self.collector_topic,),
            publish_topic=self.zeek_topic,
            ca_file=self.ca,
            cert_file=self.cert,
            key_file=self.key,
        )


@dataclass(frozen=True, slots=True)
class AttributionConfig:
    """``[attribution]``: which process and user is behind each Zeek connection (docs/attribution.md)."""

    enabled: bool = True  # subscribe every host to the attribution queries and keep the state
    max_age: float = 3600.0  # seconds of history kept
    clock_skew: float = 1.0  # how far a host's clock and Zeek's may disagree (until it is learned)
    answer_delay: float = 1.0  # a connection that just started is answered this much later (rows in flight)
    save_interval: float = 5.0  # the state is saved at most this often (and at shutdown)
    log_dir: str | None = None  # osq-user_connections.log goes here (None: no log)


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    listen: ListenConfig = field(default_factory=ListenConfig)
    state_dir: str = "collector-state"
    auth: AuthConfig = field(default_factory=AuthConfig)
    limits: Limits = field(default_factory=Limits)
    results: ResultsConfig = field(default_factory=ResultsConfig)
    subscriptions: tuple[SubscriptionConfig, ...] = ()
    zeek: tuple[ZeekConfig, ...] = ()
    logs: LogsConfig = field(default_factory=LogsConfig)
    attribution: AttributionConfig = field(default_factory=AttributionConfig)
    shutdown_timeout: float = 5.0  # the whole ordered shutdown fits in this
    source: str = "<embedded default>"


# ---------------------------------------------------------------------------
# typed getters
# ---------------------------------------------------------------------------

T = TypeVar("T")


def _table(value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: must be a table ([{key}]), got {type(value).__name__}")
    return value


def _known(body: Mapping[str, Any], key: str, allowed: set[str]) -> None:
    for name in body:
        if name not in allowed:
            where = f"{key}.{name}" if key else name
            raise ConfigError(f"{where}: unknown key; expected one of: {', '.join(sorted(allowed))}")


def _get(body: Mapping[str, Any], name: str, key: str, kind: Callable[[Any, str], T], default: T) -> T:
    if name not in body:
        return default
    return kind(body[name], f"{key}.{name}" if key else name)


def _str(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{key}: must be a string, got {value!r}")
    return value


def _nonempty(value: Any, key: str) -> str:
    text = _str(value, key)
    if not text.strip():
        raise ConfigError(f"{key}: must not be empty")
    return text


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: must be true or false, got {value!r}")
    return value


def _positive_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{key}: must be a positive integer, got {value!r}")
    return value


def _seconds(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{key}: must be a positive number of seconds, got {value!r}")
    return float(value)


def _names(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() and len(v) <= MAX_NAME for v in value):
        raise ConfigError(f"{key}: must be a list of non-empty names, got {value!r}")
    return tuple(value)


def _path(base: str | None) -> Callable[[Any, str], str | None]:
    """A file path: '' means none; relative paths are relative to ``base`` (the config's directory)."""

    def convert(value: Any, key: str) -> str | None:
        text = _str(value, key)
        if not text:
            return None
        if base is not None and not os.path.isabs(text):
            text = os.path.join(base, text)
        return text

    return convert


# ---------------------------------------------------------------------------
# listen addresses and the loopback rule
# ---------------------------------------------------------------------------


def parse_listen(text: str, key: str = "listen.address") -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port); port 0 picks a free one."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ConfigError(f"{key}: expected [IPv6]:PORT, got {text!r}")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or ":" in host:
            raise ConfigError(f"{key}: expected HOST:PORT (IPv6 as [ADDRESS]:PORT), got {text!r}")
    if not host:
        raise ConfigError(f"{key}: a host is needed (0.0.0.0 or :: for every address), got {text!r}")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"{key}: invalid port {port_text!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{key}: port {port} out of range 0..65535")
    return host, port


def is_loopback_host(host: str) -> bool:
    """True when every address ``host`` names is a loopback address (127.0.0.0/8, ::1)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    addresses = {str(info[4][0]) for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def check_listen_policy(listen: ListenConfig, key: str = "listen") -> None:
    """Plaintext only on loopback: anything else needs a certificate and key."""
    if (listen.tls_cert is None) != (listen.tls_key is None):
        raise ConfigError(f"{key}.tls_cert: tls_cert and tls_key go together (one is missing)")
    if listen.client_ca is not None and not listen.tls:
        raise ConfigError(f"{key}.client_ca: client certificates need TLS (tls_cert and tls_key)")
    if not listen.tls and not is_loopback_host(listen.host):
        raise ConfigError(
            f"{key}.address: refusing to listen on {listen.host} without TLS: plaintext ws:// is only allowed on "
            "loopback addresses (set listen.tls_cert and listen.tls_key, or listen on 127.0.0.1)"
        )


# ---------------------------------------------------------------------------
# sections
# ---------------------------------------------------------------------------


def _parse_listen(raw: Any, base: str | None) -> ListenConfig:
    body = _table(raw, "listen")
    _known(body, "listen", {"address", "tls_cert", "tls_key", "client_ca"})
    host, port = parse_listen(_get(body, "address", "listen", _nonempty, f"127.0.0.1:{DEFAULT_PORT}"))
    path = _path(base)
    listen = ListenConfig(
        host=host,
        port=port,
        tls_cert=_get(body, "tls_cert", "listen", path, None),
        tls_key=_get(body, "tls_key", "listen", path, None),
        client_ca=_get(body, "client_ca", "listen", path, None),
    )
    check_listen_policy(listen)
    return listen


def _parse_limits(raw: Any) -> Limits:
    body = _table(raw, "limits")
    names = {f.name for f in dataclasses.fields(Limits)}
    _known(body, "limits", names)
    d = Limits()
    limits = Limits(
        max_frame=_get(body, "max_frame", "limits", _positive_int, d.max_frame),
        max_rate=_get(body, "max_rate", "limits", _seconds, d.max_rate),
        hello_timeout=_get(body, "hello_timeout", "limits", _seconds, d.hello_timeout),
        ping_interval=_get(body, "ping_interval", "limits", _seconds, d.ping_interval),
        ping_timeout=_get(body, "ping_timeout", "limits", _seconds, d.ping_timeout),
        max_connections=_get(body, "max_connections", "limits", _positive_int, d.max_connections),
        ack_delay=_get(body, "ack_delay", "limits", _seconds, d.ack_delay),
    )
    if limits.max_frame < 64 * 1024:
        raise ConfigError(f"limits.max_frame: at least 65536 bytes (a results batch must fit), got {limits.max_frame}")
    if limits.max_rate < 1:
        raise ConfigError(f"limits.max_rate: at least 1 message per second, got {limits.max_rate:g}")
    return limits


def _parse_subscription(raw: Any, key: str) -> SubscriptionConfig:
    body = _table(raw, key)
    _known(
        body,
        key,
        {"name", "sql", "query", "interval", "mode", "snapshot", "removed", "hosts", "groups", "all", "log", "fields"},
    )
    if "name" not in body:
        raise ConfigError(f"{key}.name: missing")
    name = _nonempty(body["name"], f"{key}.name")
    if len(name) > MAX_NAME:
        raise ConfigError(f"{key}.name: at most {MAX_NAME} characters")
    if ("sql" in body) == ("query" in body):
        raise ConfigError(f"{key}.sql: exactly one of sql and query (its osquery name) is needed")
    sql_key = "sql" if "sql" in body else "query"
    sql = _nonempty(body[sql_key], f"{key}.{sql_key}")
    if len(sql) > MAX_SQL:
        raise ConfigError(f"{key}.{sql_key}: at most {MAX_SQL} characters")
    if "interval" not in body:
        raise ConfigError(f"{key}.interval: missing (seconds between runs)")
    interval = _positive_int(body["interval"], f"{key}.interval")
    if interval > MAX_INTERVAL:
        raise ConfigError(f"{key}.interval: at most {MAX_INTERVAL} seconds (osquery's maximum), got {interval}")
    mode = Mode.DIFFERENTIAL
    if "mode" in body:
        text = _str(body["mode"], f"{key}.mode")
        try:
            mode = Mode(text)
        except ValueError:
            raise ConfigError(f"{key}.mode: must be differential or snapshot, got {text!r}") from None
    if "snapshot" in body:  # osquery's spelling
        if "mode" in body:
            raise ConfigError(f"{key}.snapshot: give mode or snapshot, not both")
        mode = Mode.SNAPSHOT if _bool(body["snapshot"], f"{key}.snapshot") else Mode.DIFFERENTIAL
    sub = SubscriptionConfig(
        name=name,
        sql=sql,
        interval=interval,
        mode=mode,
        removed=_get(body, "removed", key, _bool, True),
        hosts=_get(body, "hosts", key, _names, ()),
        groups=_get(body, "groups", key, _names, ()),
        all=_get(body, "all", key, _bool, False),
        log=_get(body, "log", key, _log_path, None),
        fields=_get(body, "fields", key, _log_fields, None),
    )
    if not (sub.hosts or sub.groups or sub.all):
        raise ConfigError(f"{key}.all: a subscription needs targets: hosts, groups, or all = true")
    if sub.fields is not None and sub.log is None:
        raise ConfigError(f'{key}.fields: fields type the columns of a log; name the log too (log = "osq-...")')
    return sub


_LOG_PATH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*\Z")
_RESERVED_FIELDS = ("t", "host", "added")


def _log_path(value: Any, key: str) -> str:
    text = _str(value, key)
    if not _LOG_PATH.match(text) or len(text) > 100:
        raise ConfigError(
            f"{key}: a log name is letters, digits, '_' and '-', without '.log' (e.g. \"osq-processes\"), got {text!r}"
        )
    return text


def _log_fields(value: Any, key: str) -> tuple[LogField, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f'{key}: must be a list of "name:type" strings, one per column, got {value!r}')
    fields: list[LogField] = []
    for i, item in enumerate(value):
        where = f"{key}[{i}]"
        text = _str(item, where)
        name, sep, type_text = text.partition(":")
        name, type_text = name.strip(), type_text.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ConfigError(f'{where}: expected "name:type" (e.g. "pid:int"), got {text!r}')
        if name in _RESERVED_FIELDS or any(f.name == name for f in fields):
            raise ConfigError(f"{where}: field {name!r} is used twice (t, host and added come first in every log)")
        try:
            zeek_type = parse_type(type_text)
            converter_for(zeek_type)
        except (TypeSyntaxError, SignatureError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
        fields.append(LogField(name, zeek_type))
    return tuple(fields)


_ZEEK_NAME = re.compile(r"[A-Za-z0-9_.:\[\]-]{1,100}\Z")


def _parse_zeek(raw: Any, key: str, base: str | None) -> ZeekConfig:
    body = _table(raw, key)
    names = {f.name for f in dataclasses.fields(ZeekConfig)}
    _known(body, key, names)
    if "url" not in body:
        raise ConfigError(f"{key}.url: missing (ws://HOST:PORT of the Zeek running the osquery package)")
    url = _nonempty(body["url"], f"{key}.url")
    try:
        endpoint = ZeekEndpoint.parse(url)
    except EndpointError as exc:
        raise ConfigError(f"{key}.url: {exc}") from None
    d = ZeekConfig(url=endpoint.url, name=zeek_name(endpoint.url))
    zeek = ZeekConfig(
        url=endpoint.url,
        name=_get(body, "name", key, _nonempty, d.name),
        zeek_topic=_get(body, "zeek_topic", key, _nonempty, d.zeek_topic),
        collector_topic=_get(body, "collector_topic", key, _nonempty, d.collector_topic),
        ca=_get(body, "ca", key, _path(base), None),
        cert=_get(body, "cert", key, _path(base), None),
        key=_get(body, "key", key, _path(base), None),
        max_inflight=_get(body, "max_inflight", key, _positive_int, d.max_inflight),
        max_inflight_events=_get(body, "max_inflight_events", key, _positive_int, d.max_inflight_events),
        batch_rows=_get(body, "batch_rows", key, _positive_int, d.batch_rows),
        ack_timeout=_get(body, "ack_timeout", key, _seconds, d.ack_timeout),
        max_backlog=_get(body, "max_backlog", key, _positive_int, d.max_backlog),
        execute_timeout=_get(body, "execute_timeout", key, _seconds, d.execute_timeout),
    )
    if not _ZEEK_NAME.match(zeek.name):
        raise ConfigError(f"{key}.name: letters, digits and . _ : - [ ] only, at most 100, got {zeek.name!r}")
    if zeek.ca is not None and not zeek.url.startswith("wss://"):
        raise ConfigError(f"{key}.ca: a CA is pinned for wss:// only")
    if zeek.cert is not None and not zeek.url.startswith("wss://"):
        raise ConfigError(f"{key}.cert: a client certificate is for wss:// only")
    if zeek.key is not None and zeek.cert is None:
        raise ConfigError(f"{key}.key: set cert too (the client certificate this key belongs to)")
    for name, path in (("cert", zeek.cert), ("key", zeek.key)):
        if path is not None and not os.path.isfile(path):
            raise ConfigError(f"{key}.{name}: no such file: {path}")
    if zeek.url.startswith("ws://") and not is_loopback_host(_url_host(zeek.url)):
        raise ConfigError(
            f"{key}.url: refusing plaintext ws:// to {_url_host(zeek.url)}: use wss:// (the package's "
            "osquery::websocket_tls_cert) or a loopback address"
        )
    return zeek


def _url_host(url: str) -> str:
    hostport = url.partition("://")[2].split("/", 1)[0]
    if hostport.startswith("["):
        return hostport[1:].partition("]")[0]
    return hostport.rpartition(":")[0] if ":" in hostport else hostport


def zeek_name(url: str) -> str:
    """The default name of a Zeek endpoint: its host and port."""
    return url.partition("://")[2].split("/", 1)[0]


def parse_zeek_urls(urls: list[str], key: str = "--zeek") -> tuple[ZeekConfig, ...]:
    """``collectord --zeek URL`` (repeatable): endpoints with the default settings."""
    out = []
    for url in urls:
        try:
            out.append(_parse_zeek({"url": url}, key, None))
        except ConfigError as exc:
            raise ConfigError(str(exc).replace(f"{key}.url:", f"{key}:", 1)) from None
    _unique_zeek_names(out, key)
    return tuple(out)


def _unique_zeek_names(zeeks: list[ZeekConfig], key: str) -> None:
    seen: set[str] = set()
    for zeek in zeeks:
        if zeek.name in seen:
            raise ConfigError(f"{key}: two Zeek endpoints named {zeek.name!r} (give each a name)")
        seen.add(zeek.name)


def _parse_logs(raw: Any, base: str | None) -> LogsConfig:
    body = _table(raw, "logs")
    _known(body, "logs", {"dir", "format", "rotation"})
    fmt = LogFormat.ASCII
    if "format" in body:
        text = _str(body["format"], "logs.format")
        try:
            fmt = LogFormat(text)
        except ValueError:
            raise ConfigError(f"logs.format: must be ascii or json (Zeek's two log formats), got {text!r}") from None
    rotation = 3600.0
    if "rotation" in body:
        value = body["rotation"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value >= 0 and math.isfinite(value)):
            raise ConfigError(f"logs.rotation: seconds between rotations (0: never), got {value!r}")
        rotation = float(value)
    return LogsConfig(dir=_get(body, "dir", "logs", _path(base), None), format=fmt, rotation=rotation)


def _parse_attribution(raw: Any, path: Callable[[Any, str], str | None]) -> AttributionConfig:
    body = _table(raw, "attribution")
    _known(body, "attribution", {f.name for f in dataclasses.fields(AttributionConfig)})
    d = AttributionConfig()
    return AttributionConfig(
        enabled=_get(body, "enabled", "attribution", _bool, d.enabled),
        max_age=_get(body, "max_age", "attribution", _seconds, d.max_age),
        clock_skew=_get(body, "clock_skew", "attribution", _seconds, d.clock_skew),
        answer_delay=_get(body, "answer_delay", "attribution", _seconds, d.answer_delay),
        save_interval=_get(body, "save_interval", "attribution", _seconds, d.save_interval),
        log_dir=_get(body, "log_dir", "attribution", path, d.log_dir),
    )


def parse_config(text: str, source: str = "<config>", *, base: str | None = None) -> CollectorConfig:
    """A :class:`CollectorConfig` from TOML ``text`` (``base``: the directory relative paths start from)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    _known(
        document,
        "",
        {
            "listen",
            "state",
            "auth",
            "limits",
            "results",
            "subscriptions",
            "zeek",
            "logs",
            "attribution",
            "shutdown_timeout",
        },
    )
    path = _path(base)
    config = CollectorConfig(source=source)
    if "listen" in document:
        config = dataclasses.replace(config, listen=_parse_listen(document["listen"], base))
    if "state" in document:
        body = _table(document["state"], "state")
        _known(body, "state", {"dir"})
        state_dir = _get(body, "dir", "state", path, None)
        if state_dir is None:
            raise ConfigError("state.dir: must not be empty")
        config = dataclasses.replace(config, state_dir=state_dir)
    elif base is not None:
        config = dataclasses.replace(config, state_dir=os.path.join(base, config.state_dir))
    if "auth" in document:
        body = _table(document["auth"], "auth")
        _known(body, "auth", {"enroll_secret_file", "operator_token_file"})
        config = dataclasses.replace(
            config,
            auth=AuthConfig(
                enroll_secret_file=_get(body, "enroll_secret_file", "auth", path, None),
                operator_token_file=_get(body, "operator_token_file", "auth", path, None),
            ),
        )
    if "limits" in document:
        config = dataclasses.replace(config, limits=_parse_limits(document["limits"]))
    if "results" in document:
        body = _table(document["results"], "results")
        _known(body, "results", {"file", "fsync"})
        config = dataclasses.replace(
            config,
            results=ResultsConfig(
                file=_get(body, "file", "results", path, None), fsync=_get(body, "fsync", "results", _bool, True)
            ),
        )
    if "subscriptions" in document:
        raw = document["subscriptions"]
        if not isinstance(raw, list):
            raise ConfigError("subscriptions: must be an array of tables ([[subscriptions]])")
        subs = tuple(_parse_subscription(item, f"subscriptions[{i}]") for i, item in enumerate(raw))
        seen: set[str] = set()
        logs: set[str] = set()
        for i, sub in enumerate(subs):
            if sub.name in seen:
                raise ConfigError(f"subscriptions[{i}].name: {sub.name!r} is used twice")
            seen.add(sub.name)
            if sub.log is not None:
                if sub.log in logs or sub.log == "osquery":
                    raise ConfigError(f"subscriptions[{i}].log: {sub.log!r} is written by another subscription")
                logs.add(sub.log)
        config = dataclasses.replace(config, subscriptions=subs)
    if "zeek" in document:
        raw = document["zeek"]
        if not isinstance(raw, list):
            raise ConfigError("zeek: must be an array of tables ([[zeek]], one per Zeek endpoint)")
        zeeks = [_parse_zeek(item, f"zeek[{i}]", base) for i, item in enumerate(raw)]
        _unique_zeek_names(zeeks, "zeek")
        config = dataclasses.replace(config, zeek=tuple(zeeks))
    if "logs" in document:
        config = dataclasses.replace(config, logs=_parse_logs(document["logs"], base))
    if "attribution" in document:
        config = dataclasses.replace(config, attribution=_parse_attribution(document["attribution"], path))
    if config.attribution.enabled and config.attribution.log_dir is None:
        for i, sub in enumerate(config.subscriptions):
            if sub.log == USER_CONNECTIONS_LOG:
                raise ConfigError(
                    f"subscriptions[{i}].log: {sub.log!r} is attribution's (set [attribution] log_dir, or another name)"
                )
    if "shutdown_timeout" in document:
        config = dataclasses.replace(
            config, shutdown_timeout=_seconds(document["shutdown_timeout"], "shutdown_timeout")
        )
    return config


def load_config(path: str | None) -> CollectorConfig:
    """The config in ``path`` (None: the embedded default, relative to the working directory)."""
    if path is None:
        return parse_config(DEFAULT_CONFIG, "<embedded default>")
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config: {exc}") from None
    return parse_config(text, path, base=os.path.dirname(os.path.abspath(path)))
