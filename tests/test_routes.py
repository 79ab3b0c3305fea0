"""routes: a scratch namespace's routing tables (all tables, both families) vs what was configured."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tables import routes
from tables.sqlite import Database
from tests._table_checks import Scratch, assert_column_types, ip_json, scratch_namespace


@pytest.fixture(scope="module")
def scratch() -> Iterator[Scratch]:
    with scratch_namespace() as ns:
        yield ns


@pytest.fixture(scope="module")
def rows(scratch: Scratch) -> list[dict]:
    return scratch.query("routes", "SELECT * FROM routes")


def test_configured_route(scratch: Scratch, rows: list[dict]) -> None:
    [route] = [r for r in rows if r["destination"] == scratch.v4_gateway_route]
    assert route == {
        "destination": scratch.v4_gateway_route,
        "netmask": 16,
        "gateway": scratch.v4_peer,
        "source": None,
        "flags": 0,
        "interface": "veth0",
        "mtu": 1300,
        "metric": 50,
        "type": "gateway",
        "hopcount": 9,
    }


def test_connected_and_local_routes(scratch: Scratch, rows: list[dict]) -> None:
    keyed = {(r["destination"], r["netmask"], r["type"]): r for r in rows}
    connected = keyed[("10.77.0.0", 24, "gateway")]
    assert (connected["interface"], connected["source"], connected["gateway"]) == ("veth0", scratch.v4, None)
    assert keyed[(scratch.v4, 32, "local")]["interface"] == "veth0"
    assert keyed[("10.77.0.255", 32, "broadcast")]["interface"] == "veth0"
    assert keyed[("fd77::", 64, "gateway")]["interface"] == "veth0"


def test_every_route_of_ip_route_is_listed(scratch: Scratch, rows: list[dict]) -> None:
    for family, flag in ((4, "-4"), (6, "-6")):
        listed = ip_json(scratch.name, flag, "route", "show", "table", "all")
        ours = [r for r in rows if (":" in r["destination"]) == (family == 6)]
        assert len(ours) == len(listed), family
        dests = {(r["destination"], r["netmask"]) for r in ours}
        for entry in listed:
            dst = entry["dst"]
            if dst == "default":
                dst = "0.0.0.0/0" if family == 4 else "::/0"
            address, _, length = dst.partition("/")
            assert (address, int(length or (32 if family == 4 else 128))) in dests, entry


def test_type_constraint_on_additional_column(scratch: Scratch) -> None:
    local = scratch.query("routes", "SELECT destination FROM routes WHERE type = 'local'")
    assert {"10.77.0.1", "127.0.0.1", "10.77.9.1"} <= {r["destination"] for r in local}


def test_host_default_route_matches_ip_route() -> None:
    import json
    import subprocess

    out = json.loads(
        subprocess.run(
            ["ip", "-4", "-j", "route", "show", "default"], capture_output=True, text=True, check=True
        ).stdout
    )
    if not out:
        pytest.skip("this host has no IPv4 default route")
    rows = (
        Database([routes.SPEC])
        .execute(
            "SELECT gateway, interface FROM routes WHERE destination = '0.0.0.0' AND netmask = 0 AND type = 'gateway'"
        )
        .rows
    )
    assert {(r["gateway"], r["dev"]) for r in out} <= set(rows)


def test_column_types(rows: list[dict]) -> None:
    assert rows
    assert_column_types(routes.SPEC, rows)
