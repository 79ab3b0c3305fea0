"""The agent's durable state, opened together at startup: state database, results log, identity.

:meth:`Stores.open` either returns all of it, complete, or closes what it opened and
raises :class:`~agent.lifecycle.StartupError` with the one line agentd logs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .hostid import HostIdError, host_identifier
from .lifecycle import StartupError
from .options import Options
from .results import ResultWriter
from .state import StateDB, StateError

__all__ = ["STATE_DB", "Stores"]

#: The state database's file name in the state directory.
STATE_DB = "agentd.db"


@dataclass(frozen=True, slots=True)
class Stores:
    """The state database (previous results, outbox, denylist, splay), the results log, the host's names."""

    statedb: StateDB
    writer: ResultWriter
    log_dir: str
    host_identifier: str  # hostIdentifier in result lines
    instance_id: str  # this agent's state, stable across restarts

    @classmethod
    def open(cls, state_dir: str, log_dir: str, options: Options) -> Stores:
        """Open the state directory and database, name the host, open the results log."""
        try:
            os.makedirs(state_dir, mode=0o700, exist_ok=True)
            statedb = StateDB(os.path.join(state_dir, STATE_DB))
        except (OSError, StateError) as exc:
            raise StartupError(f"cannot open the state directory {state_dir}: {exc}") from exc
        try:
            try:
                identifier = host_identifier(
                    options.host_identifier, specified=options.specified_identifier, state=statedb
                )
            except HostIdError as exc:
                raise StartupError(f"config error: {exc}") from exc
            try:
                writer = ResultWriter(
                    log_dir,
                    max_bytes=options.logger_rotate_size,
                    backups=options.logger_rotate_max_files,
                    mode=options.logger_mode,
                )
            except OSError as exc:
                raise StartupError(f"cannot use the log directory {log_dir}: {exc}") from exc
            return cls(statedb, writer, log_dir, identifier, statedb.instance_id())
        except BaseException:
            statedb.close()
            raise

    def close(self) -> None:
        self.statedb.close()
