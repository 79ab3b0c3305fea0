"""osquery's extra SQL functions (split, regex_match, sha256, community_id_v1, ...).

osquery registers these on every connection (osquery/sql/sqlite_*.cpp); packs and
users' queries rely on them.  ``community_id_v1`` is protocol.community_id's, the one
implementation the agent's rows and the collector's attributions share.  SQLite already
brings concat, concat_ws and the math functions.  Each function is pure and returns NULL
on bad input, as osquery does.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import apsw

from protocol.community_id import community_id_v1

__all__ = ["community_id_v1", "register_functions"]


def _split(value: Any, tokens: Any, index: Any) -> str | None:
    """split(str, tokens, n): the n-th (0-based) non-empty piece of str split on any char of tokens."""
    if value is None or tokens is None or index is None:
        return None
    pieces = [p for p in re.split("[" + re.escape(str(tokens)) + "]", str(value)) if p] if tokens else [str(value)]
    i = int(index)
    return pieces[i] if 0 <= i < len(pieces) else None


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _regex_match(value: Any, pattern: Any, index: Any) -> str | None:
    """regex_match(str, pattern, n): group n of the first match (0 = whole match)."""
    if value is None or pattern is None or index is None:
        return None
    try:
        m = _regex(str(pattern)).search(str(value))
        return m.group(int(index)) if m else None
    except (re.error, IndexError):
        return None


def _regex_split(value: Any, pattern: Any, index: Any) -> str | None:
    """regex_split(str, pattern, n): the n-th non-empty piece of str split on pattern."""
    if value is None or pattern is None or index is None:
        return None
    try:
        pieces = [p for p in _regex(str(pattern)).split(str(value)) if p]
    except re.error:
        return None
    i = int(index)
    return pieces[i] if 0 <= i < len(pieces) else None


def _hasher(name: str) -> Callable[[Any], str | None]:
    def digest(value: Any) -> str | None:
        if value is None:
            return None
        data = value if isinstance(value, bytes) else str(value).encode()
        return hashlib.new(name, data).hexdigest()

    digest.__name__ = name
    return digest


def _to_base64(value: Any) -> str | None:
    if value is None:
        return None
    data = value if isinstance(value, bytes) else str(value).encode()
    return base64.b64encode(data).decode()


def _from_base64(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return base64.b64decode(str(value), validate=False).decode(errors="replace")
    except ValueError:
        return None


def _conditional_to_base64(value: Any) -> str | None:
    """Base64 only when the text is not printable ASCII (osquery's rule)."""
    if value is None:
        return None
    text = str(value)
    if all(32 <= ord(c) < 127 for c in text):
        return text
    return _to_base64(text)


def _inet_aton(value: Any) -> int | None:
    try:
        return int(ipaddress.IPv4Address(str(value)))
    except ValueError:
        return None


def _in_cidr_block(cidr: Any, address: Any) -> int | None:
    """in_cidr_block(cidr, ip): 1 when ip is inside cidr (IPv4 or IPv6), else 0."""
    if cidr is None or address is None:
        return None
    try:
        network = ipaddress.ip_network(str(cidr), strict=False)
        return int(ipaddress.ip_address(str(address)) in network)
    except ValueError:
        return None


_FUNCTIONS: dict[str, tuple[Callable[..., Any], int]] = {
    "split": (_split, 3),
    "regex_match": (_regex_match, 3),
    "regex_split": (_regex_split, 3),
    "md5": (_hasher("md5"), 1),
    "sha1": (_hasher("sha1"), 1),
    "sha256": (_hasher("sha256"), 1),
    "to_base64": (_to_base64, 1),
    "from_base64": (_from_base64, 1),
    "conditional_to_base64": (_conditional_to_base64, 1),
    "inet_aton": (_inet_aton, 1),
    "in_cidr_block": (_in_cidr_block, 2),
}


def register_functions(connection: apsw.Connection) -> None:
    """Add osquery's extra functions to ``connection`` (deterministic, so usable anywhere)."""
    for name, (func, nargs) in _FUNCTIONS.items():
        connection.create_scalar_function(name, func, nargs, deterministic=True)
    community: Callable[..., Any] = community_id_v1  # 5 or 6 arguments: as _FUNCTIONS' entries are typed
    connection.create_scalar_function("community_id_v1", community, 5, deterministic=True)
    connection.create_scalar_function("community_id_v1", community, 6, deterministic=True)
