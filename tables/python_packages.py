"""python_packages: Python distributions (dist-info / egg-info) in system and per-user site-packages."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator

from ._files import namespace_views, read_text
from ._homes import user_homes
from .spec import Column, HostPaths, QueryContext, Row, TableSpec

__all__ = ["SPEC", "generate", "parse_metadata", "site_directories"]

#: System locations osquery searches (globs: every installed Python version).
_SYSTEM_PATTERNS = (
    "/usr/local/lib/python3*/dist-packages",
    "/usr/local/lib/python3*/site-packages",
    "/usr/lib/python3/dist-packages",
    "/usr/lib/python3*/dist-packages",
    "/usr/lib/python3*/site-packages",
    "/usr/lib64/python3*/site-packages",
    "/usr/local/lib64/python3*/site-packages",
    "/usr/local/lib/python2*/dist-packages",
    "/usr/local/lib/python2*/site-packages",
    "/usr/lib/python2*/dist-packages",
    "/usr/lib/python2*/site-packages",
)
_USER_PATTERN = ".local/lib/python*/site-packages"
_FIELDS = {"Name": "name", "Version": "version", "Summary": "summary", "Author": "author", "License": "license"}


def parse_metadata(text: str) -> dict[str, str]:
    """The RFC 822 header of a METADATA/PKG-INFO file -> {name, version, summary, author, license}."""
    values: dict[str, str] = {}
    for line in text.split("\n"):
        if not line.strip():
            break  # the description body follows the blank line
        if line[:1].isspace():
            continue  # a continuation line (multi-line License)
        key, sep, value = line.partition(":")
        column = _FIELDS.get(key.strip())
        if sep and column and column not in values:
            values[column] = value.strip()
    return values


def _expand(paths: HostPaths, pattern: str) -> list[str]:
    prefix = paths.host("/").rstrip("/")
    return sorted(p[len(prefix) :] if prefix else p for p in glob.glob(paths.host(pattern)) if os.path.isdir(p))


def site_directories(context: QueryContext, paths: HostPaths) -> list[tuple[int, str]]:
    """(uid, directory) pairs: system directories (uid 0) and each user's ~/.local site-packages."""
    dirs: list[tuple[int, str]] = []
    wanted = context.values("uid")
    if wanted is None or 0 in wanted:
        seen: set[str] = set()
        for pattern in _SYSTEM_PATTERNS:
            for d in _expand(paths, pattern):
                if d not in seen:
                    seen.add(d)
                    dirs.append((0, d))
    for uid, home in user_homes(context, paths):
        for d in _expand(paths, f"{home.rstrip('/')}/{_USER_PATTERN}"):
            dirs.append((uid, d))
    return dirs


def _packages(paths: HostPaths, directory: str) -> Iterator[tuple[str, dict[str, str]]]:
    try:
        names = sorted(os.listdir(paths.host(directory)))
    except OSError:
        return
    for name in names:
        if name.endswith(".dist-info"):
            meta = f"{directory}/{name}/METADATA"
        elif name.endswith(".egg-info"):
            meta = (
                f"{directory}/{name}/PKG-INFO"
                if os.path.isdir(paths.host(f"{directory}/{name}"))
                else f"{directory}/{name}"
            )
        else:
            continue
        text = read_text(paths.host(meta))
        if text is not None:
            yield f"{directory}/{name}", parse_metadata(text)


def generate(context: QueryContext) -> Iterator[Row]:
    """One row per installed distribution; ``directory`` constraints limit the scan."""
    wanted_dirs = context.values("directory")
    for pid_ns, paths in namespace_views(context):
        pairs = [(0, d) for d in sorted(wanted_dirs)] if wanted_dirs is not None else site_directories(context, paths)
        for uid, directory in pairs:
            context.check_deadline()
            for path, meta in _packages(paths, directory):
                yield {
                    "name": meta.get("name", ""),
                    "uid": uid,
                    "version": meta.get("version", ""),
                    "summary": meta.get("summary", ""),
                    "author": meta.get("author", ""),
                    "license": meta.get("license", ""),
                    "path": path,
                    "directory": directory,
                    "pid_with_namespace": pid_ns,
                }


SPEC = TableSpec(
    name="python_packages",
    description="Python packages installed in a system.",
    columns=(
        Column("name", "TEXT", "Package display name"),
        Column("uid", "BIGINT", "The local user that owns the python package", index=True),
        Column("version", "TEXT", "Package-supplied version"),
        Column("summary", "TEXT", "Package-supplied summary"),
        Column("author", "TEXT", "Optional package author"),
        Column("license", "TEXT", "License under which package is launched"),
        Column("path", "TEXT", "Path at which this module resides"),
        Column("directory", "TEXT", "Directory where Python modules are located", index=True),
        Column("pid_with_namespace", "INTEGER", "Pids that contain a namespace", hidden=True, additional=True),
    ),
    generate=generate,
    examples=("SELECT name, version, directory FROM python_packages WHERE name = 'requests'",),
)
