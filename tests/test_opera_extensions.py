"""opera_extensions: a fixture Opera extension directory."""

from __future__ import annotations

import json
from pathlib import Path

from tables import opera_extensions
from tables.spec import HostPaths
from tables.sqlite import Database


def test_fixture(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("fay:x:1005:1005::/home/fay:/bin/sh\n")
    ext = tmp_path / "home/fay/.config/opera/Extensions/kbmfpngjjgdllneeigpgjifpgocmfgmb/2.0_0"
    ext.mkdir(parents=True)
    (ext / "manifest.json").write_text(
        json.dumps(
            {"name": "Rich Hints", "version": "2.0", "default_locale": "en", "background": {"persistent": False}}
        )
    )
    broken = tmp_path / "home/fay/.config/opera/Extensions/broken/1.0"
    broken.mkdir(parents=True)
    (broken / "manifest.json").write_text("{not json")
    db = Database([opera_extensions.SPEC], paths=HostPaths(root=str(tmp_path)))
    assert db.execute("SELECT * FROM opera_extensions").rows == [
        (
            1005,
            "Rich Hints",
            "kbmfpngjjgdllneeigpgjifpgocmfgmb",
            "2.0",
            "",
            "en",
            "",
            "",
            0,
            "/home/fay/.config/opera/Extensions/kbmfpngjjgdllneeigpgjifpgocmfgmb/2.0_0",
        )
    ]
