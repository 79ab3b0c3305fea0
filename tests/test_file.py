"""file: stat rows for a tree the test builds, with osquery's % and %% patterns."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tables import file as file_table
from tables.file import file_type, lsperms
from tables.sqlite import Database, QueryError
from tests._table_checks import assert_column_types


@pytest.fixture
def db() -> Database:
    return Database([file_table.SPEC])


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "etc" / "conf.d" / "nested").mkdir(parents=True)
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (tmp_path / "etc" / "conf.d" / "a.conf").write_text("a=1\n")
    (tmp_path / "etc" / "conf.d" / "nested" / "b.conf").write_text("b=22\n")
    (tmp_path / "etc" / ".hidden").write_text("h")
    os.chmod(tmp_path / "etc" / "passwd", 0o640)
    os.chmod(tmp_path / "etc" / "conf.d" / "a.conf", 0o4755)
    os.chown(tmp_path / "etc" / "passwd", 1234, 4321)
    (tmp_path / "etc" / "link").symlink_to("passwd")
    (tmp_path / "etc" / "dangling").symlink_to("nowhere")
    os.mkfifo(tmp_path / "etc" / "pipe")
    return tmp_path / "etc"


def test_single_path_matches_lstat(db: Database, tree: Path) -> None:
    path = str(tree / "passwd")
    [row] = db.execute("SELECT * FROM file WHERE path = ?", (path,)).dicts()
    st = os.lstat(path)
    assert row["path"] == path and row["directory"] == str(tree) and row["filename"] == "passwd"
    assert (row["uid"], row["gid"]) == (1234, 4321)
    assert row["mode"] == "0640" and row["size"] == st.st_size == 26
    assert row["inode"] == st.st_ino and row["hard_links"] == st.st_nlink
    assert row["block_size"] == st.st_blksize and row["device"] == st.st_rdev
    assert (row["atime"], row["mtime"], row["ctime"]) == (int(st.st_atime), int(st.st_mtime), int(st.st_ctime))
    assert row["type"] == "regular" and row["symlink"] == 0 and row["symlink_target_path"] is None


def test_special_modes_and_types(db: Database, tree: Path) -> None:
    rows = {
        r["filename"]: r
        for r in db.execute(
            "SELECT filename, mode, type FROM file WHERE path IN (?, ?, ?, ?)",
            (str(tree / "conf.d" / "a.conf"), str(tree / "conf.d"), str(tree / "pipe"), "/dev/null"),
        ).dicts()
    }
    assert rows["a.conf"]["mode"] == "4755"
    assert rows["conf.d"]["type"] == "directory"
    assert rows["pipe"]["type"] == "fifo"
    assert rows["null"]["type"] == "character"


def test_symlinks(db: Database, tree: Path) -> None:
    [link] = db.execute("SELECT * FROM file WHERE path = ?", (str(tree / "link"),)).dicts()
    target = os.stat(tree / "passwd")
    # osquery describes what the link points to and flags the link itself
    assert link["symlink"] == 1 and link["symlink_target_path"] == "passwd"
    assert link["type"] == "regular" and link["inode"] == target.st_ino and link["size"] == target.st_size
    [dangling] = db.execute("SELECT * FROM file WHERE path = ?", (str(tree / "dangling"),)).dicts()
    assert dangling["symlink"] == 1 and dangling["symlink_target_path"] == "nowhere"
    assert dangling["inode"] == os.lstat(tree / "dangling").st_ino


def test_directory_listing(db: Database, tree: Path) -> None:
    rows = db.execute("SELECT path, directory, filename FROM file WHERE directory = ?", (str(tree),)).rows
    names = sorted(os.listdir(tree))  # hidden files included, as osquery's directory listing
    assert sorted(rows) == [(str(tree / n), str(tree), n) for n in names]


def test_percent_is_one_level(db: Database, tree: Path) -> None:
    rows = db.execute("SELECT path, filename FROM file WHERE path LIKE ?", (f"{tree}/%",)).rows
    assert sorted(rows) == [
        (f"{tree}/conf.d/", "."),  # a directory from a pattern ends in '/', as in osquery
        (f"{tree}/dangling", "dangling"),  # lexists, like glob(3)
        (f"{tree}/link", "link"),
        (f"{tree}/passwd", "passwd"),
        (f"{tree}/pipe", "pipe"),
    ]
    assert db.execute("SELECT path FROM file WHERE path LIKE ?", (f"{tree}/%/%.conf",)).rows == [
        (f"{tree}/conf.d/a.conf",)
    ]


def test_double_percent_recurses(db: Database, tree: Path) -> None:
    rows = db.execute("SELECT path, size FROM file WHERE path LIKE ?", (f"{tree}/conf.d/%%",)).rows
    assert sorted(p for p, _ in rows) == [
        f"{tree}/conf.d/a.conf",
        f"{tree}/conf.d/nested/",
        f"{tree}/conf.d/nested/b.conf",
    ]
    assert dict(rows)[f"{tree}/conf.d/nested/b.conf"] == 5


def test_directory_like(db: Database, tree: Path) -> None:
    rows = db.execute("SELECT path FROM file WHERE directory LIKE ?", (f"{tree}/conf%",)).rows
    assert rows == [(f"{tree}/conf.d/a.conf",), (f"{tree}/conf.d/nested",)]


def test_missing_path_yields_nothing(db: Database, tree: Path) -> None:
    assert db.execute("SELECT * FROM file WHERE path = ?", (str(tree / "absent"),)).rows == []
    assert db.execute("SELECT * FROM file WHERE directory = ?", (str(tree / "passwd"),)).rows == []


def test_required_column_error(db: Database) -> None:
    with pytest.raises(QueryError, match=r"file.*(path|directory)"):
        db.execute("SELECT * FROM file")


def test_join_drives_the_required_column(db: Database, tree: Path) -> None:
    rows = db.execute(
        "WITH d(dir) AS (VALUES (?)) SELECT f.filename FROM d JOIN file f ON f.directory = d.dir "
        "WHERE f.filename LIKE '%.conf'",
        (str(tree / "conf.d"),),
    ).rows
    assert rows == [("a.conf",)]


def test_pure_helpers() -> None:
    assert lsperms(stat.S_IFREG | 0o644) == "0644"
    assert lsperms(stat.S_IFDIR | 0o1777) == "1777"
    assert file_type(stat.S_IFSOCK | 0o777) == "socket"
    assert file_type(stat.S_IFBLK) == "block"


def test_column_types(db: Database, tree: Path) -> None:
    rows = db.execute(
        "SELECT *, pid_with_namespace, mount_namespace_id, attributes, bsd_flags FROM file WHERE path LIKE ?",
        (f"{tree}/%%",),
    ).dicts()
    assert len(rows) >= 7
    assert_column_types(file_table.SPEC, rows)
    # osquery's Windows/macOS-only columns exist (hidden) and are NULL on Linux
    assert all(r["attributes"] is None and r["bsd_flags"] is None for r in rows)
    assert "attributes" not in db.execute("SELECT * FROM file WHERE path = '/'").columns
