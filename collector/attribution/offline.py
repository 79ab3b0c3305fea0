"""``collectord attribute``: attribute the connections of a Zeek conn.log after the fact.

Reads the attribution state collectord persisted (usable while collectord runs), attributes
every connection of the conn.log (ASCII or JSON, optionally gzipped) and writes
``osq-attribution.log`` keyed by uid, plus ``osq-user_connections.log`` (every connect the
state holds, with process and user).  Until collectord's command line carries the
subcommand, ``python -m collector.attribution.offline`` runs the same code.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from collector.zeeklog.writer import LogFormat, ZeekLogWriter

from .connlog import ConnLogError, ConnLogStats, LogKind, read_conn_log
from .engine import AttributionEngine, StateError
from .logs import attribution_record, attribution_writer, user_connection_record, user_connections_writer
from .persist import load_engine, state_path

__all__ = ["OfflineReport", "attribute_conn_log", "main"]


@dataclass
class OfflineReport:
    """What one run did: connections read and how each side came out."""

    connections: int = 0
    orig_attributed: int = 0
    resp_attributed: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)  # "orig:socket_event", "resp:no_agent", ...
    user_connections: int = 0
    input: ConnLogStats = field(default_factory=ConnLogStats)
    written: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        def share(n: int) -> str:
            return f"{n} ({100.0 * n / self.connections:.1f}%)" if self.connections else "0"

        lines = [
            f"{self.connections} connections: originator attributed {share(self.orig_attributed)}, "
            f"responder attributed {share(self.resp_attributed)}",
            "  " + ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items())),
            f"{self.user_connections} user connections",
        ]
        if self.input.bad_lines:
            lines.append(f"{self.input.bad_lines} conn.log lines skipped: " + "; ".join(self.input.examples))
        lines += [f"wrote {p}" for p in self.written]
        return "\n".join(lines)


def attribute_conn_log(
    engine: AttributionEngine,
    conn_log: str,
    out_dir: str | Path,
    *,
    fmt: LogFormat | None = None,
    user_connections: bool = True,
) -> OfflineReport:
    """Attribute every connection of ``conn_log``; logs go to ``out_dir`` in ``fmt`` (default:
    the input's format)."""
    report = OfflineReport()
    out = Path(out_dir)
    writer: ZeekLogWriter | None = None
    chosen = fmt
    try:
        for conn in read_conn_log(conn_log, report.input):
            if writer is None:
                if chosen is None:
                    chosen = LogFormat.JSON if report.input.kind == LogKind.JSON else LogFormat.ASCII
                writer = attribution_writer(out, chosen)
            answer = engine.attribute(conn)
            writer.write(attribution_record(answer))
            report.connections += 1
            report.orig_attributed += answer.orig.attributed
            report.resp_attributed += answer.resp.attributed
            for side in (answer.orig, answer.resp):
                outcome = side.method.value if side.method is not None else side.reason.value  # type: ignore[union-attr]
                report.outcomes[f"{side.side.value}:{outcome}"] += 1
    finally:
        if writer is not None:
            writer.close()
            report.written.append(writer.live_path)
    if user_connections:
        views = sorted(engine.user_connections(), key=lambda v: v.ts)
        if views:
            uc = user_connections_writer(out, chosen or LogFormat.ASCII)
            try:
                for view in views:
                    uc.write(user_connection_record(view))
            finally:
                uc.close()
            report.user_connections = len(views)
            report.written.append(uc.live_path)
    return report


def build_parser(prog: str = "collectord attribute") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Attribute the connections of a Zeek conn.log to hosts, processes and users "
        "from collectord's persisted attribution state.",
    )
    parser.add_argument("conn_log", metavar="CONN_LOG", help="Zeek conn.log (ASCII or JSON, optionally gzipped)")
    parser.add_argument("-o", "--output", default=".", metavar="OUT", help="directory for the logs (default: .)")
    parser.add_argument("--state-dir", default="collector-state", metavar="DIR", help="collectord's state directory")
    parser.add_argument("--format", choices=[f.value for f in LogFormat], help="log format (default: the input's)")
    parser.add_argument("--no-user-connections", action="store_true", help="do not write osq-user_connections.log")
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "collectord attribute") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        engine = load_engine(state_path(args.state_dir))
        report = attribute_conn_log(
            engine,
            args.conn_log,
            args.output,
            fmt=LogFormat(args.format) if args.format else None,
            user_connections=not args.no_user_connections,
        )
    except (StateError, ConnLogError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{prog}: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(report.summary(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(prog="python -m collector.attribution.offline"))
