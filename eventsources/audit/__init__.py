"""Kernel audit (NETLINK_AUDIT) as an event source for process_events and socket_events.

Modules: netlink (codec, control requests), rules (audit_rule_data), syscalls (audit
architectures and their syscall numbers), records (record text -> fields, damage named),
reassemble (records -> events), rows (events -> table rows), source (the asyncio
AuditSource), logfile (replay of auditd's text log, plain or compressed).
"""

from __future__ import annotations

__all__ = ["AuditSource", "LogInput", "ReplayError", "ReplayStats", "replay"]


def __getattr__(name: str):  # lazy: the parsers must not pull in asyncio/socket code
    if name == "AuditSource":
        from .source import AuditSource

        return AuditSource
    if name in ("LogInput", "ReplayError", "ReplayStats", "replay"):
        from . import logfile

        return getattr(logfile, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
