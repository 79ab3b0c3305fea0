"""portage_packages: installed Gentoo packages from /var/db/pkg (no rows on other systems)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

from ._files import read_text
from .spec import Column, QueryContext, Row, TableSpec

__all__ = ["SPEC", "generate", "split_package_version"]

# The version starts at the last "-<digit>" (PMS: name-version[-rREV]).
_VERSION = re.compile(r"-(\d[^-]*(?:-r\d+)?)$")


def split_package_version(name: str) -> tuple[str, str]:
    """``openssl-3.0.13-r1`` -> (``openssl``, ``3.0.13-r1``); no version: (name, "")."""
    match = _VERSION.search(name)
    if not match:
        return name, ""
    return name[: match.start()], match.group(1)


def _int(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(text) if text.isdigit() else None


def generate(context: QueryContext) -> Iterator[Row]:
    """One row per installed package (category/name), with its world-set membership."""
    db = context.paths.host("/var/db/pkg")
    if not os.path.isdir(db):
        return
    world = set((read_text(context.paths.host("/var/lib/portage/world")) or "").split())
    for category in sorted(os.listdir(db)):
        cat_dir = os.path.join(db, category)
        if not os.path.isdir(cat_dir):
            continue
        for entry in sorted(os.listdir(cat_dir)):
            pkg_dir = os.path.join(cat_dir, entry)
            if not os.path.isdir(pkg_dir):
                continue
            name, version = split_package_version(entry)
            package = f"{category}/{name}"
            yield {
                "package": package,
                "version": version,
                "slot": (read_text(os.path.join(pkg_dir, "SLOT")) or "").strip(),
                "build_time": _int(read_text(os.path.join(pkg_dir, "BUILD_TIME"))),
                "repository": (read_text(os.path.join(pkg_dir, "repository")) or "").strip(),
                "eapi": _int(read_text(os.path.join(pkg_dir, "EAPI"))),
                "size": _int(read_text(os.path.join(pkg_dir, "SIZE"))),
                "world": 1 if package in world else 0,
            }


SPEC = TableSpec(
    name="portage_packages",
    description="List of currently installed packages.",
    columns=(
        Column("package", "TEXT", "Package name"),
        Column("version", "TEXT", "The version which are affected by the use flags, empty means all"),
        Column("slot", "TEXT", "The slot used by package"),
        Column("build_time", "BIGINT", "Unix time when package was built"),
        Column("repository", "TEXT", "From which repository the ebuild was used"),
        Column("eapi", "BIGINT", "The eapi for the ebuild"),
        Column("size", "BIGINT", "The size of the package"),
        Column("world", "INTEGER", "If package is in the world file"),
    ),
    generate=generate,
    examples=("SELECT package, version, slot FROM portage_packages",),
)
