"""Zeek type names as type_name() writes them (checked on Zeek 8.2.2), parsed."""

import pytest

from collector.zeek.ztypes import Kind, TypeSyntaxError, parse_event_signature, parse_type


@pytest.mark.parametrize(
    "text",
    [
        "count", "int", "double", "bool", "string", "addr", "subnet", "port", "time", "interval", "any", "pattern",
        "vector of string", "vector of vector of count", "set[addr,port]", "set[string]", "table[string] of count",
        "table[count] of set[string]", "osquery::ResultInfo", "GlobalRec", "vector of GlobalRec", "transport_proto",
        "event(resultInfo:osquery::ResultInfo, username:string, name:string, port_number:int)", "event()",
    ],
)  # fmt: skip
def test_roundtrips_to_type_name_spelling(text):
    assert str(parse_type(text)) == text


def test_event_signature_fields():
    fields = parse_event_signature(
        "event(resultInfo:osquery::ResultInfo, pid:int, name:string, local_port:count, app:osquery::server_apps::AppInfo)"
    )
    assert [f.name for f in fields] == ["resultInfo", "pid", "name", "local_port", "app"]
    assert fields[0].type.kind is Kind.NAMED and fields[0].type.name == "osquery::ResultInfo"
    assert fields[4].type.name == "osquery::server_apps::AppInfo"


def test_anonymous_record():
    t = parse_event_signature("event(r:record { x:count; y:string; })")[0].type
    assert t.kind is Kind.RECORD and [f.name for f in t.fields] == ["x", "y"]
    assert str(t) == "record { x:count; y:string; }"


def test_log_names():
    assert parse_type("vector of count").log_name() == "vector[count]"
    assert parse_type("set[addr]").log_name() == "set[addr]"
    assert parse_type("transport_proto").log_name() == "enum"


@pytest.mark.parametrize(
    "text", ["", "vector", "set[count", "table[count]", "event(a count)", "count extra", "event(a:)", "vector of"]
)
def test_syntax_errors(text):
    with pytest.raises(TypeSyntaxError):
        parse_type(text)


def test_not_an_event():
    with pytest.raises(TypeSyntaxError, match="not an event"):
        parse_event_signature("count")
