"""collector.config: the TOML config, its errors naming the key, flags, --config-check."""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap

import pytest

from collector.config import (
    DEFAULT_CONFIG,
    ConfigError,
    Limits,
    ListenConfig,
    check_listen_policy,
    is_loopback_host,
    load_config,
    parse_config,
    parse_listen,
)
from collector.daemon import apply_overrides, build_parser
from protocol.messages import Mode


def test_embedded_default_is_plaintext_loopback_with_state_in_the_working_directory():
    config = parse_config(DEFAULT_CONFIG)
    assert config.listen == ListenConfig("127.0.0.1", 9440)
    assert not config.listen.tls
    assert config.state_dir == "collector-state"
    assert config.results.file == "collector-state/results.jsonl"
    assert config.limits == Limits()
    assert load_config(None) == parse_config(DEFAULT_CONFIG, "<embedded default>")


def test_a_full_config(tmp_path):
    (tmp_path / "c.toml").write_text(
        textwrap.dedent(
            """
            shutdown_timeout = 3
            [listen]
            address = "[::1]:9555"
            [state]
            dir = "state"
            [auth]
            enroll_secret_file = "secrets/enroll"
            operator_token_file = "/etc/collectord/token"
            [limits]
            max_frame = 1048576
            max_rate = 250
            hello_timeout = 2.5
            [results]
            file = "out/results.jsonl"
            fsync = false
            [[subscriptions]]
            name = "procs"
            sql = "SELECT pid, name FROM processes"
            interval = 60
            groups = ["web"]
            [[subscriptions]]
            name = "ports"
            query = "SELECT port FROM listening_ports"
            interval = 300
            snapshot = true
            removed = false
            all = true
            """
        )
    )
    config = load_config(str(tmp_path / "c.toml"))
    assert config.listen.host == "::1" and config.listen.port == 9555
    assert config.listen.address == "[::1]:9555"
    assert config.state_dir == str(tmp_path / "state")
    assert config.auth.enroll_secret_file == str(tmp_path / "secrets/enroll")
    assert config.auth.operator_token_file == "/etc/collectord/token"
    assert config.limits.max_frame == 1048576 and config.limits.max_rate == 250.0 and config.limits.hello_timeout == 2.5
    assert config.results.file == str(tmp_path / "out/results.jsonl") and config.results.fsync is False
    assert config.shutdown_timeout == 3.0
    procs, ports = config.subscriptions
    assert procs.groups == ("web",) and procs.mode is Mode.DIFFERENTIAL and procs.removed
    assert ports.sql == "SELECT port FROM listening_ports" and ports.mode is Mode.SNAPSHOT and ports.all
    assert not ports.removed


SUB = "[[subscriptions]]\nname = 'a'\nsql = 'SELECT 1'\ninterval = 5\nall = true\n"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            "[listen]\naddres = '127.0.0.1:1'",
            "listen.addres: unknown key; expected one of: address, client_ca, tls_cert",
        ),
        ("listn = 1", "listn: unknown key"),
        ("[listen]\naddress = 5", "listen.address: must be a string, got 5"),
        ("[listen]\naddress = '127.0.0.1'", "listen.address: expected HOST:PORT"),
        ("[listen]\naddress = '127.0.0.1:70000'", "listen.address: port 70000 out of range"),
        ("[listen]\naddress = '127.0.0.1:x'", "listen.address: invalid port 'x'"),
        ("[listen]\naddress = '0.0.0.0:9440'", "listen.address: refusing to listen on 0.0.0.0 without TLS"),
        ("[listen]\naddress = '[::]:9440'", "listen.address: refusing to listen on :: without TLS"),
        ("[listen]\naddress = '127.0.0.1:1'\ntls_cert = 'c.pem'", "listen.tls_cert: tls_cert and tls_key go together"),
        ("[listen]\nclient_ca = 'ca.pem'", "listen.client_ca: client certificates need TLS"),
        ("[limits]\nmax_rate = -1", "limits.max_rate: must be a positive number of seconds, got -1"),
        ("[limits]\nmax_frame = 1000", "limits.max_frame: at least 65536 bytes"),
        ("[limits]\nmax_connections = true", "limits.max_connections: must be a positive integer, got True"),
        ("[results]\nfsync = 'yes'", "results.fsync: must be true or false"),
        ("[state]\ndir = ''", "state.dir: must not be empty"),
        ("state = 3", "state: must be a table"),
        ("[[subscriptions]]\nsql = 'SELECT 1'\ninterval = 1\nall = true", "subscriptions[0].name: missing"),
        (
            "[[subscriptions]]\nname = 'a'\ninterval = 1\nall = true",
            "subscriptions[0].sql: exactly one of sql and query",
        ),
        ("[[subscriptions]]\nname = 'a'\nsql = 'SELECT 1'\nall = true", "subscriptions[0].interval: missing"),
        (
            "[[subscriptions]]\nname = 'a'\nsql = 'SELECT 1'\ninterval = 0\nall = true",
            "subscriptions[0].interval: must be a positive integer",
        ),
        (
            "[[subscriptions]]\nname = 'a'\nsql = 'SELECT 1'\ninterval = 999999\nall = true",
            "subscriptions[0].interval: at most 604800",
        ),
        (
            "[[subscriptions]]\nname = 'a'\nsql = 'SELECT 1'\ninterval = 5",
            "subscriptions[0].all: a subscription needs targets",
        ),
        (
            "[[subscriptions]]\nname = 'a'\nsql = 'SELECT 1'\ninterval = 5\nall = true\nmode = 'diff'",
            "subscriptions[0].mode: must be differential or snapshot",
        ),
        (
            "[[subscriptions]]\nname = 'a'\nsql = 'SELECT 1'\ninterval = 5\ngroups = ['']",
            "subscriptions[0].groups: must be a list of non-empty names",
        ),
        (
            "[[subscriptions]]\nname = 'a'\nsql = 'SELECT 1'\ninterval = 5\nall = true\ntargets = 1",
            "subscriptions[0].targets: unknown key",
        ),
        (
            "[[subscriptions]]\nname = 'a'\nsql = 'SELECT 1'\ninterval = 5\nall = true\n"
            "[[subscriptions]]\nname = 'a'\nsql = 'SELECT 2'\ninterval = 5\nall = true",
            "subscriptions[1].name: 'a' is used twice",
        ),
        ("subscriptions = 1", "subscriptions: must be an array of tables"),
        ("[listen\naddress = 1", "invalid TOML"),
        (f"{SUB}log = 'osq-a.log'", "subscriptions[0].log: a log name is letters, digits"),
        (f"{SUB}log = '../x'", "subscriptions[0].log: a log name"),
        (f"{SUB}fields = ['a:int']", "subscriptions[0].fields: fields type the columns of a log; name the log"),
        (f"{SUB}log = 'l'\nfields = []", "subscriptions[0].fields: must be a list"),
        (f"{SUB}log = 'l'\nfields = ['pid']", 'subscriptions[0].fields[0]: expected "name:type"'),
        (f"{SUB}log = 'l'\nfields = ['pid:integer']", "subscriptions[0].fields[0]: type integer cannot take"),
        (f"{SUB}log = 'l'\nfields = ['v:vector of string']", "subscriptions[0].fields[0]: type vector of string"),
        (f"{SUB}log = 'l'\nfields = ['a:int', 'a:count']", "subscriptions[0].fields[1]: field 'a' is used twice"),
        (f"{SUB}log = 'l'\nfields = ['host:string']", "subscriptions[0].fields[0]: field 'host' is used twice"),
        (f"{SUB}log = 'osquery'", "subscriptions[0].log: 'osquery' is written by another subscription"),
        (
            f"{SUB}log = 'l'\n[[subscriptions]]\nname = 'b'\nsql = 'SELECT 1'\ninterval = 5\nall = true\nlog = 'l'",
            "subscriptions[1].log: 'l' is written by another subscription",
        ),
        ("zeek = 1", "zeek: must be an array of tables ([[zeek]]"),
        ("[[zeek]]\nname = 'z'", "zeek[0].url: missing"),
        ("[[zeek]]\nurl = 'http://127.0.0.1:1'", "zeek[0].url: Zeek endpoint 'http://127.0.0.1:1': use ws://"),
        ("[[zeek]]\nurl = 'ws://10.1.2.3:27759'", "zeek[0].url: refusing plaintext ws:// to 10.1.2.3"),
        ("[[zeek]]\nurl = 'ws://127.0.0.1:1'\nca = 'ca.pem'", "zeek[0].ca: a CA is pinned for wss:// only"),
        ("[[zeek]]\nurl = 'ws://127.0.0.1:1'\ncert = 'c.pem'", "zeek[0].cert: a client certificate is for wss://"),
        ("[[zeek]]\nurl = 'wss://z.example:1'\nkey = 'c.key'", "zeek[0].key: set cert too"),
        ("[[zeek]]\nurl = 'wss://z.example:1'\ncert = '/nonexistent/c.pem'", "zeek[0].cert: no such file"),
        ("[[zeek]]\nurl = 'ws://127.0.0.1:1'\nname = 'a b'", "zeek[0].name: letters, digits"),
        ("[[zeek]]\nurl = 'ws://127.0.0.1:1'\nmax_inflight = 0", "zeek[0].max_inflight: must be a positive integer"),
        ("[[zeek]]\nurl = 'ws://127.0.0.1:1'\ntopic = 'x'", "zeek[0].topic: unknown key"),
        ("[[zeek]]\nurl = 'ws://127.0.0.1:1'\n[[zeek]]\nurl = 'ws://127.0.0.1:1'", "zeek: two Zeek endpoints named"),
        ("[logs]\nformat = 'tsv'", "logs.format: must be ascii or json"),
        ("[logs]\nrotation = -1", "logs.rotation: seconds between rotations"),
        ("[logs]\nkeep = 1", "logs.keep: unknown key"),
    ],
)
def test_errors_name_the_key(toml, message):
    with pytest.raises(ConfigError) as caught:
        parse_config(toml, "c.toml")
    assert message in str(caught.value)


def test_zeek_endpoints_and_logs(tmp_path):
    config = parse_config(
        textwrap.dedent(
            """
            [[zeek]]
            url = "ws://127.0.0.1:27759"
            [[zeek]]
            url = "wss://zeek.example:9999"
            name = "cluster"
            ca = "zeek-ca.pem"
            zeek_topic = "/site/zeek/"
            collector_topic = "/site/collector/"
            max_backlog = 10
            [logs]
            dir = "zlogs"
            format = "json"
            rotation = 0
            [[subscriptions]]
            name = "ports"
            sql = "SELECT pid, port FROM listening_ports"
            interval = 10
            all = true
            log = "osq-ports"
            fields = ["pid:int", "listening_port:count"]
            """
        ),
        "c.toml",
        base=str(tmp_path),
    )
    local, cluster = config.zeek
    assert local.url == "ws://127.0.0.1:27759/v1/messages/json" and local.name == "127.0.0.1:27759"
    assert local.owner == "zeek:127.0.0.1:27759" and local.zeek_topic == "/osquery/zeek/"
    assert cluster.name == "cluster" and cluster.ca == str(tmp_path / "zeek-ca.pem") and cluster.max_backlog == 10
    endpoint = cluster.endpoint()
    assert endpoint.subscribe_topics == ("/site/collector/",) and endpoint.publish_topic == "/site/zeek/"
    assert config.logs.dir == str(tmp_path / "zlogs") and config.logs.format.value == "json"
    assert config.logs.rotation == 0
    (sub,) = config.subscriptions
    assert sub.log == "osq-ports" and [(f.name, str(f.type)) for f in sub.fields] == [
        ("pid", "int"),
        ("listening_port", "count"),
    ]


def test_zeek_and_logs_flags():
    config = apply_overrides(load_config(None), args("--zeek", "ws://127.0.0.1:1", "--zeek", "ws://[::1]:2"))
    assert [z.name for z in config.zeek] == ["127.0.0.1:1", "[::1]:2"]
    # the embedded default's own logs and standard subscriptions stand in for a Zeek: with one they go
    assert config.logs.dir is None and not config.subscriptions
    kept = apply_overrides(load_config(None), args("--zeek", "ws://127.0.0.1:1", "--logs", "out"))
    assert kept.logs.dir == "out" and len(kept.subscriptions) == 9
    assert apply_overrides(load_config(None), args("--logs", "")).logs.dir is None
    with pytest.raises(ConfigError, match=r"--zeek: refusing plaintext ws:// to 192\.0\.2\.1"):
        apply_overrides(load_config(None), args("--zeek", "ws://192.0.2.1:27759"))
    with pytest.raises(ConfigError, match="--zeek: two Zeek endpoints"):
        apply_overrides(load_config(None), args("--zeek", "ws://127.0.0.1:1", "--zeek", "ws://127.0.0.1:1/"))


def test_invalid_toml_says_where():
    with pytest.raises(ConfigError, match=r"c.toml: invalid TOML: .*line 2"):
        parse_config("[listen]\naddress = \n[state]\n", "c.toml")


def test_unreadable_config_file(tmp_path):
    with pytest.raises(ConfigError, match=r"cannot read the config: .*No such file"):
        load_config(str(tmp_path / "missing.toml"))


def test_tls_allows_any_address():
    check_listen_policy(ListenConfig("0.0.0.0", 9440, tls_cert="c.pem", tls_key="k.pem"))


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
    ],
)
def test_loopback_hosts(host, loopback):
    assert is_loopback_host(host) is loopback


def test_parse_listen_forms():
    assert parse_listen("localhost:0") == ("localhost", 0)
    assert parse_listen("[fe80::1]:80") == ("fe80::1", 80)
    with pytest.raises(ConfigError, match="a host is needed"):
        parse_listen(":9440")
    with pytest.raises(ConfigError, match=r"IPv6 as \[ADDRESS\]:PORT"):
        parse_listen("::1:9440")


def args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_flags_override_the_config():
    config = apply_overrides(
        load_config(None),
        args(
            "--listen",
            "127.0.0.2:0",
            "--state-dir",
            "/srv/c",
            "--enroll-secret-file",
            "/s",
            "--operator-token-file",
            "/t",
        ),
    )
    assert (config.listen.host, config.listen.port) == ("127.0.0.2", 0)
    assert config.state_dir == "/srv/c"
    assert config.results.file == "/srv/c/results.jsonl"  # the default results file follows the state dir
    assert config.auth.enroll_secret_file == "/s" and config.auth.operator_token_file == "/t"
    assert apply_overrides(load_config(None), args("--results", "")).results.file is None
    assert apply_overrides(load_config(None), args("--results", "r.jsonl")).results.file == "r.jsonl"


def test_listen_flag_refuses_plaintext_on_other_addresses():
    with pytest.raises(ConfigError) as caught:
        apply_overrides(load_config(None), args("--listen", "0.0.0.0:9440"))
    assert str(caught.value).startswith("--listen: refusing to listen on 0.0.0.0 without TLS")


def run_collectord(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collector.daemon", *argv], capture_output=True, text=True, timeout=60, check=False
    )


def test_config_check_accepts_a_valid_file(tmp_path):
    path = tmp_path / "ok.toml"
    path.write_text("[listen]\naddress = '127.0.0.1:9440'\n")
    done = run_collectord("--config-check", str(path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{path}: OK (0 subscriptions, listen 127.0.0.1:9440)"


def test_config_check_names_the_key_at_fault(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[limits]\nmax_rate = 'fast'\n")
    done = run_collectord("--config-check", str(path))
    assert done.returncode == 1
    assert done.stderr.strip() == f"{path}: error: limits.max_rate: must be a positive number of seconds, got 'fast'"
    assert "Traceback" not in done.stderr


def test_config_check_loads_the_tls_files(tmp_path):
    path = tmp_path / "tls.toml"
    path.write_text("[listen]\naddress = '0.0.0.0:9440'\ntls_cert = 'nope.pem'\ntls_key = 'nope.key'\n")
    done = run_collectord("--config-check", str(path))
    assert done.returncode == 1
    assert "listen.tls_cert: cannot load" in done.stderr and "nope.pem" in done.stderr


def test_refusal_to_listen_without_tls_on_a_public_address(tmp_path):
    done = run_collectord("--listen", "0.0.0.0:0", "--state-dir", str(tmp_path))
    assert done.returncode == 1
    assert "config error: --listen: refusing to listen on 0.0.0.0 without TLS" in done.stderr
    assert "Traceback" not in done.stderr


def test_attributions_log_name_is_refused_for_a_subscription_while_it_writes_there():
    from collector.config import parse_config

    sub = '[[subscriptions]]\nname = "x"\nsql = "SELECT 1"\ninterval = 10\nall = true\nlog = "osq-user_connections"\n'
    with pytest.raises(ConfigError, match=r"subscriptions\[0\]\.log: 'osq-user_connections' is attribution's"):
        parse_config(sub)
    assert parse_config(sub + '[attribution]\nlog_dir = "elsewhere"\n').subscriptions[0].log == "osq-user_connections"
    assert parse_config(sub + "[attribution]\nenabled = false\n").attribution.enabled is False
