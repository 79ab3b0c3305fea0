"""osquery's file patterns for the ``file`` and ``hash`` tables (``path LIKE '/etc/%'``).

osquery turns a LIKE pattern into a glob (filesystem.cpp ``resolveFilePattern``):

* ``%`` matches within one path component, like a glob ``*``; as in glob(3) it does not
  match a leading ``.`` (hidden entries are only found when the pattern names the dot);
* a pattern ending in ``%%`` also descends: every entry below the matches, at any depth
  (bounded at :data:`MAX_DEPTH` levels, symlinked directories are not descended into);
* ``%%`` anywhere else acts as ``%``; every other character is literal (``_`` too);
* directories come back with a trailing ``/`` (glob's GLOB_MARK), which is how osquery
  reports them and how ``folders``/``files`` tell them apart.

:func:`compile_pattern` is pure; :func:`expand` walks the filesystem.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = ["MAX_DEPTH", "FilePattern", "compile_pattern", "expand", "split_path"]

#: osquery's kMaxRecursiveGlobs: how many levels a trailing ``%%`` descends.
MAX_DEPTH = 64


@dataclass(frozen=True, slots=True)
class FilePattern:
    """A LIKE pattern split into components: literal names or compiled wildcards."""

    absolute: bool
    parts: tuple[str | re.Pattern[str], ...]
    recursive: bool  # ended in %%: everything below the last component's matches


def compile_pattern(pattern: str) -> FilePattern:
    """Parse an osquery file pattern (pure: no filesystem access)."""
    text = pattern
    recursive = False
    stripped = text.rstrip("/")
    if stripped.endswith("%%"):
        recursive = True
        text = stripped
    absolute = text.startswith("/")
    parts: list[str | re.Pattern[str]] = []
    for component in text.split("/"):
        if component in ("", "."):
            continue
        if "%" in component:
            regex = "".join(
                "[^/]*" if run.startswith("%") else re.escape(run) for run in re.findall(r"%+|[^%]+", component)
            )
            parts.append(re.compile(regex, re.DOTALL))
        else:
            parts.append(component)
    return FilePattern(absolute=absolute, parts=tuple(parts), recursive=recursive)


def split_path(path: str) -> tuple[str, str]:
    """(directory, filename) the way osquery's boost paths report them.

    ``/etc/passwd`` -> (``/etc``, ``passwd``); a directory from a pattern, ``/etc/ssl/``,
    -> (``/etc/ssl``, ``.``); ``/`` -> (``""``, ``/``).
    """
    if path == "/":
        return "", "/"
    if path.endswith("/"):
        return path.rstrip("/") or "/", "."
    head, tail = os.path.split(path)
    if head and head != "/" and head.endswith("/"):
        head = head.rstrip("/") or "/"
    return head, tail


def _matches(part: str | re.Pattern[str], name: str) -> bool:
    if isinstance(part, str):
        return part == name
    if name.startswith(".") and not part.pattern.startswith(r"\."):
        return False  # glob(3): a wildcard never matches a leading dot
    return part.fullmatch(name) is not None


def _is_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:
        return False


def _children(directory: str) -> list[tuple[str, bool, bool]]:
    """(name, is_dir following links, is_symlink) of a directory's entries, sorted."""
    try:
        with os.scandir(directory) as it:
            entries = []
            for entry in it:
                try:
                    is_link = entry.is_symlink()
                    is_dir = entry.is_dir(follow_symlinks=True)
                except OSError:
                    is_link, is_dir = False, False
                entries.append((entry.name, is_dir, is_link))
    except OSError:
        return []  # unreadable or vanished: nothing matches below it
    entries.sort()
    return entries


def _join(base: str, name: str) -> str:
    return base + name if base.endswith("/") else f"{base}/{name}"


def expand(
    pattern: str,
    *,
    folders: bool = True,
    files: bool = True,
    check: Callable[[], None] | None = None,
    max_depth: int = MAX_DEPTH,
) -> Iterator[str]:
    """Yield the existing paths ``pattern`` matches; directories end in ``/``.

    ``folders``/``files`` keep only directories or only non-directories (osquery's
    GLOB_FOLDERS / GLOB_FILES); ``check`` is called now and then (the query deadline).
    """
    compiled = compile_pattern(pattern)
    root = "/" if compiled.absolute else "."
    # (path so far, is a directory) after matching each component in turn
    level: list[tuple[str, bool]] = [(root if compiled.absolute else "", True)]
    for part in compiled.parts:
        following: list[tuple[str, bool]] = []
        for base, is_dir in level:
            if not is_dir:
                continue
            if check is not None:
                check()
            if isinstance(part, str):
                candidate = _join(base, part) if base else part
                if os.path.lexists(candidate):
                    following.append((candidate, _is_dir(candidate)))
                continue
            for name, child_is_dir, _link in _children(base or root):
                if _matches(part, name):
                    following.append((_join(base, name) if base else name, child_is_dir))
        level = following
        if not level:
            return

    def keep(path: str, is_dir: bool) -> Iterator[str]:
        if is_dir and folders:
            yield path if path.endswith("/") else path + "/"
        elif not is_dir and files:
            yield path

    if not compiled.parts:  # the pattern named the root itself
        for path, is_dir in level:
            yield from keep(path or root, is_dir)
        return
    for path, is_dir in level:
        yield from keep(path, is_dir)
    if not compiled.recursive:
        return
    # trailing %%: descend below every directory matched so far, one level at a time
    frontier = [path for path, is_dir in level if is_dir and not os.path.islink(path)]
    for _depth in range(1, max_depth):
        following_dirs: list[str] = []
        for directory in frontier:
            if check is not None:
                check()
            for name, is_dir, is_link in _children(directory):
                if name.startswith("."):
                    continue
                child = _join(directory, name)
                yield from keep(child, is_dir)
                if is_dir and not is_link:
                    following_dirs.append(child)
        if not following_dirs:
            return
        frontier = following_dirs
