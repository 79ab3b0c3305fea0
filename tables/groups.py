"""groups: local system groups from /etc/group (osquery's Linux groups table)."""

from __future__ import annotations

from collections.abc import Iterator

from ._accounts import parse_group, signed32
from ._files import namespace_views, read_text
from .spec import Column, QueryContext, Row, TableSpec

__all__ = ["SPEC", "generate"]


def generate(context: QueryContext) -> Iterator[Row]:
    """Rows of /etc/group, one per gid."""
    gids = context.values("gid")
    for pid_ns, paths in namespace_views(context):
        text = read_text(paths.host("/etc/group"))
        seen: set[int] = set()
        for g in parse_group(text or ""):
            if g.gid in seen:  # osquery reports each gid once (the first entry wins)
                continue
            seen.add(g.gid)
            if gids is not None and g.gid not in gids:
                continue
            yield {
                "gid": g.gid,
                "gid_signed": signed32(g.gid),
                "groupname": g.name,
                "pid_with_namespace": pid_ns,
            }


SPEC = TableSpec(
    name="groups",
    description="Local system groups from /etc/group.",
    columns=(
        Column("gid", "BIGINT", "Unsigned int64 group ID", index=True),
        Column("gid_signed", "BIGINT", "A signed int64 version of gid"),
        Column("groupname", "TEXT", "Canonical local group name"),
        Column("group_sid", "TEXT", "Unique group ID", index=True, hidden=True),
        Column("comment", "TEXT", "Remarks or comments associated with the group", hidden=True),
        Column("is_hidden", "INTEGER", "IsHidden attribute set in OpenDirectory", hidden=True),
        Column("pid_with_namespace", "INTEGER", "Pids that contain a namespace", hidden=True, additional=True),
    ),
    generate=generate,
    examples=("SELECT gid, groupname FROM groups WHERE gid < 1000",),
)
