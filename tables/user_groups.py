"""user_groups: which groups each local user is in (primary gid plus group memberships)."""

from __future__ import annotations

from collections.abc import Iterator

from ._accounts import GroupEntry, PasswdEntry, parse_group, parse_passwd
from ._files import read_text
from .spec import Column, QueryContext, Row, TableSpec

__all__ = ["SPEC", "generate", "memberships"]


def memberships(users: list[PasswdEntry], groups: list[GroupEntry]) -> list[tuple[int, int]]:
    """(uid, gid) pairs as getgrouplist(3) gives them: primary gid first, no duplicates."""
    by_member: dict[str, list[int]] = {}
    for g in groups:
        for member in g.members:
            by_member.setdefault(member, []).append(g.gid)
    pairs: list[tuple[int, int]] = []
    for u in users:
        gids = [u.gid]
        for gid in by_member.get(u.name, ()):
            if gid not in gids:
                gids.append(gid)
        pairs.extend((u.uid, gid) for gid in gids)
    return pairs


def generate(context: QueryContext) -> Iterator[Row]:
    """(uid, gid) rows for the local users, filtered by uid/gid."""
    uids = context.values("uid")
    gids = context.values("gid")
    users = parse_passwd(read_text(context.paths.host("/etc/passwd")) or "")
    if uids is not None:
        users = [u for u in users if u.uid in uids]
    groups = parse_group(read_text(context.paths.host("/etc/group")) or "")
    for uid, gid in memberships(users, groups):
        if gids is None or gid in gids:
            yield {"uid": uid, "gid": gid}


SPEC = TableSpec(
    name="user_groups",
    description="Local system user group relationships from /etc/passwd and /etc/group.",
    columns=(
        Column("uid", "BIGINT", "User ID", index=True),
        Column("gid", "BIGINT", "Group ID", index=True),
    ),
    generate=generate,
    examples=(
        "SELECT u.username, g.groupname FROM users u JOIN user_groups ug USING (uid) JOIN groups g ON g.gid = ug.gid",
    ),
)
