"""Every table this package defines, found by module: a table module exports ``SPEC``
(or ``SPECS``, a tuple, for modules that define several related tables).

:data:`TABLE_MODULES` names the module of every table without importing any, so a query
imports only the modules of the tables it names (:func:`catalog`, used with
``Database(catalog=...)``): agent-cli answers ``SELECT 1`` without importing pyroute2.
A test keeps the index equal to what the modules define; :func:`all_specs` imports them
all (the daemon, ``agent-cli tables``, docs generation).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from functools import cache, partial

from .spec import TableSpec

__all__ = ["TABLE_MODULES", "all_specs", "catalog", "get_spec", "load_spec"]

#: Modules of the package that hold machinery, not tables.
_INFRASTRUCTURE = frozenset({"spec", "sqlite", "registry", "events", "functions", "catalog", "rowsets"})

#: Table name -> the module (of this package) that defines it.  tests/test_registry.py keeps it
#: equal to what the modules define and prints the entries to add when a table is added.
TABLE_MODULES: dict[str, str] = {
    "acpi_tables": "acpi_tables",
    "apt_sources": "apt_sources",
    "arp_cache": "arp_cache",
    "authorized_keys": "authorized_keys",
    "block_devices": "block_devices",
    "chrome_extensions": "chrome_extensions",
    "cpu_info": "cpu_info",
    "cpuid": "cpuid",
    "crontab": "crontab",
    "deb_packages": "deb_packages",
    "disk_encryption": "disk_encryption",
    "dns_resolvers": "dns_resolvers",
    "etc_hosts": "etc_hosts",
    "etc_protocols": "etc_protocols",
    "etc_services": "etc_services",
    "file": "file",
    "firefox_addons": "firefox_addons",
    "groups": "groups",
    "hardware_events": "hardware_events",
    "hash": "hash",
    "interface_addresses": "interface_addresses",
    "interface_details": "interface_details",
    "iptables": "iptables",
    "kernel_info": "kernel_info",
    "kernel_modules": "kernel_modules",
    "known_hosts": "known_hosts",
    "last": "last",
    "listening_ports": "listening_ports",
    "load_average": "load_average",
    "logged_in_users": "logged_in_users",
    "memory_info": "memory_info",
    "mounts": "mounts",
    "opera_extensions": "opera_extensions",
    "os_version": "os_version",
    "pci_devices": "pci_devices",
    "portage_packages": "portage_packages",
    "process_envs": "process_envs",
    "process_events": "process_events",
    "process_memory_map": "process_memory_map",
    "process_open_files": "process_open_files",
    "process_open_sockets": "process_open_sockets",
    "processes": "processes",
    "python_packages": "python_packages",
    "routes": "routes",
    "rpm_packages": "rpm_packages",
    "shadow": "shadow",
    "shell_history": "shell_history",
    "smbios_tables": "smbios_tables",
    "socket_events": "socket_events",
    "sudoers": "sudoers",
    "suid_bin": "suid_bin",
    "system_controls": "system_controls",
    "system_info": "system_info",
    "time": "clock",
    "uptime": "uptime",
    "usb_devices": "usb_devices",
    "user_groups": "user_groups",
    "users": "users",
}


@cache
def all_specs() -> tuple[TableSpec, ...]:
    """All table specs in tables/, sorted by name (imports every table module)."""
    package = importlib.import_module(__package__)
    specs: dict[str, TableSpec] = {}
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_") or info.name in _INFRASTRUCTURE:
            continue
        for spec in _module_specs(info.name):
            if spec.name in specs:
                raise ValueError(f"table {spec.name} is defined twice ({info.name})")
            specs[spec.name] = spec
    return tuple(specs[name] for name in sorted(specs))


def _module_specs(module_name: str) -> tuple[TableSpec, ...]:
    module = importlib.import_module(f"{__package__}.{module_name}")
    found: tuple[TableSpec, ...] = getattr(module, "SPECS", None) or ((module.SPEC,) if hasattr(module, "SPEC") else ())
    return found


@cache
def load_spec(name: str) -> TableSpec:
    """The spec of table ``name``, importing only its module (KeyError: no such table)."""
    module_name = TABLE_MODULES.get(name)
    if module_name is not None:
        for spec in _module_specs(module_name):
            if spec.name == name:
                return spec
    raise KeyError(f"no such table: {name}")


def catalog() -> dict[str, Callable[[], TableSpec]]:
    """Table name -> a function that loads its spec: what ``Database(catalog=...)`` registers on first use."""
    return {name: partial(load_spec, name) for name in TABLE_MODULES}


def get_spec(name: str) -> TableSpec:
    try:
        return load_spec(name)
    except KeyError:
        pass
    for spec in all_specs():
        if spec.name == name:
            return spec
    raise KeyError(f"no such table: {name}")
