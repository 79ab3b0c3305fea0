"""agent.typed_json: dataclasses to JSON and back; what does not fit is an error naming the field."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from agent.typed_json import DecodeError, from_json, to_json


class Colour(enum.StrEnum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True, slots=True)
class Inner:
    name: str
    colour: Colour = Colour.RED
    weight: float = 0.0


@dataclass(frozen=True, slots=True)
class Outer:
    count: int
    flag: bool = False
    note: str | None = None
    inners: tuple[Inner, ...] = ()
    tags: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    maybe: Inner | None = None


def test_round_trip_through_json_text():
    value = Outer(
        count=3,
        flag=True,
        note="n",
        inners=(Inner("a", Colour.BLUE, 1.5), Inner("b")),
        tags=("x", "y"),
        extra={"nested": {"list": [1, "two", None]}},
        maybe=Inner("m"),
    )
    data = json.loads(json.dumps(to_json(value)))
    assert data["inners"][0] == {"name": "a", "colour": "blue", "weight": 1.5}
    assert from_json(Outer, data) == value


def test_missing_fields_take_defaults_and_unknown_keys_are_ignored():
    assert from_json(Outer, {"count": 1, "newer_field": [1, 2]}) == Outer(count=1)
    assert from_json(Outer, {"count": 1, "maybe": None}).maybe is None
    assert from_json(Inner, {"name": "i", "weight": 2}).weight == 2.0  # an integer is a number


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "outer: missing 'count'"),
        ({"count": "3"}, "outer.count: expected an integer, got '3'"),
        ({"count": True}, "outer.count: expected an integer, got True"),
        ({"count": 1, "flag": 1}, "outer.flag: expected true or false, got 1"),
        ({"count": 1, "inners": {"name": "a"}}, "outer.inners: expected a list"),
        (
            {"count": 1, "inners": [{"name": "a", "colour": "green"}]},
            "outer.inners[0].colour: 'green' is not one of red, blue",
        ),
        ({"count": 1, "inners": [{"name": 5}]}, "outer.inners[0].name: expected a string, got 5"),
        ({"count": 1, "tags": ["a", 2]}, r"outer.tags\[1\]: expected a string, got 2"),
        ({"count": 1, "extra": []}, "outer.extra: expected an object"),
        ({"count": 1, "maybe": "x"}, "outer.maybe: expected an object, got 'x'"),
        ([1], r"outer: expected an object, got \[1\]"),
    ],
)
def test_what_does_not_fit_names_the_field(data, message):
    with pytest.raises(DecodeError, match=message.replace("[0]", r"\[0\]")):
        from_json(Outer, data, "outer")
