"""systemd/agentd.service: the directives the daemon relies on, and `systemd-analyze verify`."""

from __future__ import annotations

from pathlib import Path

from tests._units import directives, verify

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "agentd.service"
EXEC = "/opt/agentd/venv/bin/agentd"


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


def test_systemd_analyze_verify(tmp_path):
    result = verify(UNIT.read_text(), "agentd", EXEC, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # verify reports bad directives as warnings


def test_verify_catches_a_bad_directive(tmp_path):
    result = verify(
        UNIT.read_text().replace("ProtectSystem=strict", "ProtectSystem=sometimes"), "agentd", EXEC, tmp_path
    )
    assert "ProtectSystem" in result.stderr or "protect system" in result.stderr
