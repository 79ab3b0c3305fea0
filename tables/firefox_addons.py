"""firefox_addons: add-ons recorded in each Firefox profile's extensions.json."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ._browsers import list_dirs, load_json
from ._homes import user_homes
from .spec import Column, QueryContext, Row, TableSpec

__all__ = ["PROFILE_ROOTS", "SPEC", "generate", "parse_extensions_json"]

PROFILE_ROOTS = (".mozilla/firefox", "snap/firefox/common/.mozilla/firefox")


def _flag(value: Any) -> int:
    return 1 if value is True or value == 1 else 0


def parse_extensions_json(data: Any) -> list[Row]:
    """The ``addons`` list of extensions.json -> rows without uid (non-dict entries skipped)."""
    addons = data.get("addons") if isinstance(data, dict) else None
    rows = []
    for addon in addons if isinstance(addons, list) else []:
        if not isinstance(addon, dict):
            continue
        found = addon.get("defaultLocale")
        locale: dict[str, Any] = found if isinstance(found, dict) else {}
        rows.append(
            {
                "name": str(locale.get("name") or ""),
                "identifier": str(addon.get("id") or ""),
                "creator": str(locale.get("creator") or ""),
                "type": str(addon.get("type") or ""),
                "version": str(addon.get("version") or ""),
                "description": str(locale.get("description") or ""),
                "source_url": str(addon.get("sourceURI") or ""),
                "visible": _flag(addon.get("visible")),
                "active": _flag(addon.get("active")),
                "disabled": _flag(addon.get("userDisabled")) or _flag(addon.get("appDisabled")),
                "autoupdate": _flag(addon.get("applyBackgroundUpdates")),
                "location": str(addon.get("location") or ""),
                "path": str(addon.get("path") or ""),
            }
        )
    return rows


def generate(context: QueryContext) -> Iterator[Row]:
    """One row per add-on of every Firefox profile of every user."""
    wanted = context.values("identifier")
    for uid, home in user_homes(context):
        for relative in PROFILE_ROOTS:
            root = f"{home.rstrip('/')}/{relative}"
            for profile in list_dirs(context.paths.host(root)):
                data = load_json(context.paths.host(f"{root}/{profile}/extensions.json"))
                for row in parse_extensions_json(data):
                    if wanted is None or row["identifier"] in wanted:
                        row["uid"] = uid
                        yield row


SPEC = TableSpec(
    name="firefox_addons",
    description="Firefox browser extensions, webapps, and addons.",
    columns=(
        Column("uid", "BIGINT", "The local user that owns the addon", additional=True),
        Column("name", "TEXT", "Addon display name"),
        Column("identifier", "TEXT", "Addon identifier", index=True),
        Column("creator", "TEXT", "Addon-supported creator string"),
        Column("type", "TEXT", "Extension, addon, webapp"),
        Column("version", "TEXT", "Addon-supplied version string"),
        Column("description", "TEXT", "Addon-supplied description string"),
        Column("source_url", "TEXT", "URL that installed the addon"),
        Column("visible", "INTEGER", "1 If the addon is shown in browser else 0"),
        Column("active", "INTEGER", "1 If the addon is active else 0"),
        Column("disabled", "INTEGER", "1 If the addon is application-disabled else 0"),
        Column("autoupdate", "INTEGER", "1 If the addon applies background updates else 0"),
        Column("location", "TEXT", "Global, profile location"),
        Column("path", "TEXT", "Path to plugin bundle"),
    ),
    generate=generate,
    examples=("SELECT u.username, f.name, f.version FROM users u JOIN firefox_addons f USING (uid)",),
)
