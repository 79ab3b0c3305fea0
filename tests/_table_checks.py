"""Helpers for the file/mount/usb/network table tests: value-type validation of rows,
and a scratch network namespace with known interfaces, addresses, routes and neighbours.

Not a test module (leading underscore): imported by tests/test_<table>.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tables.spec import TableSpec

REPO = Path(__file__).resolve().parent.parent

_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "INTEGER": (int,),
    "BIGINT": (int,),
    "UNSIGNED_BIGINT": (int,),
    "DOUBLE": (float, int),
    "TEXT": (str,),
    "BLOB": (bytes,),
}


def assert_column_types(spec: TableSpec, rows: list[dict[str, Any]]) -> None:
    """Every value is NULL or of its column's declared type; no unknown columns."""
    types = {c.name: c.type for c in spec.columns}
    for row in rows:
        for name, value in row.items():
            assert name in types, f"{spec.name}: row has unknown column {name!r}"
            if value is None:
                continue
            wanted = _PYTHON_TYPES[types[name]]
            assert isinstance(value, wanted) and not isinstance(value, bool), (
                f"{spec.name}.{name}: {value!r} is not {types[name]}"
            )


def ip(*args: str) -> str:
    """Run ``ip`` and return stdout; a failure raises with ip's own message."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def ip_json(namespace: str, *args: str) -> Any:
    return json.loads(ip("-n", namespace, "-j", *args) or "[]")


@dataclass(frozen=True)
class Scratch:
    """What :func:`scratch_namespace` configured (the expected values of the tests)."""

    name: str
    mac: str = "02:00:00:00:77:01"
    peer_mac: str = "02:00:00:00:77:09"
    v4: str = "10.77.0.1"
    v4_peer: str = "10.77.0.2"
    v4_gateway_route: str = "10.88.0.0"
    v6: str = "fd77::1"
    v6_peer: str = "fd77::2"
    neighbour_mac: str = "02:00:00:00:77:02"
    neighbour6_mac: str = "02:00:00:00:77:03"
    ptp_local: str = "10.77.9.1"
    ptp_peer: str = "10.77.9.2"
    mtu: int = 1400

    def query(self, module: str, sql: str) -> list[dict[str, Any]]:
        """Run ``sql`` against ``tables.<module>`` inside the namespace (ip netns exec)."""
        code = (
            "import importlib, json, sys\n"
            "from tables.sqlite import Database\n"
            "spec = importlib.import_module('tables.' + sys.argv[1]).SPEC\n"
            "print(json.dumps(Database([spec]).execute(sys.argv[2]).dicts()))\n"
        )
        env = dict(os.environ, PYTHONPATH=str(REPO))
        done = subprocess.run(
            ["ip", "netns", "exec", self.name, sys.executable, "-c", code, module, sql],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@contextmanager
def scratch_namespace() -> Iterator[Scratch]:
    """A fresh network namespace: veth0/veth1 with addresses, a route, permanent neighbours.

    Skipped (with the kernel's reason) where network namespaces are refused; always
    deleted afterwards.
    """
    scratch = Scratch(name=f"agtest-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    try:
        ip("netns", "add", scratch.name)
    except (RuntimeError, FileNotFoundError) as exc:
        pytest.skip(f"cannot create a network namespace here: {exc}")
    n = scratch.name
    try:
        for args in (
            ("link", "set", "lo", "up"),
            ("link", "add", "veth0", "type", "veth", "peer", "name", "veth1"),
            ("link", "set", "veth0", "address", scratch.mac, "mtu", str(scratch.mtu)),
            ("link", "set", "veth1", "address", scratch.peer_mac),
            # No link-local addresses: the kernel would add them (and their routes) at some moment
            # after the links come up, racing every comparison of our rows with `ip`'s output.
            ("link", "set", "veth0", "addrgenmode", "none"),
            ("link", "set", "veth1", "addrgenmode", "none"),
            ("addr", "add", f"{scratch.v4}/24", "brd", "+", "dev", "veth0"),
            ("addr", "add", f"{scratch.v6}/64", "dev", "veth0", "nodad"),
            ("addr", "add", scratch.ptp_local, "peer", f"{scratch.ptp_peer}/32", "dev", "lo"),
            ("link", "set", "veth0", "up"),
            ("link", "set", "veth1", "up"),
            (
                "route",
                "add",
                f"{scratch.v4_gateway_route}/16",
                "via",
                scratch.v4_peer,
                "dev",
                "veth0",
                "metric",
                "50",
                "mtu",
                "1300",
                "hoplimit",
                "9",
            ),
            ("neigh", "add", scratch.v4_peer, "lladdr", scratch.neighbour_mac, "dev", "veth0", "nud", "permanent"),
            ("neigh", "add", scratch.v6_peer, "lladdr", scratch.neighbour6_mac, "dev", "veth0", "nud", "permanent"),
        ):
            ip("-n", n, *args)
        yield scratch
    finally:
        ip("netns", "del", n)
