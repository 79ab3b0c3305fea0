"""The enroll secret and the operator token: read from a file, or generated into the state directory."""

from __future__ import annotations

import logging
import os
import secrets
import stat

__all__ = ["CredentialError", "load_secret"]

log = logging.getLogger(__name__)


class CredentialError(Exception):
    """A secret file cannot be used (the message names it and why)."""


def load_secret(path: str, *, what: str, generate: bool) -> tuple[str, bool]:
    """The secret in ``path`` (stripped); with ``generate``, a new one is written there (0600) if missing.

    Returns (secret, created).  A file others can read is used, with a warning.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            secret = handle.read().strip()
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if not generate:
            raise CredentialError(f"{what} file {path} does not exist") from None
        secret = secrets.token_urlsafe(32)
        os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise CredentialError(f"cannot create the {what} file {path}: {exc}") from None
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secret + "\n")
        return secret, True
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialError(f"cannot read the {what} file {path}: {exc}") from None
    if not secret:
        raise CredentialError(f"the {what} file {path} is empty")
    if len(secret) < 16:
        raise CredentialError(f"the {what} in {path} is too short: at least 16 characters")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s file %s can be read by other users (mode %o); chmod 600 it", what, path, mode & 0o777)
    return secret, False
