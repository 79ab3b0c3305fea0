"""Audit record text, sans I/O: ``audit(TS:SERIAL): key=value ...`` -> fields decoded by name.

The kernel writes untrusted strings (comm, exe, name, cwd, proctitle, key, EXECVE
aN) ``"quoted"`` when every byte is printable and not a space or quote, and as bare
uppercase hex otherwise; so decoding depends on the field *name*, never on whether
a value looks like hex (``pid=123`` does too).  Records are parsed lazily: the
header (serial) at once, the fields only when a row is built from them.

Fields are read one by one as auditd's own auparse does: the body is split at spaces
and every ``name=value`` piece is a field, so a damaged field never takes its
neighbours with it.  What cannot be read is kept as far as it is readable and named
in :attr:`Record.damage`: a value with no closing quote (a cut line), text after a
closing quote, a stray quote in a bare value, text that is not a field, a field given
twice (two records run together), unprintable bytes.  Every step looks at each
character a bounded number of times, so the work is linear in the record's length.

Rows read a few fields of a few record types, and the kernel lays those records out the
same way every time.  A :class:`Layout` is that order of fields as one regex: when a
record's whole body matches it (clean text, the fields in the kernel's order, no name
twice), the values a row reads come from the match and the record is known to be
undamaged without being read field by field (the live source's hot path: about a third
of the work).  Any other text is read field by field as above, with the same result.
"""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple

__all__ = [
    "CWD_LAYOUT",
    "PATH_LAYOUT",
    "RECORD_NAMES",
    "RECORD_TYPES",
    "SADDR_LAYOUT",
    "SYSCALL_LAYOUT",
    "USED_TYPES",
    "Damage",
    "ExecveArgs",
    "InterpretedFormatError",
    "Layout",
    "Record",
    "RecordError",
    "SockAddr",
    "decode_hex",
    "decode_sockaddr",
    "decode_untrusted",
    "execve_args",
    "parse_fields",
    "parse_line",
    "parse_message",
    "read_hex",
    "read_untrusted",
    "scan_fields",
]

SYSCALL, PATH, SOCKETCALL, SOCKADDR, CWD, EXECVE, EOE, PROCTITLE = 1300, 1302, 1304, 1306, 1307, 1309, 1320, 1327

#: record type number -> name (as auditd writes it in logs)
RECORD_NAMES: dict[int, str] = {
    1300: "SYSCALL",
    1302: "PATH",
    1303: "IPC",
    1304: "SOCKETCALL",
    1305: "CONFIG_CHANGE",
    1306: "SOCKADDR",
    1307: "CWD",
    1309: "EXECVE",
    1320: "EOE",
    1321: "BPRM_FCAPS",
    1327: "PROCTITLE",
}
RECORD_TYPES: dict[str, int] = {name: num for num, name in RECORD_NAMES.items()}

#: the record types process_events and socket_events are built from
USED_TYPES = frozenset({SYSCALL, PATH, SOCKETCALL, SOCKADDR, CWD, EXECVE, EOE, PROCTITLE})

_NULLS = frozenset({"(null)", "(none)", "?"})
_HEX_PREFIX = re.compile(r"[0-9A-Fa-f]*")
#: a body that needs no repair: printable ASCII ``name=value`` pieces one space apart, quoted values closed and
#: followed by a space or the end.  Possessive quantifiers: the match never backtracks, so it is linear.
_CLEAN_BODY = re.compile(r'(?:[!#-&(-<>-~]++=(?:"[!#-~]*+"|[!#-&(-~]*+)(?: |$))*+')
_SHOW = 40  # characters of damaged text quoted in a message
#: longer than any record the kernel writes (its records fit a netlink message; auditd reads 8,970 bytes):
#: the fields past this are not read, so a hostile line costs at most this much parsing
MAX_BODY = 65536
MAX_DAMAGE = 16  # damage entries kept per record; the rest are counted in one more


class RecordError(ValueError):
    """A record's text is not ``audit(SECONDS.MILLIS:SERIAL): ...``."""


class InterpretedFormatError(RecordError):
    """The text is ausearch's interpreted output (``ausearch -i``): names and dates, not the raw record."""


class Damage(NamedTuple):
    """One unreadable part of a record: the field (None: the record as a whole) and what is wrong."""

    field: str | None
    what: str

    def __str__(self) -> str:
        return f"{self.field}: {self.what}" if self.field else self.what


def _show(text: str) -> str:
    return repr(text if len(text) <= _SHOW else text[:_SHOW] + "...")


class Record:
    """One audit record: type number, event time, serial, and its field text (parsed on demand).

    ``node`` is the ``node=NAME`` of a log aggregated from several hosts, ``lineno`` the
    log line the record came from, ``cut`` set when that line ended without its newline.
    """

    __slots__ = ("_clean", "_damage", "_fields", "body", "cut", "lineno", "node", "serial", "ts", "type")

    def __init__(
        self,
        rtype: int,
        ts: float,
        serial: int,
        body: str,
        node: str | None = None,
        lineno: int | None = None,
        cut: bool = False,
    ) -> None:
        self.type = rtype
        self.ts = ts
        self.serial = serial
        self.body = body
        self.node = node
        self.lineno = lineno
        self.cut = cut
        self._fields: dict[str, str] | None = None
        self._damage: tuple[Damage, ...] = ()
        self._clean = False  # a Layout matched the whole body: nothing in it is damaged

    @property
    def fields(self) -> dict[str, str]:
        """Raw values by field name (quotes kept: decode with :func:`decode_untrusted`)."""
        fields = self._fields
        return fields if fields is not None else self._parse()

    @property
    def damage(self) -> tuple[Damage, ...]:
        """What of this record could not be read (empty when all of it could); parses the record."""
        if self._fields is None and not self._clean:
            self._parse()
        return self._damage

    @property
    def checked(self) -> bool:
        """True once the record's damage is known (read field by field, or matched whole by a :class:`Layout`)."""
        return self._clean or self._fields is not None

    def _parse(self) -> dict[str, str]:
        body = self.body
        if len(body) > MAX_BODY:
            fields, damage = scan_fields(body[: body.rfind(" ", 0, MAX_BODY) + 1 or MAX_BODY])
            damage = (
                Damage(None, f"{len(body):,} characters, more than any record holds: the first {MAX_BODY:,} read"),
                *damage,
            )
        else:
            fields, damage = scan_fields(body)
        if self.cut:
            damage = (Damage(None, "the line ends without a newline (cut short)"), *damage)
        self._fields, self._damage = fields, damage
        return fields

    @property
    def name(self) -> str:
        """``SYSCALL``, ``EXECVE``, ... as auditd names the type."""
        return RECORD_NAMES.get(self.type, str(self.type))

    @property
    def event_id(self) -> str:
        """``[node ]SECONDS.MILLIS:SERIAL``: the event this record belongs to, as a log writes it."""
        stamp = f"{self.ts:.3f}:{self.serial}"
        return f"{self.node} {stamp}" if self.node is not None else stamp

    def __repr__(self) -> str:
        return f"Record({self.name}, serial={self.serial}, body={self.body[:60]!r})"


def parse_message(rtype: int, text: str) -> Record:
    """A record from netlink: ``rtype`` from nlmsg_type, ``text`` = ``audit(TS:SERIAL): body``."""
    if not text.startswith("audit("):
        raise RecordError(f"record type {rtype}: text does not start with 'audit(': {text[:60]!r}")
    close = text.find(")", 6)
    if close < 0:
        raise RecordError(f"record type {rtype}: unterminated audit(...) header: {text[:60]!r}")
    stamp = text[6:close]
    colon = stamp.rfind(":")
    if colon < 0:
        raise RecordError(f"record type {rtype}: no serial in {stamp!r}")
    try:
        ts = float(stamp[:colon])
        serial = int(stamp[colon + 1 :])
    except ValueError:
        raise RecordError(f"record type {rtype}: bad timestamp/serial {stamp!r}") from None
    body = text[close + 1 :]
    if body.startswith(":"):
        body = body[1:]
    return Record(rtype, ts, serial, body.strip(" \0\n"))


def parse_line(line: str, *, lineno: int | None = None, cut: bool = False) -> Record:
    """A record from an auditd log line.

    Accepts ``type=SYSCALL msg=audit(...): ...``, a ``node=HOST`` prefix (kept in
    ``Record.node``), numeric and ``UNKNOWN[1327]`` types, and enriched logs (``\\x1d``
    then ``UID="root" ...``, which is dropped: the raw fields carry the same numbers).
    :class:`InterpretedFormatError` for ``ausearch -i`` output, :class:`RecordError` for
    a line that is not a record.
    """
    text = line.rstrip("\r\n")
    sep = text.find("\x1d")
    if sep >= 0:
        text = text[:sep]
    node = None
    if text.startswith("node="):
        space = text.find(" ")
        node = text[5:space] if space > 0 else text[5:]
        text = text[space + 1 :] if space > 0 else ""
    if not text.startswith("type="):
        raise RecordError(f"line does not start with 'type=': {line[:60]!r}")
    space = text.find(" ")
    if space < 0:
        raise RecordError(f"no 'msg=' after the record type: {line[:60]!r}")
    name = text[5:space]
    rtype = RECORD_TYPES.get(name)
    if rtype is None:
        if name.startswith("UNKNOWN[") and name.endswith("]"):
            name = name[8:-1]
        rtype = int(name) if name.isdigit() else 0  # 0: a type we do not use (USER_LOGIN, AVC, ...)
    rest = text[space + 1 :]
    if not rest.startswith("msg="):
        raise RecordError(f"expected 'msg=' after type={name}: {line[:60]!r}")
    close = rest.find(")")
    if rest.startswith("msg=audit(") and "/" in rest[10:close]:  # audit(11/14/2023 10:22:01.123:456)
        raise InterpretedFormatError(
            "this is ausearch's interpreted output (ausearch -i: dates and names instead of numbers); "
            "replay needs the raw format: the log file itself, or ausearch --raw"
        )
    record = parse_message(rtype, rest[4:])
    record.node = node
    record.lineno = lineno
    record.cut = cut
    return record


def scan_fields(body: str) -> tuple[dict[str, str], tuple[Damage, ...]]:
    """``k=v k2="v2" ...`` -> ({k: raw value}, damage), one space-separated piece at a time.

    Quoted values keep their quotes; a damaged one is cut back to what is readable and
    re-quoted (``a2="721df"'`` -> ``"721df"``, ``a1="/etc/pa`` -> ``"/etc/pa"``), a bare
    value stops at a stray quote (``key=6578"`` -> ``6578``).  A user message wrapped in
    ``msg='...'`` is read as the record's own fields (as auparse does).  Only the first
    of a repeated field is kept.
    """
    if not body:
        return {}, ()
    if _CLEAN_BODY.fullmatch(body):  # the kernel's own text: every piece is name=value, nothing to repair
        parts = body.replace(" ", "=").split("=")
        if len(parts) == 2 * body.count(" ") + 2:  # no '=' in a value: names and values alternate
            fields = dict(zip(parts[::2], parts[1::2], strict=True))
            if 2 * len(fields) == len(parts):
                return fields, ()
        else:
            pairs = [tok.partition("=") for tok in body.split(" ")]
            fields = {key: value for key, _, value in pairs}
            if len(fields) == len(pairs):
                return fields, ()
    out: dict[str, str] = {}
    damage: list[Damage] = []
    check_chars = not (body.isascii() and body.isprintable())
    in_msg = False
    for tok in body.split():
        key, sep, value = tok.partition("=")
        if key == "msg" and value[:1] == "'":  # msg='op=login acct="root" res=success'
            in_msg = True
            key, sep, value = value[1:].partition("=")
        if not sep or not key:
            if in_msg and tok.endswith("'"):
                in_msg = False
            else:
                damage.append(Damage(None, f"text that is not a field: {_show(tok)}"))
            continue
        if in_msg and value[-1:] == "'":
            value = value[:-1]
            in_msg = False
        if check_chars and (not tok.isprintable() or "\ufffd" in tok):
            damage.append(Damage(key, f"unprintable or undecodable bytes in {_show(value)}"))
        first = value[:1]
        if first == '"' or first == "'":
            end = value.find(first, 1)
            if end != len(value) - 1:
                if end < 0:
                    damage.append(Damage(key, "no closing quote (the record is cut short?)"))
                    value += first
                else:
                    damage.append(Damage(key, f"text after the closing quote: {_show(value[end + 1 :])}"))
                    value = value[: end + 1]
        elif '"' in value or "'" in value:
            dq, sq = value.find('"'), value.find("'")
            stop = dq if sq < 0 or 0 <= dq < sq else sq
            damage.append(Damage(key, f"stray quote in {_show(value)}"))
            value = value[:stop]
        if key in out:
            damage.append(Damage(key, "the field appears twice (two records run together?)"))
            continue
        out[key] = value
    if len(damage) > MAX_DAMAGE:
        more = len(damage) - MAX_DAMAGE
        damage[MAX_DAMAGE:] = [Damage(None, f"and {more:,} more unreadable fields")]
    return out, tuple(damage)


def parse_fields(body: str) -> dict[str, str]:
    """``k=v k2="v2" ...`` -> {k: raw value} (what :func:`scan_fields` could read)."""
    return scan_fields(body)[0]


#: one value as _CLEAN_BODY admits it: "quoted" (no space or quote inside) or bare (no space or quote)
_VALUE = r'(?:"[!#-~]*+"|[!#-&(-~]*+)'
#: further clean fields after a layout's own, as one group (their names are checked for repeats)
_MORE = r"((?: [!#-&(-<>-~]++=" + _VALUE + r")*+)"


class Layout:
    """The order in which the kernel writes a record type's fields, as one regex.

    ``spec`` names the fields in order, ``[optional ones]`` in brackets (a bracket may
    hold several, present or absent together); ``names`` are the fields whose raw values
    :meth:`values` returns, in the spec's order.  Further clean fields may follow the
    spec's (an LSM's ``subj=``, a newer kernel's additions) as long as no name repeats.
    A match means exactly what :func:`scan_fields` would find: the same values, no damage.
    """

    __slots__ = ("_pattern", "fixed", "names")

    def __init__(self, spec: str, names: tuple[str, ...]) -> None:
        parts: list[str] = []
        fixed: list[str] = []
        for token in spec.replace("[", " [ ").replace("]", " ] ").split():
            if token == "[":
                parts.append("(?:")
            elif token == "]":
                parts.append(")?")
            else:
                value = f"({_VALUE})" if token in names else _VALUE
                parts.append(f"{' ' if fixed else ''}{re.escape(token)}={value}")
                fixed.append(token)
        if [n for n in fixed if n in names] != list(names):
            raise ValueError(f"layout {spec!r}: {names} must be fields of it, in its order")
        self._pattern = re.compile("".join(parts) + _MORE)
        self.fixed = frozenset(fixed)
        self.names = names

    def values(self, record: Record) -> tuple[str | None, ...]:
        """Raw values of :attr:`names` (None: absent): from one match when the body is laid out as
        the kernel writes it (the record is then known undamaged), else from its fields."""
        if not record.cut and len(record.body) <= MAX_BODY:
            m = self._pattern.fullmatch(record.body)
            if m is not None:
                groups = m.groups()
                more = groups[-1]
                if not more or self._distinct(more):
                    record._clean = True
                    return groups[:-1]
        get = record.fields.get
        return tuple([get(name) for name in self.names])

    def check(self, record: Record) -> None:
        """Learn whether ``record`` is damaged, by one match where the layout fits."""
        if not record._clean and record._fields is None:
            self.values(record)

    def _distinct(self, more: str) -> bool:
        names = [piece.partition("=")[0] for piece in more[1:].split(" ")]
        return len(set(names)) == len(names) and self.fixed.isdisjoint(names)


#: SYSCALL as audit_log_exit() writes it: the fields rows read, in this order
SYSCALL_LAYOUT = Layout(
    "arch syscall [per] [success exit] a0 a1 a2 a3 items ppid pid auid uid gid euid suid fsuid egid sgid fsgid "
    "tty ses comm exe [subj] [key]",
    (
        "arch",
        "syscall",
        "success",
        "exit",
        "a0",
        "ppid",
        "pid",
        "auid",
        "uid",
        "gid",
        "euid",
        "suid",
        "fsuid",
        "egid",
        "sgid",
        "fsgid",
        "exe",
    ),
)
#: PATH as audit_log_name() writes it (inode .. rdev only for a name that was found)
PATH_LAYOUT = Layout(
    "item name [inode dev mode ouid ogid rdev] [obj] nametype [cap_fp cap_fi cap_fe cap_fver] [cap_frootid]",
    ("item", "mode", "ouid", "ogid"),
)
CWD_LAYOUT = Layout("cwd", ("cwd",))
SADDR_LAYOUT = Layout("saddr", ("saddr",))
MAX_PLAIN_ARGS = 64  # an EXECVE record with up to this many plain arguments is matched whole
_PLAIN_ARGV: dict[int, re.Pattern[str]] = {}


def _plain_argv(record: Record) -> list[str] | None:
    """Raw aN values of an EXECVE record holding all of ``argc=N a0=.. a(N-1)=..`` (no chunks), else None."""
    body = record.body
    space = body.find(" ")
    count = body[5:space]
    if not (body.startswith("argc=") and count.isascii() and count.isdigit()) or record.cut:
        return None
    argc = int(count)
    if not 0 < argc <= MAX_PLAIN_ARGS or len(body) > MAX_BODY:
        return None
    pattern = _PLAIN_ARGV.get(argc)
    if pattern is None:
        pattern = _PLAIN_ARGV[argc] = re.compile("".join(f" a{i}=({_VALUE})" for i in range(argc)))
    m = pattern.fullmatch(body, space)  # from the space after argc=N
    if m is None:
        return None
    record._clean = True
    return list(m.groups())


def read_hex(value: str) -> tuple[bytes, str | None]:
    """(bytes, problem) of a hex field: the longest readable even-length prefix, and what is wrong past it."""
    try:
        return bytes.fromhex(value), None
    except ValueError:
        pass
    m = _HEX_PREFIX.match(value)
    digits = m.end() if m else 0
    data = bytes.fromhex(value[: digits - digits % 2])
    if digits < len(value):
        return data, f"not hex after {digits} digits: {_show(value[digits:])}"
    return data, f"odd number of hex digits ({digits}: cut short?)"


def decode_hex(value: str) -> bytes:
    """Bytes of a hex field (ValueError with the field text when it is not hex)."""
    data, problem = read_hex(value)
    if problem is not None:
        raise ValueError(f"not a hex-encoded value ({problem}): {_show(value)}")
    return data


def read_untrusted(value: str | None) -> tuple[str | None, str | None]:
    """(text, problem) of a string the kernel wrote quoted or as hex; ``(null)`` -> None.

    Bytes are decoded as UTF-8 with ``surrogateescape`` (a byte that is not UTF-8 is kept as
    U+DCHH, the rule of ``tables.text``: SQL shows it as ``\\xHH``).  Damaged hex keeps its readable
    prefix; a value that is neither quoted nor hex at all is kept as written.
    """
    if value is None:
        return None, None
    if value[:1] == '"':
        return (value[1:-1] if len(value) > 1 and value[-1] == '"' else value[1:]), None
    if value in _NULLS:
        return None, None
    data, problem = read_hex(value)
    if problem is not None and not data and not _HEX_PREFIX.fullmatch(value):
        return value, f"neither quoted nor hex: {_show(value)}"
    return data.decode("utf-8", "surrogateescape"), problem


def decode_untrusted(value: str | None) -> str | None:
    """A string the kernel wrote quoted or as hex; ``(null)`` -> None; bytes not UTF-8 kept (surrogateescape)."""
    return read_untrusted(value)[0]


class ExecveArgs(NamedTuple):
    """argv put back together from an event's EXECVE records, and what of it was damaged."""

    argv: list[str]
    argc: int | None
    damage: list[tuple[Record, Damage]]


def execve_args(records: list[Record]) -> ExecveArgs:
    """argv, argc and damage from an event's EXECVE records, long arguments put back together.

    A long argument arrives as ``aN_len=L aN[0]=... aN[1]=...`` possibly over several
    records; each chunk is hex or (when the argument needs no encoding) ``"quoted"``, and
    chunks are joined as bytes before decoding.  An argument that is odd-length or
    non-hex, has a missing chunk, or whose length disagrees with ``aN_len`` keeps what is
    readable and is named in ``damage``.  ``aN_len`` is the length as written (hex digits,
    or quoted characters) or, for an argument of 7,500 bytes or more, its length in bytes.
    """
    if len(records) == 1:
        plain = _plain_argv(records[0])
        if plain is not None:  # the usual record: every argument whole, in order
            return _decode_plain(records[0], plain)
    return _read_execve(records)


def _read_execve(records: list[Record]) -> ExecveArgs:
    """:func:`execve_args` field by field: any records, any order, chunks, damage."""
    argc: int | None = None
    args: dict[int, str] = {}
    damage: list[tuple[Record, Damage]] = []
    lengths: dict[int, tuple[str, Record]] | None = None  # created when an argument comes in chunks
    chunks: dict[int, dict[int, tuple[str, Record]]] | None = None
    for rec in records:
        for key, value in rec.fields.items():
            if key == "argc":
                try:
                    argc = int(value)
                except ValueError:
                    damage.append((rec, Damage(key, f"not a number: {_show(value)}")))
                continue
            if key[:1] != "a":
                continue
            rest = key[1:]
            if rest.isdigit():
                if value[:1] == '"':  # the usual form, read here without a call
                    args[int(rest)] = value[1:-1]
                    continue
                text, problem = read_untrusted(value)
                if problem is not None:
                    damage.append((rec, Damage(key, problem)))
                args[int(rest)] = text or ""
                continue
            if rest.endswith("_len") and rest[:-4].isdigit():
                if lengths is None:
                    lengths = {}
                lengths[int(rest[:-4])] = (value, rec)
                continue
            bracket = rest.find("[")
            if bracket > 0 and rest.endswith("]"):
                idx, part = rest[:bracket], rest[bracket + 1 : -1]
                if idx.isdigit() and part.isdigit():
                    if chunks is None:
                        chunks = {}
                    chunks.setdefault(int(idx), {})[int(part)] = (value, rec)
    if chunks is not None:
        for arg, parts in chunks.items():
            args[arg] = _join_chunks(arg, parts, lengths.get(arg) if lengths else None, damage)
    argv = [args[i] for i in sorted(args)]
    return ExecveArgs(argv, argc, damage)


def _decode_plain(record: Record, raw: list[str]) -> ExecveArgs:
    argv: list[str] = []
    damage: list[tuple[Record, Damage]] = []
    for i, value in enumerate(raw):
        if value[:1] == '"':
            argv.append(value[1:-1])
            continue
        text, problem = read_untrusted(value)
        if problem is not None:
            damage.append((record, Damage(f"a{i}", problem)))
        argv.append(text or "")
    return ExecveArgs(argv, len(raw), damage)


def _join_chunks(
    idx: int,
    parts: dict[int, tuple[str, Record]],
    length: tuple[str, Record] | None,
    damage: list[tuple[Record, Damage]],
) -> str:
    data = bytearray()
    written = 0  # characters as written: hex digits, or quoted characters
    for j in range(max(parts) + 1):
        got = parts.get(j)
        if got is None:
            rec = parts[min(parts)][1]
            damage.append((rec, Damage(f"a{idx}[{j}]", "missing (a record of the event was lost?)")))
            continue
        value, rec = got
        if value[:1] == '"':
            text = value[1:-1]
            data += text.encode("latin-1", "replace")
            written += len(text)
        else:
            chunk, problem = read_hex(value)
            if problem is not None:
                damage.append((rec, Damage(f"a{idx}[{j}]", problem)))
            data += chunk
            written += len(value)
    if length is None:
        rec = parts[min(parts)][1]
        damage.append((rec, Damage(f"a{idx}_len", "missing (a record of the event was lost?)")))
    else:
        text, rec = length
        if not text.isdigit():
            damage.append((rec, Damage(f"a{idx}_len", f"not a number: {_show(text)}")))
        elif int(text) not in (written, len(data)):
            damage.append(
                (rec, Damage(f"a{idx}", f"a{idx}_len={text} but {written} characters were logged (cut short?)"))
            )
    return data.decode("utf-8", "surrogateescape")


class SockAddr(NamedTuple):
    """A decoded ``saddr``: family and, by family, address + port or a UNIX path."""

    family: int
    address: str | None = None
    port: int | None = None
    path: str | None = None


def decode_sockaddr(saddr: str, *, big_endian: bool = False) -> SockAddr:
    """Decode the SOCKADDR ``saddr`` hex (sa_family in the ABI's byte order, port in network order).

    AF_UNIX abstract names (leading NUL) read ``@name`` as ``ss`` and osquery show them.
    ValueError when the text is not a sockaddr.
    """
    raw = decode_hex(saddr)
    if len(raw) < 2:
        raise ValueError(f"sockaddr too short: {saddr!r}")
    family = int.from_bytes(raw[:2], "big" if big_endian else "little")
    if family == 2:  # AF_INET
        if len(raw) < 8:
            raise ValueError(f"AF_INET sockaddr too short: {saddr!r}")
        return SockAddr(2, str(ipaddress.IPv4Address(raw[4:8])), int.from_bytes(raw[2:4], "big"))
    if family == 10:  # AF_INET6
        if len(raw) < 24:
            raise ValueError(f"AF_INET6 sockaddr too short: {saddr!r}")
        return SockAddr(10, str(ipaddress.IPv6Address(raw[8:24])), int.from_bytes(raw[2:4], "big"))
    if family == 1:  # AF_UNIX
        name = raw[2:]
        if not name:
            return SockAddr(1, path="")  # unnamed (e.g. an accept()ed peer)
        if name[:1] == b"\0":
            return SockAddr(1, path="@" + name[1:].decode("utf-8", "surrogateescape").replace("\0", "@"))
        return SockAddr(1, path=name.split(b"\0", 1)[0].decode("utf-8", "surrogateescape"))
    return SockAddr(family)
