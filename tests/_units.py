"""systemd unit files in tests: their directives, and `systemd-analyze verify` of a unit text."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def directives(text: str) -> dict[str, list[str]]:
    """``Key=value`` lines of a unit file (comments and sections dropped), values per key in order."""
    out: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def verify(unit_text: str, name: str, exec_path: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` of ``unit_text`` saved as ``name``.service (skips without the tool).

    verify checks that ExecStart exists: ``exec_path`` is pointed at a stand-in executable in tmp_path.
    """
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (Debian package: systemd)")
    fake = tmp_path / name
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    unit = tmp_path / f"{name}.service"
    unit.write_text(unit_text.replace(exec_path, str(fake)))
    return subprocess.run(
        [tool, "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0"},
    )
