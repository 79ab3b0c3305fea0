"""Host text in SQL: one reversible rule for bytes that are not UTF-8, applied at the SQLite boundary.

Names on a Linux host are bytes: a file, a process's executable or working directory, a
mount point, a command line may hold any byte but NUL (and ``/`` inside a name).  Inside
``tables/`` such text is a ``str`` decoded with ``surrogateescape`` (what ``os.listdir``,
``os.readlink`` and :func:`decode` give): byte 0xHH that is not part of valid UTF-8 is the
lone surrogate U+DCHH.  SQLite needs valid UTF-8 for TEXT, so :mod:`tables.sqlite` passes
every TEXT value through :func:`to_sql` and every constraint value back through
:func:`from_sql`:

* text that is valid UTF-8 and holds nothing that reads as one of the escapes below is
  returned unchanged (the common case: nothing changes for well-formed names);
* otherwise each byte that is not part of valid UTF-8 is written ``\\xHH`` (two upper-case
  hex digits, as osquery writes such bytes in its result logs), and a backslash that would
  read as an escape (``\\x5C`` or ``\\x`` followed by ``8``-``F`` and a hex digit) is written
  ``\\x5C``.

The rule is one-to-one (``from_sql(to_sql(s)) == s``): a value read from one table can
constrain another (``WHERE path = (SELECT path FROM processes ...)``, JOINs pushed down),
and the exact bytes can be recovered from any result.  Why not a BLOB of the raw bytes:
SQLite turns a BLOB back into TEXT in ``||``, ``CAST``, ``upper()`` and the like, and text
that is not UTF-8 then fails the query in the driver; JSON result logs and Zeek need valid
UTF-8 as well.  The values stay TEXT, always valid UTF-8, and lose nothing.
"""

from __future__ import annotations

import codecs
import re

__all__ = ["decode", "fields", "from_sql", "to_sql"]

#: Text that reads as an escape of :func:`to_sql` (bytes that are not UTF-8 are >= 0x80).
_ESCAPE = re.compile(r"\\x(5C|[89A-F][0-9A-F])")
_ESCAPE_BYTES = re.compile(rb"\\x(5C|[89A-F][0-9A-F])")
_BACKSLASH_BEFORE_ESCAPE = re.compile(rb"\\(?=x(?:5C|[89A-F][0-9A-F]))")
_ERRORS = "zeek-agent-hex"
_BLANK = " \t\n\r\v\f"
_BLANK_RUN = re.compile("[ \t\n\r\v\f]+")


def _hex_escape(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    bad = exc.object[exc.start : exc.end]
    return "".join(f"\\x{b:02X}" for b in bad), exc.end


codecs.register_error(_ERRORS, _hex_escape)


def decode(data: bytes) -> str:
    """Host bytes as text for a table: UTF-8, every other byte kept as a surrogate (lossless)."""
    return data.decode("utf-8", "surrogateescape")


def fields(line: str, maxsplit: int = 0) -> list[str]:
    """``line.split(None, maxsplit)`` on ASCII blanks only (C's isspace, as osquery splits).

    ``str.split()`` also splits on characters a name may hold: U+001C-U+001F, U+0085 (NEL),
    U+00A0, U+2028 and other Unicode spaces.  ``maxsplit`` 0 means no limit.
    """
    line = line.lstrip(_BLANK)
    if not line:
        return []
    parts = _BLANK_RUN.split(line, maxsplit)
    if parts[-1] == "":
        parts.pop()  # trailing blanks
    return parts


def _bytes(value: str) -> bytes:
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that did not come from a byte (e.g. JSON "\ud800")
        return value.encode("utf-8", "surrogatepass")


def to_sql(value: str) -> str:
    """``value`` as SQLite TEXT: unchanged when it is plain UTF-8, else escaped (see the module)."""
    if value.isascii():
        if "\\x" not in value or _ESCAPE.search(value) is None:
            return value
    else:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            pass
        else:
            if "\\x" not in value or _ESCAPE.search(value) is None:
                return value
    data = _BACKSLASH_BEFORE_ESCAPE.sub(rb"\\x5C", _bytes(value))
    return data.decode("utf-8", _ERRORS)


def from_sql(value: str) -> str:
    """The host text a SQL value stands for: the inverse of :func:`to_sql`.

    A value that is not what :func:`to_sql` would write (a user typed ``\\xC3`` where the
    name holds ``é``) is taken literally.
    """
    if "\\x" not in value or _ESCAPE.search(value) is None:
        return value
    data = _ESCAPE_BYTES.sub(lambda m: bytes((int(m.group(1), 16),)), value.encode("utf-8", "surrogatepass"))
    text = decode(data)
    return text if to_sql(text) == value else value
