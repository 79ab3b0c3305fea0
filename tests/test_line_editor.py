"""LineEditor on a real pseudo-terminal: lines, Ctrl-D, and Ctrl-C whenever it comes (never lost)."""

from __future__ import annotations

import os
import signal
import sys
import termios

import pytest

from tests._terminal import Terminal

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The program under test: reads lines and says what it got, one "[...]" per read.
CHILD = r"""
import os, signal, sys
from agent.line_editor import Key, LineEditor

mode, sync = sys.argv[1], int(sys.argv[2])
readline = None
if mode != "cooked":
    import readline
if mode == "ctrl-c-before-the-wait":
    sent = []

    def ctrl_c_once():  # runs once the prompt is drawn, before the editor waits for a key
        if not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGINT)

    readline.set_pre_input_hook(ctrl_c_once)
with LineEditor(readline) as editor:
    print("editing" if editor.editing else "cooked", flush=True)
    while True:
        got = editor.read("> ")
        print(f"\n[{got.name if isinstance(got, Key) else repr(got)}]", flush=True)
        if got is Key.END:
            break
        if got == "spin":
            try:
                with editor.interruptible():
                    print("spinning", flush=True)
                    while True:
                        pass
            except KeyboardInterrupt:
                print("stopped", flush=True)
        if got == "hold":
            print("holding", flush=True)
            os.read(sync, 1)  # the test sends SIGINT, then a byte here
            try:
                with editor.interruptible():
                    print("ran", flush=True)
            except KeyboardInterrupt:
                print("stopped before it ran", flush=True)
if readline is not None:
    history = [readline.get_history_item(i) for i in range(1, readline.get_current_history_length() + 1)]
    print(f"history={history!r}", flush=True)
"""


@pytest.fixture
def start(tmp_path):
    """start(mode) -> (Terminal, sync write end): CHILD on a new terminal; every one is killed at the end."""
    started: list[tuple[Terminal, int]] = []
    (tmp_path / "inputrc").write_text("")  # no system or user key bindings
    env = {**os.environ, "PYTHONPATH": ROOT, "HOME": str(tmp_path), "INPUTRC": str(tmp_path / "inputrc")}
    env["TERM"] = "dumb"

    def _start(mode: str) -> tuple[Terminal, int]:
        sync_r, sync_w = os.pipe()
        term = Terminal([sys.executable, "-c", CHILD, mode, str(sync_r)], env=env, cwd=ROOT, pass_fds=[sync_r])
        os.close(sync_r)
        started.append((term, sync_w))
        term.expect("cooked" if mode == "cooked" else "editing")
        return term, sync_w

    yield _start
    for term, sync_w in started:
        term.kill()
        os.close(sync_w)


def test_lines_history_and_ctrl_d(start) -> None:
    term, _ = start("readline")
    term.expect("> ")
    assert not term.local_modes() & termios.ICANON  # readline has the terminal while a line is edited
    for line in ("SELECT 1", "SELECT 1", "", "two words"):
        term.send(line + "\r")
        assert f"[{line!r}]" in term.expect("]")
        term.expect("> ")
    term.send("\x04")  # Ctrl-D on an empty line
    term.expect("[END]")
    assert "history=['SELECT 1', 'two words']" in term.expect("]")  # as input(): no repeats, no empty lines
    assert term.close() == 0


def test_ctrl_c_right_after_each_prompt_always_gives_a_fresh_prompt(start) -> None:
    """The race input() loses (CPython gh-112585): a Ctrl-C just as the prompt shows. Many in a row, all seen."""
    term, _ = start("readline")
    for _ in range(30):
        term.expect("> ")
        term.send("typed, then abandoned\x03")
        term.expect("[INTERRUPT]")
    term.expect("> ")
    term.send("kept\r")
    term.expect("['kept']")
    term.expect("> ")
    term.send("\x04")
    term.expect("[END]")
    assert "history=['kept']" in term.expect("]")
    assert term.close() == 0


def test_ctrl_c_after_the_prompt_is_drawn_before_the_editor_waits(start) -> None:
    """The window input() loses, made certain: SIGINT arrives after the prompt and before the wait for a key."""
    term, _ = start("ctrl-c-before-the-wait")
    term.expect("> ")
    term.expect("[INTERRUPT]")  # nothing typed: the Ctrl-C alone ends the read
    term.expect("> ")
    term.send("next\r")
    term.expect("['next']")
    term.expect("> ")  # before the prompt the terminal is cooked: it would not pass Ctrl-D on as a key
    term.send("\x04")
    assert term.close() == 0


def test_ctrl_c_stops_what_runs_and_the_terminal_is_given_back(start) -> None:
    term, _ = start("readline")
    term.expect("> ")
    term.send("spin\r")
    term.expect("spinning")
    modes = term.local_modes()
    assert modes & termios.ICANON and modes & termios.ECHO and modes & termios.ISIG  # cooked again while it runs
    term.send("\x03")
    term.expect("stopped")
    term.expect("> ")
    term.send("after\r")
    term.expect("['after']")  # the Ctrl-C was used up: it does not also abandon the next line
    term.expect("> ")
    term.send("\x04")
    assert term.close() == 0


def test_ctrl_c_between_reading_a_line_and_running_it_stops_what_runs(start) -> None:
    term, sync_w = start("readline")
    term.expect("> ")
    term.send("hold\r")
    term.expect("holding")  # the line is read; nothing interruptible runs yet
    os.kill(term.proc.pid, signal.SIGINT)
    os.write(sync_w, b"x")
    term.expect("stopped before it ran")
    term.expect("> ")
    term.send("after\r")
    term.expect("['after']")
    term.expect("> ")
    term.send("\x04")
    assert term.close() == 0


def test_without_readline_the_terminal_edits_and_ctrl_c_works_the_same(start) -> None:
    term, _ = start("cooked")
    term.expect("> ")
    assert term.local_modes() & termios.ICANON
    term.send("a line\r")
    term.expect("['a line']")
    for _ in range(5):
        term.expect("> ")
        term.send("typed, then abandoned\x03")
        term.expect("[INTERRUPT]")
    term.expect("> ")
    term.send("spin\r")
    term.expect("spinning")
    term.send("\x03")
    term.expect("stopped")
    term.expect("> ")
    term.send("\x04")
    term.expect("[END]")
    assert term.close() == 0
