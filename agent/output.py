"""Result printers in osqueryi's modes: pretty (a box), json, csv, line.

Pure functions from (columns, rows) to text, so the shell, one-shot queries and
the control socket client print alike.  NULL prints as an empty string, as in
osqueryi; ``--json`` prints one row object per line with every value a string
(osqueryi's format, which its users' scripts parse).
"""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from collections.abc import Sequence
from typing import Any

__all__ = ["MODES", "escape_controls", "render"]

MODES = ("pretty", "json", "csv", "line")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return repr(value)
    return str(value)


def _width(text: str) -> int:
    """Display width: wide East Asian characters take two cells."""
    if text.isascii():
        return len(text)
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 0 if unicodedata.combining(c) else 1 for c in text)


#: Control characters shown escaped in the box: they would break its lines or drive the terminal
#: (a process may name itself with an ESC sequence).
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)} | {0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}


def escape_controls(text: str) -> str:
    """``text`` with control characters escaped (\\n, \\x1b, ...), safe to print on a terminal."""
    return text if text.isprintable() else text.translate(_ESCAPES)


def render_pretty(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A ``+---+`` box with a header row; nothing at all for an empty result."""
    if not rows:
        return ""
    cells = [[escape_controls(_text(v)) for v in row] for row in rows]
    widths = [_width(c) for c in columns]
    for row in cells:
        for i, text in enumerate(row):
            w = _width(text)
            if w > widths[i]:
                widths[i] = w
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(values: Sequence[str]) -> str:
        return "|" + "|".join(f" {v}{' ' * (w - _width(v))} " for v, w in zip(values, widths, strict=False)) + "|"

    out = [rule, line(list(columns)), rule]
    out.extend(line(row) for row in cells)
    out.append(rule)
    return "\n".join(out) + "\n"


def render_json(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """osqueryi's --json: ``[`` / one ``{...}`` per line, keys sorted, values strings / ``]``."""
    if not rows:
        return "[\n\n]\n"
    lines = []
    for row in rows:
        obj = {c: _text(v) for c, v in zip(columns, row, strict=False)}
        lines.append("  " + json.dumps(dict(sorted(obj.items())), ensure_ascii=False, separators=(",", ":")))
    return "[\n" + ",\n".join(lines) + "\n]\n"


def render_csv(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """RFC 4180 CSV with a header line."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_text(v) for v in row])
    return buf.getvalue() if rows or columns else ""


def render_line(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """``name = value`` per column, names right-aligned, a blank line between rows."""
    pad = max([5, *(len(c) for c in columns)])
    blocks = ["\n".join(f"{c:>{pad}} = {_text(v)}" for c, v in zip(columns, row, strict=False)) for row in rows]
    return "".join(b + "\n\n" for b in blocks)


_RENDERERS = {"pretty": render_pretty, "json": render_json, "csv": render_csv, "line": render_line}


def render(mode: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Text for ``rows`` in ``mode`` (one of MODES)."""
    try:
        renderer = _RENDERERS[mode]
    except KeyError:
        raise ValueError(f"mode should be one of: {' '.join(MODES)}") from None
    return renderer(columns, rows)
