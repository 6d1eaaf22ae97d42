"""D: Go's and etcdbench's Kubernetes-1.5-style v2 poll watchers behind the same Go v2 writer at rising
rates: events lost, relists, the loss-free ceiling."""

from __future__ import annotations

from dataclasses import dataclass

from harness import Bench, EtcdbenchRun, Trial
from table import Table, f0, fr, log, ratio, status

T_V2_CEILING = 0.8  # the target: our loss-free ceiling over Go's
V2_IDEAL_RATE = 1000.0  # the rate the Go v2 poll watcher sustains without loss on this class of machine


@dataclass(frozen=True)
class PollCell:
    """One watcher behind the Go v2 writer at one rate."""

    written: int  # acknowledged, warm-up included
    write_rate: float
    received: int
    relists: int
    cpu_us_per_event: float | None

    @classmethod
    def from_trial(cls, trial: Trial) -> PollCell:
        written = trial.put.writes + trial.put.warmup_writes
        watch = trial.watch
        return cls(written, trial.put.writes_per_s, watch.received, watch.relists, watch.cpu_us_per_event)

    @property
    def lost(self) -> int:
        return self.written - self.received

    def cell(self) -> str:
        cpu = f0(self.cpu_us_per_event)
        return f"lost {self.lost:,} of {self.written:,}, {self.relists} relists, {cpu} µs"


@dataclass(frozen=True)
class V2Poll:
    cells: dict[float, dict[str, PollCell]]  # rate -> "go" | "py" -> its cell; empty without Go
    own_writers: EtcdbenchRun | None  # without Go: etcdbench's own writers at 1,000/s

    def ceiling(self, who: str) -> tuple[float | None, bool]:
        """Highest rate with nothing lost at it and every lower rate; and whether it was the top one."""
        best = None
        for rate in sorted(self.cells):
            if self.cells[rate][who].lost != 0:
                return best, False
            best = rate
        return best, True


def section_d(b: Bench, t: Table) -> V2Poll:
    if not b.etcdref:
        log("D etcdbench v2 poll at 1,000/s (its own writers: no Go v2 writer available)")
        run = b.etcdbench("--backend", "v2", "--encoding", "json", "--v2-watch", "poll", "--rate", "1000",
                          "--duration", f"{b.args.duration:g}", "--warmup", "2")  # fmt: skip
        c = run.counters
        t.add(
            "D. v2 poll watcher at 1,000/s (etcdbench's own writers; no Go)",
            f"missed {c['missed']:,}, relists {c['relists']}",
            "—",
            "—",
            "lost 0",
            status(c["missed"] == 0),
        )
        return V2Poll({}, run)
    cells: dict[float, dict[str, PollCell]] = {}
    for rate in b.args.v2_rates:
        cells[rate] = {}
        for who in ("go", "py"):
            log(f"D Go v2 writer at {rate:g}/s + {'Go' if who == 'go' else 'etcdbench'} v2 poll watcher")
            writer = ["-rate", f"{rate:g}", "-value-file", str(b.values["json"])]
            cells[rate][who] = PollCell.from_trial(b.watch_trial(who, "v2", "json", writer, "v2put"))
    result = V2Poll(cells, None)
    _rows(t, result)
    return result


def _rows(t: Table, d: V2Poll) -> None:
    cells = d.cells
    py_c, py_top = d.ceiling("py")
    go_c, go_top = d.ceiling("go")
    for rate, pair in sorted(cells.items()):
        go, py = pair["go"], pair["py"]
        t.add(
            f"D. v2 poll watcher behind the Go v2 writer at {rate:g}/s "
            f"(wrote {f0(go.write_rate)} / {f0(py.write_rate)}/s): lost, relists, CPU/event",
            py.cell(),
            go.cell(),
            "—",
            "—",
            "info",
        )
    # The test: at a rate the Go poll watcher sustains without loss (1,000/s on the reference
    # machine), ours loses nothing either. Which rate that is is measured here: Go's loss-free ceiling.
    if go_c is None:
        t.add("D. at the highest rate the Go v2 poll watcher sustained without loss, ours loses nothing",
              "—", f"lost events at every rate, {min(cells):g}/s up", "—", "lost 0", "n/a")  # fmt: skip
    else:
        py_at = cells[go_c]["py"]
        t.add(
            f"D. at the highest rate the Go v2 poll watcher sustained without loss ({go_c:g}/s; "
            f"the reference machine's was {V2_IDEAL_RATE:g}/s), etcdbench's loses nothing",
            f"lost {py_at.lost:,}",
            "lost 0",
            "—",
            "lost 0",
            status(py_at.lost == 0),
        )
    r = ratio(py_c or 0.0, go_c)
    ok: bool | None = None if r is None else r >= T_V2_CEILING
    mark = ""
    if go_top and py_top:
        ok, mark = None, " (both lost nothing at every rate tried: raise --v2-rates)"
    elif go_top:  # Go's true ceiling is at least the top rate: our ratio is at most r
        ok, mark = (
            (False if r is not None and r < T_V2_CEILING else None),
            " (at most: Go's ceiling is above the rates tried)",
        )
    elif py_top:  # ours is at least the top rate: the ratio is at least r
        ok, mark = (True if r is not None and r >= T_V2_CEILING else None), " (at least)"

    def show(c: float | None, top: bool) -> str:
        if c is None:
            return f"< {min(cells):g}/s"
        return f"{f0(c)}/s" + (" or more" if top else "")

    t.add(
        "D. loss-free ceiling of the v2 poll watcher "
        f"(highest of {', '.join(f'{x:g}' for x in sorted(cells))}/s with nothing lost there and below)",
        show(py_c, py_top),
        show(go_c, go_top),
        fr(r) + mark,
        f">= {T_V2_CEILING}",
        status(ok),
    )
