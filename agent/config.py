"""osquery's JSON config for agentd: options, schedule, packs, decorators, plus a ``collector`` section.

Parsing follows osquery (osquery/config/config.cpp, packs.cpp):

* JSON with ``//`` and ``/* */`` comments; backslash-newline inside strings (osx-attacks.conf);
* ``packs`` inline, by path (relative to the config's directory) and ``{"*": "/dir/*"}``;
* pack queries are named ``pack<delim><pack><delim><query>``; pack-level platform, version
  and shard apply to every query of the pack;
* ``platform`` as osquery's checkPlatform, ``shard`` against sha1(hostname), ``version`` as a
  minimum version of osquery (agentd claims :data:`OSQUERY_COMPAT_VERSION`);
* discovery queries are stored and evaluated later by :func:`pack_active`.

A config that cannot work raises :class:`ConfigError` whose message starts with the key at
fault; keys agentd does not support are collected in ``AgentConfig.warnings`` (not fatal).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .options import OptionError, Options, parse_options
from .uplink.settings import CollectorSection, parse_collector
from .uplink.settings import ConfigError as CollectorConfigError

__all__ = [
    "MAX_INTERVAL",
    "OSQUERY_COMPAT_VERSION",
    "AgentConfig",
    "ConfigError",
    "Decorators",
    "Pack",
    "ScheduledQuery",
    "check_config",
    "check_platform",
    "config_check_main",
    "load_config",
    "machine_shard",
    "pack_active",
    "parse_config",
    "strip_json_comments",
]

#: The osquery version agentd behaves like (for pack/query ``version`` checks and osquery_info).
OSQUERY_COMPAT_VERSION = "5.13.1"
#: osquery's kMaxQueryInterval.
MAX_INTERVAL = 604800

_TOP_LEVEL = frozenset({"options", "schedule", "packs", "decorators", "collector"})
#: osquery keys agentd knows but does not act on (warned about once, kept in ``sections``).
_OSQUERY_UNSUPPORTED = frozenset(
    {
        "file_paths",
        "file_paths_query",
        "file_accesses",
        "exclude_paths",
        "yara",
        "views",
        "auto_table_construction",
        "prometheus_targets",
        "events",
        "feature_vectors",
        "kafka_topics",
        "logger_kafka_topics",
        "kinesis",
        "firehose",
    }
)
_QUERY_KEYS = frozenset(
    {
        "query",
        "interval",
        "snapshot",
        "removed",
        "platform",
        "version",
        "shard",
        "denylist",
        "description",
        "value",
        "startup_priority",
        "reference",
    }
)
_PACK_KEYS = frozenset({"queries", "platform", "version", "shard", "discovery", "oncall", "name"})


class ConfigError(Exception):
    """The config cannot be used; the message starts with the key at fault."""


@dataclass(frozen=True, slots=True)
class ScheduledQuery:
    """One scheduled query: main schedule (pack None) or a pack's, named as osquery names it."""

    name: str
    query: str
    interval: int
    snapshot: bool = False
    removed: bool = True
    platform: str = ""
    shard: int = 0
    denylist: bool = True
    pack: str | None = None
    description: str = ""
    version: str = ""
    startup_priority: int | None = None


@dataclass(slots=True)
class Pack:
    """A query pack: discovery SQL decides whether its queries run."""

    name: str
    queries: list[ScheduledQuery] = field(default_factory=list)
    platform: str = ""
    version: str = ""
    shard: int = 0
    discovery: list[str] = field(default_factory=list)
    source: str | None = None  # file the pack came from, None when inline
    skipped: str | None = None  # why the whole pack does not run on this host (platform/version/shard)
    inactive_reason: str | None = None  # set by pack_active() when discovery fails

    def runs_here(self) -> bool:
        """False when platform, version or shard rule the whole pack out on this host."""
        return self.skipped is None


@dataclass(slots=True)
class Decorators:
    """Decorator SQL: on load, before every query, and per period (seconds, multiples of 60)."""

    load: list[str] = field(default_factory=list)
    always: list[str] = field(default_factory=list)
    interval: dict[int, list[str]] = field(default_factory=dict)


@dataclass(slots=True)
class AgentConfig:
    """A parsed config; ``queries`` holds the queries that may run on this host."""

    options: Options = field(default_factory=Options)
    queries: list[ScheduledQuery] = field(default_factory=list)
    packs: list[Pack] = field(default_factory=list)
    decorators: Decorators = field(default_factory=Decorators)
    collector: CollectorSection | None = None  # the uplink to collectord (agent.uplink.settings)
    warnings: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # query name -> why it does not run here
    sections: dict[str, Any] = field(default_factory=dict)  # osquery sections agentd does not act on
    source: str = "<config>"

    def pack(self, name: str) -> Pack:
        for pack in self.packs:
            if pack.name == name:
                return pack
        raise KeyError(f"no pack named {name!r}")


# ---------------------------------------------------------------------------
# JSON with comments
# ---------------------------------------------------------------------------

_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|//[^\n]*|/\*.*?\*/', re.DOTALL)


def strip_json_comments(text: str) -> str:
    """``text`` with comments blanked (newlines kept, so errors keep their line/column).

    A backslash before a newline inside a string (osx-attacks.conf) becomes a space; the
    newline stays and the string is parsed leniently, so line numbers stay right.
    """

    def blank(match: re.Match[str]) -> str:
        token = match.group(0)
        if token.startswith('"'):
            return token.replace("\\\n", " \n")
        return re.sub(r"[^\n]", " ", token)

    return _TOKENS.sub(blank, text)


def _loads(text: str, where: str) -> Any:
    if not text.strip():
        raise ConfigError(f"{where}: the file is empty; expected a JSON object")
    try:
        return json.loads(strip_json_comments(text), strict=False)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None


# ---------------------------------------------------------------------------
# Platform, shard and version (osquery's checkPlatform, machine shard, versionAtLeast)
# ---------------------------------------------------------------------------


def check_platform(platform: str, host: str = "linux") -> bool:
    """osquery's checkPlatform for a Linux host: "gentoo" does not match, "posix" does."""
    value = (platform or "").strip().lower()
    if value in ("", "null"):
        return True
    if "any" in value or "all" in value:
        return True
    if host == "linux" and ("linux" in value or "ubuntu" in value or "centos" in value):
        return True
    if host in ("linux", "darwin") and "posix" in value:
        return True
    return host in value


def machine_shard(hostname: str) -> int:
    """osquery's shard of this machine: first byte of sha1(hostname) * 100 / 255."""
    return hashlib.sha1(hostname.encode()).digest()[0] * 100 // 255


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in re.split(r"[.\-]", version.strip())[:3]:
        digits = re.match(r"\d+", piece)
        parts.append(int(digits.group(0)) if digits else 0)
    return tuple(parts)


def version_at_least(required: str, have: str = OSQUERY_COMPAT_VERSION) -> bool:
    """True when ``have`` is at least ``required`` (major.minor.patch; suffixes ignored)."""
    if not required:
        return True
    return _version_tuple(have) >= _version_tuple(required)


# ---------------------------------------------------------------------------
# Field validation
# ---------------------------------------------------------------------------


def _interval(value: Any, where: str) -> int:
    ok = not isinstance(value, bool) and (
        isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit())
    )
    if ok:
        number = int(value)
        if 1 <= number <= MAX_INTERVAL:
            return number
    raise ConfigError(f"{where}: must be an integer between 1 and {MAX_INTERVAL}, got {value!r}")


def _bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ConfigError(f"{where}: must be true or false, got {value!r}")


def _shard(value: Any, where: str) -> int:
    ok = not isinstance(value, bool) and (
        isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit())
    )
    if ok and 0 <= int(value) <= 100:
        return int(value)
    raise ConfigError(f"{where}: must be an integer between 1 and 100, got {value!r}")


def _text(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(f"{where}: must be a string, got {value!r}")


def _object(value: Any, where: str, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be an object {what}, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), f"a number ({value!r})" if isinstance(value, (int, float)) else type(value).__name__
    )


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Host:
    hostname: str
    platform: str
    shard: int


def _parse_query(
    key: str, raw: Any, where: str, *, options: Options, pack: str | None, warnings: list[str]
) -> ScheduledQuery:
    if not key.strip():
        raise ConfigError(f"{where}: a query name must not be empty (it names the query's result lines)")
    entry = _object(raw, where, 'with at least a "query"')
    if "query" not in entry:
        raise ConfigError(f"{where}.query: missing (every scheduled query needs its SQL)")
    sql = entry["query"]
    if not isinstance(sql, str) or not sql.strip():
        raise ConfigError(f"{where}.query: must be a non-empty SQL string, got {sql!r}")
    for extra in sorted(set(entry) - _QUERY_KEYS):
        hint = " (osquery no longer reads 'blacklist'; use 'denylist')" if extra == "blacklist" else ""
        warnings.append(f"{where}.{extra}: not a scheduled query key agentd supports; ignored{hint}")
    interval = (
        _interval(entry["interval"], f"{where}.interval") if "interval" in entry else options.schedule_default_interval
    )
    priority = entry.get("startup_priority")
    if priority is not None:
        if isinstance(priority, bool) or not (
            (isinstance(priority, int) and priority >= 0) or (isinstance(priority, str) and priority.strip().isdigit())
        ):
            raise ConfigError(f"{where}.startup_priority: must be a non-negative integer, got {priority!r}")
        priority = int(priority)
    name = key if pack is None else f"pack{options.pack_delimiter}{pack}{options.pack_delimiter}{key}"
    return ScheduledQuery(
        name=name,
        query=sql,
        interval=interval,
        snapshot=_bool(entry.get("snapshot", False), f"{where}.snapshot"),
        removed=_bool(entry.get("removed", True), f"{where}.removed"),
        platform=_text(entry.get("platform", ""), f"{where}.platform"),
        shard=_shard(entry["shard"], f"{where}.shard") if "shard" in entry else 0,
        denylist=_bool(entry.get("denylist", True), f"{where}.denylist"),
        pack=pack,
        description=_text(entry.get("description", ""), f"{where}.description"),
        version=_text(entry.get("version", ""), f"{where}.version"),
        startup_priority=priority,
    )


def _skip_reason(platform: str, version: str, shard: int, host: _Host) -> str | None:
    if not check_platform(platform, host.platform):
        return f"platform {platform!r} does not include {host.platform}"
    if not version_at_least(version):
        return f"needs osquery version {version}, agentd is compatible with {OSQUERY_COMPAT_VERSION}"
    if shard > 0 and shard < host.shard:
        return f"shard {shard} is below this machine's shard {host.shard}"
    return None


def _parse_pack(
    name: str, raw: Any, where: str, *, source: str | None, options: Options, host: _Host, warnings: list[str]
) -> Pack:
    body = _object(raw, where, 'with "queries"')
    for extra in sorted(set(body) - _PACK_KEYS):
        warnings.append(f"{where}.{extra}: not a pack key agentd supports; ignored")
    discovery: list[str] = []
    raw_discovery = body.get("discovery", [])
    if not isinstance(raw_discovery, list):
        raise ConfigError(f"{where}.discovery: must be a list of SQL strings, got {_kind(raw_discovery)}")
    for i, sql in enumerate(raw_discovery):
        if isinstance(sql, str) and sql.strip():
            discovery.append(sql)
        else:  # osquery ignores entries that are not strings
            warnings.append(f"{where}.discovery[{i}]: not a SQL string ({_kind(sql)}); ignored")
    pack = Pack(
        name=name,
        platform=_text(body.get("platform", ""), f"{where}.platform"),
        version=_text(body.get("version", ""), f"{where}.version"),
        shard=_shard(body["shard"], f"{where}.shard") if "shard" in body else 0,
        discovery=discovery,
        source=source,
    )
    pack.skipped = _skip_reason(pack.platform, pack.version, pack.shard, host)
    queries = _object(body.get("queries", {}), f"{where}.queries", "mapping query names to queries")
    for key, entry in queries.items():
        pack.queries.append(
            _parse_query(key, entry, f"{where}.queries.{key}", options=options, pack=name, warnings=warnings)
        )
    return pack


def _read(path: str, where: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        raise ConfigError(f"{where}: file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{where}: is a directory, not a file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read {path}: {exc}") from None


def _pack_sources(raw: Any, base_dir: str) -> list[tuple[str, Any, str, str | None]]:
    """(name, body, where, source file) for every pack: inline, by path, or by ``"*"`` glob."""
    packs = _object(raw, "packs", "mapping pack names to packs or pack file paths")
    found: list[tuple[str, Any, str, str | None]] = []
    for name, value in packs.items():
        where = f"packs.{name}"
        if isinstance(value, dict):
            found.append((name, value, where, None))
        elif isinstance(value, str) and name == "*":
            pattern = os.path.join(base_dir, value)
            directory = os.path.dirname(pattern) or "."
            if not os.path.isdir(directory):
                raise ConfigError(f"{where}: directory not found for pack glob {value!r}: {directory}")
            for path in sorted(glob.glob(pattern)):
                if os.path.isfile(path):
                    pack_name = os.path.splitext(os.path.basename(path))[0]
                    body = _loads(_read(path, f"packs.{pack_name}"), f"packs.{pack_name} ({path})")
                    found.append((pack_name, body, f"packs.{pack_name}", path))
        elif isinstance(value, str):
            path = os.path.join(base_dir, value)
            body = _loads(_read(path, f"{where} (pack file)"), f"{where} ({path})")
            found.append((name, body, where, path))
        else:
            raise ConfigError(f"{where}: must be an inline pack object or a pack file path, got {_kind(value)}")
    return found


def _parse_decorators(raw: Any, warnings: list[str]) -> Decorators:
    body = _object(raw, "decorators", "with load, always and interval")
    result = Decorators()

    def sql_list(value: Any, where: str) -> list[str]:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: must be a list of SQL strings, got {_kind(value)}")
        for i, sql in enumerate(value):
            if not isinstance(sql, str) or not sql.strip():
                raise ConfigError(f"{where}[{i}]: must be a SQL string, got {sql!r}")
        return list(value)

    for extra in sorted(set(body) - {"load", "always", "interval"}):
        warnings.append(f"decorators.{extra}: not a decorator type (load, always, interval); ignored")
    result.load = sql_list(body.get("load", []), "decorators.load")
    result.always = sql_list(body.get("always", []), "decorators.always")
    periods = _object(body.get("interval", {}), "decorators.interval", "mapping seconds to SQL lists")
    for key, value in periods.items():
        where = f"decorators.interval.{key}"
        if not key.strip().isdigit() or int(key) <= 0:
            raise ConfigError(f"{where}: the period must be a positive number of seconds, got {key!r}")
        queries = sql_list(value, where)
        if int(key) % 60:
            warnings.append(f"{where}: the period must be a multiple of 60 seconds; these decorators will not run")
            continue
        result.interval.setdefault(int(key), []).extend(queries)
    return result


def _parse_collector(raw: Any, warnings: list[str], base_dir: str) -> CollectorSection:
    try:
        return parse_collector(raw, warnings, base_dir=base_dir)
    except CollectorConfigError as exc:
        raise ConfigError(str(exc)) from None


def parse_config(text: str, *, base_dir: str, source: str = "<config>", hostname: str | None = None) -> AgentConfig:
    """Parse a config's text; pack paths resolve against ``base_dir``.

    ``hostname`` (default: this host's) decides the machine shard.
    """
    document = _loads(text, source)
    if not isinstance(document, dict):
        raise ConfigError(f"{source}: the top level must be a JSON object, got {_kind(document)}")
    warnings: list[str] = []
    try:
        options, option_warnings = parse_options(document.get("options"))
    except OptionError as exc:
        raise ConfigError(str(exc)) from None
    warnings += option_warnings
    host_name = hostname if hostname is not None else socket.gethostname()
    host = _Host(
        hostname=host_name,
        platform=sys.platform if sys.platform != "linux" else "linux",
        shard=machine_shard(host_name),
    )
    config = AgentConfig(options=options, source=source)
    for key in document:
        if key in _TOP_LEVEL:
            continue
        config.sections[key] = document[key]
        if key in _OSQUERY_UNSUPPORTED:
            warnings.append(f"{key}: osquery config key not supported by agentd; ignored")
        elif key == "queries" and not {"schedule", "packs"} & set(document):
            warnings.append(
                f"{key}: unknown top-level key; ignored (this looks like a pack file: "
                'reference it from a config\'s "packs" section)'
            )
        else:
            warnings.append(f"{key}: unknown top-level key; ignored")

    candidates: list[ScheduledQuery] = []
    schedule = _object(document.get("schedule", {}), "schedule", "mapping query names to queries")
    for key, entry in schedule.items():
        candidates.append(_parse_query(key, entry, f"schedule.{key}", options=options, pack=None, warnings=warnings))
    for name, body, where, path in _pack_sources(document.get("packs", {}), base_dir):
        pack = _parse_pack(name, body, where, source=path, options=options, host=host, warnings=warnings)
        config.packs.append(pack)
        for query in pack.queries:
            if pack.skipped:
                config.skipped[query.name] = f"pack {pack.name}: {pack.skipped}"
            else:
                candidates.append(query)
    seen: set[str] = set()
    for query in candidates:
        reason = _skip_reason(query.platform, query.version, query.shard, host)
        if reason:
            config.skipped[query.name] = reason
            continue
        if query.name in seen:
            warnings.append(f"{query.name}: scheduled twice; the later definition is ignored")
            continue
        seen.add(query.name)
        config.queries.append(query)
    config.queries.sort(key=lambda q: (q.startup_priority if q.startup_priority is not None else 2**64, q.name))
    if "decorators" in document:
        config.decorators = _parse_decorators(document["decorators"], warnings)
    if "collector" in document:
        config.collector = _parse_collector(document["collector"], warnings, base_dir)
    config.warnings = warnings
    return config


def load_config(path: str, *, hostname: str | None = None) -> AgentConfig:
    """Read and parse the config file at ``path``."""
    text = _read(path, "config")
    return parse_config(text, base_dir=os.path.dirname(os.path.abspath(path)), source=path, hostname=hostname)


def check_config(path: str) -> list[str]:
    """Validate the config at ``path``: its warnings, or ConfigError."""
    return load_config(path).warnings


def pack_active(pack: Pack, execute: Callable[[str], Sequence[Any]]) -> bool:
    """Evaluate the pack's discovery queries (all must return a row); record why when not."""
    if pack.skipped:
        pack.inactive_reason = pack.skipped
        return False
    for sql in pack.discovery:
        try:
            rows = execute(sql)
        except Exception as exc:  # noqa: BLE001 - any failure makes the pack inactive, with its reason
            pack.inactive_reason = f"discovery query failed: {sql!r}: {exc}"
            return False
        if not rows:
            pack.inactive_reason = f"discovery query returned no rows: {sql!r}"
            return False
    pack.inactive_reason = None
    return True


def config_check_main(path: str, *, out: Any = None, err: Any = None) -> int:
    """``agentd --config-check FILE``: 0 and a summary, or 1 and ``Error: <message>`` on stderr."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"Error: {exc}", file=err)
        return 1
    for warning in config.warnings:
        print(f"Warning: {warning}", file=err)
    print(f"config OK: {len(config.queries)} queries in {len(config.packs)} packs", file=out)
    return 0


def _main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m agent.config CONFIG", file=sys.stderr)
        return 2
    return config_check_main(args[0])


if __name__ == "__main__":
    raise SystemExit(_main())
