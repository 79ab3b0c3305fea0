"""The audit_state fixture itself: a test run killed mid-test is undone by the next audit test."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import AUDIT_JOURNAL, AUDIT_LOCK, _read_journal, _restore, _snapshot

REPO = Path(__file__).resolve().parent.parent

KILLED = textwrap.dedent(
    """
    import os, signal
    import pytest
    from eventsources.audit.netlink import AuditNetlink, open_audit_socket
    from eventsources.audit.rules import build_rule, native_abis

    @pytest.mark.audit
    def test_killed(audit_state):
        ctl = AuditNetlink(open_audit_socket())
        ctl.add_rule(build_rule(native_abis()[0], ("execve",), key="zeek-agent-journal-test"))
        ctl.set_status(backlog_limit=audit_state.backlog_limit + 17)
        os.kill(os.getpid(), signal.SIGKILL)  # no finally, no fixture teardown
    """
)

NEXT = textwrap.dedent(
    """
    import os
    import pytest
    from tests.conftest import AUDIT_JOURNAL

    @pytest.mark.audit
    def test_next(audit_state):
        assert not any(b"zeek-agent-journal-test" in rule for rule in audit_state.rules), audit_state
        assert os.path.exists(AUDIT_JOURNAL)
    """
)


def _run(name: str, source: str) -> subprocess.CompletedProcess[str]:
    test = REPO / "tests" / f"_journal_{os.getpid()}_{name}.py"  # under tests/: the real conftest applies
    test.write_text(source)
    try:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        test.unlink()


@pytest.mark.audit
def test_a_killed_audit_test_is_restored_by_the_next() -> None:
    from eventsources.audit.netlink import AuditNetlink, open_audit_socket

    if os.geteuid() != 0:
        pytest.skip("kernel audit tests need root (CAP_AUDIT_CONTROL)")
    with open(AUDIT_LOCK, "w") as lock:  # what the kernel held before both runs
        fcntl.flock(lock, fcntl.LOCK_EX)
        ctl = AuditNetlink(open_audit_socket())
        try:
            found = _snapshot(ctl)
        finally:
            ctl.close()
    try:
        killed = _run("killed", KILLED)
        assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
        left = _read_journal()
        assert left is not None and left.rules == found.rules
        nxt = _run("next", NEXT)
        assert nxt.returncode == 0, nxt.stdout + nxt.stderr
        assert not os.path.exists(AUDIT_JOURNAL)
    finally:
        with open(AUDIT_LOCK, "w") as lock:  # whatever happened above, leave what was found
            fcntl.flock(lock, fcntl.LOCK_EX)
            ctl = AuditNetlink(open_audit_socket())
            try:
                _restore(ctl, found)
                assert _snapshot(ctl) == found
            finally:
                ctl.close()
            if os.path.exists(AUDIT_JOURNAL) and _read_journal() == found:
                os.unlink(AUDIT_JOURNAL)
