"""The benchmarks' output: progress lines on stderr, and client_vs_go.py's table, one row per figure,
with how a cell shows a number."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Table:
    rows: list[tuple[str, str, str, str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, figure: str, ours: str, go: str, ratio: str, target: str, status: str) -> None:
        self.rows.append((figure, ours, go, ratio, target, status))

    def render(self) -> str:
        head = ("figure", "etcdbench", "Go reference", "ratio", "target", "status")
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


def f0(x: float | None) -> str:
    return "—" if x is None else f"{x:,.0f}"


def f1(x: float | None) -> str:
    return "—" if x is None else f"{x:,.1f}"


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def fr(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


def status(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def ms(us: float | None) -> str:
    return "—" if us is None else f"{us / 1000:,.1f} ms"
