"""Shared fixtures.

``audit_state``: every test that touches kernel audit uses it (and is marked
``@pytest.mark.audit``).  It takes an exclusive lock so that parallel runs never
overlap, snapshots the audit status and rule list, and afterwards restores that
snapshot and asserts that it is identical.  When the kernel refuses audit the
test is skipped with the reason.  The snapshot is also written to a journal file
for as long as the test runs: a test run killed mid-test (a timeout, Ctrl-C twice,
SIGKILL) cannot restore, so the next test that takes the lock restores the journal's
state first instead of taking the leftovers as what it must keep.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

AUDIT_LOCK = "/tmp/zeek-agent-audit-tests.lock"
#: The state a running audit test must restore; present only while one runs (or after one was killed).
AUDIT_JOURNAL = "/tmp/zeek-agent-audit-tests.journal"


@dataclass(frozen=True)
class AuditSnapshot:
    """What a test must leave as it found it."""

    enabled: int
    pid: int
    backlog_limit: int
    backlog_wait_time: int
    rules: tuple[bytes, ...]


def _snapshot(ctl) -> AuditSnapshot:
    st = ctl.get_status()
    return AuditSnapshot(st.enabled, st.pid, st.backlog_limit, st.backlog_wait_time, tuple(ctl.list_rules()))


def _write_journal(snapshot: AuditSnapshot) -> None:
    data = {**snapshot.__dict__, "rules": [rule.hex() for rule in snapshot.rules]}
    tmp = AUDIT_JOURNAL + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, AUDIT_JOURNAL)


def _read_journal() -> AuditSnapshot | None:
    try:
        with open(AUDIT_JOURNAL) as f:
            data = json.load(f)
        return AuditSnapshot(**{**data, "rules": tuple(bytes.fromhex(rule) for rule in data["rules"])})
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise RuntimeError(f"{AUDIT_JOURNAL} is unreadable ({exc}): remove it after checking the audit state") from exc


def _restore(ctl, want: AuditSnapshot) -> None:
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
            interrupted = _read_journal()
            if interrupted is not None and interrupted != before:
                # A test was killed before it could restore: what it found is what must be kept.
                _restore(ctl, interrupted)
                before = _snapshot(ctl)
            _write_journal(before)
            try:
                yield before
            finally:
                _restore(ctl, before)
                after = _snapshot(ctl)
                if after == before:
                    os.unlink(AUDIT_JOURNAL)
                assert after == before, f"audit state changed by the test: before={before} after={after}"
        finally:
            ctl.close()


@dataclass(frozen=True)
class CgroupChild:
    """A cgroup v2 directory made for one test, named like a docker container's scope."""

    directory: str  # under the cgroup2 mount
    path: str  # as /proc/PID/cgroup shows it ("0::<path>")
    container_id: str

    def enter_and_exec(self, *argv: str) -> list[str]:
        """A command line: a shell that moves itself into this cgroup, then execs ``argv``."""
        return ["/bin/sh", "-c", f'echo $$ > {self.directory}/cgroup.procs && exec "$@"', "sh", *argv]


def _cgroup2_mount() -> str | None:
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            for line in f:
                before, _, after = line.partition(" - ")
                if after.split(" ", 1)[0] == "cgroup2":
                    return before.split()[4]
    except OSError:
        return None
    return None


@pytest.fixture
def cgroup_child() -> Iterator[CgroupChild]:
    """A new cgroup v2 child (removed afterwards) to put a spawned process in."""
    import secrets

    if os.geteuid() != 0:
        pytest.skip("creating a cgroup needs root")
    mount = _cgroup2_mount()
    if mount is None:
        pytest.skip("no cgroup2 hierarchy is mounted")
    cid = secrets.token_hex(32)
    parent = os.path.join(mount, f"zeek-agent-test-{os.getpid()}")
    directory = os.path.join(parent, f"docker-{cid}.scope")
    try:
        os.makedirs(directory)
    except OSError as exc:
        pytest.skip(f"the kernel refused a new cgroup under {mount}: {exc}")
    try:
        yield CgroupChild(directory, f"/{os.path.basename(parent)}/docker-{cid}.scope", cid)
    finally:
        for d in (directory, parent):  # the test's processes have exited: the cgroups are empty
            try:
                os.rmdir(d)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise
