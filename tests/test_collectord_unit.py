"""systemd/collectord.service: the directives collectord relies on, and `systemd-analyze verify`."""

from __future__ import annotations

from pathlib import Path

from tests._units import directives, verify

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "collectord.service"
EXEC = "/opt/agentd/venv/bin/collectord"


def test_required_directives():
    d = directives(UNIT.read_text())
    expect = {
        "Type": "notify",
        "NotifyAccess": "main",
        "WatchdogSec": "30",
        "ExecStart": f"{EXEC} --config /etc/collectord/collectord.toml",
        "StateDirectory": "collectord",
        "LogsDirectory": "collectord",
        "User": "collectord",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "Restart": "on-failure",
        "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    }
    for key, value in expect.items():
        assert d.get(key) == [value], key


def test_systemd_analyze_verify(tmp_path):
    result = verify(UNIT.read_text(), "collectord", EXEC, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_verify_catches_a_bad_directive(tmp_path):
    result = verify(UNIT.read_text().replace("ProtectHome=yes", "ProtectHome=sometimes"), "collectord", EXEC, tmp_path)
    assert "ProtectHome" in result.stderr or "protect home" in result.stderr.lower()
