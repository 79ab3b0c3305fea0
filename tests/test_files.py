"""tables/_files.py: file reading helpers and pid_with_namespace views."""

from __future__ import annotations

import os
from pathlib import Path

from tables._files import list_files, mount_namespace_id, namespace_views, namespaces, read_text
from tables.spec import HostPaths, QueryContext


def test_read_text_missing_and_directory(tmp_path: Path) -> None:
    assert read_text(str(tmp_path / "nope")) is None
    assert read_text(str(tmp_path)) is None
    (tmp_path / "f").write_bytes(b"ok\xff")
    assert read_text(str(tmp_path / "f")) == "ok\udcff"  # the byte is kept (tables.text)


def test_list_files_only_regular_sorted(tmp_path: Path) -> None:
    (tmp_path / "b").write_text("")
    (tmp_path / "a").write_text("")
    (tmp_path / "sub").mkdir()
    assert list_files(str(tmp_path)) == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert list_files(str(tmp_path / "missing")) == []


def test_namespace_views_default_and_pids() -> None:
    paths = HostPaths()
    assert list(namespace_views(QueryContext(table="t", paths=paths))) == [(0, paths)]
    me = os.getpid()
    ctx = QueryContext(table="t", paths=paths, constraints={"pid_with_namespace": frozenset({me, 2**22 + 12345})})
    views = list(namespace_views(ctx))
    assert [pid for pid, _ in views] == [me]  # a pid that does not exist is skipped
    assert views[0][1].host("/etc/hosts") == f"/proc/{me}/root/etc/hosts"


def test_mount_namespace_id_matches_readlink() -> None:
    link = os.readlink("/proc/self/ns/mnt")
    assert mount_namespace_id(HostPaths()) == link[link.index("[") + 1 : -1]


def test_namespaces_of_a_pid() -> None:
    paths = HostPaths()
    assert namespaces(QueryContext(table="t", paths=paths)) == [namespaces(QueryContext(table="t"))[0]]
    assert namespaces(QueryContext(table="t", paths=paths))[0].prefix == ""

    def ctx(*pids: int) -> QueryContext:
        return QueryContext(table="t", paths=paths, constraints={"pid_with_namespace": frozenset(pids)})

    (me,) = namespaces(ctx(os.getpid()))
    assert me.prefix == f"/proc/{os.getpid()}/root" and me.pid == os.getpid()
    assert me.mount_namespace_id == os.readlink("/proc/self/ns/mnt")[5:-1]
    assert namespaces(ctx(2**22 + 12345)) == []  # no such pid: skipped
    assert [ns.pid for ns in namespaces(ctx(0, os.getpid()))] == [0, os.getpid()]
