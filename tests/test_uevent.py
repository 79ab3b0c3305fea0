"""eventsources.uevent: crafted uevent datagrams -> hardware_events rows, and the live kernel socket."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from eventsources.base import SourceUnavailable
from eventsources.uevent import UeventError, UeventSource, hardware_row, parse_uevent
from tables.events import EventStore
from tables.hardware_events import SPEC
from tables.sqlite import Database

DEVPATH = "/devices/pci0000:00/0000:00:14.0/usb1/1-1"


def _datagram(action: str, **env: str) -> bytes:
    fields = {"ACTION": action, "DEVPATH": DEVPATH, **env}
    return f"{action}@{DEVPATH}\0".encode() + b"".join(f"{k}={v}\0".encode() for k, v in fields.items())


USB_ADD = _datagram(
    "add",
    SUBSYSTEM="usb",
    MAJOR="189",
    MINOR="1",
    DEVNAME="bus/usb/001/002",
    DEVTYPE="usb_device",
    PRODUCT="46d/c52b/1211",
    TYPE="0/0/0",
    BUSNUM="001",
    DEVNUM="002",
    SEQNUM="2811",
)


def test_parse_uevent_header_and_env() -> None:
    ev = parse_uevent(USB_ADD)
    assert (ev.action, ev.devpath, ev.subsystem) == ("add", DEVPATH, "usb")
    assert ev.env["PRODUCT"] == "46d/c52b/1211" and ev.env["SEQNUM"] == "2811"


@pytest.mark.parametrize(
    "data",
    [b"libudev\0\xfe\xed\xca\xfe", b"no header here\0A=1\0", b"add@/devices/x\0NOEQUALS\0", b""],
)
def test_parse_uevent_rejects_what_is_not_a_kernel_uevent(data: bytes) -> None:
    with pytest.raises(UeventError):
        parse_uevent(data)


def test_crafted_usb_add_becomes_a_hardware_events_row() -> None:
    row = hardware_row(parse_uevent(USB_ADD))
    expected = {
        "action": "add",
        "path": "/dev/bus/usb/001/002",
        "type": "usb_device",
        "driver": None,
        "vendor": None,
        "vendor_id": "046d",
        "model": None,
        "model_id": "c52b",
        "serial": None,
        "revision": "1211",
    }
    assert {k: row[k] for k in expected} == expected
    assert set(row) == set(SPEC.column_names) - {"eid"}


def _fake_sysfs(root: Path) -> None:
    dev = root / DEVPATH.lstrip("/")
    dev.mkdir(parents=True)
    for name, value in {
        "idVendor": "046d",
        "idProduct": "c52b",
        "bcdDevice": "1211",
        "manufacturer": "Logitech",
        "product": "USB Receiver",
        "serial": "ABC123",
    }.items():
        (dev / name).write_text(value + "\n")


def test_source_names_from_sysfs_and_remembers_them_for_remove(tmp_path: Path) -> None:
    _fake_sysfs(tmp_path)
    rows: list[tuple[str, dict[str, Any]]] = []
    source = UeventSource(lambda t, r: rows.append((t, r)), sys_root=str(tmp_path))
    source.handle(USB_ADD)
    source.handle(_datagram("add", SUBSYSTEM="usb", DEVTYPE="usb_interface", PRODUCT="46d/c52b/1211"))  # skipped
    source.handle(_datagram("add", SUBSYSTEM="net", INTERFACE="eth9"))  # skipped
    source.handle(b"garbage")  # counted
    # sysfs disappears before the remove event arrives
    for f in (tmp_path / DEVPATH.lstrip("/")).iterdir():
        f.unlink()
    source.handle(
        _datagram("remove", SUBSYSTEM="usb", DEVTYPE="usb_device", PRODUCT="46d/c52b/1211", DEVNAME="bus/usb/001/002")
    )
    assert [t for t, _ in rows] == ["hardware_events", "hardware_events"]
    added, removed = rows[0][1], rows[1][1]
    for row, action in ((added, "add"), (removed, "remove")):
        assert row["action"] == action
        assert (row["vendor"], row["model"], row["serial"]) == ("Logitech", "USB Receiver", "ABC123")
        assert (row["vendor_id"], row["model_id"], row["revision"]) == ("046d", "c52b", "1211")
    status = source.status()
    assert (status.events_seen, status.parse_errors, status.extra["uevents"]) == (2, 1, 5)


def test_rows_are_queryable_through_the_table() -> None:
    store = EventStore("hardware_events")
    source = UeventSource(lambda t, r: store.add(r), sys_root="/nonexistent")
    source.handle(USB_ADD)
    db = Database([SPEC], services={"event_stores": {"hardware_events": store}})
    result = db.execute("SELECT action, vendor_id, model_id, path FROM hardware_events")
    assert [tuple(r) for r in result.rows] == [("add", "046d", "c52b", "/dev/bus/usb/001/002")]


async def test_live_socket_receives_a_synthetic_kernel_uevent() -> None:
    """The kernel's synthetic uevent on /dev/null's device (no USB devices exist on this VM)."""
    trigger = Path("/sys/devices/virtual/mem/null/uevent")
    if not trigger.exists():
        pytest.skip("no /sys/devices/virtual/mem/null/uevent to trigger a synthetic uevent")
    rows: list[dict[str, Any]] = []
    source = UeventSource(lambda t, r: rows.append(r), subsystems=("mem",), devtypes=None, actions=("change",))
    try:
        await source.start()
    except SourceUnavailable as exc:
        pytest.skip(f"the kernel refused a uevent socket: {exc}")
    try:
        mark = uuid.uuid4()
        try:
            trigger.write_text(f"change {mark} ZEEKAGENT=test")
        except OSError as exc:
            pytest.skip(f"the kernel refused a synthetic uevent: {exc}")
        deadline = time.monotonic() + 10
        while not rows and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
    finally:
        await source.stop()
    await source.stop()
    assert rows, "no uevent arrived on the live socket"
    assert rows[0]["action"] == "change" and rows[0]["path"] == "/dev/null"
    assert source.status().extra["uevents"] >= 1


NETNS_CHILD = """
import asyncio, json, socket, sys
sys.path.insert(0, sys.argv[1])
from eventsources.uevent import UeventSource
async def main():
    rows = []
    source = UeventSource(lambda t, r: rows.append([t, r]))  # the agent's defaults: USB devices, add/remove
    await source.start()
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 15)
    s.bind((0, 0))
    dev = "/devices/pci0000:00/0000:00:14.0/usb9/9-1"
    env = ["ACTION=add", "DEVPATH=" + dev, "SUBSYSTEM=usb", "DEVNAME=bus/usb/009/002", "DEVTYPE=usb_device",
           "PRODUCT=46d/c52b/1211", "SEQNUM=1"]
    s.sendto(b"junk without a header\\0", (0, 1))
    s.sendto(("\\0".join(["add@" + dev, *env, ""])).encode(), (0, 1))
    for _ in range(1000):
        if rows:
            break
        await asyncio.sleep(0.01)
    await source.stop()
    print(json.dumps({"rows": rows, "uevents": source.status().extra["uevents"],
                      "malformed": source.status().parse_errors}))
asyncio.run(main())
"""


def test_crafted_usb_uevent_on_the_live_socket_in_a_network_namespace() -> None:
    """A crafted USB add datagram sent to the kernel uevent group (in a netns of its own: no udevd sees it)."""
    repo = str(Path(__file__).resolve().parent.parent)
    try:
        out = subprocess.run(
            ["unshare", "-n", sys.executable, "-c", NETNS_CHILD, repo], capture_output=True, text=True, timeout=60
        )
    except FileNotFoundError:
        pytest.skip("no unshare(1) on this host")
    if out.returncode != 0 and out.stderr.startswith("unshare"):
        pytest.skip(f"cannot create a network namespace here: {out.stderr.strip()}")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["rows"], f"no hardware_events row: {result}"
    table, row = result["rows"][0]
    assert table == "hardware_events"
    assert (row["action"], row["type"], row["vendor_id"], row["model_id"], row["revision"], row["path"]) == (
        "add",
        "usb_device",
        "046d",
        "c52b",
        "1211",
        "/dev/bus/usb/009/002",
    )
    assert (result["uevents"], result["malformed"]) == (2, 1)  # the junk datagram is counted, not fatal
