"""osquery-compatible virtual tables over /proc, /sys, /etc and netlink.

A library: it knows nothing of the daemon or the collector.  Each table module holds a
``SPEC`` (:class:`tables.spec.TableSpec`) and its generate() function;
:mod:`tables.sqlite` registers specs with SQLite; :mod:`tables.registry` lists them.
"""

from .spec import Column, HostPaths, QueryContext, Row, TableError, TableSpec

__all__ = ["Column", "HostPaths", "QueryContext", "Row", "TableError", "TableSpec"]
