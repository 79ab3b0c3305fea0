"""agent-cli's fleet options and subcommands (argparse only: importing this costs nothing).

The commands themselves live in :mod:`agent.fleet` and are imported when one runs, so
``agent-cli query "SELECT 1"`` never loads websockets or the protocol.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from .output import MODES

__all__ = ["TOKEN_ENV", "FleetError", "add_global_options", "add_parsers", "add_query_options", "run_query"]

TOKEN_ENV = "AGENT_CLI_TOKEN_FILE"


class FleetError(Exception):
    """The collector cannot be reached or refused a request; printed as ``Error: ...``."""


def run_query(args: argparse.Namespace) -> int:
    from .fleet import run_query as run

    return run(args)


def _lazy(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        if not args.collector:
            raise FleetError(f"{args.command} needs a collector: agent-cli --collector URL {args.command} ...")
        from . import fleet

        command: Callable[[argparse.Namespace], int] = getattr(fleet, name)
        return command(args)

    return run


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 3600 seconds, not {text}")
    return value


def _interval(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of seconds: {text!r}") from None
    if not 1 <= value <= 604800:
        raise argparse.ArgumentTypeError(f"must be 1..604800 seconds, not {text}")
    return value


def add_global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--collector", metavar="URL", help="work on the fleet through collectord at URL (ws:// or wss://)"
    )
    parser.add_argument(
        "--token-file", metavar="FILE", help=f"operator token (default: ${TOKEN_ENV}, collector-state/)"
    )
    parser.add_argument("--ca", metavar="FILE", help="CA certificate to pin for a wss:// collector")


def _add_targets(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", action="append", metavar="H", help="a host id or hostname (repeatable)")
    parser.add_argument("--group", action="append", metavar="G", help="a group of hosts (repeatable)")
    parser.add_argument("--all", action="store_true", help="every enrolled host")


def add_query_options(parser: argparse.ArgumentParser) -> None:
    """The fleet options of ``query`` (used with --collector)."""
    _add_targets(parser)
    parser.add_argument(
        "--timeout", type=_seconds, default=30.0, metavar="S", help="with --collector: wait this long for hosts (30)"
    )


def _with_mode(parser: argparse.ArgumentParser, modes: Sequence[str] = MODES) -> None:
    fmt = parser.add_mutually_exclusive_group()
    fmt.set_defaults(mode="pretty")
    for mode in modes:
        fmt.add_argument(f"--{mode}", dest="mode", action="store_const", const=mode, help=f"{mode} output")


def add_parsers(sub: Any) -> None:
    """The fleet-only subcommands (they need --collector)."""
    h = sub.add_parser("hosts", help="the collector's hosts (needs --collector)")
    _with_mode(h)
    h.set_defaults(func=_lazy("cmd_hosts"))

    ls = sub.add_parser("subscriptions", help="the collector's subscriptions (needs --collector)")
    _with_mode(ls)
    ls.set_defaults(func=_lazy("cmd_subscriptions"))

    s = sub.add_parser("subscribe", help="subscribe hosts to a query (needs --collector)")
    s.add_argument("name", metavar="NAME")
    s.add_argument("sql", metavar="SQL")
    s.add_argument("--interval", type=_interval, required=True, metavar="S", help="seconds between runs")
    _add_targets(s)
    s.add_argument("--snapshot", action="store_true", help="every row every run (osquery's snapshot mode)")
    s.add_argument("--no-removed", action="store_true", help="do not report removed rows")
    s.set_defaults(func=_lazy("cmd_subscribe"))

    u = sub.add_parser("unsubscribe", help="remove a subscription (needs --collector)")
    u.add_argument("name", metavar="NAME")
    u.set_defaults(func=_lazy("cmd_unsubscribe"))

    r = sub.add_parser("revoke", help="revoke a host's node key and disconnect it (needs --collector)")
    r.add_argument("host", metavar="HOST")
    r.set_defaults(func=_lazy("cmd_revoke"))
