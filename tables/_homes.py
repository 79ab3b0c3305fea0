"""Per-user home directories for osquery's user_data tables (shell_history, authorized_keys, ...).

osquery answers these tables for every local user (or only the pushed-down ``uid`` values)
by reading files under each user's home directory.
"""

from __future__ import annotations

from collections.abc import Iterator

from ._accounts import parse_passwd
from ._files import read_text
from .spec import HostPaths, QueryContext

__all__ = ["user_homes"]


def user_homes(context: QueryContext, paths: HostPaths | None = None) -> Iterator[tuple[int, str]]:
    """(uid, home directory) of every /etc/passwd account the query's ``uid`` constraint allows.

    Homes are returned as the host sees them (before the root prefix); accounts with an
    empty or relative home are skipped.
    """
    paths = paths or context.paths
    uids = context.values("uid")
    text = read_text(paths.host("/etc/passwd"))
    for entry in parse_passwd(text) if text is not None else []:
        if uids is not None and entry.uid not in uids:
            continue
        if not entry.home.startswith("/"):
            continue
        yield entry.uid, entry.home.rstrip("/") or "/"
