"""chrome_extensions: extensions of Chromium-based browsers in each user's profiles."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterator
from typing import Any

from ._browsers import list_dirs, load_json, manifest
from ._homes import user_homes
from .spec import Column, QueryContext, Row, TableSpec

__all__ = ["BROWSERS", "SPEC", "extension_id", "generate"]

#: browser_type -> profile root under the home directory (Linux locations).
BROWSERS = {
    "chrome": ".config/google-chrome",
    "chrome_beta": ".config/google-chrome-beta",
    "chrome_dev": ".config/google-chrome-unstable",
    "chromium": ".config/chromium",
    "brave": ".config/BraveSoftware/Brave-Browser",
    "brave_beta": ".config/BraveSoftware/Brave-Browser-Beta",
    "brave_nightly": ".config/BraveSoftware/Brave-Browser-Nightly",
    "edge": ".config/microsoft-edge",
    "edge_beta": ".config/microsoft-edge-beta",
    "edge_dev": ".config/microsoft-edge-dev",
    "opera": ".config/opera",
    "vivaldi": ".config/vivaldi",
    "yandex": ".config/yandex-browser",
}

_WEBKIT_EPOCH_OFFSET = 11644473600  # seconds between 1601-01-01 and 1970-01-01


def extension_id(key: str) -> str:
    """Chrome's id from a manifest ``key``: sha256 of the DER key, first 32 hex digits mapped to a-p."""
    try:
        der = base64.b64decode(key, validate=False)
    except ValueError:
        return ""
    digest = hashlib.sha256(der).hexdigest()[:32]
    return "".join(chr(ord("a") + int(c, 16)) for c in digest)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):  # "author": {"email": ...}
        return str(value.get("email") or value.get("name") or "")
    return "" if value is None else str(value)


def _permissions(value: Any) -> tuple[str, str]:
    items = [p if isinstance(p, str) else json.dumps(p) for p in value] if isinstance(value, list) else []
    return ", ".join(items), json.dumps(value if isinstance(value, list) else [])


def _settings(profile_dir: str) -> dict[str, Any]:
    for name in ("Secure Preferences", "Preferences"):
        prefs = load_json(os.path.join(profile_dir, name))
        settings = (prefs or {}).get("extensions", {}).get("settings") if isinstance(prefs, dict) else None
        if isinstance(settings, dict) and settings:
            return settings
    return {}


def _install_timestamp(webkit: str) -> int | None:
    return int(webkit) // 1_000_000 - _WEBKIT_EPOCH_OFFSET if webkit.isdigit() else None


def _profile_rows(browser: str, uid: int, profile_dir: str, profile_path: str) -> Iterator[Row]:
    settings = _settings(profile_dir)
    prefs = load_json(os.path.join(profile_dir, "Preferences"))
    profile_name = prefs.get("profile", {}).get("name", "") if isinstance(prefs, dict) else ""
    ext_root = os.path.join(profile_dir, "Extensions")
    for ext_id in list_dirs(ext_root):
        for version_dir in list_dirs(os.path.join(ext_root, ext_id)):
            path = os.path.join(ext_root, ext_id, version_dir)
            loaded = manifest(os.path.join(path, "manifest.json"))
            if loaded is None:
                continue
            data, raw, digest = loaded
            setting = settings.get(ext_id, {}) if isinstance(settings.get(ext_id), dict) else {}
            perms, perms_json = _permissions(data.get("permissions"))
            optional, optional_json = _permissions(data.get("optional_permissions"))
            install_time = str(setting.get("install_time", ""))
            found = data.get("background")
            background: dict[str, Any] = found if isinstance(found, dict) else {}
            key = _text(data.get("key"))
            yield {
                "browser_type": browser,
                "uid": uid,
                "name": _text(data.get("name")),
                "profile": profile_name,
                "profile_path": profile_path,
                "referenced_identifier": ext_id if setting else "",
                "identifier": extension_id(key) if key else ext_id,
                "version": _text(data.get("version")),
                "description": _text(data.get("description")),
                "default_locale": _text(data.get("default_locale")),
                "current_locale": "",
                "update_url": _text(data.get("update_url")),
                "author": _text(data.get("author")),
                "persistent": 1 if background.get("persistent") else 0,
                "path": profile_path + path[len(profile_dir) :],
                "permissions": perms,
                "permissions_json": perms_json,
                "optional_permissions": optional,
                "optional_permissions_json": optional_json,
                "manifest_hash": digest,
                "referenced": 1 if setting else 0,
                "from_webstore": str(setting.get("from_webstore", "")).lower() if setting else "",
                "state": str(setting.get("state", "")) if setting else "",
                "install_time": install_time,
                "install_timestamp": _install_timestamp(install_time),
                "manifest_json": raw,
                "key": key,
            }


def generate(context: QueryContext) -> Iterator[Row]:
    """One row per installed extension version of every profile of every user."""
    for uid, home in user_homes(context):
        for browser, relative in BROWSERS.items():
            root = f"{home.rstrip('/')}/{relative}"
            for profile in list_dirs(context.paths.host(root)):
                profile_dir = context.paths.host(f"{root}/{profile}")
                if os.path.isdir(os.path.join(profile_dir, "Extensions")):
                    yield from _profile_rows(browser, uid, profile_dir, f"{root}/{profile}")


SPEC = TableSpec(
    name="chrome_extensions",
    description="Chrome-based browser extensions.",
    columns=(
        Column("browser_type", "TEXT", "The browser type (chrome, chromium, brave, edge, opera, vivaldi, ...)"),
        Column("uid", "BIGINT", "The local user that owns the extension", index=True),
        Column("name", "TEXT", "Extension display name"),
        Column("profile", "TEXT", "The name of the Chrome profile that contains this extension"),
        Column("profile_path", "TEXT", "The profile path"),
        Column(
            "referenced_identifier",
            "TEXT",
            "Extension identifier, as specified by the preferences file. Empty if the extension is not in the profile.",
        ),
        Column("identifier", "TEXT", "Extension identifier, computed from its manifest. Empty in case of error."),
        Column("version", "TEXT", "Extension-supplied version"),
        Column("description", "TEXT", "Extension-optional description"),
        Column("default_locale", "TEXT", "Default locale supported by extension"),
        Column("current_locale", "TEXT", "Current locale supported by extension"),
        Column("update_url", "TEXT", "Extension-supplied update URI"),
        Column("author", "TEXT", "Optional extension author"),
        Column("persistent", "INTEGER", "1 If extension is persistent across all tabs else 0"),
        Column("path", "TEXT", "Path to extension folder"),
        Column("permissions", "TEXT", "The permissions required by the extension"),
        Column("permissions_json", "TEXT", "The JSON-encoded permissions required by the extension", hidden=True),
        Column("optional_permissions", "TEXT", "The permissions optionally required by the extensions"),
        Column(
            "optional_permissions_json",
            "TEXT",
            "The JSON-encoded permissions optionally required by the extensions",
            hidden=True,
        ),
        Column("manifest_hash", "TEXT", "The SHA256 hash of the manifest.json file"),
        Column("referenced", "BIGINT", "1 if this extension is referenced by the Preferences file of the profile"),
        Column("from_webstore", "TEXT", "True if this extension was installed from the web store"),
        Column("state", "TEXT", "1 if this extension is enabled"),
        Column("install_time", "TEXT", "Extension install time, in its original Webkit format"),
        Column("install_timestamp", "BIGINT", "Extension install time, converted to unix time"),
        Column("manifest_json", "TEXT", "The manifest file of the extension", hidden=True),
        Column("key", "TEXT", "The extension key, from the manifest file", hidden=True),
    ),
    generate=generate,
    examples=("SELECT u.username, c.name, c.version FROM users u JOIN chrome_extensions c USING (uid)",),
)
