"""agent-cli cold start: wall time of whole ``agent-cli query ...`` processes, hyperfine-style.

    python bench/bench_cli.py [--runs 21] [--warmup 3] [--tree DIR] [SQL ...]

For each SQL statement (default ``SELECT 1`` and ``SELECT pid, name FROM processes``), runs
``agent-cli query SQL`` ``--runs`` times after ``--warmup`` runs and reports the median, min
and max wall time of the whole process (start, imports, query, output, exit), next to the
floor ``python -c pass``.  Goal: median < 0.12 s for both (osqueryi answers at once).

Two layouts of the same code and interpreter:

* ``dev``: this interpreter as ``make`` sets it up (``pip install -e``): site-packages holds
  setuptools' editable finder, which site.py imports at every start;
* ``installed``: a throwaway venv whose site-packages lists the dependencies' directory and
  the code's directory in a .pth file, the import path a regular (wheel) install gives.

Bytecode: the code is byte-compiled first (as pip does at install); a run that compiles every
module at start measures the compiler, not the start-up.  ``--tree DIR`` measures another
checkout (e.g. ``git archive`` of an earlier commit) with the same interpreter.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAUNCH = "import sys; from agent.cli import main; sys.exit(main())"  # what the agent-cli console script runs


def measure(command: list[str], cwd: Path, env: dict[str, str], runs: int, warmup: int) -> dict[str, float]:
    times = []
    for i in range(warmup + runs):
        start = time.perf_counter()
        proc = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"{command} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
        if i >= warmup:
            times.append(elapsed)
    return {
        "median_s": round(statistics.median(times), 4),
        "min_s": round(min(times), 4),
        "max_s": round(max(times), 4),
    }


def installed_python(tmp: str) -> str:
    """A venv (no pip) whose import path is the dependencies and the code, without the editable finder."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", tmp], check=True)
    site = Path(tmp) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    deps = sysconfig.get_paths()["purelib"]
    (site / "deps.pth").write_text(f"{deps}\n")
    return str(Path(tmp) / "bin" / "python")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sql", nargs="*", default=["SELECT 1", "SELECT pid, name FROM processes"])
    p.add_argument("--runs", type=int, default=21)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--tree", type=Path, default=REPO, help="the checkout to measure (default: this one)")
    args = p.parse_args()
    tree = args.tree.resolve()
    for package in ("agent", "tables", "eventsources"):
        compileall.compile_dir(str(tree / package), quiet=1)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    out: dict = {"python": sys.version.split()[0], "cores": os.cpu_count(), "loadavg_start": load, "layouts": {}}
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        pythons = {"dev": sys.executable, "installed": installed_python(tmp)}
        for layout, python in pythons.items():
            results = {"python -c pass": measure([python, "-c", "pass"], tree, env, args.runs, args.warmup)}
            for sql in args.sql:
                # cwd = the tree: its packages come first on the path, as an installed copy would
                results[f"agent-cli query {sql!r}"] = measure(
                    [python, "-c", LAUNCH, "query", sql], tree, env, args.runs, args.warmup
                )
            out["layouts"][layout] = results
    with open("/proc/loadavg") as f:
        out["loadavg_end"] = " ".join(f.read().split()[:3])
    out["runs"], out["warmup"] = args.runs, args.warmup
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
