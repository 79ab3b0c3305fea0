"""Reading a JSON-lines file that another process may be writing (or was killed writing)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """The complete lines of ``path`` as JSON objects; [] when it does not exist yet.

    A line is complete once its newline is written: the tail after the last newline is a
    write still in progress, or one a SIGKILL tore (the writer cuts that back on restart),
    so it is left out rather than parsed.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    complete = data[: data.rfind(b"\n") + 1].decode("utf-8", "surrogateescape")
    return [json.loads(line) for line in complete.splitlines() if line.strip()]
