"""The shell's line editor: GNU readline driven through its callback interface, so that no Ctrl-C is lost.

``input()`` with the readline module waits for a key in select() and looks for signals only when select()
itself is interrupted (CPython gh-112585). A Ctrl-C delivered in the instant between the prompt being drawn
and select() starting is recorded by Python's C-level handler and then ignored: the line is not cleared, no
fresh prompt comes, and the interrupt surfaces only after the next Enter, discarding that line. On a loaded
machine that instant is wide enough to hit (a user typing Ctrl-C right after a prompt appears).

So :class:`LineEditor` runs readline's loop itself, as fdisk does: it waits with select() on the terminal
*and* on a signal wakeup pipe, and inside the editor SIGINT only sets a flag, seen by the read in progress or
the next one. Every Ctrl-C therefore either stops the code in :meth:`LineEditor.interruptible` (a running
query; KeyboardInterrupt as usual) or abandons the line being edited with a fresh prompt, whenever it comes.

One narrow window is left, inside readline: a Ctrl-C whose input flush takes away the key select() just
reported, in the microseconds before readline reads it, leaves readline waiting for a key; the Ctrl-C then
takes effect with the next key pressed (it is not lost).

The readline calls are those of CPython's Modules/readline.c (same library, same state: history, completer,
key bindings); without the readline module the terminal's own line editing (cooked mode) is used.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import os
import select
import signal
import sys
from collections.abc import Iterator
from types import FrameType, ModuleType
from typing import Any

__all__ = ["Key", "LineEditor"]


class Key(enum.Enum):
    """A read that ended without a line."""

    INTERRUPT = "interrupt"  # Ctrl-C: the line being edited is abandoned
    END = "end"  # Ctrl-D on an empty line, or the terminal is gone


_LINE_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)  # rl_vcpfunc_t: the line (malloc'ed) or NULL at EOF


class _Readline:
    """The GNU readline functions CPython's input() uses, reached through ctypes."""

    def __init__(self, module: ModuleType) -> None:
        lib = ctypes.CDLL(getattr(module, "__file__", None))  # the extension module, or the interpreter it is in
        self.install = lib.rl_callback_handler_install
        self.install.argtypes = [ctypes.c_char_p, _LINE_HANDLER]
        self.install.restype = None
        self.read_char = self._void(lib.rl_callback_read_char)
        self.remove = self._void(lib.rl_callback_handler_remove)
        self.free_line_state = self._void(lib.rl_free_line_state)
        self.cleanup_after_signal = self._void(lib.rl_cleanup_after_signal)
        self.sigcleanup = self._void(getattr(lib, "rl_callback_sigcleanup", None))  # readline >= 7
        self.resize_terminal = self._void(getattr(lib, "rl_resize_terminal", None))
        self.free = self._void(ctypes.CDLL(None).free, ctypes.c_void_p)
        # SIGINT is ours: readline must not install its own handler while it reads a key (input() does the same)
        ctypes.c_int.in_dll(lib, "rl_catch_signals").value = 0
        self.module = module

    @staticmethod
    def _void(function: Any, *argtypes: Any) -> Any:
        if function is None:
            return lambda *args: None
        function.argtypes = list(argtypes)
        function.restype = None
        return function


def _load(module: ModuleType | None) -> _Readline | None:
    if module is None:
        return None
    try:
        return _Readline(module)
    except (OSError, AttributeError, ValueError):  # no such symbol: an unusual build; cooked mode still works
        return None


class LineEditor:
    """Reads the shell's lines from its terminal without ever losing a Ctrl-C.

    Use it as a context manager around the whole session, and :meth:`interruptible` around what a Ctrl-C
    should stop. ``readline`` is the readline module (None: the terminal's own line editing).
    """

    def __init__(self, readline: ModuleType | None, fd: int | None = None) -> None:
        self.fd = sys.stdin.fileno() if fd is None else fd
        # as input(): readline only when it can draw on a terminal too (not for `agent-cli shell > file`)
        self._rl = _load(readline) if os.isatty(self.fd) and sys.stdout.isatty() else None
        self._interrupted = False
        self._resized = False
        self._wake_r = self._wake_w = -1
        self._previous: list[Any] = []
        self._typed = b""  # cooked mode: what was read past the last line returned

    @property
    def editing(self) -> bool:
        """True when readline edits the lines (history, completion), False in the terminal's cooked mode."""
        return self._rl is not None

    def __enter__(self) -> LineEditor:
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._previous = [
            signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False),
            signal.signal(signal.SIGINT, self._on_interrupt),
            signal.signal(signal.SIGWINCH, self._on_resize),
        ]
        return self

    def __exit__(self, *exc: object) -> None:
        wakeup, sigint, sigwinch = self._previous
        signal.signal(signal.SIGINT, signal.default_int_handler if sigint is None else sigint)
        signal.signal(signal.SIGWINCH, signal.SIG_DFL if sigwinch is None else sigwinch)
        signal.set_wakeup_fd(wakeup)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _on_interrupt(self, signum: int, frame: FrameType | None) -> None:
        self._interrupted = True

    def _on_resize(self, signum: int, frame: FrameType | None) -> None:
        self._resized = True

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """Inside, Ctrl-C raises KeyboardInterrupt (so a running query stops), also one pressed just before."""
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            if self._interrupted:  # pressed after the line was read: it was meant for what runs now
                self._interrupted = False
                raise KeyboardInterrupt
            yield
        finally:
            signal.signal(signal.SIGINT, self._on_interrupt)

    def read(self, prompt: str) -> str | Key:
        """The next line typed (without its newline), or why there is none."""
        sys.stdout.flush()
        sys.stderr.flush()
        return self._read_edited(prompt) if self._rl is not None else self._read_cooked(prompt)

    # -- reading ---------------------------------------------------------------------------------

    def _read_edited(self, prompt: str) -> str | Key:
        rl = self._rl
        assert rl is not None
        lines: list[int | None] = []  # what readline handed over: the line's address, or None at end of input

        def on_line(address: int | None) -> None:
            lines.append(address)
            rl.remove()  # as input() does: readline gives the terminal back before the line is used

        handler = _LINE_HANDLER(on_line)  # referenced until readline lets go of it (below)
        rl.install(prompt.encode(sys.stdout.encoding or "utf-8", "replace"), handler)
        try:
            while not lines and not self._interrupt_pending():
                if self._wait_for_key():
                    rl.read_char()
        finally:
            if not lines:  # interrupted (or failed): put readline back as input() does after a signal
                rl.free_line_state()
                rl.sigcleanup()
                rl.cleanup_after_signal()
                rl.remove()
        if not lines:
            return self._interrupt()
        address = lines[0]
        if address is None:
            return Key.END
        try:
            raw = ctypes.string_at(address)
        finally:
            rl.free(address)
        line = raw.decode(sys.stdin.encoding or "utf-8", sys.stdin.errors or "strict")
        if line and _last_history_item(rl.module) != line:
            rl.module.add_history(line)  # as input() does
        return line

    def _read_cooked(self, prompt: str) -> str | Key:
        sys.stdout.write(prompt)
        sys.stdout.flush()
        while b"\n" not in self._typed:
            if self._interrupt_pending():
                self._typed = b""
                return self._interrupt()
            if self._wait_for_key():
                data = os.read(self.fd, 4096)
                if not data:
                    if not self._typed:
                        return Key.END
                    self._typed += b"\n"  # Ctrl-D after some text ends that line
                self._typed += data
        raw, _, self._typed = self._typed.partition(b"\n")
        return raw.decode(sys.stdin.encoding or "utf-8", sys.stdin.errors or "strict")

    def _interrupt_pending(self) -> bool:
        """True once a Ctrl-C came. A call of its own: Python runs pending signal handlers as a function starts."""
        if self._resized and self._rl is not None:
            self._resized = False
            self._rl.resize_terminal()
        return self._interrupted

    def _wait_for_key(self) -> bool:
        """Wait until a key is there to read (True) or a signal came (False).

        A signal sent before this call has written to the wakeup pipe already, so select() returns at once:
        no signal is missed however late it comes. The pipe is emptied here; the handlers of what woke it
        have run before the caller looks at the flags (trip_signal sets them before it writes the pipe).
        """
        ready, _, _ = select.select([self.fd, self._wake_r], [], [])
        if self._wake_r in ready:
            try:
                while os.read(self._wake_r, 512):
                    pass
            except BlockingIOError:
                pass
        return self.fd in ready

    def _interrupt(self) -> Key:
        self._interrupted = False
        return Key.INTERRUPT


def _last_history_item(readline: ModuleType) -> str | None:
    length = readline.get_current_history_length()
    return readline.get_history_item(length) if length > 0 else None
