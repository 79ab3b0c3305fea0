"""Cost of agent.diff.diff on 100,000 rows (run outside the test suite).

PYTHONPATH=. .venv/bin/python bench/bench_diff.py
"""

from __future__ import annotations

import statistics
import time

from agent.diff import diff
from agent.state import pack_rows, unpack_rows

COLUMNS = ("pid", "name", "path", "cmdline", "state", "uid", "gid", "parent", "start_time", "resident_size")


def make_rows(n: int, offset: int = 0) -> list[dict[str, str]]:
    return [
        {c: f"{c}-{i + offset}" if c in ("name", "path", "cmdline") else str(i + offset) for c in COLUMNS}
        for i in range(n)
    ]


def bench_diff(rows: int = 100_000, changed: int = 1_000, repeat: int = 5) -> dict[str, float]:
    """Median seconds to diff ``rows`` rows: unchanged, and with ``changed`` rows replaced."""
    previous = make_rows(rows)
    same = [dict(r) for r in previous]
    changed_rows = previous[changed:] + make_rows(changed, offset=rows)
    all_new = make_rows(rows, offset=rows)
    results = {}
    for label, current in (("unchanged", same), ("changed", changed_rows), ("all_changed", all_new)):
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            added, removed = diff(previous, current)
            times.append(time.perf_counter() - start)
        results[label] = statistics.median(times)
        results[f"{label}_added"] = len(added)
        results[f"{label}_removed"] = len(removed)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        unpack_rows(pack_rows(previous))
        times.append(time.perf_counter() - start)
    results["state_round_trip"] = statistics.median(times)
    return results


def main() -> None:
    r = bench_diff()
    print(
        f"diff of 100,000 rows x {len(COLUMNS)} columns: unchanged {r['unchanged'] * 1000:.0f} ms, "
        f"1,000 changed {r['changed'] * 1000:.0f} ms "
        f"(added {r['changed_added']:.0f}, removed {r['changed_removed']:.0f}), "
        f"all 100,000 replaced {r['all_changed'] * 1000:.0f} ms; "
        f"state serialization round trip (msgpack) {r['state_round_trip'] * 1000:.0f} ms; median of 5"
    )


if __name__ == "__main__":
    main()
