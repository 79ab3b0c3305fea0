"""system_controls: Linux sysctl values from /proc/sys and the sysctl.d configuration."""

from __future__ import annotations

import os
from collections.abc import Iterator

from ._files import list_files, read_text
from .procfs import read_attr
from .spec import Column, HostPaths, QueryContext, Row, TableSpec

__all__ = ["CONFIG_DIRS", "SPEC", "generate", "parse_sysctl_conf"]

#: sysctl.d directories in sysctl(8)'s order: a later file overrides an earlier one.
CONFIG_DIRS = ("/usr/lib/sysctl.d", "/lib/sysctl.d", "/usr/local/lib/sysctl.d", "/run/sysctl.d", "/etc/sysctl.d")


def parse_sysctl_conf(text: str) -> dict[str, str]:
    """``name = value`` lines of a sysctl.conf(5) file; ``#``/``;`` comments skipped.

    Names written with ``/`` separators are normalised to dots; a leading ``-`` (ignore
    errors) is dropped.
    """
    values: dict[str, str] = {}
    for raw in text.split("\n"):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        name, sep, value = line.partition("=")
        if not sep:
            continue
        name = name.strip().lstrip("-").replace("/", ".")
        if name:
            values[name] = value.strip()
    return values


def _config(paths: HostPaths) -> dict[str, str]:
    config: dict[str, str] = {}
    by_name: dict[str, str] = {}
    for directory in CONFIG_DIRS:
        for path in list_files(paths.host(directory)):
            if path.endswith(".conf"):
                by_name[os.path.basename(path)] = path  # same file name: the later directory wins
    for name in sorted(by_name):
        config.update(parse_sysctl_conf(read_text(by_name[name]) or ""))
    config.update(parse_sysctl_conf(read_text(paths.host("/etc/sysctl.conf")) or ""))
    return config


def _leaves(directory: str, context: QueryContext) -> Iterator[str]:
    """Control files below ``directory``: subdirectories first, then files, like osquery."""
    context.check_deadline()
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        return
    dirs = [e.path for e in entries if e.is_dir(follow_symlinks=False)]
    files = [e.path for e in entries if not e.is_dir(follow_symlinks=False)]
    for d in dirs:
        yield from _leaves(d, context)
    yield from files


def generate(context: QueryContext) -> Iterator[Row]:
    """One row per control; ``name`` and ``subsystem`` constraints limit the walk."""
    root = f"{context.paths.proc}/sys"
    config = _config(context.paths)
    names = context.values("name")
    subsystems = context.values("subsystem")
    if names is not None:
        starts = [f"{root}/{str(n).replace('.', '/')}" for n in sorted(names, key=str)]
    else:
        try:
            tops = sorted(e.name for e in os.scandir(root) if e.is_dir(follow_symlinks=False))
        except OSError:
            return
        starts = [f"{root}/{t}" for t in tops if subsystems is None or t in subsystems]
    for start in starts:
        leaves = _leaves(start, context) if os.path.isdir(start) else ([start] if os.path.exists(start) else [])
        for path in leaves:
            name = path[len(root) + 1 :].replace("/", ".")
            yield {
                "name": name,
                "oid": "",
                "subsystem": name.split(".", 1)[0],
                "current_value": read_attr(path),  # None: write-only (vm.drop_caches) or refused
                "config_value": config.get(name),
                "type": "string",
            }


SPEC = TableSpec(
    name="system_controls",
    description="sysctl names, values, and settings information.",
    columns=(
        Column("name", "TEXT", "Full sysctl MIB name", index=True),
        Column("oid", "TEXT", "Control MIB", additional=True),
        Column("subsystem", "TEXT", "Subsystem ID, control type", additional=True),
        Column("current_value", "TEXT", "Value of setting"),
        Column("config_value", "TEXT", "The MIB value set in /etc/sysctl.conf"),
        Column("type", "TEXT", "Data type"),
    ),
    generate=generate,
    examples=("SELECT name, current_value, config_value FROM system_controls WHERE name = 'net.ipv4.ip_forward'",),
)
