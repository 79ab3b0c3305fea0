"""os_version: the distribution's name and version, from /etc/os-release."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterator

from ._files import mount_namespace_id, namespace_views, read_text
from .spec import Column, QueryContext, Row, TableSpec

__all__ = ["SPEC", "generate", "os_version_row", "parse_os_release"]

OS_RELEASE_PATHS = ("/etc/os-release", "/usr/lib/os-release")
_VERSION_NUMBER = re.compile(r"\d+(?:\.\d+)*")


def parse_os_release(text: str) -> dict[str, str]:
    """KEY=value pairs of os-release(5); quotes and backslash escapes are undone."""
    values = {}
    for line in text.split("\n"):
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        try:
            parts = shlex.split(raw, comments=False, posix=True)
        except ValueError:  # unbalanced quote: keep the raw text
            parts = [raw.strip("\"'")]
        values[key.strip()] = " ".join(parts)
    return values


def _numbers(release: dict[str, str]) -> list[int]:
    """major, minor, patch: VERSION's leading number when it extends VERSION_ID (22.04.3), else VERSION_ID."""
    version_id = release.get("VERSION_ID", "")
    match = _VERSION_NUMBER.match(release.get("VERSION", ""))
    text = match.group(0) if match and version_id and match.group(0).startswith(version_id) else version_id
    match = _VERSION_NUMBER.match(text)
    return [int(p) for p in match.group(0).split(".")[:3]] if match else []


def os_version_row(release: dict[str, str], arch: str) -> Row:
    """The os_version row for parsed os-release values."""
    numbers = _numbers(release)
    major: int | None
    minor: int | None
    patch: int | None
    if numbers:
        numbers += [0] * (3 - len(numbers))
        major, minor, patch = numbers
    else:
        major = minor = patch = None
    return {
        "name": release.get("NAME", "Linux"),
        "version": release.get("VERSION") or release.get("PRETTY_NAME") or release.get("VERSION_ID", ""),
        "major": major,
        "minor": minor,
        "patch": patch,
        "build": release.get("BUILD_ID", ""),
        "platform": release.get("ID", "linux"),
        "platform_like": release.get("ID_LIKE", ""),
        "codename": release.get("VERSION_CODENAME") or release.get("UBUNTU_CODENAME", ""),
        "arch": arch,
    }


def generate(context: QueryContext) -> Iterator[Row]:
    """One row per namespace view, from os-release."""
    for pid_ns, paths in namespace_views(context):
        text = None
        for path in OS_RELEASE_PATHS:
            text = read_text(paths.host(path))
            if text is not None:
                break
        row = os_version_row(parse_os_release(text or ""), os.uname().machine)
        row["pid_with_namespace"] = pid_ns
        if context.is_column_used("mount_namespace_id"):
            row["mount_namespace_id"] = mount_namespace_id(context.paths, pid_ns or "self")
        yield row


SPEC = TableSpec(
    name="os_version",
    description="A single row containing the operating system name and version.",
    columns=(
        Column("name", "TEXT", "Distribution or product name"),
        Column("version", "TEXT", "Pretty, suitable for presentation, OS version"),
        Column("major", "INTEGER", "Major release version"),
        Column("minor", "INTEGER", "Minor release version"),
        Column("patch", "INTEGER", "Optional patch release"),
        Column("build", "TEXT", "Optional build-specific or variant string"),
        Column("platform", "TEXT", "OS Platform or ID"),
        Column("platform_like", "TEXT", "Closely related platforms"),
        Column("codename", "TEXT", "OS version codename"),
        Column("arch", "TEXT", "OS Architecture"),
        Column("extra", "TEXT", "Optional extra release specification", hidden=True),
        Column("install_date", "BIGINT", "The install date of the OS.", hidden=True),
        Column("revision", "INTEGER", "Update Build Revision of a Windows update", hidden=True),
        Column("pid_with_namespace", "INTEGER", "Pids that contain a namespace", hidden=True, additional=True),
        Column("mount_namespace_id", "TEXT", "Mount namespace id", hidden=True),
    ),
    generate=generate,
    examples=("SELECT name, version, platform, codename FROM os_version",),
)
