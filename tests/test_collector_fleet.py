"""collector.fleet: subnet groups (Zeek's osquery::join) by address (pure); the rest runs in test_collectord*.py."""

from __future__ import annotations

import ipaddress

from collector.fleet import subnet_membership

NET = ipaddress.ip_network


def test_subnet_membership():
    groups = {
        "lab": (NET("10.1.0.0/16"),),
        "v6": (NET("fd00::/8"),),
        "both": (NET("192.0.2.0/24"), NET("2001:db8::/32")),
        "none": (),
    }
    assert subnet_membership(["10.1.2.3", "127.0.0.1"], groups) == {"lab"}
    assert subnet_membership(["fe80::1%eth0", "fd00::5"], groups) == {"v6"}  # a zone index is ignored
    assert subnet_membership(["2001:db8::1"], groups) == {"both"}
    assert subnet_membership(["192.0.2.9", "10.1.0.1"], groups) == {"both", "lab"}
    assert subnet_membership(["not an address", ""], groups) == frozenset()
    assert subnet_membership([], groups) == frozenset()
    assert subnet_membership(["::ffff:10.1.0.1"], groups) == frozenset()  # a v6 address is not in a v4 range
