"""chrome_extensions: a fixture Chromium profile with one referenced extension."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from tables import chrome_extensions
from tables.chrome_extensions import extension_id
from tables.spec import HostPaths
from tables.sqlite import Database

KEY = base64.b64encode(b"not a real DER key, but bytes to hash").decode()


def test_extension_id() -> None:
    ext = extension_id(KEY)
    digest = hashlib.sha256(base64.b64decode(KEY)).hexdigest()[:32]
    assert len(ext) == 32 and set(ext) <= set("abcdefghijklmnop")
    assert ext == "".join("abcdefghijklmnop"[int(c, 16)] for c in digest)


def test_fixture_profile(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("dave:x:1003:1003::/home/dave:/bin/sh\n")
    profile = tmp_path / "home/dave/.config/chromium/Default"
    ext_dir = profile / "Extensions/abcdefghijklmnopabcdefghijklmnop/1.2.3_0"
    ext_dir.mkdir(parents=True)
    manifest = {
        "name": "Test Ext",
        "version": "1.2.3",
        "description": "d",
        "permissions": ["tabs", "storage"],
        "background": {"persistent": True},
        "author": {"email": "a@example.org"},
        "key": KEY,
    }
    (ext_dir / "manifest.json").write_text(json.dumps(manifest))
    prefs = {
        "profile": {"name": "Person 1"},
        "extensions": {
            "settings": {
                "abcdefghijklmnopabcdefghijklmnop": {
                    "install_time": "13350000000000000",
                    "state": 1,
                    "from_webstore": True,
                }
            }
        },
    }
    (profile / "Preferences").write_text(json.dumps(prefs))
    db = Database([chrome_extensions.SPEC], paths=HostPaths(root=str(tmp_path)))
    row = db.execute("SELECT * FROM chrome_extensions").dicts()[0]
    assert row["browser_type"] == "chromium" and row["uid"] == 1003 and row["name"] == "Test Ext"
    assert row["profile"] == "Person 1" and row["profile_path"] == "/home/dave/.config/chromium/Default"
    assert row["referenced_identifier"] == "abcdefghijklmnopabcdefghijklmnop" and row["referenced"] == 1
    assert row["identifier"] == extension_id(KEY)
    assert row["permissions"] == "tabs, storage" and row["persistent"] == 1 and row["author"] == "a@example.org"
    assert row["install_timestamp"] == 13350000000000000 // 1_000_000 - 11644473600
    assert row["path"] == "/home/dave/.config/chromium/Default/Extensions/abcdefghijklmnopabcdefghijklmnop/1.2.3_0"
    assert row["manifest_hash"] == hashlib.sha256((ext_dir / "manifest.json").read_bytes()).hexdigest()
