"""osquery's extra SQL functions, through a real Database."""

from __future__ import annotations

import hashlib

import pytest

from tables.functions import community_id_v1
from tables.sqlite import Database


@pytest.fixture(scope="module")
def db() -> Database:
    return Database()


def one(db: Database, sql: str):
    return db.execute(sql).rows[0][0]


def test_community_id_matches_the_specification_vector() -> None:
    # Test vector from the Community ID specification (TCP, seed 0)
    assert community_id_v1("128.232.110.120", "66.35.250.204", 34855, 80, 6) == "1:LQU9qZlK+B5F3KDmev6m5PMibrg="


def test_community_id_is_direction_independent(db: Database) -> None:
    a = one(db, "SELECT community_id_v1('::1', '::1', 5000, 80, 6)")
    b = one(db, "SELECT community_id_v1('::1', '::1', 80, 5000, 6)")
    assert a == b and a.startswith("1:")
    assert one(db, "SELECT community_id_v1('1.2.3.4', '::1', 1, 2, 6)") is None
    assert one(db, "SELECT community_id_v1('1.2.3.4', '5.6.7.8', 1, 2, 17, 1)") != one(
        db, "SELECT community_id_v1('1.2.3.4', '5.6.7.8', 1, 2, 17)"
    )


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT split('a,b,,c', ',', 2)", "c"),
        ("SELECT split('a b', ' ', 5)", None),
        ("SELECT regex_match('pid=42 uid=0', 'uid=(\\d+)', 1)", "0"),
        ("SELECT regex_match('x', '(', 0)", None),
        ("SELECT regex_split('a1b22c', '[0-9]+', 2)", "c"),
        ("SELECT in_cidr_block('10.0.0.0/8', '10.200.1.1')", 1),
        ("SELECT in_cidr_block('fe80::/10', '::1')", 0),
        ("SELECT inet_aton('1.2.3.4')", 16909060),
        ("SELECT to_base64('hello')", "aGVsbG8="),
        ("SELECT from_base64('aGVsbG8=')", "hello"),
        ("SELECT conditional_to_base64('plain')", "plain"),
        ("SELECT md5('x')", hashlib.md5(b"x").hexdigest()),
        ("SELECT sha1('x')", hashlib.sha1(b"x").hexdigest()),
        ("SELECT sha256('x')", hashlib.sha256(b"x").hexdigest()),
        ("SELECT concat_ws('-', 'a', 'b')", "a-b"),
        ("SELECT sqrt(16)", 4.0),
    ],
)
def test_functions(db: Database, sql: str, expected) -> None:
    assert one(db, sql) == expected
