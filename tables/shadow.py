"""shadow: password status (never the hash) and ageing fields from /etc/shadow."""

from __future__ import annotations

from collections.abc import Iterator

from ._files import read_text
from .spec import Column, QueryContext, Row, TableSpec

__all__ = ["SPEC", "generate", "hash_algorithm", "parse_shadow", "password_status"]

_HASH_IDS = {
    "1": "md5",
    "2a": "bcrypt",
    "2b": "bcrypt",
    "2y": "bcrypt",
    "5": "sha256",
    "6": "sha512",
    "y": "yescrypt",
    "gy": "gost-yescrypt",
    "7": "scrypt",
    "sha1": "sha1",
    "md5": "sunmd5",
}
_AGEING = ("last_change", "min", "max", "warning", "inactive", "expire", "flag")


def password_status(password: str) -> str:
    """osquery's reading of the password field: active, locked, not_set or empty."""
    if password == "":
        return "empty"
    if password == "!!":
        return "not_set"
    if password[0] in "!*":
        return "locked"
    return "active"


def hash_algorithm(password: str) -> str:
    """The crypt(5) scheme of a hash (``$6$...`` -> sha512); DES for a bare 13-character hash."""
    text = password.lstrip("!")
    if text.startswith("$"):
        scheme = text[1:].split("$", 1)[0]
        return _HASH_IDS.get(scheme, scheme)
    return "des" if len(text) == 13 else ""


def _days(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return -1  # empty field: glibc's getspent() reports -1


def parse_shadow(text: str) -> list[Row]:
    """Rows of a shadow(5) file, with the hash replaced by its status and algorithm."""
    rows = []
    for line in text.split("\n"):
        fields = line.strip().split(":")
        if len(fields) < 2 or not fields[0] or fields[0][0] in "#+-":
            continue
        fields += [""] * (9 - len(fields))
        row: Row = {
            "username": fields[0],
            "password_status": password_status(fields[1]),
            "hash_alg": hash_algorithm(fields[1]),
        }
        row.update({name: _days(value) for name, value in zip(_AGEING, fields[2:9], strict=False)})
        rows.append(row)
    return rows


def generate(context: QueryContext) -> Iterator[Row]:
    """One row per account; no rows when /etc/shadow is unreadable (not root)."""
    names = context.values("username")
    for row in parse_shadow(read_text(context.paths.host("/etc/shadow")) or ""):
        if names is None or row["username"] in names:
            yield row


SPEC = TableSpec(
    name="shadow",
    description="Local system users encrypted passwords and related information.",
    columns=(
        Column("password_status", "TEXT", "Password status"),
        Column("hash_alg", "TEXT", "Password hashing algorithm"),
        Column("last_change", "BIGINT", "Date of last password change (starting from UNIX epoch date)"),
        Column("min", "BIGINT", "Minimal number of days between password changes"),
        Column("max", "BIGINT", "Maximum number of days between password changes"),
        Column("warning", "BIGINT", "Number of days before password expires to warn user about it"),
        Column("inactive", "BIGINT", "Number of days after password expires until account is blocked"),
        Column("expire", "BIGINT", "Number of days since UNIX epoch date until account is disabled"),
        Column("flag", "BIGINT", "Reserved"),
        Column("username", "TEXT", "Username", index=True),
    ),
    generate=generate,
    examples=("SELECT username, password_status FROM shadow WHERE password_status = 'active'",),
)
