"""The zeek/ package judged by Zeek itself (zeek -a, and a running Zeek fed by the link client),
and by the zeekscript parser. Without a Zeek binary (PATH or $ZEEK) the Zeek tests skip."""

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from collector.zeek import protocol as p
from collector.zeek.client import ZeekEndpoint, ZeekLink
from collector.zeek.columns import Action, EventSignature, RowEncoder
from collector.zeek.link import Delivered, LinkState, Synced, ZeekBatch
from tests.zeek_double import README_EXAMPLE

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "zeek" / "scripts"
ZEEK_FILES = sorted(SCRIPTS.rglob("*.zeek"))


def zeek_binary():
    found = os.environ.get("ZEEK") or shutil.which("zeek")
    if not found:
        pytest.skip("no Zeek binary: put zeek on PATH or set $ZEEK (see .ci/run)")
    return found


def zeek_version(zeek) -> tuple[int, int]:
    """(major, minor) of a Zeek binary, from ``zeek --version`` ("zeek version 8.2.2")."""
    out = subprocess.run([zeek, "--version"], capture_output=True, text=True, timeout=60).stdout
    found = re.search(r"version (\d+)\.(\d+)", out)
    assert found, f"zeek --version said: {out!r}"
    return int(found.group(1)), int(found.group(2))


def zeek_env(zeek):
    default = subprocess.run([str(Path(zeek).parent / "zeek-config"), "--zeekpath"], capture_output=True, text=True)
    path = default.stdout.strip() if default.returncode == 0 else ""
    env = dict(os.environ, ZEEKPATH=f"{SCRIPTS}:{path}" if path else str(SCRIPTS))
    if not path:
        pytest.skip("zeek-config --zeekpath did not answer; cannot extend ZEEKPATH")
    return env


def test_zkg_meta_names_the_script_dir_and_aliases():
    meta = (ROOT / "zeek" / "zkg.meta").read_text()
    assert "script_dir = scripts/osquery" in meta
    assert "aliases = osquery zeek-osquery-framework" in meta
    assert (SCRIPTS / "osquery" / "__load__.zeek").exists()


@pytest.mark.parametrize("path", ZEEK_FILES, ids=lambda p: str(p.relative_to(SCRIPTS)))
def test_zeekscript_parses(path):
    zeekscript = pytest.importorskip("zeekscript", reason="zeekscript (test extra) is not installed")
    script = zeekscript.Script(path)
    assert script.parse(), f"{path}: {script.get_error()}"
    assert not script.has_error(), f"{path}: {script.get_error()}"


@pytest.mark.parametrize(
    "load",
    ["osquery", "zeek-osquery-framework", "osquery/tables"]
    + [
        f"osquery/tables/{p.stem}"
        for p in sorted((SCRIPTS / "osquery" / "tables").glob("*.zeek"))
        if p.stem != "__load__"
    ],
)
def test_zeek_type_checks(load, tmp_path):
    zeek = zeek_binary()
    for bare in ([], ["-b"]):
        proc = subprocess.run(
            [zeek, *bare, "-a", load], cwd=tmp_path, env=zeek_env(zeek), capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0 and not proc.stderr, f"zeek {' '.join(bare)} -a {load}: {proc.stderr}"


def test_readme_example_type_checks(tmp_path):
    zeek = zeek_binary()
    script = tmp_path / "example.zeek"
    script.write_text("@load zeek-osquery-framework\n" + README_EXAMPLE)
    proc = subprocess.run(
        [zeek, "-a", str(script)], cwd=tmp_path, env=zeek_env(zeek), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and not proc.stderr, proc.stderr


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningZeek:
    def __init__(self, zeek, workdir, port, script):
        self.workdir = workdir
        (workdir / "local.zeek").write_text(
            f"@load osquery/tables\nredef exit_only_after_terminate = T;\nredef osquery::websocket_port = {port}/tcp;\n"
            + script
        )
        self.proc = subprocess.Popen(
            [zeek, "-b", "local.zeek"],
            cwd=workdir,
            env=zeek_env(zeek),
            stdout=open(workdir / "stdout", "w"),
            stderr=open(workdir / "stderr", "w"),
        )

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()  # a shutdown hang was seen once on 8.2.2
                self.proc.wait()

    def text(self, name):
        path = self.workdir / name
        return path.read_text() if path.exists() else ""


async def _wait(cond, what, timeout=60.0):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_link_client_publishes_into_real_zeek(tmp_path):
    zeek = zeek_binary()
    port = free_port()
    zk = RunningZeek(
        zeek, tmp_path, port, README_EXAMPLE.replace("event zeek_init()", "event zeek_init() &priority=-10")
    )
    notes = []
    link = ZeekLink(
        ZeekEndpoint.parse(f"ws://127.0.0.1:{port}"),
        "test-collector",
        lambda _l, n: notes.append(n),
        backoff_initial=0.2,
        backoff_max=1.0,
    )
    await link.start()
    try:
        await _wait(lambda: link.core.state is LinkState.READY or zk.proc.poll() is not None, "the framework's sync")
        assert zk.proc.poll() is None, zk.text("stderr")
        synced = next(n for n in notes if isinstance(n, Synced))
        by_event = {r.ev_name: r for r in synced.requests if isinstance(r, p.QueryRequest)}
        assert set(by_event) >= {
            "host_server_apps",
            "osquery::table_processes",
            "osquery::table_socket_events",
            "osquery::table_usb_devices",
        }
        example = by_event["host_server_apps"]
        assert example.ev_type == "event(resultInfo:osquery::ResultInfo, username:string, name:string, port_number:int)"
        assert (example.utype, example.interval) == (p.UpdateType.ADD, 10)
        assert (
            by_event["osquery::table_processes"].interval == 2
            and by_event["osquery::table_processes"].utype is p.UpdateType.BOTH
        )

        link.host_connected("host-1", "web1", ["10.0.0.5"], ["all"])
        ex = RowEncoder(EventSignature.parse(example.ev_name, example.ev_type), ["username", "name", "port"])
        se_req = by_event["osquery::table_socket_events"]
        se = RowEncoder(
            EventSignature.parse(se_req.ev_name, se_req.ev_type),
            [
                "action",
                "pid",
                "fd",
                "path",
                "family",
                "protocol",
                "local_address",
                "remote_address",
                "local_port",
                "remote_port",
                "time",
                "success",
            ],
        )
        info = ex.result_info("host-1", Action.ADDED, "")
        link.submit(
            ZeekBatch("host-1", 1, (ex.encode(info, ["root", "sshd", 22]), ex.encode(info, ["www", "nginx", "443"])))
        )
        link.submit(
            ZeekBatch(
                "host-1",
                2,
                (
                    se.encode(
                        info, ["connect", 4242, "3", "/usr/bin/curl", 2, 6, "", "93.184.216.34", 0, 443, 1714564800, 1]
                    ),
                ),
            )
        )
        await _wait(
            lambda: (
                sorted(k for n in notes if isinstance(n, Delivered) for k in n.batches)
                == [("host-1", 1), ("host-1", 2)]
            ),
            "the framework's acks",
        )
        link.core.send_event(p.error_event("", "SNAPSHOT", "", "host_server_apps", "no such table: nope"))
        link.host_disconnected("host-1")
        await asyncio.sleep(1.5)
    finally:
        await link.stop()
        zk.stop()
    out = zk.text("stdout")
    assert "[Host host-1] User 'root' is running server application 'sshd' on port 22" in out
    assert "[Host host-1] User 'www' is running server application 'nginx' on port 443" in out
    sockets = zk.text("osq-socket_events.log")
    assert "#fields\tt\thost\taction\tpid\tfd\tpath\tfamily\tprotocol\tlocal_address\tremote_address" in sockets
    assert "\thost-1\tconnect\t4242\t3\t/usr/bin/curl\t2\t6\t0.0.0.0\t93.184.216.34\t0\t443\t1714564800\t1" in sockets
    log = zk.text("osquery.log")
    assert "host connected: web1" in log and "host disconnected" in log and "no such table: nope" in log
    assert "subscribe 'SELECT u.username" in zk.text("osquery_hosts.log")
    marks = zk.text("osquery-delivery.state")
    assert "host-1\t2\t0" in marks, marks
    assert "error" not in zk.text("stderr").lower(), zk.text("stderr")

    # Restarted, Zeek reads its delivery marks back before it answers a collector.
    zk2 = RunningZeek(zeek, tmp_path, port, README_EXAMPLE)
    notes2 = []
    link2 = ZeekLink(
        ZeekEndpoint.parse(f"ws://127.0.0.1:{port}"),
        "test-collector",
        lambda _l, n: notes2.append(n),
        backoff_initial=0.2,
        backoff_max=1.0,
    )
    # a restarted collectord does not know whether batch 2 reached Zeek: Zeek's marks decide
    link2.resume(ZeekBatch("host-1", 2, (ex.encode(info, ["again", "sshd", 22]),)))
    link2.submit(ZeekBatch("host-1", 3, (ex.encode(info, ["new", "sshd", 22]),)))
    await link2.start()
    try:
        await _wait(
            lambda: (
                sorted(k for n in notes2 if isinstance(n, Delivered) for k in n.batches)
                == [("host-1", 2), ("host-1", 3)]
            ),
            "acks after the restart",
        )
        await asyncio.sleep(0.5)
    finally:
        await link2.stop()
        zk2.stop()
    assert "delivery marks of 1 hosts loaded" in zk2.text("osquery.log")
    assert "User 'again'" not in zk2.text("stdout") and "User 'new' is running" in zk2.text("stdout")


@pytest.mark.parametrize("load", ["osquery/tables", "osquery/attribution"])
def test_older_zeek_gets_one_clear_error(tmp_path, load):
    """A Zeek older than 6.0 (simulated: the package's version gate raised past this Zeek's) loads the
    API and the table scripts without parse errors and stops at start with one message saying why."""
    zeek = zeek_binary()
    scripts = tmp_path / "scripts"
    shutil.copytree(SCRIPTS, scripts)
    gates = [path for path in scripts.rglob("*.zeek") if "Version::number >= 60000" in path.read_text()]
    assert {path.name for path in gates} == {"__load__.zeek", "attribution.zeek"}
    for path in gates:
        path.write_text(path.read_text().replace("Version::number >= 60000", "Version::number >= 99999999"))
    env = zeek_env(zeek)
    env["ZEEKPATH"] = env["ZEEKPATH"].replace(str(SCRIPTS), str(scripts))
    proc = subprocess.run([zeek, "-b", load], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, proc.stderr
    assert "needs Zeek 6.0 or newer" in errors[0]


async def test_link_over_tls_needs_collectords_client_certificate(tmp_path, caplog):
    """wss:// to the package's listener with client certificates required: Zeek 7.2+'s own TLS
    options (osquery::websocket_tls_*), or before 7.2 Broker's (which, with a CA set, always asks
    for one). collectord presents ``[[zeek]] cert``/``key``; without them it never gets through."""
    trustme = pytest.importorskip("trustme", reason="trustme (test extra) is not installed")
    zeek = zeek_binary()
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    client = ca.issue_cert("collectord")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "zeek.pem"))
    server.private_key_pem.write_to_path(str(tmp_path / "zeek.key"))
    client.cert_chain_pems[0].write_to_path(str(tmp_path / "collectord.pem"))
    client.private_key_pem.write_to_path(str(tmp_path / "collectord.key"))
    if zeek_version(zeek) >= (7, 2):
        tls = (
            f'redef osquery::websocket_tls_cert = "{tmp_path}/zeek.pem";\n'
            f'redef osquery::websocket_tls_key = "{tmp_path}/zeek.key";\n'
            f'redef osquery::websocket_tls_ca = "{tmp_path}/ca.pem";\n'
        )
    else:
        tls = (
            "redef Broker::disable_ssl = F;\n"
            f'redef Broker::ssl_certificate = "{tmp_path}/zeek.pem";\n'
            f'redef Broker::ssl_keyfile = "{tmp_path}/zeek.key";\n'
            f'redef Broker::ssl_cafile = "{tmp_path}/ca.pem";\n'
        )
    port = free_port()
    zk = RunningZeek(zeek, tmp_path, port, tls)

    async def reaches_ready(**certs: str) -> bool:
        """True once the link is READY; False once an attempt failed (logged) with no connection made."""
        endpoint = ZeekEndpoint.parse(f"wss://127.0.0.1:{port}", ca_file=str(tmp_path / "ca.pem"), **certs)
        link = ZeekLink(endpoint, "test-collector", lambda _l, _n: None, backoff_initial=0.2, backoff_max=0.5)
        caplog.clear()
        await link.start()
        try:
            await _wait(
                lambda: (
                    link.core.state is LinkState.READY or "reconnecting" in caplog.text or zk.proc.poll() is not None
                ),
                "READY or a failed attempt",
            )
            return link.core.state is LinkState.READY and link.core.stats.connects > 0
        finally:
            await link.stop()

    try:
        await _wait(
            lambda: "listening for collectord" in zk.text("osquery.log") or zk.proc.poll() is not None, "listen"
        )
        assert zk.proc.poll() is None, zk.text("stderr")
        assert await reaches_ready(
            cert_file=str(tmp_path / "collectord.pem"), key_file=str(tmp_path / "collectord.key")
        )
        assert not await reaches_ready()  # the TLS handshake (Zeek) or the HTTP upgrade (Broker) fails
    finally:
        zk.stop()
