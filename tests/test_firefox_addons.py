"""firefox_addons: a fixture profile's extensions.json."""

from __future__ import annotations

import json
from pathlib import Path

from tables import firefox_addons
from tables.firefox_addons import parse_extensions_json
from tables.spec import HostPaths
from tables.sqlite import Database

EXTENSIONS = {
    "schemaVersion": 35,
    "addons": [
        {
            "id": "uBlock0@raymondhill.net",
            "type": "extension",
            "version": "1.55.0",
            "visible": True,
            "active": True,
            "userDisabled": False,
            "appDisabled": False,
            "applyBackgroundUpdates": 1,
            "location": "app-profile",
            "sourceURI": "https://addons.example.org/ublock.xpi",
            "path": "/p/ublock.xpi",
            "defaultLocale": {"name": "uBlock Origin", "creator": "Raymond Hill", "description": "blocker"},
        },
        "junk",
        {"id": "off@example.org", "type": "theme", "userDisabled": True},
    ],
}


def test_parse() -> None:
    rows = parse_extensions_json(EXTENSIONS)
    assert len(rows) == 2
    assert rows[0] == {
        "name": "uBlock Origin",
        "identifier": "uBlock0@raymondhill.net",
        "creator": "Raymond Hill",
        "type": "extension",
        "version": "1.55.0",
        "description": "blocker",
        "source_url": "https://addons.example.org/ublock.xpi",
        "visible": 1,
        "active": 1,
        "disabled": 0,
        "autoupdate": 1,
        "location": "app-profile",
        "path": "/p/ublock.xpi",
    }
    assert rows[1]["disabled"] == 1 and rows[1]["active"] == 0
    assert parse_extensions_json(None) == [] and parse_extensions_json({"addons": "x"}) == []


def test_fixture(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("erin:x:1004:1004::/home/erin:/bin/sh\n")
    profile = tmp_path / "home/erin/.mozilla/firefox/abcd.default-release"
    profile.mkdir(parents=True)
    (profile / "extensions.json").write_text(json.dumps(EXTENSIONS))
    db = Database([firefox_addons.SPEC], paths=HostPaths(root=str(tmp_path)))
    assert db.execute("SELECT uid, identifier FROM firefox_addons").rows == [
        (1004, "uBlock0@raymondhill.net"),
        (1004, "off@example.org"),
    ]
    assert db.execute("SELECT name FROM firefox_addons WHERE identifier = 'off@example.org'").rows == [("",)]
