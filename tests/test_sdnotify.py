"""sd_notify over a real datagram socket the test binds (path and abstract names)."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

from agent.sdnotify import Notifier, watchdog_interval


@pytest.fixture(params=["path", "abstract"])
def listener(request, tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        name = str(tmp_path / "notify.sock")
        sock.bind(name)
    else:
        name = f"@agentd-test-{uuid.uuid4().hex}"
        sock.bind(b"\0" + name[1:].encode())
    sock.settimeout(5)
    yield name, sock
    sock.close()


def test_ready_status_watchdog_stopping(listener):
    name, sock = listener
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": name})
    assert notifier.enabled
    assert notifier.ready("serving 3 queries")
    assert sock.recv(4096) == b"READY=1\nSTATUS=serving 3 queries"
    assert notifier.status("busy")
    assert sock.recv(4096) == b"STATUS=busy"
    assert notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1"
    notifier.close()


def test_no_socket_is_a_noop():
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert notifier.ready() is False


def test_unreachable_socket_is_logged_not_raised(tmp_path, caplog):
    notifier = Notifier(str(tmp_path / "nobody-listens"))
    assert notifier.ready() is False
    assert "sd_notify" in caplog.text
    notifier.close()


def test_watchdog_interval():
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "zero"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
