"""apt_sources: APT repositories from sources.list, *.list and deb822 *.sources files."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass

from ._files import list_files, namespace_views, read_text
from .spec import Column, HostPaths, QueryContext, Row, TableSpec
from .text import fields as fields_of

__all__ = ["SPEC", "AptSource", "generate", "parse_deb822", "parse_release", "parse_source_line"]


@dataclass(frozen=True, slots=True)
class AptSource:
    """One repository: ``name`` is "host/path suite"; ``cache`` names its /var/lib/apt/lists files."""

    name: str
    base_uri: str
    cache: str


def _source(uri: str, suite: str) -> AptSource | None:
    proto = uri.find("://")
    if proto < 0:
        return None
    uri = uri.rstrip("/")
    target = uri[proto + 3 :]
    if not target:
        return None
    parts = [target, "dists", suite] if "/" not in suite else [target, *suite.split("/")]
    cache = "_".join(p for p in parts if p).replace("/", "_")
    return AptSource(f"{target} {suite}", uri, cache)


def parse_source_line(line: str) -> AptSource | None:
    """A one-line-style ``deb [options] uri suite [components]`` entry (deb-src and comments: None)."""
    line = line.split("#", 1)[0]
    tokens = fields_of(line)
    if not tokens or tokens[0] != "deb":
        return None
    tokens = tokens[1:]
    if tokens and tokens[0].startswith("["):
        end = next((i for i, t in enumerate(tokens) if "]" in t), len(tokens) - 1)
        tokens = tokens[end + 1 :]
    if len(tokens) < 2:
        return None
    return _source(tokens[0], tokens[1])


def parse_deb822(text: str) -> list[AptSource]:
    """Stanzas of a deb822 ``.sources`` file: every URI x Suite of ``Types: deb`` stanzas that are enabled."""
    sources: list[AptSource] = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for raw in block.split("\n"):
            line = raw.split("#", 1)[0]
            key, sep, value = line.partition(":")
            if sep and value.strip() and not raw[:1].isspace():
                fields[key.strip().lower()] = value.strip()
        if "deb" not in fields_of(fields.get("types", "")):
            continue
        if fields.get("enabled", "yes").lower() in ("no", "false", "off"):
            continue
        for uri in fields_of(fields.get("uris", "")):
            for suite in fields_of(fields.get("suites", "")):
                source = _source(uri, suite)
                if source is not None:
                    sources.append(source)
    return sources


def parse_release(text: str) -> dict[str, str]:
    """Header fields of an APT Release/InRelease file (stops at the PGP signature)."""
    fields = {}
    for line in text.split("\n"):
        if line.startswith("-----BEGIN PGP SIGNATURE"):
            break
        key, sep, value = line.partition(":")
        if sep and not line[:1].isspace():
            fields[key.strip()] = value.strip()
    return fields


def _source_files(paths: HostPaths) -> tuple[list[str], list[str]]:
    """Host paths (before the root prefix) of one-line and deb822 source files."""
    prefix = paths.host("/etc/apt/sources.list.d")
    listed = [f"/etc/apt/sources.list.d{f[len(prefix) :]}" for f in list_files(prefix)]
    one_line = ["/etc/apt/sources.list"] if os.path.isfile(paths.host("/etc/apt/sources.list")) else []
    one_line += [f for f in listed if f.endswith(".list")]
    return one_line, [f for f in listed if f.endswith(".sources")]


def _row(paths: HostPaths, path: str, source: AptSource, pid_ns: int) -> Row | None:
    lists = paths.host("/var/lib/apt/lists")
    found = sorted(glob.glob(f"{glob.escape(lists)}/{glob.escape(source.cache)}_*Release"))
    if not found:
        return None  # osquery reports a source only once APT has fetched its Release file
    release = parse_release(read_text(found[0]) or "")
    return {
        "name": source.name,
        "source": path,
        "base_uri": source.base_uri,
        "release": release.get("Codename"),
        "version": release.get("Version"),
        "maintainer": release.get("Origin"),
        "components": release.get("Components"),
        "architectures": release.get("Architectures"),
        "pid_with_namespace": pid_ns,
    }


def generate(context: QueryContext) -> Iterator[Row]:
    """One row per configured deb repository whose Release file APT has fetched."""
    for pid_ns, paths in namespace_views(context):
        one_line, deb822 = _source_files(paths)
        for path in one_line:
            for line in (read_text(paths.host(path)) or "").split("\n"):
                source = parse_source_line(line)
                if source is not None and (row := _row(paths, path, source, pid_ns)) is not None:
                    yield row
        for path in deb822:
            for source in parse_deb822(read_text(paths.host(path)) or ""):
                if (row := _row(paths, path, source, pid_ns)) is not None:
                    yield row


SPEC = TableSpec(
    name="apt_sources",
    description="Current list of APT repositories or software channels.",
    columns=(
        Column("name", "TEXT", "Repository name"),
        Column("source", "TEXT", "Source file"),
        Column("base_uri", "TEXT", "Repository base URI"),
        Column("release", "TEXT", "Release name"),
        Column("version", "TEXT", "Repository source version"),
        Column("maintainer", "TEXT", "Repository maintainer"),
        Column("components", "TEXT", "Repository components"),
        Column("architectures", "TEXT", "Repository architectures"),
        Column("pid_with_namespace", "INTEGER", "Pids that contain a namespace", hidden=True, additional=True),
    ),
    generate=generate,
    examples=("SELECT name, base_uri, release, components FROM apt_sources",),
)
