"""Shared fixtures.

``audit_state``: every test that touches kernel audit uses it (and is marked
``@pytest.mark.audit``).  It takes an exclusive lock so that parallel runs never
overlap, snapshots the audit status and rule list, and afterwards restores that
snapshot and asserts that it is identical.  When the kernel refuses audit the
test is skipped with the reason.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

AUDIT_LOCK = "/tmp/zeek-agent-audit-tests.lock"


@dataclass(frozen=True)
class AuditSnapshot:
    """What a test must leave as it found it."""

    enabled: int
    pid: int
    backlog_limit: int
    backlog_wait_time: int
    rules: tuple[bytes, ...]


def _snapshot(ctl) -> AuditSnapshot:  # noqa: ANN001 - AuditNetlink
    st = ctl.get_status()
    return AuditSnapshot(st.enabled, st.pid, st.backlog_limit, st.backlog_wait_time, tuple(ctl.list_rules()))


def _restore(ctl, want: AuditSnapshot) -> None:  # noqa: ANN001
    from eventsources.audit.netlink import NetlinkError

    now = _snapshot(ctl)
    for rule in now.rules:
        if rule not in want.rules:
            try:
                ctl.delete_rule(rule)
            except NetlinkError as exc:
                if exc.errno != errno.ENOENT:
                    raise
    for rule in want.rules:
        if rule not in now.rules:
            ctl.add_rule(rule)
    if now.pid != want.pid and want.pid == 0:
        try:
            ctl.set_status(pid=0)
        except NetlinkError:
            pass  # another live process owns it: nothing a test can do; the assert will tell
    if (now.backlog_limit, now.backlog_wait_time) != (want.backlog_limit, want.backlog_wait_time):
        ctl.set_status(backlog_limit=want.backlog_limit)
        ctl.set_status(backlog_wait_time=want.backlog_wait_time)
    if now.enabled != want.enabled:
        ctl.set_status(enabled=want.enabled)


@pytest.fixture
def audit_state() -> Iterator[AuditSnapshot]:
    """Exclusive use of kernel audit for one test; restored and checked afterwards."""
    from eventsources.audit.netlink import AuditNetlink, open_audit_socket

    if os.geteuid() != 0:
        pytest.skip("kernel audit tests need root (CAP_AUDIT_CONTROL)")
    with open(AUDIT_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            ctl = AuditNetlink(open_audit_socket())
        except OSError as exc:
            pytest.skip(f"the kernel refuses an audit netlink socket: {exc}")
        try:
            try:
                before = _snapshot(ctl)
            except OSError as exc:
                pytest.skip(f"the kernel refuses audit control (AUDIT_GET): {exc}")
            if before.pid and before.pid != os.getpid() and os.path.exists(f"/proc/{before.pid}"):
                pytest.skip(f"another process (pid {before.pid}) owns kernel audit; not touching it")
            try:
                yield before
            finally:
                _restore(ctl, before)
                after = _snapshot(ctl)
                assert after == before, f"audit state changed by the test: before={before} after={after}"
        finally:
            ctl.close()
