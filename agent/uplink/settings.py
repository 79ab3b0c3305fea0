"""The ``collector`` section of agentd's config, typed: where the uplink connects and how.

Keys (all optional; without ``url``/``urls`` there is no uplink)::

    "collector": {
      "urls": ["wss://c1.example:9440", "wss://c2.example:9440"],   // tried in turn ("url": one)
      "ca": "/etc/agentd/collector-ca.pem",          // pinned CA for wss://
      "client_cert": "/etc/agentd/agent.pem",        // optional client certificate (and "client_key")
      "enroll_secret_file": "/etc/agentd/enroll-secret",   // or "enroll_secret": "..."
      "groups": ["web", "dmz"],                      // ("host_groups": the older name)
      "queue_max_rows": 100000, "queue_max_bytes": 67108864,
      "reconnect": 60                                // longest wait between reconnection rounds
    }

Plaintext ``ws://`` is only allowed to a loopback address (checked here for addresses,
at connection time for names).  Errors raise :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_QUEUE_MAX_BYTES",
    "DEFAULT_QUEUE_MAX_ROWS",
    "CollectorSection",
    "check_url",
    "override",
    "parse_collector",
    "read_secret",
]

DEFAULT_QUEUE_MAX_ROWS = 100_000
DEFAULT_QUEUE_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_RECONNECT_MAX = 60.0

_KEYS = frozenset(
    {
        "url",
        "urls",
        "tls",
        "ca",
        "client_cert",
        "client_key",
        "enroll_secret",
        "enroll_secret_file",
        "groups",
        "host_groups",
        "queue_max_rows",
        "queue_max_bytes",
        "reconnect",
    }
)


class ConfigError(Exception):
    """Raised with the key at fault first (agent.config re-raises it as its own ConfigError)."""


@dataclass(frozen=True, slots=True)
class CollectorSection:
    """Where and how the uplink connects."""

    urls: tuple[str, ...] = ()
    ca: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    enroll_secret: str | None = None
    enroll_secret_file: str | None = None
    groups: tuple[str, ...] = ()
    queue_max_rows: int = DEFAULT_QUEUE_MAX_ROWS
    queue_max_bytes: int = DEFAULT_QUEUE_MAX_BYTES
    reconnect_max: float = DEFAULT_RECONNECT_MAX

    @property
    def enabled(self) -> bool:
        return bool(self.urls)

    def to_json(self) -> dict[str, Any]:
        """The section as config JSON (secrets left out)."""
        out: dict[str, Any] = {"urls": list(self.urls), "groups": list(self.groups)}
        for key in ("ca", "client_cert", "client_key", "enroll_secret_file"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


def check_url(url: Any, key: str) -> str:
    """A ws:// or wss:// URL with a host; ws:// to an address that is not loopback is refused."""
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ConfigError(f"{key}: must be a ws:// or wss:// URL with a host, got {url!r}")
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise ConfigError(f"{key}: invalid port in {url!r}") from None
    if parts.scheme == "ws":
        try:
            address = ipaddress.ip_address(parts.hostname)
        except ValueError:
            address = None
        if address is not None and not address.is_loopback:
            raise ConfigError(
                f"{key}: plaintext ws:// is only allowed to a loopback address, got {url!r}; use wss:// and a CA"
            )
    return url


def _path(value: Any, key: str, base_dir: str | None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}: must be a file path, got {value!r}")
    if base_dir is not None and not os.path.isabs(value):
        return os.path.join(base_dir, value)
    return value


def _positive_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{key}: must be a positive integer, got {value!r}")
    return value


def _groups(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(g, str) and g.strip() and len(g) <= 256 for g in value):
        raise ConfigError(f"{key}: must be a list of non-empty strings, got {value!r}")
    return tuple(value)


def parse_collector(raw: Any, warnings: list[str], *, base_dir: str | None = None) -> CollectorSection:
    """The ``collector`` section; unknown keys become warnings (osquery's habit), bad values errors."""
    if not isinstance(raw, dict):
        kind = {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
            type(raw), type(raw).__name__
        )
        raise ConfigError(f"collector: must be an object with the collector's url, got {kind}")
    for extra in sorted(set(raw) - _KEYS):
        warnings.append(f"collector.{extra}: not a collector key agentd supports; ignored")
    urls: list[str] = []
    if "url" in raw:
        urls.append(check_url(raw["url"], "collector.url"))
    if "urls" in raw:
        value = raw["urls"]
        if not isinstance(value, list) or not value:
            raise ConfigError(f"collector.urls: must be a non-empty list of ws:// or wss:// URLs, got {value!r}")
        urls.extend(check_url(u, f"collector.urls[{i}]") for i, u in enumerate(value))
    tls = raw.get("tls")
    if tls is not None and not isinstance(tls, bool):
        raise ConfigError(f"collector.tls: must be true or false, got {tls!r}")
    if tls:
        plain = [u for u in urls if u.startswith("ws://")]
        if plain:
            raise ConfigError(f"collector.tls: true needs a wss:// url, got {plain[0]!r}")
    if "enroll_secret" in raw and "enroll_secret_file" in raw:
        raise ConfigError("collector.enroll_secret: give enroll_secret or enroll_secret_file, not both")
    secret = raw.get("enroll_secret")
    if secret is not None and (not isinstance(secret, str) or not secret.strip()):
        raise ConfigError("collector.enroll_secret: must be a non-empty string")
    if "client_key" in raw and "client_cert" not in raw:
        raise ConfigError("collector.client_key: needs client_cert")
    groups: tuple[str, ...] = ()
    if "groups" in raw:
        groups = _groups(raw["groups"], "collector.groups")
    if "host_groups" in raw:
        groups = (*groups, *_groups(raw["host_groups"], "collector.host_groups"))
    reconnect = raw.get("reconnect", DEFAULT_RECONNECT_MAX)
    if isinstance(reconnect, bool) or not isinstance(reconnect, (int, float)) or not reconnect > 0:
        raise ConfigError(f"collector.reconnect: must be a positive number of seconds, got {reconnect!r}")
    if not math.isfinite(reconnect):
        raise ConfigError(f"collector.reconnect: must be a finite number of seconds, got {reconnect!r}")
    return CollectorSection(
        urls=tuple(dict.fromkeys(urls)),
        ca=_path(raw["ca"], "collector.ca", base_dir) if "ca" in raw else None,
        client_cert=_path(raw["client_cert"], "collector.client_cert", base_dir) if "client_cert" in raw else None,
        client_key=_path(raw["client_key"], "collector.client_key", base_dir) if "client_key" in raw else None,
        enroll_secret=secret.strip() if isinstance(secret, str) else None,
        enroll_secret_file=(
            _path(raw["enroll_secret_file"], "collector.enroll_secret_file", base_dir)
            if "enroll_secret_file" in raw
            else None
        ),
        groups=tuple(dict.fromkeys(groups)),
        queue_max_rows=_positive_int(raw.get("queue_max_rows", DEFAULT_QUEUE_MAX_ROWS), "collector.queue_max_rows"),
        queue_max_bytes=_positive_int(raw.get("queue_max_bytes", DEFAULT_QUEUE_MAX_BYTES), "collector.queue_max_bytes"),
        reconnect_max=float(reconnect),
    )


def override(section: CollectorSection | None, urls: Sequence[str], secret_file: str | None) -> CollectorSection | None:
    """``agentd --collector URL [--enroll-secret-file F]`` over the config's section."""
    import dataclasses

    if not urls and secret_file is None:
        return section
    base = section or CollectorSection()
    if urls:
        base = dataclasses.replace(base, urls=tuple(check_url(u, "--collector") for u in urls))
    if secret_file is not None:
        base = dataclasses.replace(base, enroll_secret=None, enroll_secret_file=secret_file)
    return base


def read_secret(section: CollectorSection) -> str | None:
    """The enroll secret (inline, or read from its file now); None when there is none."""
    if section.enroll_secret is not None:
        return section.enroll_secret
    if section.enroll_secret_file is None:
        return None
    try:
        with open(section.enroll_secret_file, encoding="utf-8") as handle:
            secret = handle.read().strip()
    except OSError as exc:
        raise ConfigError(
            f"collector.enroll_secret_file: cannot read {section.enroll_secret_file}: {exc.strerror or exc}"
        ) from None
    if not secret:
        raise ConfigError(f"collector.enroll_secret_file: {section.enroll_secret_file} is empty")
    return secret
