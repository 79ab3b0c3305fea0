"""systemd/agentd.service: the directives the daemon relies on, and `systemd-analyze verify`."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "agentd.service"
EXEC = "/opt/agentd/venv/bin/agentd"


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


def test_required_directives():
    d = directives(UNIT.read_text())
    expect = {
        "Type": "notify",
        "NotifyAccess": "main",
        "WatchdogSec": "30",
        "ExecStart": f"{EXEC} --config /etc/agentd/agentd.conf",
        "StateDirectory": "agentd",
        "LogsDirectory": "agentd",
        "ProtectSystem": "strict",
        "ProtectHome": "read-only",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "Restart": "on-failure",
        "TimeoutStopSec": "10",
    }
    for key, value in expect.items():
        assert d.get(key) == [value], key
    caps = set(d["CapabilityBoundingSet"][0].split())
    assert {"CAP_AUDIT_CONTROL", "CAP_AUDIT_READ", "CAP_NET_ADMIN", "CAP_SYS_PTRACE"} <= caps
    assert "CAP_SYS_ADMIN" not in caps


def test_lives_next_to_auditd():
    """No Conflicts= with auditd (hosts that must keep it stay as they are); auditd, when present, starts first."""
    d = directives(UNIT.read_text())
    assert "Conflicts" not in d
    after = " ".join(d["After"]).split()
    assert "auditd.service" in after
    assert "auditd.service" not in " ".join(d.get("Requires", []) + d.get("Wants", []) + d.get("BindsTo", []))
    caps = set(d["CapabilityBoundingSet"][0].split())
    assert "CAP_AUDIT_READ" in caps  # the read-only mode next to auditd


def test_every_capability_is_justified():
    text = UNIT.read_text()
    caps = directives(text)["CapabilityBoundingSet"][0].split()
    comments = [line for line in text.splitlines() if line.lstrip().startswith("#")]
    for cap in caps:
        assert any(cap in c for c in comments), f"{cap} has no justification comment"


def _verify(unit_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (Debian package: systemd)")
    # verify checks that ExecStart exists; point it at a stand-in executable in tmp_path.
    fake = tmp_path / "agentd"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    unit = tmp_path / "agentd.service"
    unit.write_text(unit_text.replace(EXEC, str(fake)))
    return subprocess.run(
        [tool, "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0"},
    )


def test_systemd_analyze_verify(tmp_path):
    result = _verify(UNIT.read_text(), tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # verify reports bad directives as warnings


def test_verify_catches_a_bad_directive(tmp_path):
    result = _verify(UNIT.read_text().replace("ProtectSystem=strict", "ProtectSystem=sometimes"), tmp_path)
    assert "ProtectSystem" in result.stderr or "protect system" in result.stderr
