"""`etcdbench run` and `etcdbench capacity`: flags, the results file after every cell, Ctrl-C, --from,
on a fake Target (the end-to-end run on the embedded etcd is in tests/integration/test_cli.py)."""

from __future__ import annotations

import argparse
import io
import json
import signal
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

import pytest
from cli_console import tiny_scenario
from rich.console import Console
from test_matrix_report import make_run

from etcdbench.cli.app import _Parser
from etcdbench.cli.run import register
from etcdbench.config.run import RunConfig
from etcdbench.errors import EtcdError, UsageError
from etcdbench.interrupt import Interrupted
from etcdbench.results.io import environment, load, new_results, save
from etcdbench.results.model import EtcdInfo, ResultsFile, Run

Handler = Callable[[argparse.Namespace, Console, Console], int]


def parse(*argv: str) -> tuple[Handler, argparse.Namespace]:
    parser = _Parser(prog="etcdbench")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    handlers = register(sub)
    args = parser.parse_args(list(argv))
    return handlers[args.command], args


def call(*argv: str) -> tuple[int, str, str]:
    handler, args = parse(*argv)
    out, err = io.StringIO(), io.StringIO()
    code = handler(args, Console(file=out, width=200), Console(file=err, width=200))
    return code, out.getvalue(), err.getvalue()


class FakeTarget:
    """Stands in for bench.target.Target: runs nothing, returns a typed run per config."""

    configs: ClassVar[list[RunConfig]] = []
    interrupt_at: ClassVar[int | None] = None  # raise KeyboardInterrupt on this run (0-based)
    limit: ClassVar[float] = 1e12  # runs above this rate fail
    gone_at: ClassVar[int | None] = None  # etcd unreachable after this run (0-based)
    partial_at: ClassVar[int | None] = None  # interrupted mid-run, with a partial run, on this run

    def __init__(self, **kwargs: Any) -> None:
        pass

    def __enter__(self) -> FakeTarget:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        pass

    def check(self, config: RunConfig) -> None:
        pass

    def etcd_info(self) -> EtcdInfo:
        return EtcdInfo(embedded=True, endpoints=["fake"])

    def results(self) -> ResultsFile:
        return new_results(environment(self.etcd_info()))

    def run(self, config: RunConfig, progress: Any = None) -> Run:
        if FakeTarget.interrupt_at == len(FakeTarget.configs):
            raise KeyboardInterrupt
        if FakeTarget.partial_at == len(FakeTarget.configs):
            stop = Interrupted(signal.SIGTERM)
            partial = make_run(config.backend, config.encoding, config.rate, received=config.rate)
            stop.partial = replace(partial, incomplete="interrupted by SIGTERM after 0.5 s of 1 s")
            raise stop
        FakeTarget.configs.append(config)
        passed = config.rate <= FakeTarget.limit
        run = make_run(
            config.backend,
            config.encoding,
            config.rate,
            received=config.rate if passed else config.rate / 2,
            v2_watch=config.v2_watch,
        ).to_dict()
        run["config"] = config.to_dict()
        if FakeTarget.gone_at == len(FakeTarget.configs) - 1:
            run["incomplete"] = "etcd could not be reached after the run: connection refused"
        return Run.from_dict(run)


@pytest.fixture
def fake_target(monkeypatch: pytest.MonkeyPatch) -> type[FakeTarget]:
    import etcdbench.bench.target

    FakeTarget.configs = []
    FakeTarget.interrupt_at = None
    FakeTarget.limit = 1e12
    FakeTarget.gone_at = None
    FakeTarget.partial_at = None
    monkeypatch.setattr(etcdbench.bench.target, "Target", FakeTarget)
    return FakeTarget


# ---------------------------------------------------------------------------------------- usage

USAGE = [
    (["run"], "run: give one scenario file"),
    (["run", "a.toml", "--from", "r.json"], "run: give one scenario file"),
    (["run", "missing.toml"], "missing.toml: cannot read"),
    (["run", "TINY", "--backend", "v4"], "--backend: unknown value 'v4'"),
    (["run", "TINY", "--duration", "0"], "--duration: must be > 0"),
    (["run", "TINY", "--scale", "-1"], "--scale: must be a finite number > 0"),
    (["run", "TINY", "--slo-p99", "1x"], "--slo-p99: '1x' is not a duration"),
    (
        ["run", "TINY", "--encoding", "json", "--backend", "v3"],
        "--encoding: json: the scenario has no such cell",
    ),
    (["run", "--from", "TINY"], "not valid JSON"),
    (["capacity", "--start", "0"], "--start: must be > 0"),
    (["capacity", "--budget", "5x"], "--budget: '5x' is not a duration"),
    (["capacity", "--budget", "0"], "--budget: must be > 0"),
    (["run", "TINY", "--etcd", "3.4", "--endpoints", "http://127.0.0.1:1"], "--etcd: chooses the embedded"),
    (["run", "TINY", "--etcd", "3.9"], "--etcd: no etcd 3.9 installed"),
    (["run", "TINY", "--etcd", "etcd3"], "--etcd: 'etcd3' is neither a version"),
    (["capacity", "--resolution", "5"], "--resolution: '5' is not a percentage"),
    (["capacity", "--resolution", "150%"], "--resolution: '150%' must be above 0% and below 100%"),
    (["capacity", "--preload", "pods"], "--preload: 'pods' is not KIND=COUNT"),
    (["capacity", "--preload", "rack=5"], "--preload: 'rack=5' is not KIND=COUNT"),
    (["capacity", "--backend", "v2", "--watchers-per-stream", "2"], "--watchers-per-stream"),
    (["run", "TINY", "--decode-prev", "never"], "--decode-prev: unknown value 'never'"),
]


@pytest.mark.parametrize(("argv", "message"), USAGE, ids=[" ".join(a) for a, _ in USAGE])
def test_usage_errors_name_the_input(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_target: type[FakeTarget],
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    tiny = tiny_scenario(tmp_path)
    argv = [str(tiny) if a == "TINY" else a for a in argv]
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace("?", r"\?")):
        call(*argv)
    assert not fake_target.configs  # refused before anything ran


# ---------------------------------------------------------------------------------------- run (fake)


def test_run_writes_one_file_after_every_cell_and_prints_the_comparison(
    tmp_path: Path, fake_target: type[FakeTarget], monkeypatch: pytest.MonkeyPatch
) -> None:
    out_path = tmp_path / "r.json"
    snapshots: list[dict[str, Any]] = []
    real_save = save

    def spy(path: Path, results: ResultsFile) -> None:
        snapshots.append(json.loads(json.dumps(results.to_dict())))
        real_save(path, results)

    monkeypatch.setattr("etcdbench.cli.execute.save", spy)  # the Saver every command shares
    code, out, _ = call("run", str(tiny_scenario(tmp_path)), "--output", str(out_path))
    assert code == 0
    assert [(len(s["runs"]), s["complete"]) for s in snapshots] == [(1, False), (2, True)]
    results = load(out_path)
    assert results["complete"] and len(results["runs"]) == 2
    assert results["scenario"]["name"] == "tiny"
    assert [r["config"]["scenario"] for r in results["runs"]] == [
        "tiny[backend=v3,encoding=protobuf]",
        "tiny[backend=v2,encoding=json]",
    ]
    assert "tiny" in out and "2 of 2 runs passed." in out and f"results: {out_path}" in out
    assert "v2(poll)+json pod @100/s" in out


def test_run_exit_code_is_1_when_a_cell_fails(tmp_path: Path, fake_target: type[FakeTarget]) -> None:
    fake_target.limit = 50
    code, out, _ = call("run", str(tiny_scenario(tmp_path)), "--output", str(tmp_path / "r.json"))
    assert code == 1 and "0 of 2 runs passed." in out


def test_ctrl_c_saves_the_cells_that_ran_marked_incomplete(
    tmp_path: Path, fake_target: type[FakeTarget]
) -> None:
    fake_target.interrupt_at = 1
    out_path = tmp_path / "r.json"
    with pytest.raises(KeyboardInterrupt):
        call("run", str(tiny_scenario(tmp_path)), "--output", str(out_path))
    results = load(out_path)
    assert results["complete"] is False and len(results["runs"]) == 1
    assert results["scenario"]["name"] == "tiny"


@pytest.mark.parametrize("to_stdout", [False, True], ids=["file", "--json"])
def test_an_interrupted_cell_is_kept_with_what_it_measured(
    tmp_path: Path, fake_target: type[FakeTarget], to_stdout: bool
) -> None:
    fake_target.partial_at = 1
    out_path = tmp_path / "r.json"
    handler, args = parse(
        "run", str(tiny_scenario(tmp_path)), *(["--json"] if to_stdout else ["--output", str(out_path)])
    )
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(Interrupted):
        handler(args, Console(file=out, width=200), Console(file=err, width=200))
    results = json.loads(out.getvalue()) if to_stdout else load(out_path)
    assert results["complete"] is False and len(results["runs"]) == 2
    assert "incomplete" not in results["runs"][0]
    assert results["runs"][1]["incomplete"] == "interrupted by SIGTERM after 0.5 s of 1 s"
    if not to_stdout:
        assert f"interrupted: partial results written to {out_path} (complete: false)" in err.getvalue()


def test_etcd_gone_after_a_cell_stops_the_matrix_and_keeps_it(
    tmp_path: Path, fake_target: type[FakeTarget]
) -> None:
    fake_target.gone_at = 0
    out_path = tmp_path / "r.json"
    with pytest.raises(EtcdError, match="could not be reached"):
        call("run", str(tiny_scenario(tmp_path)), "--output", str(out_path))
    results = load(out_path)
    assert results["complete"] is False and len(results["runs"]) == 1
    assert len(fake_target.configs) == 1


def test_ctrl_c_before_any_cell_writes_nothing(tmp_path: Path, fake_target: type[FakeTarget]) -> None:
    fake_target.interrupt_at = 0
    handler, args = parse("run", str(tiny_scenario(tmp_path)), "--output", str(tmp_path / "r.json"))
    err = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        handler(args, Console(file=io.StringIO()), Console(file=err, width=200))
    assert not (tmp_path / "r.json").exists()
    assert err.getvalue() == "interrupted before anything was measured; no results written\n"


def test_from_results_repeats_exactly_and_accepts_overrides(
    tmp_path: Path, fake_target: type[FakeTarget]
) -> None:
    first = tmp_path / "first.json"
    call("run", str(tiny_scenario(tmp_path)), "--output", str(first), "--duration", "2", "--backend", "v3")
    ran = list(fake_target.configs)
    assert [c.backend for c in ran] == ["v3"] and ran[0].duration_s == 2.0
    fake_target.configs.clear()
    code, _, _ = call("run", "--from", str(first), "--output", str(tmp_path / "again.json"))
    assert code == 0 and fake_target.configs == ran
    assert load(tmp_path / "again.json")["scenario"] == load(first)["scenario"]
    fake_target.configs.clear()
    call("run", "--from", str(first), "--json", "--warmup", "0")
    assert [c.warmup_s for c in fake_target.configs] == [0.0]
    fake_target.configs.clear()
    call("run", "--from", str(first), "--json", "--decode-prev", "always")
    assert [(c.decode_prev, c.decodes_prev_on_put) for c in fake_target.configs] == [("always", True)]


def test_json_goes_to_stdout_and_writes_no_file(
    tmp_path: Path, fake_target: type[FakeTarget], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, _ = call("run", str(tiny_scenario(tmp_path)), "--json")
    results = json.loads(out)
    assert code == 0 and len(results["runs"]) == 2 and results["complete"] and "scenario" in results
    assert not (tmp_path / "results").exists()


def test_scale_without_cluster_says_it_changes_nothing(tmp_path: Path, fake_target: type[FakeTarget]) -> None:
    _, _, err = call("run", str(tiny_scenario(tmp_path)), "--json", "--scale", "0.5")
    assert "--scale changes nothing" in err


# ---------------------------------------------------------------------------------------- capacity (fake)


def test_capacity_search_end_to_end_on_a_fake_target(tmp_path: Path, fake_target: type[FakeTarget]) -> None:
    fake_target.limit = 1234
    out_path = tmp_path / "cap.json"
    code, out, _ = call("capacity", "--start", "500", "--resolution", "5%", "--output", str(out_path))
    assert code == 0
    results = load(out_path)
    capacity = results["capacity"]
    assert results["complete"] and len(results["runs"]) == len(capacity["curve"])
    assert capacity["knee"] <= 1234 < capacity["interval"][1]
    assert capacity["relative_width"] <= 0.05 and capacity["confirmed"]
    assert capacity["limited_by"]["by"] == "etcd"
    assert [c.rate for c in fake_target.configs][:3] == [500, 1000, 2000]
    assert all(c.scenario == "capacity" for c in fake_target.configs)
    assert f"knee: {capacity['knee']:,.0f} writes/s" in out and "limited by etcd" in out


def test_capacity_ctrl_c_keeps_the_steps(tmp_path: Path, fake_target: type[FakeTarget]) -> None:
    fake_target.interrupt_at = 2
    out_path = tmp_path / "cap.json"
    with pytest.raises(KeyboardInterrupt):
        call("capacity", "--output", str(out_path))
    results = load(out_path)
    assert not results["complete"] and len(results["runs"]) == 2 and "capacity" not in results
