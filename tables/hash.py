"""hash: md5/sha1/sha256 of files, osquery's "table with arguments" (path or directory).

``WHERE path = '/etc/passwd'`` hashes one regular file, ``WHERE directory = '/etc'`` hashes
the regular files directly in it (not recursive, as osquery), and ``LIKE`` patterns use
osquery's ``%``/``%%`` file patterns (:mod:`tables._paths`).  Only the digests the query
selects are computed; files are read in chunks with the query deadline checked between
them.  Unreadable, vanished and non-regular paths yield no row.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Iterator

from ._files import Namespace, directory_entries, namespaces, query_paths
from ._paths import split_path
from .spec import Column, QueryContext, Row, TableSpec

__all__ = ["SPEC", "generate", "hash_file"]

log = logging.getLogger(__name__)

#: Bytes read per chunk; the deadline is checked between chunks.
CHUNK = 1 << 20

DIGESTS = ("md5", "sha1", "sha256")


def hash_file(path: str, algorithms: tuple[str, ...], context: QueryContext | None = None) -> dict[str, str]:
    """Hex digests of ``path`` for each of ``algorithms``, reading the file once.

    Raises OSError when the file cannot be read; calls ``context.check_deadline()``
    between chunks when a context is given.
    """
    hashers = [hashlib.new(name, usedforsecurity=False) for name in algorithms]
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while True:
            n = handle.readinto(buffer)
            if not n:
                break
            chunk = view[:n]
            for hasher in hashers:
                hasher.update(chunk)
            if context is not None:
                context.check_deadline()
    return {name: hasher.hexdigest() for name, hasher in zip(algorithms, hashers, strict=False)}


def _is_regular(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _row(
    path: str, directory: str, real: str, ns: Namespace, algorithms: tuple[str, ...], context: QueryContext
) -> Row | None:
    row: Row = {
        "path": path,
        "directory": directory,
        "pid_with_namespace": ns.pid,
        "mount_namespace_id": ns.mount_namespace_id,
    }
    if algorithms:
        try:
            row.update(hash_file(real, algorithms, context))
        except OSError as exc:  # vanished, unreadable, not readable as a file
            log.debug("hash: skipping %s: %s", real, exc)
            return None
    return row


def generate(context: QueryContext) -> Iterator[Row]:
    algorithms = tuple(name for name in DIGESTS if context.is_column_used(name))
    for ns in namespaces(context):
        named = [(path, split_path(path)[0]) for path in query_paths(context, ns, "path", folders=False)]
        listed = directory_entries(context, ns, query_paths(context, ns, "directory", files=False))
        for source in (named, listed):
            for path, directory in source:
                real = ns.prefix + path
                if not _is_regular(real):
                    continue
                row = _row(path, directory, real, ns, algorithms, context)
                if row is not None:
                    yield row


SPEC = TableSpec(
    name="hash",
    description="Filesystem hash data.",
    columns=(
        Column("path", "TEXT", "Must provide a path or directory", index=True, required=True),
        Column("directory", "TEXT", "Must provide a path or directory", index=True, required=True),
        Column("md5", "TEXT", "MD5 hash of provided filesystem data"),
        Column("sha1", "TEXT", "SHA1 hash of provided filesystem data"),
        Column("sha256", "TEXT", "SHA256 hash of provided filesystem data"),
        Column("pid_with_namespace", "INTEGER", "Pids that contain a namespace", hidden=True, additional=True),
        Column("mount_namespace_id", "TEXT", "Mount namespace id", hidden=True),
    ),
    generate=generate,
    examples=(
        "SELECT * FROM hash WHERE path = '/etc/passwd'",
        "SELECT path, sha256 FROM hash WHERE directory = '/usr/bin'",
        "SELECT path, md5 FROM hash WHERE path LIKE '/etc/%.conf'",
    ),
)
