from __future__ import annotations

import io
import json
import os
import shutil
import textwrap

import pytest

from agent.config import (
    ConfigError,
    check_config,
    check_platform,
    config_check_main,
    load_config,
    machine_shard,
    pack_active,
    parse_config,
    strip_json_comments,
)
from agent.uplink.settings import CollectorSection, read_secret
from tables.spec import Column, TableSpec
from tables.sqlite import Database, QueryError

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "configs")
HOST = "testhost"


def parse(document, base_dir="/nonexistent", **kw):
    text = document if isinstance(document, str) else json.dumps(document)
    return parse_config(text, base_dir=base_dir, source="test.conf", hostname=HOST, **kw)


def error_of(document, base_dir="/nonexistent") -> str:
    with pytest.raises(ConfigError) as info:
        parse(document, base_dir)
    return str(info.value)


# -- stock osquery configs load unchanged, with warnings only --------------------------


def test_osquery_example_conf():
    config = load_config(os.path.join(FIXTURES, "osquery.example.conf"), hostname=HOST)
    assert [q.name for q in config.queries] == ["system_info"]
    q = config.queries[0]
    assert (q.interval, q.snapshot, q.removed, q.pack) == (3600, False, True, None)
    assert config.decorators.load == [
        "SELECT uuid AS host_uuid FROM system_info;",
        "SELECT user AS username FROM logged_in_users ORDER BY time DESC LIMIT 1;",
    ]
    assert config.warnings == ["feature_vectors: osquery config key not supported by agentd; ignored"]


def test_every_stock_pack_by_directory_glob():
    config = load_config(os.path.join(FIXTURES, "stock_packs.conf"), hostname=HOST)
    assert config.warnings == []
    counts = {p.name: sum(1 for q in config.queries if q.pack == p.name) for p in config.packs}
    # Linux counts per pack as osquery's checkPlatform gives them (osquery-behaviour.md section 5).
    assert counts == {
        "hardware-monitoring": 9,
        "incident-response": 18,
        "it-compliance": 12,
        "osquery-monitoring": 3,
        "ossec-rootkit": 60,
        "osx-attacks": 0,
        "testconfig_test_pack": 1,
        "unwanted-chrome-extensions": 0,
        "vuln-management": 11,
        "windows-attacks": 0,
        "windows-hardening": 0,
    }
    names = {q.name for q in config.queries}
    assert "pack_incident-response_crontab" in names
    assert "pack_it-compliance_portage_packages" not in names  # platform "gentoo" is not Linux
    assert "gentoo" in config.skipped["pack_it-compliance_portage_packages"]
    assert config.pack("osx-attacks").skipped == "platform 'darwin' does not include linux"
    assert not config.pack("osx-attacks").runs_here() and config.pack("ossec-rootkit").runs_here()
    ossec = config.pack("ossec-rootkit")
    assert (ossec.platform, ossec.version) == ("linux", "1.4.5")
    assert all(q.interval == 3600 for q in ossec.queries)  # string intervals
    # osx-attacks' backslash-newline continuations parse
    launchd = next(q for q in config.pack("osx-attacks").queries if "machook" in q.query)
    assert "com.apple.machook_damon.plist" in launchd.query


def test_each_stock_pack_by_path(tmp_path):
    packs_dir = os.path.join(FIXTURES, "packs")
    packs = {os.path.splitext(f)[0]: os.path.join(packs_dir, f) for f in sorted(os.listdir(packs_dir))}
    config = parse({"packs": packs}, base_dir=str(tmp_path))
    assert len(config.packs) == 11 and len(config.queries) == 114
    monitoring = [q for q in config.queries if q.pack == "osquery-monitoring"]
    assert {q.name for q in monitoring} == {
        "pack_osquery-monitoring_schedule",
        "pack_osquery-monitoring_events",
        "pack_osquery-monitoring_osquery_info",
    }
    assert all(q.removed is False and q.denylist is False for q in monitoring)


def test_testconfig_inline_pack():
    config = load_config(os.path.join(FIXTURES, "testconfig_test_inline_pack.conf"), hostname=HOST)
    assert [q.name for q in config.queries] == [
        "launchd",
        "pack_discovery_pack_kernel_modules",
        "pack_unrestricted_pack_process_events",
        "pack_unrestricted_pack_process_heartbeat",
        "pack_valid_discovery_pack_kernel_modules",
    ]
    assert config.skipped["pack_discovery_pack_totally_fake"] == "platform 'lol' does not include linux"
    assert config.pack("fake_version_pack").skipped.startswith("needs osquery version 9.9.9")
    assert config.pack("restricted_pack").skipped == "platform 'none' does not include linux"
    assert config.pack("discovery_pack").discovery == ["select pid from processes where name = 'foobar';"]
    assert config.warnings == [
        "packs.unrestricted_pack.file_paths: not a pack key agentd supports; ignored",
        "packs.discovery_pack.discovery[1]: not a SQL string (a number (1)); ignored",
        "packs.discovery_pack.discovery[2]: not a SQL string (a list); ignored",
        "packs.discovery_pack.discovery[3]: not a SQL string (an object); ignored",
        "packs.restricted_pack.file_paths: not a pack key agentd supports; ignored",
    ]
    process_events = next(q for q in config.queries if q.name.endswith("process_events"))
    assert (process_events.removed, process_events.version) == (False, "1.5.1-26")


def test_testconfig_noninline_packs_resolves_the_pack_file():
    # "tester": "lester" names a pack file next to the config (fixtures/configs/lester).
    config = load_config(os.path.join(FIXTURES, "testconfig_test_noninline_packs.conf"), hostname=HOST)
    assert [q.name for q in config.queries] == ["pack_foobar_kernel_modules", "pack_tester_uptime"]
    assert config.pack("tester").source == os.path.join(FIXTURES, "lester")


def test_unknown_pack_file_is_an_error(tmp_path):
    shutil.copy(os.path.join(FIXTURES, "testconfig_test_noninline_packs.conf"), tmp_path / "c.conf")
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path / "c.conf"))
    assert str(info.value) == f"packs.tester (pack file): file not found: {tmp_path}/lester"


def test_testconfig_parse_items():
    config = load_config(os.path.join(FIXTURES, "testconfig_test_parse_items.conf"), hostname=HOST)
    assert [q.name for q in config.queries] == ["launchd", "pack_foobar_kernel_modules"]
    assert config.decorators.interval == {60: ["select 1 as one from time", "select 'test' as internal_60_test"]}
    assert len(config.decorators.always) == 2 and len(config.decorators.load) == 3
    assert config.warnings == [
        "list: unknown top-level key; ignored",
        "dictionary: unknown top-level key; ignored",
        "file_paths: osquery config key not supported by agentd; ignored",
        "file_paths_query: osquery config key not supported by agentd; ignored",
        "file_accesses: osquery config key not supported by agentd; ignored",
        "exclude_paths: osquery config key not supported by agentd; ignored",
        "events: osquery config key not supported by agentd; ignored",
        "views: osquery config key not supported by agentd; ignored",
        "packs.foobar_with_files.file_accesses: not a pack key agentd supports; ignored",
        "packs.foobar_with_files.file_paths: not a pack key agentd supports; ignored",
        "decorators.interval.61: the period must be a multiple of 60 seconds; these decorators will not run",
    ]
    assert config.sections["file_paths"]["logs"] == ["/dev/null"]


# -- parsing details ---------------------------------------------------------------------


def test_comments_keep_line_numbers_and_strings():
    text = '{\n  // a comment "with quotes"\n  "a": "x // not a comment", /* block\n */ "b": 1\n}'
    stripped = strip_json_comments(text)
    assert stripped.count("\n") == text.count("\n")
    assert json.loads(stripped) == {"a": "x // not a comment", "b": 1}


def test_schedule_fields_and_defaults():
    config = parse(
        {
            "options": {"schedule_default_interval": "120", "pack_delimiter": "/"},
            "schedule": {
                "b": {"query": "select 1", "snapshot": True, "removed": False, "denylist": "false", "shard": "50"},
                "a": {"query": "select 2", "interval": "30", "startup_priority": 1, "description": "d"},
            },
            "packs": {"p": {"queries": {"q": {"query": "select 3", "interval": 60}}}},
        }
    )
    by_name = {q.name: q for q in config.queries}
    assert [q.name for q in config.queries] == ["a", "b", "pack/p/q"]  # startup_priority first
    assert (by_name["a"].interval, by_name["a"].startup_priority, by_name["a"].description) == (30, 1, "d")
    b = by_name["b"]
    assert (b.interval, b.snapshot, b.removed, b.denylist, b.shard) == (120, True, False, False, 50)
    assert by_name["pack/p/q"].pack == "p"


def test_platform_matching_as_osquery():
    assert all(
        check_platform(p)
        for p in ("", "null", "all", "any", "linux", "posix", "ubuntu", "centos", "windows,linux", "darwin,posix")
    )
    assert not any(check_platform(p) for p in ("darwin", "windows", "gentoo", "windows,darwin", "freebsd"))


def test_shard_against_the_hostname():
    shard = machine_shard(HOST)
    assert 0 <= shard <= 100
    doc = {
        "schedule": {
            "low": {"query": "select 1", "shard": max(1, shard - 1)},
            "high": {"query": "select 1", "shard": 100},
        }
    }
    config = parse(doc)
    expected = ["high"] if shard > 1 else ["high", "low"]
    assert [q.name for q in config.queries] == expected
    if shard > 1:
        assert config.skipped["low"] == f"shard {shard - 1} is below this machine's shard {shard}"


def test_packs_glob_skips_directories_and_names_by_file(tmp_path):
    (tmp_path / "packs").mkdir()
    (tmp_path / "packs" / "one.conf").write_text('{"queries": {"q": {"query": "select 1"}}}')
    (tmp_path / "packs" / "sub.conf").mkdir()
    config = parse({"packs": {"*": "packs/*.conf"}}, base_dir=str(tmp_path))
    assert [p.name for p in config.packs] == ["one"] and config.queries[0].name == "pack_one_q"


def test_collector_section():
    config = parse(
        {
            "collector": {
                "url": "wss://zeek.example:9997/agent",
                "tls": True,
                "ca": "/etc/ca.pem",
                "host_groups": ["web"],
                "reconnect": 5,
                "extra": 1,
            }
        }
    )
    assert config.collector == CollectorSection(
        urls=("wss://zeek.example:9997/agent",), ca="/etc/ca.pem", groups=("web",), reconnect_max=5.0
    )
    assert config.warnings == ["collector.extra: not a collector key agentd supports; ignored"]


def test_collector_section_full(tmp_path):
    (tmp_path / "secret").write_text("s3cret-s3cret-s3cret\n")
    config = parse(
        {
            "collector": {
                "urls": ["wss://c1.example:9440", "wss://c2.example:9440"],
                "ca": "ca.pem",
                "client_cert": "agent.pem",
                "client_key": "agent.key",
                "enroll_secret_file": "secret",
                "groups": ["web", "dmz"],
                "queue_max_rows": 500,
                "queue_max_bytes": 1048576,
            }
        },
        base_dir=str(tmp_path),
    )
    section = config.collector
    assert section is not None and section.enabled
    assert section.urls == ("wss://c1.example:9440", "wss://c2.example:9440")
    assert section.ca == str(tmp_path / "ca.pem") and section.client_key == str(tmp_path / "agent.key")
    assert section.groups == ("web", "dmz") and section.queue_max_rows == 500 and section.queue_max_bytes == 1048576
    assert read_secret(section) == "s3cret-s3cret-s3cret"


# -- every bad-config case, with its exact message -------------------------------------------


@pytest.mark.parametrize(
    "document, message",
    [
        (
            '{\n  "schedule": {\n    "a": {"query": "select 1",}\n  }\n}',
            "test.conf: invalid JSON at line 3 column 31: Expecting property name enclosed in double quotes",
        ),
        ("[1, 2]", "test.conf: the top level must be a JSON object, got a list"),
        (" \n", "test.conf: the file is empty; expected a JSON object"),
        (
            {"schedule": {"": {"query": "select 1"}}},
            "schedule.: a query name must not be empty (it names the query's result lines)",
        ),
        ({"schedule": []}, "schedule: must be an object mapping query names to queries, got a list"),
        (
            {"schedule": {"processes": "select 1"}},
            'schedule.processes: must be an object with at least a "query", got a string',
        ),
        (
            {"schedule": {"processes": {"interval": 10}}},
            "schedule.processes.query: missing (every scheduled query needs its SQL)",
        ),
        ({"schedule": {"processes": {"query": 5}}}, "schedule.processes.query: must be a non-empty SQL string, got 5"),
        (
            {"schedule": {"processes": {"query": "select 1", "interval": "abc"}}},
            "schedule.processes.interval: must be an integer between 1 and 604800, got 'abc'",
        ),
        (
            {"schedule": {"processes": {"query": "select 1", "interval": 0}}},
            "schedule.processes.interval: must be an integer between 1 and 604800, got 0",
        ),
        (
            {"schedule": {"processes": {"query": "select 1", "interval": 604801}}},
            "schedule.processes.interval: must be an integer between 1 and 604800, got 604801",
        ),
        (
            {"schedule": {"processes": {"query": "select 1", "interval": 1.5}}},
            "schedule.processes.interval: must be an integer between 1 and 604800, got 1.5",
        ),
        (
            {"schedule": {"p": {"query": "select 1", "snapshot": "yes"}}},
            "schedule.p.snapshot: must be true or false, got 'yes'",
        ),
        ({"schedule": {"p": {"query": "select 1", "removed": 1}}}, "schedule.p.removed: must be true or false, got 1"),
        (
            {"schedule": {"p": {"query": "select 1", "shard": 101}}},
            "schedule.p.shard: must be an integer between 1 and 100, got 101",
        ),
        (
            {"schedule": {"p": {"query": "select 1", "platform": ["linux"]}}},
            "schedule.p.platform: must be a string, got ['linux']",
        ),
        (
            {"schedule": {"p": {"query": "select 1", "startup_priority": -1}}},
            "schedule.p.startup_priority: must be a non-negative integer, got -1",
        ),
        (
            {"options": {"schedule_splay_percent": "lots"}},
            "options.schedule_splay_percent: must be an integer, got 'lots'",
        ),
        ({"options": "x"}, "options: must be an object mapping option names to values, got str"),
        ({"packs": ["a"]}, "packs: must be an object mapping pack names to packs or pack file paths, got a list"),
        ({"packs": {"p": 3}}, "packs.p: must be an inline pack object or a pack file path, got a number (3)"),
        (
            {"packs": {"p": {"queries": []}}},
            "packs.p.queries: must be an object mapping query names to queries, got a list",
        ),
        (
            {"packs": {"p": {"queries": {"q": {"query": "select 1", "interval": -5}}}}},
            "packs.p.queries.q.interval: must be an integer between 1 and 604800, got -5",
        ),
        (
            {"packs": {"p": {"discovery": "select 1", "queries": {}}}},
            "packs.p.discovery: must be a list of SQL strings, got a string",
        ),
        (
            {"packs": {"p": {"shard": "x", "queries": {}}}},
            "packs.p.shard: must be an integer between 1 and 100, got 'x'",
        ),
        (
            {"packs": {"*": "/nonexistent-dir/*.conf"}},
            "packs.*: directory not found for pack glob '/nonexistent-dir/*.conf': /nonexistent-dir",
        ),
        ({"packs": {"p": "/nonexistent-dir/p.conf"}}, "packs.p (pack file): file not found: /nonexistent-dir/p.conf"),
        ({"decorators": {"load": "select 1"}}, "decorators.load: must be a list of SQL strings, got a string"),
        ({"decorators": {"always": ["select 1", 2]}}, "decorators.always[1]: must be a SQL string, got 2"),
        (
            {"decorators": {"interval": {"hourly": ["select 1"]}}},
            "decorators.interval.hourly: the period must be a positive number of seconds, got 'hourly'",
        ),
        (
            {"collector": {"url": "http://zeek:9997"}},
            "collector.url: must be a ws:// or wss:// URL with a host, got 'http://zeek:9997'",
        ),
        ({"collector": {"url": "wss://"}}, "collector.url: must be a ws:// or wss:// URL with a host, got 'wss://'"),
        ({"collector": {"url": "ws://zeek:99999"}}, "collector.url: invalid port in 'ws://zeek:99999'"),
        (
            {"collector": {"url": "ws://zeek:9997", "tls": True}},
            "collector.tls: true needs a wss:// url, got 'ws://zeek:9997'",
        ),
        ({"collector": {"reconnect": 0}}, "collector.reconnect: must be a positive number of seconds, got 0"),
        (
            {"collector": {"url": "ws://10.0.0.5:9440"}},
            "collector.url: plaintext ws:// is only allowed to a loopback address, got 'ws://10.0.0.5:9440'; "
            "use wss:// and a CA",
        ),
        ({"collector": {"urls": []}}, "collector.urls: must be a non-empty list of ws:// or wss:// URLs, got []"),
        (
            {"collector": {"urls": ["wss://a:1", 5]}},
            "collector.urls[1]: must be a ws:// or wss:// URL with a host, got 5",
        ),
        (
            {"collector": {"enroll_secret": "a", "enroll_secret_file": "f"}},
            "collector.enroll_secret: give enroll_secret or enroll_secret_file, not both",
        ),
        ({"collector": {"queue_max_rows": 0}}, "collector.queue_max_rows: must be a positive integer, got 0"),
        ({"collector": {"client_key": "k.pem"}}, "collector.client_key: needs client_cert"),
        (
            {"collector": {"host_groups": "web"}},
            "collector.host_groups: must be a list of non-empty strings, got 'web'",
        ),
        ({"collector": "ws://zeek"}, "collector: must be an object with the collector's url, got a string"),
    ],
)
def test_bad_config_messages(document, message):
    assert error_of(document) == message


def test_bad_pack_file_json_names_the_pack_and_position(tmp_path):
    (tmp_path / "bad.conf").write_text('{\n  "queries": {\n    "q": \n  }\n}\n')
    assert error_of({"packs": {"bad": "bad.conf"}}, str(tmp_path)) == (
        f"packs.bad ({tmp_path}/bad.conf): invalid JSON at line 4 column 3: Expecting value"
    )


@pytest.mark.parametrize(
    "document, warning",
    [
        (
            {"decorators": {"interval": {"90": ["select 1"]}}},
            "decorators.interval.90: the period must be a multiple of 60 seconds; these decorators will not run",
        ),
        ({"tls_plugin": {}}, "tls_plugin: unknown top-level key; ignored"),
        (
            {"queries": {}},
            "queries: unknown top-level key; ignored (this looks like a pack file: "
            'reference it from a config\'s "packs" section)',
        ),
        ({"yara": {}}, "yara: osquery config key not supported by agentd; ignored"),
        (
            {"schedule": {"q": {"query": "select 1", "blacklist": False}}},
            "schedule.q.blacklist: not a scheduled query key agentd supports; ignored "
            "(osquery no longer reads 'blacklist'; use 'denylist')",
        ),
        ({"options": {"config_plugin": "tls"}}, "options.config_plugin: not an option agentd supports; ignored"),
    ],
)
def test_warnings_are_not_fatal(document, warning):
    assert parse(document).warnings == [warning]


# -- config check entry point ---------------------------------------------------------------


def test_config_check_main_ok_and_error(tmp_path):
    out, err = io.StringIO(), io.StringIO()
    assert config_check_main(os.path.join(FIXTURES, "osquery.example.conf"), out=out, err=err) == 0
    assert out.getvalue() == "config OK: 1 queries in 0 packs\n"
    assert err.getvalue() == "Warning: feature_vectors: osquery config key not supported by agentd; ignored\n"
    bad = tmp_path / "bad.conf"
    bad.write_text('{"schedule": {"processes": {"query": "select 1", "interval": "abc"}}}')
    out, err = io.StringIO(), io.StringIO()
    assert config_check_main(str(bad), out=out, err=err) == 1
    assert out.getvalue() == ""
    assert err.getvalue() == (
        "Error: schedule.processes.interval: must be an integer between 1 and 604800, got 'abc'\n"
    )
    err = io.StringIO()
    assert config_check_main(str(tmp_path / "missing.conf"), out=io.StringIO(), err=err) == 1
    assert err.getvalue() == f"Error: config: file not found: {tmp_path}/missing.conf\n"
    assert check_config(os.path.join(FIXTURES, "stock_packs.conf")) == []


# -- discovery queries through a real Database ----------------------------------------------


def _database() -> Database:
    def gen(context):
        return [{"name": "agentd", "pid": 1}]

    spec = TableSpec(
        name="fake_procs",
        description="Processes for discovery tests.",
        columns=(Column("name", "TEXT"), Column("pid", "INTEGER")),
        generate=gen,
    )
    return Database([spec])


def test_pack_discovery_passing_failing_and_erroring():
    db = _database()

    def execute(sql):
        return db.execute(sql).rows

    config = parse(
        {
            "packs": {
                "yes": {
                    "discovery": ["select 1 from fake_procs where name = 'agentd'", "select * from fake_procs"],
                    "queries": {"q": {"query": "select 1"}},
                },
                "no": {"discovery": ["select * from fake_procs where name = 'foobar'"], "queries": {}},
                "broken": {"discovery": ["select * from no_such_table"], "queries": {}},
                "nodiscovery": {"queries": {}},
                "windows": {"platform": "windows", "queries": {}},
            }
        }
    )
    assert pack_active(config.pack("yes"), execute) is True and config.pack("yes").inactive_reason is None
    assert pack_active(config.pack("no"), execute) is False
    assert config.pack("no").inactive_reason == (
        "discovery query returned no rows: \"select * from fake_procs where name = 'foobar'\""
    )
    assert pack_active(config.pack("broken"), execute) is False
    assert config.pack("broken").inactive_reason == (
        "discovery query failed: 'select * from no_such_table': no such table: no_such_table"
    )
    assert pack_active(config.pack("nodiscovery"), execute) is True
    assert pack_active(config.pack("windows"), execute) is False
    with pytest.raises(QueryError):
        execute("select * from no_such_table")


def test_stock_discovery_pack_against_the_real_tables():
    from tables.registry import all_specs

    db = Database(all_specs())
    config = load_config(os.path.join(FIXTURES, "testconfig_test_inline_pack.conf"), hostname=HOST)
    execute = lambda sql: db.execute(sql).rows  # noqa: E731
    # no process is named "foobar" here
    assert pack_active(config.pack("discovery_pack"), execute) is False
    # osquery_info is not one of our tables yet: the reason says so; with it the pack runs
    valid = config.pack("valid_discovery_pack")
    active = pack_active(valid, execute)
    assert active == ("osquery_info" in db.specs)
    if not active:
        assert "no such table: osquery_info" in valid.inactive_reason


def test_load_config_reads_relative_pack_paths(tmp_path):
    (tmp_path / "p.conf").write_text(
        textwrap.dedent("""\
        {
          // a pack with a comment
          "platform": "posix",
          "queries": {"q": {"query": "select 1", "interval": "60"}}
        }""")
    )
    (tmp_path / "c.conf").write_text('{"packs": {"mine": "p.conf"}}')
    config = load_config(str(tmp_path / "c.conf"))
    assert [(q.name, q.interval) for q in config.queries] == [("pack_mine_q", 60)]
