"""tables.text: the one representation of host bytes in SQL text, proved one-to-one."""

from __future__ import annotations

import itertools

import pytest

from tables.text import decode, fields, from_sql, to_sql


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (b"plain/path", "plain/path"),
        (b"new\nline\ttab \"q' `", "new\nline\ttab \"q' `"),  # valid UTF-8 is returned as it is
        ("caf\u00e9 \u2028".encode(), "caf\u00e9 \u2028"),
        (b"bad\xffname", "bad\\xFFname"),  # osquery's result-log spelling
        (b"\xe2\x80", "\\xE2\\x80"),  # a cut multi-byte sequence
        (b"dev-disk-by\\x2duuid", "dev-disk-by\\x2duuid"),  # systemd's escapes do not read as ours
        (b"a\\xFF", "a\\x5CxFF"),  # a name that reads like an escape
        (b"\\x5C", "\\x5Cx5C"),
        (b"\\\xff", "\\\\xFF"),
    ],
)
def test_to_sql(raw: bytes, shown: str) -> None:
    assert to_sql(decode(raw)) == shown
    assert from_sql(shown) == decode(raw)
    shown.encode("utf-8")  # always valid UTF-8


def test_one_to_one_over_every_short_string_of_tricky_bytes() -> None:
    alphabet = [b"\\", b"x", b"5", b"C", b"8", b"F", b"a", b"\xff", b"\xc3", b"\xa9", b"\x80"]
    shown: dict[str, bytes] = {}
    for n in range(5):
        for parts in itertools.product(alphabet, repeat=n):
            raw = b"".join(parts)
            text = to_sql(decode(raw))
            text.encode("utf-8")
            assert shown.setdefault(text, raw) == raw, (raw, shown[text], text)  # no two names look alike
            assert from_sql(text) == decode(raw)


def test_from_sql_takes_what_to_sql_never_writes_literally() -> None:
    assert from_sql("caf\\xC3\\xA9") == "caf\\xC3\\xA9"  # "café" is written as it is, so this is literal text
    assert from_sql("no escapes") == "no escapes"


def test_lone_surrogates_from_json_are_shown_not_raised() -> None:
    assert to_sql("x\ud800y") == "x\\xED\\xA0\\x80y"


def test_fields_split_on_ascii_blanks_only() -> None:
    assert fields("  a\tb\u2028c \x85d  \x1c e ") == ["a", "b\u2028c", "\x85d", "\x1c", "e"]
    assert fields("a b  c d", 2) == ["a", "b", "c d"]
    assert fields("   ") == [] and fields("") == []
