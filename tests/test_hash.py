"""hash: digests of files the test writes, checked against hashlib, through the SQL engine."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tables import hash as hash_table
from tables.hash import hash_file
from tables.spec import QueryContext
from tables.sqlite import Database, QueryError, QueryTimeout
from tests._table_checks import assert_column_types


def digests(data: bytes) -> tuple[str, str, str]:
    return hashlib.md5(data).hexdigest(), hashlib.sha1(data).hexdigest(), hashlib.sha256(data).hexdigest()


@pytest.fixture
def db() -> Database:
    return Database([hash_table.SPEC])


@pytest.fixture
def files(tmp_path: Path) -> dict[str, bytes]:
    contents = {
        "small.txt": b"hello osquery\n",
        "empty": b"",
        "big.bin": os.urandom(3 * hash_table.CHUNK + 17),  # several chunks
    }
    for name, data in contents.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "inner.txt").write_bytes(b"not hashed by directory = tmp")
    (tmp_path / "link").symlink_to(tmp_path / "small.txt")
    return contents


def test_file_digests_match_hashlib(db: Database, tmp_path: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = str(tmp_path / name)
        rows = db.execute("SELECT path, directory, md5, sha1, sha256 FROM hash WHERE path = ?", (path,)).rows
        assert rows == [(path, str(tmp_path), *digests(data))]


def test_directory_hashes_its_regular_files_only(db: Database, tmp_path: Path, files: dict[str, bytes]) -> None:
    rows = db.execute("SELECT path, directory, sha256 FROM hash WHERE directory = ?", (str(tmp_path),)).rows
    expected = {(str(tmp_path / n), str(tmp_path), digests(d)[2]) for n, d in files.items()}
    # the symlink to a regular file counts (osquery follows it); sub/ is not descended into
    expected.add((str(tmp_path / "link"), str(tmp_path), digests(files["small.txt"])[2]))
    assert set(rows) == expected


def test_like_pattern(db: Database, tmp_path: Path, files: dict[str, bytes]) -> None:
    rows = db.execute("SELECT path, md5 FROM hash WHERE path LIKE ?", (f"{tmp_path}/%.txt",)).rows
    assert rows == [(str(tmp_path / "small.txt"), digests(files["small.txt"])[0])]
    deep = db.execute("SELECT path FROM hash WHERE path LIKE ?", (f"{tmp_path}/%%",)).rows
    assert (str(tmp_path / "sub" / "inner.txt"),) in deep
    assert (str(tmp_path / "sub"),) not in deep and (str(tmp_path / "sub/"),) not in deep


def test_in_list_and_join(db: Database, tmp_path: Path, files: dict[str, bytes]) -> None:
    a, b = str(tmp_path / "small.txt"), str(tmp_path / "empty")
    rows = db.execute("SELECT path, sha1 FROM hash WHERE path IN (?, ?) ORDER BY path", (a, b)).rows
    assert rows == sorted([(a, digests(files["small.txt"])[1]), (b, digests(b"")[1])])
    joined = db.execute("WITH p(path) AS (VALUES (?)) SELECT h.md5 FROM p JOIN hash h ON h.path = p.path", (a,)).rows
    assert joined == [(digests(files["small.txt"])[0],)]


def test_missing_and_unhashable_paths_yield_no_row(db: Database, tmp_path: Path, files: dict[str, bytes]) -> None:
    for path in (tmp_path / "absent", tmp_path / "sub", Path("/dev/null")):
        assert db.execute("SELECT * FROM hash WHERE path = ?", (str(path),)).rows == []
    assert db.execute("SELECT * FROM hash WHERE directory = ?", (str(tmp_path / "absent"),)).rows == []


def test_fifo_is_never_opened(db: Database, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # not a regular file: never opened (would block)
    assert db.execute("SELECT * FROM hash WHERE path = ?", (str(fifo),)).rows == []


def test_required_column_error_names_the_table(db: Database) -> None:
    with pytest.raises(QueryError, match=r"hash.*(path|directory)"):
        db.execute("SELECT * FROM hash")
    with pytest.raises(QueryError, match="hash"):
        db.execute("SELECT md5 FROM hash WHERE md5 = 'x'")


def test_only_selected_digests_are_computed(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    context = QueryContext(
        table="hash", constraints={"path": frozenset({str(tmp_path / "f")})}, columns_used=frozenset({"path", "md5"})
    )
    [row] = list(hash_table.generate(context))
    assert row["md5"] == hashlib.md5(b"abc").hexdigest()
    assert "sha1" not in row and "sha256" not in row


def test_deadline_interrupts_a_long_hash(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x" * (2 * hash_table.CHUNK))
    context = QueryContext(table="hash", deadline=0.0)  # already past
    with pytest.raises(Exception, match="time limit"):
        hash_file(str(tmp_path / "f"), ("sha256",), context)
    db = Database([hash_table.SPEC], time_limit=1e-9)
    with pytest.raises(QueryTimeout):
        db.execute("SELECT sha256 FROM hash WHERE path = ?", (str(tmp_path / "f"),))


def test_pid_with_namespace(db: Database, tmp_path: Path, files: dict[str, bytes]) -> None:
    path = str(tmp_path / "small.txt")
    rows = db.execute(
        "SELECT path, md5, pid_with_namespace, mount_namespace_id FROM hash WHERE path = ? AND pid_with_namespace = ?",
        (path, os.getpid()),
    ).dicts()
    assert rows == [
        {
            "path": path,
            "md5": digests(files["small.txt"])[0],
            "pid_with_namespace": os.getpid(),
            "mount_namespace_id": os.readlink("/proc/self/ns/mnt")[5:-1],
        }
    ]


def test_column_types(db: Database, tmp_path: Path, files: dict[str, bytes]) -> None:
    rows = db.execute(
        "SELECT *, pid_with_namespace, mount_namespace_id FROM hash WHERE directory = ?", (str(tmp_path),)
    ).dicts()
    assert rows
    assert_column_types(hash_table.SPEC, rows)
