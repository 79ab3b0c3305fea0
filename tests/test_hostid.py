from __future__ import annotations

import socket

import pytest

from agent.hostid import HostIdError, collector_host_id, host_identifier, host_uuid, is_placeholder_uuid
from agent.state import StateDB


def test_hostname_is_the_default():
    assert host_identifier() == socket.gethostname()


def test_uuid_from_dmi(tmp_path):
    dmi = tmp_path / "product_uuid"
    dmi.write_text("4c4c4544-0042-3510-8052-b4c04f384d32\n")
    assert (
        host_uuid(dmi_path=str(dmi), machine_id_path=str(tmp_path / "none")) == "4C4C4544-0042-3510-8052-B4C04F384D32"
    )


def test_placeholder_dmi_uuid_falls_back_to_machine_id(tmp_path):
    dmi = tmp_path / "product_uuid"
    dmi.write_text("03000200-0400-0500-0006-000700080009\n")
    mid = tmp_path / "machine-id"
    mid.write_text("0123456789abcdef0123456789abcdef\n")
    assert is_placeholder_uuid("ffffffff-ffff-ffff-ffff-ffffffffffff")
    assert (
        host_identifier("uuid", dmi_path=str(dmi), machine_id_path=str(mid)) == "01234567-89AB-CDEF-0123-456789ABCDEF"
    )


def test_uuid_of_this_host_is_well_formed():
    value = host_uuid()
    if value is None:
        pytest.skip("this host has neither a usable DMI product_uuid nor /etc/machine-id")
    assert len(value) == 36 and value.count("-") == 4 and not is_placeholder_uuid(value)


def test_uuid_without_any_source_uses_the_stored_instance_id(tmp_path):
    state = StateDB(str(tmp_path / "s.db"))
    none = str(tmp_path / "none")
    assert host_identifier("uuid", state=state, dmi_path=none, machine_id_path=none) == state.instance_id()
    with pytest.raises(HostIdError, match="no usable UUID"):
        host_identifier("uuid", dmi_path=none, machine_id_path=none)


def test_instance_is_persisted(tmp_path):
    path = str(tmp_path / "s.db")
    first = host_identifier("instance", state=StateDB(path))
    assert host_identifier("instance", state=StateDB(path)) == first
    assert host_identifier("instance", state=StateDB(str(tmp_path / "other.db"))) != first


def test_ephemeral_specified_and_errors():
    assert host_identifier("ephemeral") == host_identifier("ephemeral")
    assert host_identifier("specified", specified="web-01") == "web-01"
    with pytest.raises(HostIdError, match="specified_identifier is empty"):
        host_identifier("specified")
    with pytest.raises(HostIdError, match="unknown host_identifier 'mac'"):
        host_identifier("mac")
    with pytest.raises(HostIdError, match="needs the state database"):
        host_identifier("instance")


def test_collector_host_id_is_the_machine_unless_the_agent_is_named():
    """The uplink's host_id: the machine's UUID by default (hostname and ephemeral are not
    stable); ``specified`` and ``instance`` name this agent, so two agents on one machine
    (one per network namespace) are two hosts at the collector."""
    ids = {"identifier": "web-7", "uuid": "4C4C4544-0042-3510-8052-B4C04F384D32", "instance_id": "i-1"}
    assert collector_host_id("hostname", **ids) == ids["uuid"]
    assert collector_host_id("uuid", **ids) == ids["uuid"]
    assert collector_host_id("ephemeral", **ids) == ids["uuid"]
    assert collector_host_id("specified", **ids) == "web-7"
    assert collector_host_id("instance", **{**ids, "identifier": "i-1"}) == "i-1"
    assert collector_host_id("hostname", **{**ids, "uuid": ""}) == "i-1"
