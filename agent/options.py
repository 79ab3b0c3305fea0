"""agentd's options: osquery's flag names and defaults, typed, for the flags agentd honours.

The config's ``options`` object is a flag map whose values may be native JSON types or
strings (``"schedule_splay_percent": "10"``).  :func:`parse_options` coerces each known
option to its type, raises :class:`OptionError` naming ``options.<key>`` for a value of the
wrong type, and returns warnings for options agentd does not know (``custom_*`` options
are accepted silently, as osquery does).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .events import PROCESS_SOURCES

__all__ = ["HOST_IDENTIFIERS", "WATCHDOG_PROFILES", "OptionError", "Options", "parse_options"]

HOST_IDENTIFIERS = ("hostname", "uuid", "instance", "ephemeral", "specified")

#: osquery's watchdog profiles by --watchdog_level: (memory MB, CPU %, latency s).
WATCHDOG_PROFILES: dict[int, tuple[int, int, int]] = {
    0: (200, 10, 12),  # normal
    1: (100, 5, 6),  # restrictive
    -1: (10000, 100, 0),  # disabled limits
}


class OptionError(ValueError):
    """An option has a value of the wrong type or out of range (message names options.<key>)."""


@dataclass(slots=True)
class Options:
    """The options agentd honours, with osquery's names and defaults (units in comments)."""

    # identity
    host_identifier: str = "hostname"
    specified_identifier: str = ""
    # schedule
    schedule_splay_percent: int = 10
    schedule_default_interval: int = 3600  # s
    schedule_timeout: float = 10.0  # s: agentd's per-query time limit (osquery: 0 = none)
    schedule_epoch: int = 0
    schedule_max_drift: int = 60  # s
    pack_delimiter: str = "_"
    pack_refresh_interval: int = 3600  # s: discovery queries are re-evaluated this often
    # result logging
    decorations_top_level: bool = False
    logger_numerics: bool = False
    logger_event_type: bool = True
    logger_snapshot_event_type: bool = False
    logger_path: str = ""  # "" = the daemon's log directory
    logger_mode: int = 0o640
    logger_rotate_size: int = 25 * 1024 * 1024  # bytes
    logger_rotate_max_files: int = 25
    # events
    disable_events: bool = False
    events_max: int = 50000
    events_expiry: int = 3600  # s
    events_optimize: bool = True
    events_enforce_denylist: bool = False
    # audit (Linux). agentd exists to capture events, so audit is on by default (osquery: off).
    disable_audit: bool = False
    process_events_source: str = "auto"  # agentd's own: auto (audit, proc_connector, proc_poll) or one of them
    audit_allow_process_events: bool = True
    audit_allow_sockets: bool = False
    audit_allow_user_events: bool = True
    audit_allow_fim_events: bool = False
    audit_backlog_limit: int = 8192  # osquery: 4096; zero loss at ~2,600 execs/s wants more (bench/RESULTS.md)
    audit_backlog_wait_time: int = 0
    # watchdog
    watchdog_level: int = 0
    watchdog_memory_limit: int = 200  # MB
    watchdog_utilization_limit: int = 10  # % of one core, sustained
    watchdog_latency_limit: int = 12  # s over the CPU limit
    watchdog_delay: int = 60  # s after start before limits are enforced
    watchdog_forced_shutdown_delay: int = 4  # s
    disable_watchdog: bool = False
    #: custom_* options, kept as given.
    custom: dict[str, Any] = field(default_factory=dict)


_SPECIAL = {"custom"}
_FIELDS = {f.name: f for f in dataclasses.fields(Options) if f.name not in _SPECIAL}
_TYPES = {name: Options.__annotations__[name] for name in _FIELDS}
_RANGES: dict[str, tuple[float, float]] = {
    "schedule_splay_percent": (0, 100),
    "schedule_default_interval": (1, 604800),
    "schedule_timeout": (0, 86400),
    "schedule_epoch": (0, 2**63 - 1),
    "schedule_max_drift": (0, 604800),
    "pack_refresh_interval": (1, 604800),
    "logger_mode": (0, 0o7777),
    "logger_rotate_size": (1024, 2**40),
    "logger_rotate_max_files": (1, 1000),
    "events_max": (1, 10**8),
    "events_expiry": (0, 10**8),
    "audit_backlog_limit": (0, 2**31 - 1),
    "audit_backlog_wait_time": (0, 2**31 - 1),
    "watchdog_level": (-1, 1),
    "watchdog_memory_limit": (1, 10**6),
    "watchdog_utilization_limit": (1, 100),
    "watchdog_latency_limit": (0, 86400),
    "watchdog_delay": (0, 86400),
    "watchdog_forced_shutdown_delay": (0, 3600),
}
_WATCHDOG_LIMITS = ("watchdog_memory_limit", "watchdog_utilization_limit", "watchdog_latency_limit")


def _coerce(key: str, kind: str, value: Any) -> Any:
    """``value`` as the option's type, or OptionError naming options.<key>."""
    where = f"options.{key}"
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.strip().lower() in ("true", "1", "yes")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise OptionError(f"{where}: must be true or false, got {value!r}")
    if kind in ("int", "float"):
        number: float | int
        if isinstance(value, bool):
            raise OptionError(f"{where}: must be a number, got {value!r}")
        if key == "logger_mode" and isinstance(value, str):
            try:
                number = int(value, 8)  # "0640", as osquery's flag
            except ValueError:
                raise OptionError(f'{where}: must be an octal file mode such as "0640", got {value!r}') from None
        elif isinstance(value, (int, float)):
            number = value
        elif isinstance(value, str):
            try:
                number = float(value.strip()) if kind == "float" else int(value.strip(), 10)
            except ValueError:
                raise OptionError(
                    f"{where}: must be {'a number' if kind == 'float' else 'an integer'}, got {value!r}"
                ) from None
        else:
            raise OptionError(f"{where}: must be a number, got {value!r}")
        if kind == "int":
            if isinstance(number, float) and not number.is_integer():
                raise OptionError(f"{where}: must be an integer, got {value!r}")
            number = int(number)
        else:
            number = float(number)
        low, high = _RANGES.get(key, (float("-inf"), float("inf")))
        if not low <= number <= high:
            raise OptionError(f"{where}: must be between {low:g} and {high:g}, got {value!r}")
        return number
    if isinstance(value, (dict, list)) or value is None:
        raise OptionError(f"{where}: must be a string, got {value!r}")
    return str(value) if not isinstance(value, bool) else ("true" if value else "false")


def parse_options(raw: Mapping[str, Any] | None) -> tuple[Options, list[str]]:
    """Options from the config's ``options`` object, and warnings for unknown keys."""
    if raw is None:
        return Options(), []
    if not isinstance(raw, Mapping):
        raise OptionError(f"options: must be an object mapping option names to values, got {type(raw).__name__}")
    values: dict[str, Any] = {}
    custom: dict[str, Any] = {}
    warnings: list[str] = []
    for key, value in raw.items():
        if key.startswith("custom_"):
            custom[key] = value
            continue
        if key not in _FIELDS:
            warnings.append(f"options.{key}: not an option agentd supports; ignored")
            continue
        values[key] = _coerce(key, _TYPES[key], value)
    if "host_identifier" in values and values["host_identifier"] not in HOST_IDENTIFIERS:
        raise OptionError(
            f"options.host_identifier: must be one of {', '.join(HOST_IDENTIFIERS)}, got {values['host_identifier']!r}"
        )
    if values.get("host_identifier") == "specified" and not values.get("specified_identifier"):
        raise OptionError("options.specified_identifier: required (non-empty) when host_identifier is 'specified'")
    sources = ("auto", *PROCESS_SOURCES)
    if values.get("process_events_source", "auto") not in sources:
        raise OptionError(
            f"options.process_events_source: must be one of {', '.join(sources)}, "
            f"got {values['process_events_source']!r}"
        )
    if "pack_delimiter" in values and not values["pack_delimiter"]:
        raise OptionError("options.pack_delimiter: must not be empty")
    level = values.get("watchdog_level", 0)
    for name, default in zip(_WATCHDOG_LIMITS, WATCHDOG_PROFILES[level], strict=False):
        values.setdefault(name, default)  # the profile gives limits not set explicitly
    options = Options(**values, custom=custom)
    return options, warnings
