"""agent-cli: ad-hoc queries (like osqueryi), the table catalogue, a shell, and a daemon's status.

    agent-cli query "SELECT pid, name FROM processes WHERE pid = 1"   # in-process, like osqueryi
    agent-cli query --json "SELECT * FROM users"
    agent-cli tables | agent-cli schema processes | agent-cli shell
    agent-cli --connect /var/lib/agentd/agentd.sock query "SELECT * FROM process_events"
    agent-cli --connect /var/lib/agentd/agentd.sock status
    agent-cli watch process_events [--json] [--duration S] [--audit-log FILE]

A failed query prints ``Error: <message>`` to stderr and exits 1, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from tables.spec import TableSpec
from tables.sqlite import DEFAULT_TIME_LIMIT, Database, QueryError

from . import fleet_cli
from .output import MODES, render

__all__ = ["main"]

# Start-up time is a feature here (osqueryi answers at once): a query imports only what it
# names.  Table modules come from tables.registry's index when first used; the status
# tables, host identity and the watch command are imported only when they are needed.

#: agent-cli's own utility tables (agent/status_tables.py SPECS; a test keeps the two equal).
STATUS_TABLES = (
    "agent_info",
    "agent_schedule",
    "osquery_events",
    "osquery_flags",
    "osquery_info",
    "osquery_packs",
    "osquery_schedule",
)

PROMPT = "agent> "
CONTINUATION = "  ...> "
HISTORY_FILE = os.path.join(os.path.expanduser("~"), ".agent_cli_history")

HELP = """\
Welcome to the agent-cli shell. Please explore your host with SQL.
  .all TABLE         SELECT * FROM TABLE
  .help              show this help
  .mode MODE         set the output mode: pretty json csv line
  .quit, .exit       leave the shell (Ctrl-D works too)
  .schema [TABLE]    CREATE TABLE statements (all tables, or one)
  .tables [PREFIX]   list the tables (optionally those starting with PREFIX)
  .timer on|off      print how long each query took
Statements end with ';' (a first line that is already a whole statement runs as is).
"""


class Engine(Protocol):
    """Where queries run: in this process, or inside a running agentd."""

    def execute(self, sql: str) -> tuple[list[str], list[Sequence[Any]]]: ...


@dataclass(slots=True)
class _ThisProcess:
    """The status tables' view of agent-cli itself, as osqueryi describes itself: no schedule."""

    info: Any
    queries: Mapping[str, Any] = field(default_factory=dict)
    packs: Sequence[Mapping[str, Any]] = ()
    flags: Sequence[Mapping[str, Any]] = ()


def _this_process() -> _ThisProcess:
    from .hostid import host_uuid
    from .options import Options
    from .status_tables import AgentInfo, flag_rows

    return _ThisProcess(AgentInfo(uuid=host_uuid() or ""), flags=flag_rows(Options()))


def _specs() -> dict[str, TableSpec]:
    """Every table agent-cli offers in-process: the host's tables and osquery's utility tables."""
    from tables.registry import all_specs

    from .status_tables import SPECS as STATUS_SPECS

    return {s.name: s for s in (*all_specs(), *STATUS_SPECS)}


def _table_names() -> list[str]:
    """Every table name, without importing any table."""
    from tables.registry import TABLE_MODULES

    return sorted({*TABLE_MODULES, *STATUS_TABLES})


def _spec(name: str) -> TableSpec | None:
    """One table's spec, importing only its module."""
    if name in STATUS_TABLES:
        from .status_tables import SPECS as STATUS_SPECS

        return next((s for s in STATUS_SPECS if s.name == name), None)
    from tables.registry import TABLE_MODULES, load_spec

    return load_spec(name) if name in TABLE_MODULES else None


class LocalEngine:
    """The agent's tables in this process (event tables are empty here: no sources run).

    osquery's utility tables (osquery_info, osquery_flags, ...) describe this process, as in osqueryi.
    Tables are registered on first use (tables.registry's catalog).
    """

    def __init__(self, time_limit: float) -> None:
        from tables.registry import catalog

        tables: dict[str, Callable[[], TableSpec]] = catalog()
        for name in STATUS_TABLES:
            tables[name] = partial(self._status_spec, name)
        self.db = Database(time_limit=time_limit, catalog=tables)

    def _status_spec(self, name: str) -> TableSpec:
        """A status table, loaded on first use, and the view of this process it reads."""
        from .status_tables import AGENT_SERVICE

        self.db.services.setdefault(AGENT_SERVICE, _this_process())
        spec = _spec(name)
        if spec is None:
            raise KeyError(f"no such table: {name}")
        return spec

    def execute(self, sql: str) -> tuple[list[str], list[Sequence[Any]]]:
        result = self.db.execute(sql)
        return result.columns, list(result.rows)


class RemoteEngine:
    """Queries run inside agentd over its control socket (event tables included)."""

    def __init__(self, socket_path: str, time_limit: float) -> None:
        self.socket_path = socket_path
        self.time_limit = time_limit

    def execute(self, sql: str) -> tuple[list[str], list[Sequence[Any]]]:
        from .control import ControlError, remote_query

        # agentd interrupts the query at --time-limit (0: at its own ad-hoc limit); wait a little longer.
        limit = self.time_limit if self.time_limit > 0 else None
        try:
            columns, rows = remote_query(self.socket_path, sql, time_limit=limit, timeout=(limit or _NO_LIMIT_WAIT) + 5)
        except ControlError as exc:
            raise UserError(str(exc)) from None
        return list(columns), list(rows)


#: How long agent-cli --connect waits for a query run without --time-limit (agentd bounds it itself).
_NO_LIMIT_WAIT = 3600.0


class UserError(Exception):
    """Something the user asked for cannot be done; printed as ``Error: ...``."""


def _engine(args: argparse.Namespace) -> Engine:
    if args.connect:
        return RemoteEngine(args.connect, args.time_limit)
    return LocalEngine(args.time_limit)


def _error(message: str) -> None:
    print(f"Error: {message}", file=sys.stderr)


# -- commands ---------------------------------------------------------------


def split_statements(sql: str) -> list[str]:
    """``sql`` cut after each ``;`` that ends a statement (not one inside a string or trigger).

    Each statement runs and prints on its own, as in osqueryi: their columns differ.
    """
    import apsw

    statements: list[str] = []
    start = 0
    for end, char in enumerate(sql):
        if char == ";" and apsw.complete(sql[start : end + 1]):
            statements.append(sql[start : end + 1])
            start = end + 1
    statements.append(sql[start:])
    return [s for s in statements if s.strip().strip(";").strip()]


def _incomplete(sql: str) -> bool:
    """True when SQLite would answer "incomplete input": the statement goes on on the next line."""
    import apsw

    probe = apsw.Connection(":memory:")  # no tables: only the syntax is checked, nothing runs
    try:
        probe.execute("EXPLAIN " + sql)
    except apsw.SQLError as exc:
        return "incomplete input" in str(exc)
    except apsw.Error:
        return False
    finally:
        probe.close()
    return False


def cmd_query(args: argparse.Namespace) -> int:
    if args.collector:
        return fleet_cli.run_query(args)
    if args.host or args.group or args.all:
        raise UserError("--host, --group and --all query the fleet: add --collector URL")
    engine = _engine(args)
    for statement in split_statements(args.sql):
        columns, rows = engine.execute(statement)
        sys.stdout.write(render(args.mode, columns, rows))
    return 0


def cmd_tables(args: argparse.Namespace) -> int:
    for spec in sorted(_specs().values(), key=lambda s: s.name):
        if spec.name.startswith(args.prefix or ""):
            kind = "event" if spec.event else "snapshot"
            print(f"{spec.name:<24} {kind:<8} {spec.description}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    spec = _spec(args.table)
    if spec is None:
        raise UserError(f"no such table: {args.table}")
    print(spec.create_sql() + ";")
    print(f"-- {spec.description}")
    rows = []
    for c in spec.columns:
        options = [o for o in ("index", "required", "hidden", "additional") if getattr(c, o)]
        rows.append((c.name, c.type, ",".join(options), c.description))
    sys.stdout.write(render("pretty", ["column", "type", "options", "description"], rows))
    for example in spec.examples:
        print(f"-- e.g. {example}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    if args.collector:
        from .fleet import cmd_collector_status

        return cmd_collector_status(args)
    if not args.connect:
        raise UserError(
            "status needs a running agentd (agent-cli --connect SOCKET status) or collectord (--collector URL)"
        )
    from .control import ControlError, format_status, remote_status

    try:
        status = remote_status(args.connect)
    except ControlError as exc:
        raise UserError(str(exc)) from None
    print(format_status(status), end="")
    return 0


def cmd_shell(args: argparse.Namespace) -> int:
    return Shell(_engine(args), interactive=sys.stdin.isatty()).run()


# -- the shell --------------------------------------------------------------


class Shell:
    """An osqueryi-like shell: SQL statements and dot-commands, with history."""

    def __init__(self, engine: Engine, *, interactive: bool, mode: str = "pretty") -> None:
        self.engine = engine
        self.interactive = interactive
        self.mode = mode
        self.timer = False
        self.errors = 0
        self.done = False
        self._interruptible: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext

    def run(self) -> int:
        """Read and run lines until Ctrl-D or .quit.

        On a terminal a Ctrl-C never ends the shell and is never lost, whenever it comes (see
        line_editor): it stops a running query, or else abandons the statement being typed.
        """
        from .line_editor import Key, LineEditor

        readline = self._setup_history() if self.interactive else None
        if self.interactive:
            print('Using a virtual database. Need help, type ".help"')
        buffer: list[str] = []
        lineno = 0
        try:
            with LineEditor(readline) if self.interactive else contextlib.nullcontext() as editor:
                if editor is not None:
                    self._interruptible = editor.interruptible
                while not self.done:
                    got = editor.read(CONTINUATION if buffer else PROMPT) if editor else sys.stdin.readline()
                    if got is Key.INTERRUPT:
                        print()
                        buffer.clear()
                        continue
                    if got is Key.END or (editor is None and got == ""):  # "": the end of a piped stdin
                        if editor is not None:
                            print()  # leave the terminal on a fresh line
                        break
                    assert isinstance(got, str)
                    lineno += 1
                    self._take(got if editor else got.rstrip("\n"), buffer, lineno)
                if buffer:
                    for statement in split_statements("\n".join(buffer)):
                        self.query(statement, lineno)
        finally:
            self._interruptible = contextlib.nullcontext
            if readline is not None:
                try:
                    readline.write_history_file(HISTORY_FILE)
                except OSError:
                    pass
        return 1 if self.errors and not self.interactive else 0

    def _take(self, line: str, buffer: list[str], lineno: int) -> None:
        """One line typed: a dot-command, or part of a statement that runs once it is whole."""
        if not buffer and line.strip().startswith("."):
            self.meta(line.strip(), lineno)
            return
        if not buffer and not line.strip():
            return
        buffer.append(line)
        sql = "\n".join(buffer)
        if self._complete(sql) or (self.interactive and len(buffer) == 1 and not _incomplete(sql)):
            buffer.clear()
            for statement in split_statements(sql):
                self.query(statement, lineno)

    @staticmethod
    def _complete(sql: str) -> bool:
        import apsw

        return apsw.complete(sql)

    @staticmethod
    def _setup_history() -> Any:
        try:
            import readline
        except ImportError:  # pragma: no cover - readline is part of CPython on Linux
            return None
        try:
            readline.read_history_file(HISTORY_FILE)
        except OSError:
            pass
        readline.set_history_length(1000)
        names = _table_names()
        keywords = ["SELECT", "FROM", "WHERE", "JOIN", "ORDER BY", "GROUP BY", "LIMIT", "COUNT(*)"]

        def complete(text: str, state: int) -> str | None:
            options = [n for n in names + keywords if n.lower().startswith(text.lower())]
            return options[state] if state < len(options) else None

        readline.set_completer(complete)
        readline.parse_and_bind("tab: complete")
        return readline

    def _fail(self, message: str, lineno: int) -> None:
        self.errors += 1
        _error(message if self.interactive else f"near line {lineno}: {message}")

    def query(self, sql: str, lineno: int) -> None:
        started = time.perf_counter()
        try:
            with self._interruptible():
                try:
                    columns, rows = self.engine.execute(sql)
                except (QueryError, UserError, OSError) as exc:
                    self._fail(str(exc), lineno)
                    return
                sys.stdout.write(render(self.mode, columns, rows))
        except KeyboardInterrupt:  # Ctrl-C stops the query (or its output), not the shell (as osqueryi)
            if not self.interactive:
                raise
            self._fail("interrupted", lineno)
            return
        if self.timer:
            print(f"Run Time: {time.perf_counter() - started:.3f} s")

    def meta(self, line: str, lineno: int) -> None:
        command, _, rest = line.partition(" ")
        arg = rest.strip()
        if command in (".quit", ".exit", ".q"):
            self.done = True
        elif command == ".help":
            sys.stderr.write(HELP)
        elif command in (".tables", ".list"):
            for name in _table_names():
                if name.startswith(arg):
                    print(f"  => {name}")
        elif command == ".schema":
            names = [arg] if arg in _table_names() else [n for n in _table_names() if n.startswith(arg)]
            if arg and not names:
                self._fail(f"no such table: {arg}", lineno)
            for name in names:
                spec = _spec(name)
                if spec is not None:
                    print(spec.create_sql() + ";")
        elif command == ".mode":
            if arg not in MODES:
                self._fail(f"mode should be one of: {' '.join(MODES)}", lineno)
            else:
                self.mode = arg
        elif command == ".all":
            if arg not in _table_names():
                self._fail(f"no such table: {arg}", lineno)
            else:
                self.query(f"SELECT * FROM {arg}", lineno)
        elif command == ".timer":
            self.timer = arg.lower() in ("on", "1", "true", "yes")
        else:
            self._fail(f'unknown command or invalid arguments: "{line}". Enter ".help" for help', lineno)


# -- argument parsing -------------------------------------------------------


def _seconds(text: str) -> float:
    """An argparse type: a number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds, 0 or more, not {text}")
    return value


def _help_formatter(prog: str) -> argparse.HelpFormatter:
    """argparse's formatter sized as shutil would size it, without importing shutil (start-up time)."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, OSError, ValueError):
            columns = 0
    return argparse.HelpFormatter(prog, width=(columns or 80) - 2)


class _SubcommandParser(argparse.ArgumentParser):
    """Every subcommand's parser (agent.fleet_cli's too): help sized by :func:`_help_formatter` (no shutil)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _help_formatter)
        super().__init__(*args, **kwargs)


def build_parser(*, with_watch: bool = True) -> argparse.ArgumentParser:
    """agent-cli's parser; ``with_watch=False`` leaves the watch command's module (asyncio, sources) unimported."""
    parser = argparse.ArgumentParser(
        formatter_class=_help_formatter,
        prog="agent-cli",
        description="Query the host as SQL tables (osquery-compatible), in-process or inside a running agentd.",
    )
    parser.add_argument("--connect", metavar="SOCKET", help="run inside the agentd listening on this control socket")
    fleet_cli.add_global_options(parser)
    parser.add_argument(
        "--time-limit",
        type=_seconds,
        default=DEFAULT_TIME_LIMIT,
        metavar="SECONDS",
        help=f"interrupt a query running longer than this (default {DEFAULT_TIME_LIMIT:g}; 0: no limit)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_SubcommandParser)
    sub.required = True

    q = sub.add_parser("query", help="run one SQL statement and print the result", formatter_class=_help_formatter)
    q.add_argument("sql", metavar="SQL")
    fmt = q.add_mutually_exclusive_group()
    fmt.set_defaults(mode="pretty")
    for mode in MODES:
        fmt.add_argument(f"--{mode}", dest="mode", action="store_const", const=mode, help=f"{mode} output")
    fleet_cli.add_query_options(q)
    q.set_defaults(func=cmd_query)

    t = sub.add_parser("tables", help="list the tables", formatter_class=_help_formatter)
    t.add_argument("prefix", nargs="?", default="")
    t.set_defaults(func=cmd_tables)

    s = sub.add_parser("schema", help="show a table's columns", formatter_class=_help_formatter)
    s.add_argument("table")
    s.set_defaults(func=cmd_schema)

    sh = sub.add_parser("shell", help="an interactive SQL shell", formatter_class=_help_formatter)
    sh.set_defaults(func=cmd_shell)

    st = sub.add_parser(
        "status",
        help="a running agentd's schedule, event sources and buffers (--connect); with --collector, "
        "collectord's hosts and links to Zeek",
        formatter_class=_help_formatter,
    )
    st.add_argument("--json", action="store_true", help="with --collector: the status as JSON")
    st.set_defaults(func=cmd_status)

    if with_watch:
        from . import watch

        watch.add_parser(sub)
    else:  # a stand-in with the same name and help: main() parses again with the real one when it is chosen
        w = sub.add_parser("watch", help=WATCH_HELP, add_help=False, formatter_class=_help_formatter)
        w.add_argument("rest", nargs=argparse.REMAINDER)
        w.set_defaults(func=None)
    fleet_cli.add_parsers(sub)
    return parser


#: ``agent-cli watch``'s one-line help (agent/watch.py has the command itself).
WATCH_HELP = "print rows of an event table as they arrive (like tail -f)"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(with_watch="watch" in argv).parse_args(argv)
    if args.func is None:  # the watch stand-in was chosen after all (e.g. an abbreviation)
        args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (QueryError, UserError, fleet_cli.FleetError) as exc:
        _error(str(exc))
        return 1
    except BrokenPipeError:  # `agent-cli ... | head`: the reader has all it wants
        # Python flushes stdout once more at exit; point it at /dev/null so that is quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # e.g. the control socket is not there
        _error(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
