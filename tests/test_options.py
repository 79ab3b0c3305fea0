from __future__ import annotations

import pytest

from agent.options import OptionError, Options, parse_options


def test_defaults_are_osquerys():
    o = Options()
    assert (o.host_identifier, o.schedule_splay_percent, o.schedule_default_interval) == ("hostname", 10, 3600)
    assert (o.pack_delimiter, o.events_max, o.events_expiry, o.logger_event_type) == ("_", 50000, 3600, True)
    assert (o.watchdog_memory_limit, o.watchdog_utilization_limit, o.watchdog_latency_limit) == (200, 10, 12)
    assert (o.watchdog_delay, o.schedule_timeout, o.logger_mode) == (60, 10.0, 0o640)


def test_strings_are_coerced_like_osquery_flags():
    o, warnings = parse_options(
        {
            "schedule_splay_percent": "20",
            "logger_numerics": "true",
            "disable_events": False,
            "schedule_timeout": "2.5",
            "logger_mode": "0600",
            "events_max": 1000,
        }
    )
    assert warnings == []
    assert (o.schedule_splay_percent, o.logger_numerics, o.disable_events) == (20, True, False)
    assert (o.schedule_timeout, o.logger_mode, o.events_max) == (2.5, 0o600, 1000)


def test_unknown_options_warn_and_custom_options_are_kept():
    o, warnings = parse_options({"disable_logging": "false", "custom_team": "blue"})
    assert warnings == ["options.disable_logging: not an option agentd supports; ignored"]
    assert o.custom == {"custom_team": "blue"}


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"schedule_splay_percent": "abc"}, "options.schedule_splay_percent: must be an integer, got 'abc'"),
        ({"schedule_splay_percent": 300}, "options.schedule_splay_percent: must be between 0 and 100, got 300"),
        ({"logger_numerics": "maybe"}, "options.logger_numerics: must be true or false, got 'maybe'"),
        ({"events_max": True}, "options.events_max: must be a number, got True"),
        ({"logger_path": ["a"]}, "options.logger_path: must be a string, got ['a']"),
        (
            {"host_identifier": "mac"},
            "options.host_identifier: must be one of hostname, uuid, instance, ephemeral, specified, got 'mac'",
        ),
        (
            {"host_identifier": "specified"},
            "options.specified_identifier: required (non-empty) when host_identifier is 'specified'",
        ),
        ({"logger_mode": "rw"}, "options.logger_mode: must be an octal file mode such as \"0640\", got 'rw'"),
        (
            {"process_events_source": "ebpf"},
            "options.process_events_source: must be one of auto, audit, proc_connector, proc_poll, got 'ebpf'",
        ),
    ],
)
def test_wrong_types_name_the_option(raw, message):
    with pytest.raises(OptionError) as info:
        parse_options(raw)
    assert str(info.value) == message


def test_watchdog_level_sets_limits_not_given_explicitly():
    o, _ = parse_options({"watchdog_level": 1, "watchdog_memory_limit": 150})
    assert (o.watchdog_memory_limit, o.watchdog_utilization_limit, o.watchdog_latency_limit) == (150, 5, 6)
    o, _ = parse_options({"watchdog_level": "-1"})
    assert (o.watchdog_memory_limit, o.watchdog_utilization_limit) == (10000, 100)


def test_options_must_be_an_object():
    with pytest.raises(OptionError, match=r"^options: must be an object"):
        parse_options(["a"])  # type: ignore[arg-type]
