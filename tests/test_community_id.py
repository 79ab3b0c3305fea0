"""protocol.community_id against the Community ID specification's published test vectors.

The vectors (seed 0 and seed 1, base64) are those of the specification's reference
implementation (corelight/pycommunityid tests/communityid_test.py); each flow is also
checked in its reverse direction where the specification says both directions share an ID.
"""

from __future__ import annotations

import ipaddress
import re

import pytest

from protocol.community_id import (
    PROTO_ICMP,
    PROTO_ICMP6,
    PROTO_SCTP,
    PROTO_TCP,
    PROTO_UDP,
    community_id,
    community_id_v1,
)

# (proto, saddr, daddr, sport, dport, seed 0, seed 1)
VECTORS = [
    (
        PROTO_TCP,
        "128.232.110.120",
        "66.35.250.204",
        34855,
        80,
        "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
        "1:3V71V58M3Ksw/yuFALMcW0LAHvc=",
    ),
    (
        PROTO_TCP,
        "66.35.250.204",
        "128.232.110.120",
        80,
        34855,
        "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
        "1:3V71V58M3Ksw/yuFALMcW0LAHvc=",
    ),
    (PROTO_TCP, "10.0.0.1", "10.0.0.2", 10, 11569, "1:SXBGMX1lBOwhhoDrZynfROxnhnM=", "1:HmBRGR+fUyXF4t8WEtal7Y0gEAo="),
    (
        PROTO_UDP,
        "192.168.1.52",
        "8.8.8.8",
        54585,
        53,
        "1:d/FP5EW3wiY1vCndhwleRRKHowQ=",
        "1:Q9We8WO3piVF8yEQBNJF4uiSVrI=",
    ),
    (
        PROTO_UDP,
        "8.8.8.8",
        "192.168.1.52",
        53,
        54585,
        "1:d/FP5EW3wiY1vCndhwleRRKHowQ=",
        "1:Q9We8WO3piVF8yEQBNJF4uiSVrI=",
    ),
    (
        PROTO_SCTP,
        "192.168.170.8",
        "192.168.170.56",
        7,
        80,
        "1:jQgCxbku+pNGw8WPbEc/TS/uTpQ=",
        "1:Y1/0jQg6e+I3ZwZZ9LP65DNbTXU=",
    ),
    (
        PROTO_SCTP,
        "192.168.170.56",
        "192.168.170.8",
        80,
        7,
        "1:jQgCxbku+pNGw8WPbEc/TS/uTpQ=",
        "1:Y1/0jQg6e+I3ZwZZ9LP65DNbTXU=",
    ),
    # ICMP: echo request and reply share an ID; type 20 is not paired, so its code counts
    (
        PROTO_ICMP,
        "192.168.0.89",
        "192.168.0.1",
        8,
        0,
        "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=",
        "1:03g6IloqVBdcZlPyX8r0hgoE7kA=",
    ),
    (
        PROTO_ICMP,
        "192.168.0.1",
        "192.168.0.89",
        0,
        8,
        "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=",
        "1:03g6IloqVBdcZlPyX8r0hgoE7kA=",
    ),
    (
        PROTO_ICMP,
        "192.168.0.89",
        "192.168.0.1",
        20,
        0,
        "1:3o2RFccXzUgjl7zDpqmY7yJi8rI=",
        "1:lCXHHxavE1Vq3oX9NH5ladQg02o=",
    ),
    (
        PROTO_ICMP,
        "192.168.0.89",
        "192.168.0.1",
        20,
        1,
        "1:tz/fHIDUHs19NkixVVoOZywde+I=",
        "1:Ie3wmFyxiEyikbsbcO03d2nh+PM=",
    ),
    (
        PROTO_ICMP,
        "192.168.0.1",
        "192.168.0.89",
        0,
        20,
        "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=",
        "1:03g6IloqVBdcZlPyX8r0hgoE7kA=",
    ),
    # ICMPv6: neighbour solicitation/advertisement paired; time exceeded (3) is one-way
    (
        PROTO_ICMP6,
        "fe80::200:86ff:fe05:80da",
        "fe80::260:97ff:fe07:69ea",
        135,
        0,
        "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=",
        "1:kHa1FhMYIT6Ym2Vm2AOtoOARDzY=",
    ),
    (
        PROTO_ICMP6,
        "fe80::260:97ff:fe07:69ea",
        "fe80::200:86ff:fe05:80da",
        136,
        0,
        "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=",
        "1:kHa1FhMYIT6Ym2Vm2AOtoOARDzY=",
    ),
    (
        PROTO_ICMP6,
        "3ffe:507:0:1:260:97ff:fe07:69ea",
        "3ffe:507:0:1:200:86ff:fe05:80da",
        3,
        0,
        "1:NdobDX8PQNJbAyfkWxhtL2Pqp5w=",
        "1:OlOWx9psIbBFi7lOCw/4MhlKR9M=",
    ),
    (
        PROTO_ICMP6,
        "3ffe:507:0:1:200:86ff:fe05:80da",
        "3ffe:507:0:1:260:97ff:fe07:69ea",
        3,
        0,
        "1:/OGBt9BN1ofenrmSPWYicpij2Vc=",
        "1:Ij4ZxnC87/MXzhOjvH2vHu7LRmE=",
    ),
]

# Port-less protocol (46, RSVP): addresses only, both directions alike
IP_ONLY = [
    ("10.1.24.4", "10.1.12.1", "1:/nQI4Rh/TtY3mf0R2gJFBkVlgS4=", "1:BK3BVW3U2eemuwVQVN3zd/GULno="),
    ("10.1.12.1", "10.1.24.4", "1:/nQI4Rh/TtY3mf0R2gJFBkVlgS4=", "1:BK3BVW3U2eemuwVQVN3zd/GULno="),
]


@pytest.mark.parametrize(("proto", "saddr", "daddr", "sport", "dport", "seed0", "seed1"), VECTORS)
def test_specification_vectors(proto, saddr, daddr, sport, dport, seed0, seed1) -> None:
    assert community_id(proto, saddr, daddr, sport, dport) == seed0
    assert community_id(proto, saddr, daddr, sport, dport, seed=1) == seed1
    assert community_id(proto, ipaddress.ip_address(saddr), ipaddress.ip_address(daddr), sport, dport) == seed0
    # the SQL function's argument order and SQLite's value types
    assert community_id_v1(saddr, daddr, sport, dport, proto) == seed0
    assert community_id_v1(saddr, daddr, str(sport), str(dport), str(proto), 1) == seed1


@pytest.mark.parametrize(("saddr", "daddr", "seed0", "seed1"), IP_ONLY)
def test_specification_vectors_without_ports(saddr, daddr, seed0, seed1) -> None:
    assert community_id(46, saddr, daddr) == seed0
    assert community_id(46, saddr, daddr, seed=1) == seed1
    assert community_id(46, saddr, daddr, 1234, 80) == seed0  # ports do not count for port-less protocols


@pytest.mark.parametrize(
    ("saddr", "sport", "daddr", "dport", "expected"),
    [
        # written by Zeek 8.2.2's community-id logging for connections on loopback (equal addresses):
        # Zeek and Suricata order equal-address endpoints by htons(port) on little-endian hosts
        ("::1", 39296, "::1", 42073, "1:DJ1QklTguLBkv/SX2BEWsChIInE="),
        ("127.0.0.1", 46760, "127.0.0.1", 45679, "1:wMhmNK5TmIkGeuX13K+IjnMv97k="),
    ],
)
def test_equal_addresses_are_ordered_as_zeek_orders_them(saddr, sport, daddr, dport, expected) -> None:
    assert community_id(PROTO_TCP, saddr, daddr, sport, dport) == expected
    assert community_id(PROTO_TCP, daddr, saddr, dport, sport) == expected


def test_ipv6_and_scoped_addresses() -> None:
    a = community_id(PROTO_TCP, "::1", "::1", 5000, 80)
    assert a == community_id(PROTO_TCP, "::1", "::1", 80, 5000)
    assert community_id(PROTO_TCP, "fe80::1%eth0", "fe80::2", 1, 2) == community_id(
        PROTO_TCP, "fe80::1", "fe80::2", 1, 2
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((PROTO_TCP, "1.2.3.4", "::1", 1, 2), "not of one address family"),
        ((PROTO_TCP, "ohdear.com", "5.6.7.8", 1, 2), "source 'ohdear.com' is not an IP address"),
        ((PROTO_TCP, "1.2.3.4", None, 1, 2), "destination None is not an IP address"),
        ((PROTO_TCP, "1.2.3.4", "5.6.7.8"), "source port None"),
        ((PROTO_TCP, "1.2.3.4", "5.6.7.8", 23, 65536), "destination port 65536"),
        ((PROTO_UDP, "1.2.3.4", "5.6.7.8", "23", 80), "source port '23'"),
        ((256, "1.2.3.4", "5.6.7.8", 1, 2), "protocol 256"),
    ],
)
def test_bad_input_is_a_clear_error(args, message) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        community_id(*args)
    assert str(caught.value).startswith("community id: ")


def test_sql_function_gives_null_on_bad_input() -> None:
    assert community_id_v1("1.2.3.4", "::1", 1, 2, 6) is None
    assert community_id_v1(None, "1.2.3.4", 1, 2, 6) is None
    assert community_id_v1("1.2.3.4", "5.6.7.8", "x", 2, 6) is None
    assert community_id_v1("1.2.3.4", "5.6.7.8", 1, 2, 6, 70000) is None
