"""Printers in osqueryi's output modes."""

from __future__ import annotations

import json

import pytest

from agent.output import render

COLUMNS = ["pid", "name"]
ROWS = [(1, "init"), (42, "日本"), (7, None)]


def test_pretty_box_pads_to_display_width() -> None:
    text = render("pretty", COLUMNS, ROWS)
    lines = text.splitlines()
    assert lines[0] == "+-----+------+"
    assert lines[1] == "| pid | name |"
    assert lines[3] == "| 1   | init |"
    assert lines[4] == "| 42  | 日本 |"
    assert lines[5] == "| 7   |      |"
    assert lines[-1] == lines[0]


def test_pretty_prints_nothing_for_no_rows() -> None:
    assert render("pretty", COLUMNS, []) == ""


def test_json_is_osqueryi_format() -> None:
    text = render("json", ["b", "a"], [(1, None), (2, "x")])
    assert text == '[\n  {"a":"","b":"1"},\n  {"a":"x","b":"2"}\n]\n'
    assert json.loads(text) == [{"a": "", "b": "1"}, {"a": "x", "b": "2"}]


def test_csv_quotes_and_has_a_header() -> None:
    assert render("csv", ["a", "b"], [(1, "x,y"), (2, 'q"')]) == 'a,b\n1,"x,y"\n2,"q"""\n'


def test_line_mode_aligns_names() -> None:
    assert render("line", ["a", "longname"], [(1, "x")]) == "       a = 1\nlongname = x\n\n"


def test_control_characters_do_not_break_the_box() -> None:
    text = render("pretty", ["c"], [("a\nb",)])
    assert "a\\nb" in text and len(text.splitlines()) == 5


def test_terminal_escapes_and_nul_are_shown_escaped() -> None:
    """A process named with an ESC sequence must not drive the reader's terminal from the box."""
    text = render("pretty", ["name"], [("evil\x1b[2J\x00",), (b"\x00\xffA",)])
    assert "\x1b" not in text and "\x00" not in text
    assert "evil\\x1b[2J\\x00" in text and "\\x00\ufffdA" in text
    assert len({len(line) for line in text.splitlines()}) == 1, "every line of the box is as wide"


def test_unknown_mode() -> None:
    with pytest.raises(ValueError, match="mode should be one of"):
        render("xml", COLUMNS, ROWS)
