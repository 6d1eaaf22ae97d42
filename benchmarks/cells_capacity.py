"""A capacity search for every cell of a scenario: `etcdbench capacity` run with each cell's settings.

    python benchmarks/cells_capacity.py scenarios/k8s-1.6-conditions.toml \
        --preload pod=15000,node=5000 --duration 20 --warmup 5 --budget 240 --out-dir DIR

The cells come from the scenario file itself (etcdbench.config.file), so a search runs exactly the
cell's API, encoding, objects, writers, network, background load and TLS; the flags here change only
what every search shares (the standing state, the step length, the budget). Each search starts at
the cell's rate, on an etcd of its own, and writes DIR/<n>-<cell>.json. The script then prints one
markdown row per cell: the knee, what limited it, how the search stopped and its steps (rate ->
events/s, PASS/FAIL).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

from etcdbench.config.file import Overrides, load_file
from etcdbench.config.run import RunConfig, flag_of
from etcdbench.results.io import load_results
from etcdbench.results.model import ResultsFile

# RunConfig fields a search takes from its cell; the rest are the search's own (rate, duration, ...)
# or say where the cell came from.
SHARED = ("rate", "duration_s", "warmup_s", "scale", "scenario", "preload", "etcd", "faults")
DEFAULTS = RunConfig()


def argv_of(cell: RunConfig) -> list[str]:
    """The `etcdbench capacity` flags that give a search the cell's settings (defaults left out)."""
    argv: list[str] = []
    for f in fields(RunConfig):
        value = getattr(cell, f.name)
        if f.name in SHARED or value == getattr(DEFAULTS, f.name):
            continue
        flag = flag_of(f.name)
        if isinstance(value, bool):
            argv.append(flag)
        elif f.name.endswith("_us"):
            argv += [flag, f"{value}us"]
        elif f.name.endswith("_s"):
            argv += [flag, f"{value:g}s"]
        else:
            argv += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return argv


def row(n: int, results: ResultsFile) -> str:
    cap = results.capacity
    if cap is None:
        return f"| {n} | (no capacity record) | | | |"
    label = results.runs[0].label.split(" @")[0] if results.runs else "?"
    cond = re.sub(r"^.* @[0-9.,]+/s", "", results.runs[0].label) if results.runs else ""
    knee = f"{cap.knee:,.0f}/s" if cap.knee is not None else "none"
    limit = cap.limited_by.text if cap.limited_by is not None else "—"
    steps = ", ".join(
        f"{p.rate:,.0f}→{p.events_per_s:,.0f} {'PASS' if p.pass_ else 'FAIL'}{'*' if p.client_bound else ''}"
        for p in cap.curve
    )
    search = f"{cap.stopped_by}, {cap.elapsed_s:.0f} s of {cap.budget_s:.0f} s"
    return f"| {label}{cond} | {knee} | {limit} | {search} | {steps} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario", type=Path, help="scenario file (TOML)")
    ap.add_argument(
        "--preload", required=True, help="standing state of every search, e.g. pod=15000,node=5000"
    )
    ap.add_argument("--duration", default="20s", help="measured time of each step (default 20s)")
    ap.add_argument("--warmup", default="5s", help="unmeasured time of each step (default 5s)")
    ap.add_argument("--budget", default="240s", help="wall-clock limit of each search (default 240s)")
    ap.add_argument("--cells", help="only these cells, by number from 1, e.g. 1,2")
    ap.add_argument("--out-dir", type=Path, required=True, help="where each search's results file goes")
    args = ap.parse_args()

    cells = load_file(args.scenario, Overrides()).cells
    chosen = {int(x) for x in args.cells.split(",")} if args.cells else set(range(1, len(cells) + 1))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    print("| cell | knee | limited by | search | steps (intended → received events/s; * client-bound) |")
    print("|---|--:|---|---|---|")
    for n, cell in enumerate(cells, 1):
        if n not in chosen:
            continue
        out = args.out_dir / f"{n:02d}-{re.sub(r'[^a-z0-9]+', '-', cell.label.lower()).strip('-')}.json"
        command = [
            *(sys.executable, "-m", "etcdbench", "capacity"),
            *argv_of(cell),
            *("--start", f"{cell.rate:g}", "--preload", args.preload),
            *("--duration", args.duration, "--warmup", args.warmup, "--budget", args.budget),
            *("--output", str(out)),
        ]
        print(f"<!-- {' '.join(command[1:])} -->", file=sys.stderr, flush=True)
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode not in (0, 1) or not out.exists():
            print(f"| {n} | search failed (exit {done.returncode}): {done.stderr.strip()[-300:]} | | | |")
            continue
        print(row(n, load_results(out)), flush=True)


if __name__ == "__main__":
    main()
