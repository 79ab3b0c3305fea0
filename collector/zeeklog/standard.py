"""The standard subscriptions: the package's nine table scripts, as collectord's own config has them.

zeek/scripts/osquery/tables/*.zeek subscribe every host to these queries and write
osq-<name>.log; collectord's embedded default config subscribes the same queries (same SQL,
same interval, added rows only where the script asks for ADD) and, with no Zeek configured,
writes the same logs itself: ``t``, ``host``, ``added`` (where removed rows are reported), then
these fields. tests/test_zeeklog_standard.py holds this list against the scripts.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["QUERY_INTERVAL", "STANDARD", "StandardSubscription", "standard_toml"]

#: zeek-osquery-queries' QUERY_INTERVAL (seconds), as the package's ``osquery::QUERY_INTERVAL``.
QUERY_INTERVAL = 2


@dataclass(frozen=True, slots=True)
class StandardSubscription:
    name: str
    sql: str
    removed: bool  # the script's utype: BOTH (True) or ADD (False)
    fields: tuple[str, ...]  # "name:type", one per column, in SELECT order

    @property
    def log(self) -> str:
        return f"osq-{self.name}"


STANDARD: tuple[StandardSubscription, ...] = (
    StandardSubscription(
        "processes",
        "SELECT pid, name, path, cmdline, cwd, root, uid, gid, on_disk, start_time, parent, pgroup FROM processes",
        True,
        (
            "pid:int",
            "name:string",
            "path:string",
            "cmdline:string",
            "cwd:string",
            "root:string",
            "uid:int",
            "gid:int",
            "on_disk:int",
            "start_time:int",
            "parent:int",
            "pgroup:int",
        ),
    ),
    StandardSubscription(
        "process_events",
        "SELECT pid, path, cmdline, cwd, uid, gid, time, parent FROM process_events",
        False,
        (
            "pid:int",
            "path:string",
            "cmdline:string",
            "cwd:string",
            "uid:int",
            "gid:int",
            "start_time:int",
            "parent:int",
        ),
    ),
    StandardSubscription(
        "socket_events",
        "SELECT action, pid, fd, path, family, protocol, local_address, remote_address, local_port, "
        "remote_port, time, success FROM socket_events WHERE family=2",
        False,
        (
            "action:string",
            "pid:int",
            "fd:int",
            "path:string",
            "family:int",
            "protocol:int",
            "local_address:addr",
            "remote_address:addr",
            "local_port:int",
            "remote_port:int",
            "start_time:int",
            "success:int",
        ),
    ),
    StandardSubscription(
        "process_open_sockets",
        "SELECT pid, fd, family, protocol, local_address, remote_address, local_port, remote_port "
        "FROM process_open_sockets WHERE family=2",
        True,
        (
            "pid:int",
            "fd:int",
            "family:int",
            "protocol:int",
            "local_address:addr",
            "remote_address:addr",
            "local_port:int",
            "remote_port:int",
        ),
    ),
    StandardSubscription(
        "listening_ports",
        "SELECT pid, fd, family, socket, protocol, address, port FROM listening_ports WHERE family=2",
        True,
        (
            "pid:int",
            "fd:int",
            "family:int",
            "socket:int",
            "protocol:int",
            "address:addr",
            "listening_port:int",
        ),
    ),
    StandardSubscription(
        "mounts",
        "SELECT device, device_alias, path, type, blocks_size, blocks, flags FROM mounts",
        True,
        (
            "device:string",
            "device_alias:string",
            "path:string",
            "typ:string",
            "blocks_size:int",
            "blocks:int",
            "flags:string",
        ),
    ),
    StandardSubscription(
        "users",
        "SELECT uid, gid, uid_signed, gid_signed, username, description, directory, shell, uuid, type FROM users",
        True,
        (
            "uid:int",
            "gid:int",
            "uid_signed:int",
            "gid_signed:int",
            "username:string",
            "description:string",
            "directory:string",
            "shell:string",
            "uuid:string",
            "user_type:string",
        ),
    ),
    StandardSubscription(
        "interfaces",
        "SELECT d.interface, d.mac, a.address, a.mask FROM interface_addresses AS a "
        "INNER JOIN interface_details AS d ON a.interface=d.interface",
        True,
        ("interface:string", "mac:string", "ip:addr", "mask:string"),
    ),
    StandardSubscription(
        "usb_devices",
        "SELECT vendor, model, serial, removable FROM usb_devices",
        True,
        ("vendor:string", "model:string", "serial:string", "removable:int"),
    ),
)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def standard_toml() -> str:
    """The standard subscriptions as ``[[subscriptions]]`` tables of collectord's TOML config."""
    parts = []
    for sub in STANDARD:
        fields = ", ".join(_quote(f) for f in sub.fields)
        parts.append(
            "[[subscriptions]]\n"
            f"name = {_quote(sub.name)}\n"
            f"sql = {_quote(sub.sql)}\n"
            f"interval = {QUERY_INTERVAL}\n"
            f"removed = {'true' if sub.removed else 'false'}\n"
            "all = true\n"
            f"log = {_quote(sub.log)}\n"
            f"fields = [{fields}]\n"
        )
    return "\n".join(parts)
