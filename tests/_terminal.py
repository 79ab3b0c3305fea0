"""A program on a real pseudo-terminal, driven as a user at a keyboard drives it (Ctrl-C sends SIGINT)."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import subprocess
import termios
import time
from collections.abc import Sequence


def _controlling_terminal() -> None:
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """``argv`` with the slave side of a new pty as its stdin, stdout, stderr and controlling terminal."""

    def __init__(self, argv: Sequence[str], *, env: dict[str, str], cwd: str, pass_fds: Sequence[int] = ()) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            list(argv),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=cwd,
            close_fds=True,
            pass_fds=tuple(pass_fds),
            preexec_fn=_controlling_terminal,  # so Ctrl-C on the terminal sends SIGINT, as for a user
        )
        # kept open to read the terminal's settings (O_NOCTTY: not ours to control)
        self.slave = os.open(os.ttyname(slave), os.O_RDWR | os.O_NOCTTY)
        os.close(slave)
        self.seen = b""

    def expect(self, text: str, timeout: float = 30) -> str:
        """Read until ``text`` shows; return everything read since the last expect."""
        deadline = time.monotonic() + timeout
        while text.encode() not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"{text!r} never showed; the terminal shows {self.seen.decode(errors='replace')!r}"
            if select.select([self.master], [], [], left)[0]:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # the program exited: no more to read
                    chunk = b""
                if not chunk:
                    break
                self.seen += chunk
        assert text.encode() in self.seen, self.seen.decode(errors="replace")
        head, _, self.seen = self.seen.partition(text.encode())
        return (head + text.encode()).decode(errors="replace")

    def send(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def local_modes(self) -> int:
        """The terminal's c_lflag now (ICANON, ECHO, ISIG, NOFLSH, ...)."""
        return termios.tcgetattr(self.slave)[3]

    def close(self) -> int:
        """Wait for the program to exit; its exit status."""
        try:
            return self.proc.wait(timeout=30)
        finally:
            self.kill()

    def kill(self) -> None:
        """Kill the program if it still runs and close the terminal (once; later calls do nothing)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.master >= 0:
            os.close(self.master)
            os.close(self.slave)
            self.master = self.slave = -1
