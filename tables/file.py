"""file: stat() of paths, osquery's "table with arguments" (path or directory).

``WHERE path = '/etc/passwd'`` describes one path, ``WHERE directory = '/etc'`` every entry
directly in a directory (hidden ones included), and ``LIKE`` patterns use osquery's file
patterns: ``'/etc/%'`` one level, ``'/etc/%%'`` every level below (:mod:`tables._paths`;
directories found by a pattern end in ``/`` as in osquery).  Like osquery the row
describes what a symlink points to (``symlink = 1`` and ``symlink_target_path`` say it is
a link); a dangling link is described by the link itself.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator

from ._files import directory_entries, namespaces, query_paths
from ._paths import split_path
from .spec import Column, QueryContext, Row, TableSpec

__all__ = ["SPEC", "file_row", "file_type", "generate", "lsperms"]

log = logging.getLogger(__name__)

_TYPES = (
    (stat.S_ISREG, "regular"),
    (stat.S_ISDIR, "directory"),
    (stat.S_ISLNK, "symlink"),
    (stat.S_ISBLK, "block"),
    (stat.S_ISCHR, "character"),
    (stat.S_ISFIFO, "fifo"),
    (stat.S_ISSOCK, "socket"),
)


def lsperms(mode: int) -> str:
    """osquery's mode text: four octal digits, setuid/setgid/sticky first (``"0644"``)."""
    return f"{stat.S_IMODE(mode):04o}"


def file_type(mode: int) -> str:
    """osquery's type name for a stat mode ("regular", "directory", ...)."""
    for test, name in _TYPES:
        if test(mode):
            return name
    return "unknown"


def file_row(path: str, directory: str | None, real: str | None = None) -> Row | None:
    """One row for ``path`` (stat'ed at ``real``, default ``path``); None if it is gone."""
    real = path if real is None else real
    try:
        link = os.lstat(real)
    except OSError as exc:  # vanished, unreadable parent, too many links
        log.debug("file: skipping %s: %s", real, exc)
        return None
    is_link = stat.S_ISLNK(link.st_mode)
    target = None
    followed = link
    if is_link:
        try:
            target = os.readlink(real)
        except OSError:
            target = None
        try:
            followed = os.stat(real)
        except OSError:
            followed = link  # dangling: describe the link itself
    directory_out, filename = split_path(path)
    return {
        "path": path,
        "directory": directory if directory is not None else directory_out,
        "filename": filename,
        "inode": followed.st_ino,
        "uid": followed.st_uid,
        "gid": followed.st_gid,
        "mode": lsperms(followed.st_mode),
        "device": followed.st_rdev,
        "size": followed.st_size,
        "block_size": followed.st_blksize,
        "atime": int(followed.st_atime),
        "mtime": int(followed.st_mtime),
        "ctime": int(followed.st_ctime),
        "btime": int(getattr(followed, "st_birthtime", 0)),
        "hard_links": followed.st_nlink,
        "symlink": 1 if is_link else 0,
        "type": file_type(followed.st_mode),
        "symlink_target_path": target,
    }


def generate(context: QueryContext) -> Iterator[Row]:
    for ns in namespaces(context):
        extra = {"pid_with_namespace": ns.pid, "mount_namespace_id": ns.mount_namespace_id}
        named = [(path, None) for path in query_paths(context, ns, "path")]
        listed = directory_entries(context, ns, query_paths(context, ns, "directory", files=False))
        for source in (named, listed):
            for path, directory in source:
                row = file_row(path, directory, ns.prefix + path)
                if row is not None:
                    row.update(extra)
                    yield row


SPEC = TableSpec(
    name="file",
    description="Interactive filesystem attributes and metadata.",
    columns=(
        Column("path", "TEXT", "Absolute file path", index=True, required=True),
        Column("directory", "TEXT", "Directory of file(s)", index=True, required=True),
        Column("filename", "TEXT", "Name portion of file path"),
        Column("inode", "BIGINT", "Filesystem inode number"),
        Column("uid", "BIGINT", "Owning user ID"),
        Column("gid", "BIGINT", "Owning group ID"),
        Column("mode", "TEXT", "Permission bits"),
        Column("device", "BIGINT", "Device ID (optional)"),
        Column("size", "BIGINT", "Size of file in bytes"),
        Column("block_size", "INTEGER", "Block size of filesystem"),
        Column("atime", "BIGINT", "Last access time"),
        Column("mtime", "BIGINT", "Last modification time"),
        Column("ctime", "BIGINT", "Last status change time"),
        Column("btime", "BIGINT", "(B)irth or (cr)eate time"),
        Column("hard_links", "INTEGER", "Number of hard links"),
        Column("symlink", "INTEGER", "1 if the path is a symlink, otherwise 0"),
        Column("type", "TEXT", "File status"),
        Column("symlink_target_path", "TEXT", "Full path of the symlink target if any"),
        Column(
            "attributes", "TEXT", "File attribute string (osquery: Windows only; always NULL on Linux)", hidden=True
        ),
        Column(
            "volume_serial", "TEXT", "Volume serial number (osquery: Windows only; always NULL on Linux)", hidden=True
        ),
        Column("file_id", "TEXT", "File ID (osquery: Windows only; always NULL on Linux)", hidden=True),
        Column("file_version", "TEXT", "File version (osquery: Windows only; always NULL on Linux)", hidden=True),
        Column(
            "product_version",
            "TEXT",
            "Product version of the file (osquery: Windows only; always NULL on Linux)",
            hidden=True,
        ),
        Column(
            "original_filename",
            "TEXT",
            "Original file name of an executable (osquery: Windows only; always NULL on Linux)",
            hidden=True,
        ),
        Column(
            "shortcut_target_path",
            "TEXT",
            "Path a shortcut points to (osquery: Windows only; always NULL on Linux)",
            hidden=True,
        ),
        Column(
            "shortcut_target_type",
            "TEXT",
            "Type name of a shortcut's target (osquery: Windows only; always NULL on Linux)",
            hidden=True,
        ),
        Column(
            "shortcut_target_location",
            "TEXT",
            "Folder holding a shortcut's target (osquery: Windows only; always NULL on Linux)",
            hidden=True,
        ),
        Column(
            "shortcut_start_in",
            "TEXT",
            "Working directory of a shortcut (osquery: Windows only; always NULL on Linux)",
            hidden=True,
        ),
        Column(
            "shortcut_run",
            "TEXT",
            "Window mode a shortcut runs its target in (osquery: Windows only; always NULL on Linux)",
            hidden=True,
        ),
        Column(
            "shortcut_comment",
            "TEXT",
            "Comment of a shortcut (osquery: Windows only; always NULL on Linux)",
            hidden=True,
        ),
        Column(
            "bsd_flags", "TEXT", "BSD file flags (chflags) (osquery: macOS only; always NULL on Linux)", hidden=True
        ),
        Column("pid_with_namespace", "INTEGER", "Pids that contain a namespace", hidden=True, additional=True),
        Column("mount_namespace_id", "TEXT", "Mount namespace id", hidden=True),
    ),
    generate=generate,
    examples=(
        "SELECT * FROM file WHERE path = '/etc/passwd'",
        "SELECT path, mode, uid FROM file WHERE directory = '/etc'",
        "SELECT path, size FROM file WHERE path LIKE '/etc/%%'",
    ),
)
