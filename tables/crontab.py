"""crontab: line-parsed system and user crontabs."""

from __future__ import annotations

import re
from collections.abc import Iterator

from ._files import list_files, namespace_views, read_text
from .spec import Column, HostPaths, QueryContext, Row, TableSpec

__all__ = ["SPEC", "crontab_files", "generate", "parse_crontab"]

_ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\s*=")
_FIELDS = ("minute", "hour", "day_of_month", "month", "day_of_week")
_BLANKS = " \t"
_BLANK_RUN = re.compile("[ \t]+")


def parse_crontab(text: str) -> list[Row]:
    """Jobs of a crontab(5) file: five time fields and the command, or an ``@event`` and the command.

    Comments, blank lines and environment assignments (``SHELL=/bin/sh``) are skipped, as are
    lines with too few fields.  As osquery, the line is split on blanks (spaces and tabs), so
    the command's words are joined by one space, and for system crontabs the user field stays
    at the start of ``command``.
    """
    rows = []
    for raw in text.split("\n"):
        line = raw.strip(_BLANKS + "\r")
        if not line or line.startswith("#") or _ENV_ASSIGNMENT.match(line):
            continue
        words = [w for w in re.split(_BLANK_RUN, line) if w]
        if line.startswith("@"):
            if len(words) < 2:
                continue  # an event without a command (osquery skips it)
            row = dict.fromkeys(_FIELDS, "")
            row.update(event=words[0], command=" ".join(words[1:]))
            rows.append(row)
            continue
        if len(words) < 6:
            continue
        row = dict(zip(_FIELDS, words[:5], strict=False))
        row.update(event="", command=" ".join(words[5:]))
        rows.append(row)
    return rows


def crontab_files(paths: HostPaths) -> list[str]:
    """Host paths (before the root prefix) of the crontabs cron reads, system ones first."""
    files = ["/etc/crontab"]
    for directory in ("/etc/cron.d", "/var/spool/cron/crontabs", "/var/spool/cron"):
        prefix = paths.host(directory)
        files.extend(directory + f[len(prefix) :] for f in list_files(prefix))
    return files


def generate(context: QueryContext) -> Iterator[Row]:
    """One row per job of every crontab cron reads."""
    for pid_ns, paths in namespace_views(context):
        for path in crontab_files(paths):
            text = read_text(paths.host(path))
            if text is None:
                continue
            for row in parse_crontab(text):
                row["path"] = path
                row["pid_with_namespace"] = pid_ns
                yield row


SPEC = TableSpec(
    name="crontab",
    description="Line parsed values from system and user cron/tab.",
    columns=(
        Column("event", "TEXT", "The job @event name (rare)"),
        Column("minute", "TEXT", "The exact minute for the job"),
        Column("hour", "TEXT", "The hour of the day for the job"),
        Column("day_of_month", "TEXT", "The day of the month for the job"),
        Column("month", "TEXT", "The month of the year for the job"),
        Column("day_of_week", "TEXT", "The day of the week for the job"),
        Column("command", "TEXT", "Raw command string"),
        Column("path", "TEXT", "File parsed"),
        Column("pid_with_namespace", "INTEGER", "Pids that contain a namespace", hidden=True, additional=True),
    ),
    generate=generate,
    examples=("SELECT event, minute, hour, command, path FROM crontab",),
)
