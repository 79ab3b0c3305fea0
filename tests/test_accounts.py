"""The pure passwd/group parsers of tables/_accounts.py, on canned text."""

from __future__ import annotations

from tables._accounts import GroupEntry, PasswdEntry, parse_group, parse_passwd, signed32


def test_parse_passwd_skips_comments_blank_short_and_nis_lines() -> None:
    text = (
        "# comment\n"
        "\n"
        "root:x:0:0:root:/root:/bin/bash\n"
        "broken:x:1\n"
        "badnum:x:abc:0::/:/bin/sh\n"
        "+nisuser::::::\n"
        "nobody:x:65534:65534:nobody,,,:/nonexistent:/usr/sbin/nologin\n"
        "noshell:x:1001:1001:::\n"
    )
    assert parse_passwd(text) == [
        PasswdEntry("root", 0, 0, "root", "/root", "/bin/bash"),
        PasswdEntry("nobody", 65534, 65534, "nobody,,,", "/nonexistent", "/usr/sbin/nologin"),
        PasswdEntry("noshell", 1001, 1001, "", "", ""),
    ]


def test_parse_group_members_optional() -> None:
    text = "root:x:0:\nsudo:x:27:alice,bob\n# x\nlegacy:x:50\nbad:x:\n"
    assert parse_group(text) == [
        GroupEntry("root", 0, ()),
        GroupEntry("sudo", 27, ("alice", "bob")),
        GroupEntry("legacy", 50, ()),
    ]


def test_signed32() -> None:
    assert signed32(0) == 0
    assert signed32(1000) == 1000
    assert signed32(4294967294) == -2
    assert signed32(2147483648) == -2147483648
