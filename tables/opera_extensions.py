"""opera_extensions: extensions in each user's Opera profile (~/.config/opera/Extensions).

osquery has since folded Opera into chrome_extensions (browser_type 'opera'); this table
keeps the older stock packs' queries working.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from ._browsers import list_dirs, manifest
from ._homes import user_homes
from .spec import Column, QueryContext, Row, TableSpec

__all__ = ["SPEC", "generate"]

_ROOT = ".config/opera/Extensions"


def generate(context: QueryContext) -> Iterator[Row]:
    """One row per installed extension version of every user."""
    for uid, home in user_homes(context):
        root = f"{home.rstrip('/')}/{_ROOT}"
        host_root = context.paths.host(root)
        for ext_id in list_dirs(host_root):
            for version in list_dirs(os.path.join(host_root, ext_id)):
                loaded = manifest(os.path.join(host_root, ext_id, version, "manifest.json"))
                if loaded is None:
                    continue
                data = loaded[0]
                found = data.get("background")
                background: dict[str, Any] = found if isinstance(found, dict) else {}
                yield {
                    "uid": uid,
                    "name": str(data.get("name") or ""),
                    "identifier": ext_id,
                    "version": str(data.get("version") or ""),
                    "description": str(data.get("description") or ""),
                    "locale": str(data.get("default_locale") or ""),
                    "update_url": str(data.get("update_url") or ""),
                    "author": str(data.get("author") or "") if not isinstance(data.get("author"), dict) else "",
                    "persistent": 1 if background.get("persistent") else 0,
                    "path": f"{root}/{ext_id}/{version}",
                }


SPEC = TableSpec(
    name="opera_extensions",
    description="Opera browser extensions.",
    columns=(
        Column("uid", "BIGINT", "The local user that owns the extension", index=True),
        Column("name", "TEXT", "Extension display name"),
        Column("identifier", "TEXT", "Extension identifier"),
        Column("version", "TEXT", "Extension-supplied version"),
        Column("description", "TEXT", "Extension-optional description"),
        Column("locale", "TEXT", "Default locale supported by extension"),
        Column("update_url", "TEXT", "Extension-supplied update URI"),
        Column("author", "TEXT", "Optional extension author"),
        Column("persistent", "INTEGER", "1 If extension is persistent across all tabs else 0"),
        Column("path", "TEXT", "Path to extension folder"),
    ),
    generate=generate,
    examples=("SELECT u.username, o.name FROM users u JOIN opera_extensions o USING (uid)",),
)
