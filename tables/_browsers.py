"""Shared helpers for the browser extension tables: reading manifests under users' homes."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from ._files import read_bytes

__all__ = ["list_dirs", "load_json", "manifest"]


def list_dirs(path: str) -> list[str]:
    """Names of the sub-directories of ``path``, sorted; [] when it is missing."""
    try:
        return sorted(e.name for e in os.scandir(path) if e.is_dir(follow_symlinks=False))
    except OSError:
        return []


def load_json(path: str) -> Any | None:
    """The parsed JSON file, or None when it is missing or not JSON."""
    data = read_bytes(path)
    if data is None:
        return None
    try:
        return json.loads(data.decode("utf-8-sig", "surrogateescape"))
    except ValueError:
        return None


def manifest(path: str) -> tuple[dict[str, Any], str, str] | None:
    """(manifest, raw text, sha256) of a manifest.json; None when missing or malformed."""
    data = read_bytes(path)
    if data is None:
        return None
    text = data.decode("utf-8-sig", "surrogateescape")
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    return parsed, text, hashlib.sha256(data).hexdigest()
