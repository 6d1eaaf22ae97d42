"""The apiserver's other traffic without an etcd: its keys are the run's own and apart from the measured
watch, shards split them, bad values are refused in one line, and when it falls behind the run is
client-bound."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from cli_console import run_cli
from test_reports import background_report
from test_results import a_run

from etcdbench.config.file import load_file
from etcdbench.config.run import RunConfig
from etcdbench.errors import EXIT_USAGE, UsageError
from etcdbench.results.model import Background
from etcdbench.results.verdict import verdict
from etcdbench.workload.background import _Stream, background_keys, background_prefix, summarize
from etcdbench.workload.ops import written_keys
from etcdbench.workload.timeline import NS, Timeline


def test_background_events_are_the_runs_own_keys_outside_the_measured_watch() -> None:
    config = RunConfig(prefix="/x/", bg_event_rate=10, duration_s=2, warmup_s=1, rate=10, objects=2)
    keys = background_keys(config)
    assert len(keys) == config.background_events == 30
    assert background_prefix(config) == "/x-background/"
    assert all(k.startswith("/x-background/events/") and not k.startswith(config.prefix) for k in keys)
    assert keys <= written_keys(config)  # checked for collisions and released like the writers' keys
    assert not background_keys(RunConfig(prefix="/x/")) & written_keys(RunConfig(prefix="/x/"))


def test_shards_write_different_background_events() -> None:
    shard = [
        RunConfig(prefix="/x/", bg_event_rate=5, shard=i, shards=2, rate=10, duration_s=2) for i in (0, 1)
    ]
    a, b = background_keys(shard[0]), background_keys(shard[1])
    assert len(a) == len(b) == shard[0].background_events and not a & b
    assert a | b == background_keys(shard[0], [0, 1]) <= written_keys(shard[0], range(2))


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--bg-list-rate", "-1"),
        ("--bg-get-rate", "nan"),
        ("--bg-event-rate", "1e9"),
        ("--bg-list-page", "0"),
        ("--bg-event-ttl", "1.5"),
        ("--bg-event-ttl", "0"),
        ("--bg-watches", "101"),
        ("--bg-watches", "-2"),
    ],
)
def test_bad_background_values_are_refused_in_one_line(flag: str, value: str) -> None:
    code, _, err = run_cli("watch", flag, value, "--duration", "1")
    assert code == EXIT_USAGE
    assert len(err.strip().splitlines()) == 1 and flag in err, err


def test_background_with_a_root_prefix_is_refused() -> None:
    code, _, err = run_cli("watch", "--prefix", "/", "--bg-event-rate", "5", "--duration", "1")
    assert code == EXIT_USAGE and "--prefix" in err and len(err.strip().splitlines()) == 1


def test_scenario_files_take_the_background_keys(tmp_path: Path) -> None:
    path = tmp_path / "bg.toml"
    path.write_text(
        textwrap.dedent(
            """
            name = "bg"
            [run]
            bg_list_rate = 2
            bg_list_page = 100
            bg_get_rate = 50
            bg_event_rate = 20
            bg_event_ttl_s = 600
            bg_watches = 4
            """
        )
    )
    (cell,) = load_file(path).cells
    assert (cell.bg_list_rate, cell.bg_list_page, cell.bg_get_rate) == (2, 100, 50)
    assert (cell.bg_event_rate, cell.bg_event_ttl_s, cell.bg_watches) == (20, 600, 4)
    path.write_text('name = "bg"\n[run]\nbg_list_page = 0\n')
    with pytest.raises(UsageError, match=r"run\.bg_list_page: must be > 0"):
        load_file(path)


def test_ops_due_before_the_stop_that_never_started_are_unsent() -> None:
    stream = _Stream("gets", 10.0, Timeline(0, 0.0, 10.0))  # 100 ops, one every 0.1 s
    for _ in range(5):
        i = stream.take()
        assert i is not None
        stream.started(stream.intended(i))
    stream.take()  # taken, then cut short by the stop before it started: not sent
    stream.close(round(1.05 * NS))  # ops 0-10 were due by then
    assert (stream.sent, stream.unsent, stream.total) == (5, 6, 100)
    assert stream.take() is None  # nothing starts after the stop


def _summary(slip_us: int, unsent: int = 0) -> Background:
    """The `background` block of a load whose LISTs and Events ran `slip_us` late (no GETs asked)."""
    return summarize(background_report(slip_us=slip_us, unsent=unsent, idle_gets=True))


def test_the_background_falls_behind_on_slip_or_unsent_ops() -> None:
    assert _summary(2_000).fell_behind is False
    late = _summary(250_000)
    assert late.fell_behind and late.fell_behind_because == ["slip p99 250 ms"]
    assert late.slip_us.count == 200  # the active streams' slip merged
    assert _summary(2_000, unsent=3).fell_behind_because == ["3 ops never sent"]


def test_a_run_whose_background_fell_behind_is_client_bound() -> None:
    config = RunConfig(rate=500, bg_get_rate=10)
    clean = a_run(background=_summary(2_000).to_dict())
    assert verdict(clean, config).client_bound is False
    v = verdict(a_run(background=_summary(250_000).to_dict()), config)
    assert v.client_bound_reasons == ["the background load fell behind its schedule (slip p99 250 ms)"]
    assert v.pass_  # it describes our client, not etcd: the verdict itself is unchanged
    busy = verdict(a_run(**{"background": _summary(2_000).to_dict(), "cpu.background": 0.95}), config)
    assert busy.client_bound_reasons == ["the background load's process used 0.95 of its one core"]


def test_a_scenario_run_takes_and_checks_the_background_flags(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('name = "s"\n[run]\nrate = 10\nduration_s = 1\n')
    code, _, err = run_cli("run", str(path), "--bg-event-rate", "-1")
    assert code == EXIT_USAGE and "--bg-event-rate" in err and len(err.strip().splitlines()) == 1
