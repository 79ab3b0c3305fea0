"""kernel_info: the running kernel's version, boot image, root device and arguments."""

from __future__ import annotations

import os
from collections.abc import Iterator

from ._files import read_text
from .spec import Column, QueryContext, Row, TableSpec
from .text import fields

__all__ = ["SPEC", "generate", "parse_cmdline", "parse_proc_version"]


def parse_proc_version(text: str) -> str | None:
    """The release from /proc/version (``Linux version 6.1.0-18-amd64 (...) ...``)."""
    fields = text.split()
    if len(fields) >= 3 and fields[1] == "version":
        return fields[2]
    return None


def parse_cmdline(text: str) -> dict[str, str]:
    """path (BOOT_IMAGE=), device (root=) and the other arguments, space-joined."""
    path = device = ""
    arguments = []
    for arg in fields(text):
        if arg.startswith("BOOT_IMAGE="):
            path = arg[len("BOOT_IMAGE=") :]
        elif arg.startswith("root="):
            device = arg[len("root=") :]
        else:
            arguments.append(arg)
    return {"path": path, "device": device, "arguments": " ".join(arguments)}


def generate(context: QueryContext) -> Iterator[Row]:
    """The single kernel_info row."""
    proc = context.paths.proc
    version = parse_proc_version(read_text(os.path.join(proc, "version")) or "")
    if version is None and proc == "/proc":
        version = os.uname().release
    row: Row = {"version": version}
    row.update(parse_cmdline(read_text(os.path.join(proc, "cmdline")) or ""))
    yield row


SPEC = TableSpec(
    name="kernel_info",
    description="Basic active kernel information.",
    columns=(
        Column("version", "TEXT", "Kernel version"),
        Column("arguments", "TEXT", "Kernel arguments"),
        Column("path", "TEXT", "Kernel path"),
        Column("device", "TEXT", "Kernel device identifier"),
    ),
    generate=generate,
    examples=("SELECT version, path, device FROM kernel_info",),
)
