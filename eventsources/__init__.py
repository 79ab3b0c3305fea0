"""Kernel event sources: audit netlink, the proc connector, /proc polling, uevents.

A library: sources own their sockets and tasks and hand parsed rows to a sink; they
know nothing of SQL tables' storage, the daemon or the collector.  See
:mod:`eventsources.base` for the interface every source implements.
"""
