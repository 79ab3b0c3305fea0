"""Python values for Zeek's types, where Python's own types are ambiguous.

Broker's JSON encoding is strictly typed: a count is not an int, a time is not a double, an
address is not a string (Zeek rejects every such mix-up). Python ``int`` is Zeek ``int``;
everything Python cannot tell apart has its own frozen type here.

| Zeek          | Python                                   |
|---------------|------------------------------------------|
| count         | :class:`Count` (an ``int`` subclass)     |
| int           | ``int``                                  |
| double        | ``float``                                |
| bool          | ``bool``                                 |
| string        | ``str`` (UTF-8 on the wire)              |
| addr          | ``ipaddress.IPv4Address``/``IPv6Address`` |
| subnet        | ``ipaddress.IPv4Network``/``IPv6Network`` |
| port          | :class:`Port`                            |
| time          | :class:`Time` (nanoseconds since epoch)  |
| interval      | :class:`Interval` (nanoseconds)          |
| enum          | :class:`Enum` (the value's full name)    |
| vector/record | ``list``/``tuple`` (records are vectors) |
| set           | ``frozenset``/``set``                    |
| table         | ``dict``                                 |
| (unset)       | ``None``                                 |
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Count(int):
    """A Zeek ``count``: an unsigned 64-bit integer (Broker ``count``)."""

    __slots__ = ()

    def __new__(cls, value: int) -> Count:
        if not 0 <= int(value) <= COUNT_MAX:
            raise ValueError(f"count out of range: {value}")
        return super().__new__(cls, value)

    def __repr__(self) -> str:
        return f"Count({int(self)})"


INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
COUNT_MAX = 2**64 - 1


class Proto(enum.Enum):
    """A port's transport protocol, as Broker spells it."""

    TCP = "tcp"
    UDP = "udp"
    ICMP = "icmp"
    UNKNOWN = "?"


@dataclass(frozen=True, slots=True)
class Port:
    """A Zeek ``port``: number and transport protocol (``80/tcp``)."""

    number: int
    proto: Proto = Proto.TCP

    def __post_init__(self) -> None:
        if not 0 <= self.number <= 65535:
            raise ValueError(f"port number out of range: {self.number}")

    def __str__(self) -> str:
        return f"{self.number}/{self.proto.value}"


@dataclass(frozen=True, slots=True, order=True)
class Time:
    """A Zeek ``time``: nanoseconds since the Unix epoch (Broker ``timestamp``)."""

    ns: int

    @classmethod
    def from_seconds(cls, seconds: float | int) -> Time:
        if isinstance(seconds, int):
            return cls(seconds * 1_000_000_000)
        return cls(round(seconds * 1_000_000_000))

    @property
    def seconds(self) -> float:
        return self.ns / 1e9


@dataclass(frozen=True, slots=True, order=True)
class Interval:
    """A Zeek ``interval``: nanoseconds (Broker ``timespan``)."""

    ns: int

    @classmethod
    def from_seconds(cls, seconds: float | int) -> Interval:
        if isinstance(seconds, int):
            return cls(seconds * 1_000_000_000)
        return cls(round(seconds * 1_000_000_000))

    @property
    def seconds(self) -> float:
        return self.ns / 1e9


@dataclass(frozen=True, slots=True)
class Enum:
    """A Zeek enum value by its full name (``osquery::ADD``, ``tcp``)."""

    name: str

    def __str__(self) -> str:
        return self.name
