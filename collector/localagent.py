"""``collectord --with-local-agent``: agentd on this machine as collectord's child, the whole pipeline in one command.

The child is ``agentd`` (the console script next to this Python, else ``python -m agent.daemon``:
a process, not an import; collector/ and agent/ share only protocol/) with its state in
``state/``, pointed at this collectord with its enroll secret. It runs in a session of its own,
so the terminal's Ctrl-C reaches collectord alone, which stops the agent first (SIGTERM: agentd
gives kernel audit back as it found it), then itself. An agent that ends on its own stops
collectord (status 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence

__all__ = ["LocalAgent", "agentd_command"]

log = logging.getLogger("collectord.local-agent")


def agentd_command() -> list[str]:
    """How to start agentd with this Python."""
    script = os.path.join(os.path.dirname(sys.executable), "agentd")
    if os.access(script, os.X_OK):
        return [script]
    return [sys.executable, "-m", "agent.daemon"]


class LocalAgent:
    """One agentd child process, started after collectord listens and stopped before it closes."""

    def __init__(
        self,
        url: str,
        enroll_secret_file: str,
        *,
        state_dir: str = "state",
        extra_args: Sequence[str] = (),
        on_exit: Callable[[int], None] | None = None,
    ) -> None:
        self.url = url
        self.enroll_secret_file = enroll_secret_file
        self.state_dir = state_dir
        self.extra_args = list(extra_args)
        self.on_exit = on_exit
        self.process: asyncio.subprocess.Process | None = None
        self._watch: asyncio.Task[None] | None = None
        self._stopping = False

    def command(self) -> list[str]:
        return [
            *agentd_command(),
            "--state-dir",
            self.state_dir,
            "--log-dir",
            os.path.join(self.state_dir, "log"),
            "--socket",
            os.path.join(self.state_dir, "agentd.sock"),
            "--collector",
            self.url,
            "--enroll-secret-file",
            self.enroll_secret_file,
            *self.extra_args,
        ]

    async def start(self) -> None:
        command = self.command()
        self.process = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.DEVNULL, start_new_session=True
        )
        log.info("local agent started (pid %d): %s", self.process.pid, " ".join(command))
        self._watch = asyncio.create_task(self._wait(), name="collectord-local-agent")

    async def _wait(self) -> None:
        assert self.process is not None
        code = await self.process.wait()
        if not self._stopping:
            log.error("the local agent (pid %d) exited with status %d", self.process.pid, code)
            if self.on_exit is not None:
                self.on_exit(code)

    async def stop(self, grace: float = 20.0) -> int | None:
        """SIGTERM, then wait (agentd restores kernel audit on its way out); SIGKILL after ``grace`` seconds."""
        self._stopping = True
        process = self.process
        if process is None:
            return None
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), grace)
            except TimeoutError:
                log.error("the local agent did not stop within %g s: killed (its successor restores audit)", grace)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        log.info("local agent stopped (status %s)", process.returncode)
        return process.returncode
