"""osquery's extra SQL functions (split, regex_match, sha256, community_id_v1, ...).

osquery registers these on every connection (osquery/sql/sqlite_*.cpp); packs and
users' queries rely on them.  SQLite already brings concat, concat_ws and the math
functions.  Each function is pure and returns NULL on bad input, as osquery does.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
import struct
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import apsw

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


def community_id_v1(src: Any, dst: Any, sport: Any, dport: Any, proto: Any, seed: Any = 0) -> str | None:
    """The Community ID v1 flow hash (as Zeek's community-id), e.g. ``1:LQU9qZlK+B5F3KDmev6m5PMibrg=``."""
    try:
        a, b = ipaddress.ip_address(str(src)), ipaddress.ip_address(str(dst))
        sp, dp, pr, sd = int(sport), int(dport), int(proto), int(seed or 0)
    except (TypeError, ValueError):
        return None
    if a.version != b.version or not (0 <= sp < 65536 and 0 <= dp < 65536 and 0 <= pr < 256):
        return None
    ab, bb = a.packed, b.packed
    if (bb, dp) < (ab, sp):  # order the endpoints so both directions hash alike
        ab, bb, sp, dp = bb, ab, dp, sp
    data = struct.pack("!H", sd & 0xFFFF) + ab + bb + struct.pack("!BBHH", pr, 0, sp, dp)
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode()


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
    community_id: Any = community_id_v1  # apsw's stub types scalar functions as *args callables
    connection.create_scalar_function("community_id_v1", community_id, 5, deterministic=True)
    connection.create_scalar_function("community_id_v1", community_id, 6, deterministic=True)
