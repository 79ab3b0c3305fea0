"""Every table this package defines, found by module: a table module exports ``SPEC``
(or ``SPECS``, a tuple, for modules that define several related tables)."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from .spec import TableSpec

__all__ = ["all_specs", "get_spec"]

#: Modules of the package that hold machinery, not tables.
_INFRASTRUCTURE = frozenset({"spec", "sqlite", "registry", "events", "functions", "catalog"})


@cache
def all_specs() -> tuple[TableSpec, ...]:
    """All table specs in tables/, sorted by name."""
    package = importlib.import_module(__package__)
    specs: dict[str, TableSpec] = {}
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_") or info.name in _INFRASTRUCTURE:
            continue
        module = importlib.import_module(f"{__package__}.{info.name}")
        found = getattr(module, "SPECS", None) or ((module.SPEC,) if hasattr(module, "SPEC") else ())
        for spec in found:
            if spec.name in specs:
                raise ValueError(f"table {spec.name} is defined twice ({info.name})")
            specs[spec.name] = spec
    return tuple(specs[name] for name in sorted(specs))


def get_spec(name: str) -> TableSpec:
    for spec in all_specs():
        if spec.name == name:
            return spec
    raise KeyError(f"no such table: {name}")
