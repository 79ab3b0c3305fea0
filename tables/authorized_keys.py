"""authorized_keys: per-user ~/.ssh/authorized_keys entries."""

from __future__ import annotations

import re
from collections.abc import Iterator

from ._files import namespace_views, read_text
from ._homes import user_homes
from .spec import Column, QueryContext, Row, TableSpec
from .text import fields

__all__ = ["KEY_FILES", "SPEC", "generate", "parse_authorized_keys", "split_options"]

_BLANKS = " \t\r\v\f"  # ASCII blanks only: a comment may hold any other character

KEY_FILES = (".ssh/authorized_keys", ".ssh/authorized_keys2")

#: Key type names sshd accepts (ssh-rsa, ssh-ed25519, ecdsa-sha2-nistp256, sk-..., certificates).
_KEY_TYPE = re.compile(r"^(ssh-[a-z0-9-]+|ecdsa-sha2-[a-z0-9-]+|sk-[a-z0-9@.-]+|[a-z0-9-]+-cert-v01@openssh\.com)$")


def split_options(line: str) -> tuple[str, str]:
    """Split a leading options field (``from="a b",no-pty``) off the line: (options, rest)."""
    in_quotes = False
    for i, ch in enumerate(line):
        if ch == '"':
            in_quotes = not in_quotes
        elif ch in " \t" and not in_quotes:
            return line[:i], line[i:].strip()
    return line, ""


def parse_authorized_keys(text: str) -> list[Row]:
    """Lines -> rows of algorithm, key, options, comment; comments, blanks and junk are skipped."""
    rows = []
    for raw in text.split("\n"):
        line = raw.strip(_BLANKS)
        if not line or line.startswith("#"):
            continue
        options = ""
        if not _KEY_TYPE.match(fields(line, 1)[0]):
            options, line = split_options(line)
        words = fields(line, 2)
        if len(words) < 2 or not _KEY_TYPE.match(words[0]):
            continue
        rows.append(
            {
                "algorithm": words[0],
                "key": words[1],
                "options": options,
                "comment": words[2].strip(_BLANKS) if len(words) > 2 else "",
            }
        )
    return rows


def generate(context: QueryContext) -> Iterator[Row]:
    """One row per key of every user's authorized_keys files."""
    for pid_ns, paths in namespace_views(context):
        for uid, home in user_homes(context, paths):
            for name in KEY_FILES:
                path = f"{home.rstrip('/')}/{name}"
                text = read_text(paths.host(path))
                if text is None:
                    continue
                for row in parse_authorized_keys(text):
                    row.update(uid=uid, key_file=path, pid_with_namespace=pid_ns)
                    yield row


SPEC = TableSpec(
    name="authorized_keys",
    description="A line-delimited authorized_keys table.",
    columns=(
        Column("uid", "BIGINT", "The local owner of authorized_keys file", additional=True),
        Column("algorithm", "TEXT", "Key type"),
        Column("key", "TEXT", "Key encoded as base64"),
        Column("options", "TEXT", "Optional list of login options"),
        Column("comment", "TEXT", "Optional comment"),
        Column("key_file", "TEXT", "Path to the authorized_keys file"),
        Column("pid_with_namespace", "INTEGER", "Pids that contain a namespace", hidden=True, additional=True),
    ),
    generate=generate,
    examples=("SELECT * FROM users JOIN authorized_keys USING (uid)",),
)
