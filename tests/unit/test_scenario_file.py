"""Scenario files: loading, matrix expansion, scale, overrides, the normalised document, one-line errors."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from paths import ROOT

from etcdbench.config.file import FILE_FIELDS, Overrides, build, from_results, load_file
from etcdbench.config.run import RunConfig, flag_of
from etcdbench.errors import UsageError

SCENARIOS = ROOT / "scenarios"


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def configs(path: Path, overrides: Overrides | None = None) -> list[RunConfig]:
    return list(load_file(path, overrides).cells)


# ---------------------------------------------------------------------------------------- shipped files


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_scenario_loads_and_says_what_it_reproduces(path: Path) -> None:
    text = path.read_text()
    assert text.startswith("# "), "a scenario starts with a comment saying what it reproduces"
    head = text.split("\n\n", 1)[0]
    assert "Source" in head or "Sources" in head
    for scale in (None, 0.05):
        scenario = load_file(path, Overrides(scale=scale, values={"duration_s": 5.0, "warmup_s": 1.0}))
        assert scenario.cells
        for config in scenario.cells:
            assert config.scenario.startswith(scenario.name)
            assert config.scale == (scale or 1.0)
            assert config.duration_s == 5.0 and config.warmup_s == 1.0


def test_the_required_scenarios_are_shipped() -> None:
    names = {p.stem for p in SCENARIOS.glob("*.toml")}
    assert {"k8s-1.6-5000-nodes", "k8s-1.3-2000-nodes", "v2-vs-v3", "modern-pods", "watch-fanout"} <= names


def test_k8s_16_is_the_blog_posts_cluster_and_scales_down() -> None:
    full = configs(SCENARIOS / "k8s-1.6-5000-nodes.toml")
    assert {(c.backend, c.encoding) for c in full} == {("v2", "json"), ("v3", "protobuf")}
    for c in full:
        assert c.kind == "node" and c.rate == 500.0 and c.objects == 5000  # 5,000 nodes / 10 s
        assert c.preload == {"node": 5000, "pod": 150000}
        assert c.scale == 1.0
    small = configs(SCENARIOS / "k8s-1.6-5000-nodes.toml", Overrides(scale=0.05))
    for c in small:
        assert c.rate == 25.0 and c.objects == 250 and c.preload == {"node": 250, "pod": 7500}
        assert c.scale == 0.05


def test_k8s_16_conditions_adds_one_factor_at_a_time_for_each_api() -> None:
    """none -> network -> background -> TLS -> all, for v2 poll + JSON and v3 + protobuf: each factor
    cell differs from its API's plain cell in that factor's fields only, and `all` in all of them."""
    cells = configs(SCENARIOS / "k8s-1.6-conditions.toml")
    factors = {
        "network": {"rtt_us", "jitter_us"},
        "background": {"bg_get_rate", "bg_event_rate", "bg_watches", "bg_list_rate", "bg_list_page"},
        "tls": {"tls"},
    }
    apis = [("v2", "json"), ("v3", "protobuf")]
    assert [(c.backend, c.encoding) for c in cells] == apis * 5
    for i, (backend, _) in enumerate(apis):
        none, network, background, tls, every = cells[i::2]
        plain = none.to_dict()
        assert none.kind == "node" and none.rate == 500 and none.preload == {"node": 5000, "pod": 150000}
        assert not none.rtt_us and not none.background and not none.tls
        assert backend == "v3" or none.v2_watch == "poll"
        for cell, fields in zip((network, background, tls), factors.values(), strict=True):
            changed = {k for k, v in cell.to_dict().items() if plain[k] != v} - {"scenario"}
            assert changed == fields, cell.label
            assert all(getattr(every, k) == getattr(cell, k) for k in fields), cell.label  # same values
        changed = {k for k, v in every.to_dict().items() if plain[k] != v} - {"scenario"}
        assert changed == set().union(*factors.values())


def test_k8s_13_is_2000_nodes_at_200_updates_per_s() -> None:
    for c in configs(SCENARIOS / "k8s-1.3-2000-nodes.toml"):
        assert c.rate == 200.0 and c.objects == 2000 and c.preload == {"node": 2000, "pod": 60000}


def test_v2_vs_v3_covers_both_v2_watch_modes_at_rising_rates() -> None:
    cells = configs(SCENARIOS / "v2-vs-v3.toml")
    assert sorted({c.rate for c in cells}) == [500.0, 1000.0, 2000.0]
    assert {c.v2_watch for c in cells if c.backend == "v2"} == {"poll", "stream"}
    assert {c.encoding for c in cells if c.backend == "v3"} == {"json", "protobuf"}
    assert [c.rate for c in cells] == sorted(c.rate for c in cells)  # rate is the outer axis


def test_watch_fanout_multiplexes_only_on_v3() -> None:
    cells = configs(SCENARIOS / "watch-fanout.toml")
    assert sorted({c.watchers for c in cells}) == [1, 10, 50]
    assert any(c.watchers_per_stream > 1 for c in cells)
    assert all(c.backend == "v3" for c in cells)


def test_modern_pods_compares_size_profiles_under_churn_and_mix() -> None:
    cells = configs(SCENARIOS / "modern-pods.toml")
    assert {(c.workload, c.size_profile) for c in cells} == {
        (w, s) for w in ("churn", "mix") for s in ("k8s-1.6", "modern")
    }


# ---------------------------------------------------------------------------------------- expansion


MATRIX = """
name = "m"
[run]
duration_s = 1
[matrix]
rate = [100, 200]
variants = [{backend = "v2", v2_watch = "poll"}, {backend = "v3"}]
encoding = ["json", "protobuf"]
"""


def test_matrix_expands_in_file_order_first_key_slowest(tmp_path: Path) -> None:
    cells = configs(write(tmp_path, MATRIX))
    assert [c.scenario for c in cells] == [
        "m[rate=100,backend=v2,v2_watch=poll,encoding=json]",
        "m[rate=100,backend=v2,v2_watch=poll,encoding=protobuf]",
        "m[rate=100,backend=v3,encoding=json]",
        "m[rate=100,backend=v3,encoding=protobuf]",
        "m[rate=200,backend=v2,v2_watch=poll,encoding=json]",
        "m[rate=200,backend=v2,v2_watch=poll,encoding=protobuf]",
        "m[rate=200,backend=v3,encoding=json]",
        "m[rate=200,backend=v3,encoding=protobuf]",
    ]
    assert all(c.duration_s == 1.0 for c in cells)


def test_a_file_without_matrix_is_one_cell_named_by_the_file(tmp_path: Path) -> None:
    (cell,) = configs(write(tmp_path, "[run]\nrate = 300\n", name="single.toml"))
    assert cell.scenario == "single" and cell.rate == 300.0
    assert cell == RunConfig(rate=300.0, scenario="single")


def test_v2_watch_axis_does_not_duplicate_v3_cells(tmp_path: Path) -> None:
    path = write(tmp_path, '[matrix]\nbackend = ["v2", "v3"]\nv2_watch = ["poll", "stream"]\n')
    cells = configs(path)
    assert [(c.backend, c.v2_watch) for c in cells] == [("v2", "poll"), ("v2", "stream"), ("v3", "poll")]


def test_a_decode_prev_axis_does_not_duplicate_v2_cells_which_decode_it_anyway(tmp_path: Path) -> None:
    path = write(tmp_path, '[matrix]\nbackend = ["v2", "v3"]\ndecode_prev = ["apiserver", "always"]\n')
    cells = configs(path)
    assert [(c.backend, c.decode_prev, c.decodes_prev_on_put) for c in cells] == [
        ("v2", "apiserver", True),
        ("v3", "apiserver", False),
        ("v3", "always", True),
    ]


def test_cluster_values_are_defaults_and_explicit_values_win(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[cluster]
nodes = 100
pods = 3000
heartbeat_s = 5
[run]
kind = "pod"
preload = {pod = 10, event = 7}
[matrix]
objects = [50]
""",
    )
    (cell,) = configs(path, Overrides(scale=0.5))
    assert cell.rate == 10.0  # round(100 * 0.5) / 5
    assert cell.objects == 50  # explicit: not derived from pods, not scaled
    assert cell.preload == {"node": 50, "pod": 10, "event": 7}  # explicit counts win per kind


def test_tiny_scale_keeps_at_least_one_object(tmp_path: Path) -> None:
    path = write(tmp_path, "[cluster]\nnodes = 10\nheartbeat_s = 10\n[run]\nkind = 'node'\nduration_s = 20\n")
    (cell,) = configs(path, Overrides(scale=0.001))
    assert cell.objects == 1 and cell.rate == 0.1 and cell.preload == {"node": 1}


# ---------------------------------------------------------------------------------------- overrides


def test_command_line_values_override_and_collapse_a_matrix_axis(tmp_path: Path) -> None:
    path = write(tmp_path, "[matrix]\nduration_s = [5, 10]\nrate = [100, 200]\n")
    cells = configs(path, Overrides(values={"duration_s": 2.0, "warmup_s": 0.0}))
    assert [(c.duration_s, c.rate) for c in cells] == [(2.0, 100.0), (2.0, 200.0)]
    assert [c.scenario for c in cells] == ["s[rate=100]", "s[rate=200]"]


def test_backend_restriction_filters_axes_and_variants(tmp_path: Path) -> None:
    cells = configs(write(tmp_path, MATRIX), Overrides(only={"backend": ("v3",)}))
    assert {c.backend for c in cells} == {"v3"} and len(cells) == 4
    cells = configs(write(tmp_path, MATRIX), Overrides(only={"encoding": ("protobuf",)}))
    assert {c.encoding for c in cells} == {"protobuf"} and len(cells) == 4


def test_selecting_what_the_matrix_lacks_names_the_flag(tmp_path: Path) -> None:
    path = write(tmp_path, '[matrix]\nbackend = ["v3"]\n')
    with pytest.raises(UsageError, match=r"^--backend: v2: the scenario has no such cell"):
        load_file(path, Overrides(only={"backend": ("v2",)}))


def test_a_selecting_flag_overrides_a_run_value(tmp_path: Path) -> None:
    """`etcdbench run FILE --encoding json` where [run] says protobuf: the flag wins, as --duration
    does; the normalised document records what ran."""
    path = write(tmp_path, '[run]\nencoding = "protobuf"\n[matrix]\nbackend = ["v2", "v3"]\n')
    scenario = load_file(path, Overrides(only={"encoding": ("json",)}))
    assert [(c.backend, c.encoding) for c in scenario.cells] == [("v2", "json"), ("v3", "json")]
    assert scenario.document["run"]["encoding"] == "json"
    assert from_results(Path("r.json"), {"scenario": scenario.document}).cells == scenario.cells
    # a field the file leaves to its default is overridden the same way
    (cell,) = configs(write(tmp_path, "[run]\nrate = 100\n"), Overrides(only={"kind": ("node",)}))
    assert cell.kind == "node"


def test_a_selecting_flag_still_selects_where_the_matrix_sets_the_field(tmp_path: Path) -> None:
    path = write(tmp_path, '[run]\nencoding = "json"\n[matrix]\nbackend = ["v2", "v3"]\n')
    cells = configs(path, Overrides(only={"backend": ("v3",), "encoding": ("protobuf",)}))
    assert [(c.backend, c.encoding) for c in cells] == [("v3", "protobuf")]


def test_several_values_for_a_run_value_make_a_new_axis(tmp_path: Path) -> None:
    path = write(tmp_path, '[run]\nencoding = "json"\n[matrix]\nbackend = ["v2", "v3"]\n')
    scenario = load_file(path, Overrides(only={"encoding": ("json", "protobuf")}))
    assert [(c.backend, c.encoding) for c in scenario.cells] == [
        ("v2", "json"),
        ("v2", "protobuf"),
        ("v3", "json"),
        ("v3", "protobuf"),
    ]
    assert scenario.document["matrix"]["encoding"] == ["json", "protobuf"]
    assert "encoding" not in scenario.document["run"]
    assert from_results(Path("r.json"), {"scenario": scenario.document}).cells == scenario.cells


def test_a_bad_overriding_value_names_the_flag(tmp_path: Path) -> None:
    path = write(tmp_path, '[run]\nencoding = "json"\n')
    with pytest.raises(UsageError, match=r"^--etcd: 'x y' is neither a version"):
        load_file(path, Overrides(only={"etcd": ("x y",)}))


# ---------------------------------------------------------------------------------------- etcd axis


def test_an_etcd_axis_expands_and_a_flag_selects_its_cells(tmp_path: Path) -> None:
    text = '[matrix]\netcd = ["3.4", "3.5"]\nbackend = ["v2", "v3"]\n'
    cells = configs(write(tmp_path, text))
    assert [(c.etcd, c.backend) for c in cells] == [
        ("3.4", "v2"),
        ("3.4", "v3"),
        ("3.5", "v2"),
        ("3.5", "v3"),
    ]
    assert cells[0].scenario == "s[etcd=3.4,backend=v2]"
    only = configs(write(tmp_path, text), Overrides(only={"etcd": ("3.5",)}))
    assert [(c.etcd, c.backend) for c in only] == [("3.5", "v2"), ("3.5", "v3")]


def test_a_tls_axis_expands_groups_by_server_and_the_flag_overrides_it(tmp_path: Path) -> None:
    from etcdbench.cli.run import by_etcd

    text = '[matrix]\ntls = [false, true]\nbackend = ["v2", "v3"]\netcd = ["3.4", "3.5"]\n'
    cells = configs(write(tmp_path, text))
    assert cells[0].scenario == "s[tls=false,backend=v2,etcd=3.4]"
    assert [c.label.endswith(" tls") for c in cells] == [c.tls for c in cells] == [False] * 4 + [True] * 4
    # each (etcd, tls) server once, in order of first appearance; the file's order within
    assert [(c.etcd, c.tls, c.backend) for c in by_etcd(tuple(cells))] == [
        ("3.4", False, "v2"),
        ("3.4", False, "v3"),
        ("3.5", False, "v2"),
        ("3.5", False, "v3"),
        ("3.4", True, "v2"),
        ("3.4", True, "v3"),
        ("3.5", True, "v2"),
        ("3.5", True, "v3"),
    ]
    every = configs(write(tmp_path, text), Overrides(values={"tls": True}))  # `run --tls`
    assert len(every) == 4 and all(c.tls for c in every)


@pytest.mark.parametrize("value", ['"yes"', "1", "[true]"])
def test_tls_takes_true_or_false_only(tmp_path: Path, value: str) -> None:
    with pytest.raises(UsageError, match=r"^.*s\.toml: run\.tls: must be true or false, got "):
        configs(write(tmp_path, f"[run]\ntls = {value}\n"))


@pytest.mark.parametrize("value", ["3.4", "3.5.1", "/usr/bin/etcd", "./bin/etcd", ""])
def test_etcd_takes_a_version_or_a_binary_path(tmp_path: Path, value: str) -> None:
    (cell,) = configs(write(tmp_path, f'[run]\netcd = "{value}"\n'))
    assert cell.etcd == value


@pytest.mark.parametrize("value", ["etcd", "v3.4", "3", "3.4.x", "latest"])
def test_etcd_refuses_what_is_neither(tmp_path: Path, value: str) -> None:
    with pytest.raises(
        UsageError, match=rf"^.*s\.toml: run\.etcd: '{re.escape(value)}' is neither a version"
    ):
        configs(write(tmp_path, f'[run]\netcd = "{value}"\n'))


# ---------------------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("key", "text", "stored"),
    [
        ("duration_s", '"30m"', 1800.0),
        ("duration_s", '"90"', 90.0),  # a bare number is seconds, as on the command line
        ("duration_s", "90", 90.0),  # a TOML number is in the key's own unit
        ("warmup_s", '"500ms"', 0.5),
        ("drain_s", '"1m"', 60.0),
        ("ttl_s", '"2m"', 120.0),
        ("slo_p99_us", '"250ms"', 250_000),
        ("slo_p99_us", '"1"', 1_000_000),
        ("slo_p99_us", "250000", 250_000),
        ("rtt_us", '"2ms"', 2_000),
        ("jitter_us", '"500us"', 500),
    ],
)
def test_a_duration_key_takes_the_flags_units(tmp_path: Path, key: str, text: str, stored: float) -> None:
    extra = 'rtt_us = "4ms"\n' if key == "jitter_us" else ""
    scenario = load_file(write(tmp_path, f"[run]\n{key} = {text}\n{extra}"))
    (cell,) = scenario.cells
    assert getattr(cell, key) == stored
    assert scenario.document["run"][key] == stored  # the normalised document holds the number


def test_a_heartbeat_takes_the_flags_units(tmp_path: Path) -> None:
    (cell,) = configs(write(tmp_path, '[cluster]\nnodes = 100\nheartbeat_s = "10s"\n'))
    assert cell.rate == 10.0


def test_a_bad_duration_string_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"s\.toml: run\.duration_s: '10 fortnights' is not a duration"):
        configs(write(tmp_path, '[run]\nduration_s = "10 fortnights"\n'))
    with pytest.raises(UsageError, match=r"s\.toml: matrix\.warmup_s\[1\]: 'x' is not a duration"):
        configs(write(tmp_path, '[matrix]\nwarmup_s = ["1s", "x"]\n'))


def test_bad_override_names_the_flag_not_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[run]\nrate = 100\n")
    with pytest.raises(UsageError, match=r"^--duration: must be > 0, got -1$"):
        load_file(path, Overrides(values={"duration_s": -1.0}))
    with pytest.raises(UsageError, match=r"^--scale: must be"):
        load_file(path, Overrides(scale=0.0))


# ---------------------------------------------------------------------------------------- normalised


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.toml")), ids=lambda p: p.name)
def test_normalised_document_loads_again_to_the_same_runs(path: Path) -> None:
    overrides = Overrides(scale=0.05, values={"duration_s": 5.0, "prefix": "/x/"}, only={"backend": ("v3",)})
    first = load_file(path, overrides)
    stored = json.loads(json.dumps({"scenario": first.document}))  # as the results file keeps it
    again = from_results(Path("r.json"), stored)
    assert again.cells == first.cells
    assert again.document == first.document
    assert first.document["scale"] == 0.05
    assert first.document["run"]["duration_s"] == 5.0
    assert set(first.document["run"]) <= set(FILE_FIELDS)


def test_results_without_scenario_are_refused(tmp_path: Path) -> None:
    files: list[dict[str, Any]] = [{"runs": []}, {"scenario": None, "runs": []}]  # watch files: null
    for results in files:
        with pytest.raises(UsageError, match=r"^r\.json: holds no scenario"):
            from_results(Path("r.json"), results)


def test_errors_in_a_stored_scenario_name_the_results_file_and_key() -> None:
    with pytest.raises(UsageError, match=r"^r\.json: scenario\.run\.rate: must be a number"):
        from_results(Path("r.json"), {"scenario": {"run": {"rate": "fast"}}})


# ---------------------------------------------------------------------------------------- errors

BAD = [
    ("[run\nrate = 1\n", r"TOML syntax error: .*line 1"),
    ("rate = 500\n", r"rate: unknown top-level key; allowed: name, description, scale, cluster, run, matrix"),
    (
        "[run]\nduration = 5\n",
        r"run\.duration: unknown RunConfig field \(did you mean duration_s\?\); allowed: ",
    ),
    ("[run]\nscale = 2\n", r"run\.scale: unknown RunConfig field"),
    ("[run]\nrate = 'fast'\n", r'run\.rate: must be a number, got string "fast"'),
    ("[run]\nwriters = 1.5\n", r"run\.writers: must be a whole number, got float 1\.5"),
    ("[run]\nbackend = 3\n", r"run\.backend: must be a string, got integer 3"),
    ("[run]\nrate = true\n", r"run\.rate: must be a number, got boolean true"),
    ("[run]\npreload = {pod = 'x'}\n", r"run\.preload\.pod: must be a whole number"),
    ("run = 5\n", r"run: must be a table, got integer 5"),
    ("[run]\nrate = 0\n", r"run\.rate: must be > 0, got 0$"),
    ("[run]\nbackend = 'v4'\n", r"run\.backend: unknown value 'v4'; choose one of v2, v3"),
    ("[matrix]\nrate = []\n", r"matrix\.rate: is an empty list"),
    ("[matrix]\nrate = 100\n", r"matrix\.rate: must be a list of values, got integer 100"),
    ("[matrix]\nrate = [100, 'x']\n", r"matrix\.rate\[1\]: must be a number"),
    ("[matrix]\nrate = [100, 100]\n", r"matrix\.rate\[1\]: 100 is listed twice"),
    ("[matrix]\nrate = [100, -1]\n", r"matrix\.rate \(cell s\[rate=-1\]\): must be > 0, got -1"),
    ("[matrix]\nvariants = [{}]\n", r"matrix\.variants\[0\]: is empty"),
    ("[matrix]\nvariants = [{speed = 1}]\n", r"matrix\.variants\[0\]\.speed: unknown RunConfig field"),
    (
        "[matrix]\nbackend = ['v3']\nvariants = [{backend = 'v2'}]\n",
        r"matrix\.variants\[0\]\.backend: is also a matrix axis",
    ),
    (
        "[matrix]\nvariants = [{backend = 'v2', watchers_per_stream = 2}]\n",
        r"matrix\.variants\[0\]\.watchers_per_stream \(cell .*\): only the v3 API",
    ),
    ("[run]\nrate = 100\n[matrix]\nrate = [1]\n", r"run\.rate: is also a \[matrix\] key"),
    ("[cluster]\nheartbeat_s = 10\n", r"cluster\.heartbeat_s: needs cluster\.nodes > 0"),
    ("[cluster]\nnodes = -5\n", r"cluster\.nodes: must be >= 0, got -5"),
    ("[cluster]\nracks = 5\n", r"cluster\.racks: unknown key; allowed: nodes, pods, events, heartbeat_s"),
    ("scale = 0\n", r"scale: must be a finite number > 0, got 0"),
    ("name = ''\n", r"name: must not be empty"),
    (
        "[run]\nwriters = 4\nrate = 1\nduration_s = 1\nwarmup_s = 0\n",
        r"run\.writers: 4 writers for 1 writes",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[m for _, m in BAD])
def test_a_mistake_is_one_line_naming_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(UsageError) as info:
        load_file(path)
    line = str(info.value)
    assert "\n" not in line
    assert line.startswith(f"{path}: "), line
    assert re.search(message, line), line


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read"):
        load_file(tmp_path / "missing.toml")
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(UsageError, match="not UTF-8"):
        load_file(bad)


def test_flag_names_match_runconfig_errors() -> None:
    assert flag_of("duration_s") == "--duration"
    assert flag_of("slo_p99_us") == "--slo-p99"
    assert flag_of("watchers_per_stream") == "--watchers-per-stream"
    assert flag_of("ttl_s") == "--ttl"
    assert flag_of("faults") == "--fault"
    assert flag_of("bandwidth_mbit") == "--bandwidth"


BAD_FIELDS = [
    ("rate", 0.0),
    ("backend", "v4"),
    ("duration_s", -1.0),
    ("slo_p99_us", 0),
    ("preload", {"rack": 1}),
    ("mix", "update=0"),
    ("faults", ("kill@99",)),
    ("faults", ("melt@1",)),
    ("shard", 3),
    ("jitter_us", 1),
    ("bandwidth_mbit", -1.0),
    ("bg_event_ttl_s", 0.5),
    ("prefix", "registry"),
    ("etcd", "etcd3"),
]


@pytest.mark.parametrize(("field", "value"), BAD_FIELDS, ids=[f"{f}={v}" for f, v in BAD_FIELDS])
def test_runconfig_errors_carry_their_field_and_name_its_flag(field: str, value: object) -> None:
    with pytest.raises(UsageError) as info:
        RunConfig(**{field: value})  # type: ignore[arg-type]
    assert info.value.field == field
    assert str(info.value) == f"{flag_of(field)}: {info.value.reason}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[run]\nbandwidth_mbit = -1\n", "run.bandwidth_mbit: must be >= 0, got -1"),
        ("[run]\nduration_s = 5\nfaults = ['kill@9']\n", "run.faults: kill@9 starts after the writes end"),
        ("[matrix]\nfaults = [['melt@1']]\n", "matrix.faults (cell s[faults=[melt@1]]): 'melt@1' is not"),
        ("[run]\nrtt_us = 1000\njitter_us = 600\n", "run.jitter_us: 0.6ms is more than half of --rtt 1ms"),
    ],
)
def test_a_runconfig_error_names_the_key_that_set_the_field(tmp_path: Path, text: str, message: str) -> None:
    """The key comes from UsageError.field, for every field, whatever its flag is called."""
    with pytest.raises(UsageError) as info:
        load_file(write(tmp_path, text))
    assert str(info.value).startswith(f"{tmp_path / 's.toml'}: {message}"), str(info.value)


def test_an_overriding_flag_that_breaks_a_cell_is_named_as_the_flag(tmp_path: Path) -> None:
    path = write(tmp_path, "[run]\nrate = 100\n")
    with pytest.raises(UsageError) as info:
        load_file(path, Overrides(values={"bandwidth_mbit": 2e6}))
    assert str(info.value) == "--bandwidth: must be at most 1,000,000 (docs/scenarios.md, Limits), got 2e+06"


def test_build_accepts_a_plain_dict() -> None:
    scenario = build({"matrix": {"rate": [100, 200]}}, origin="inline", default_name="d")
    assert [c.rate for c in scenario.cells] == [100.0, 200.0]
    assert scenario.document["matrix"] == {"rate": [100.0, 200.0]}


def test_list_fields_such_as_faults(tmp_path: Path) -> None:
    path = write(tmp_path, '[run]\nduration_s = 10\n[matrix]\nfaults = [[], ["compact@3"]]\n')
    cells = configs(path)
    assert [c.faults for c in cells] == [(), ("compact@3",)]
    assert [c.scenario for c in cells] == ["s[faults=[]]", "s[faults=[compact@3]]"]
    again = from_results(Path("r.json"), json.loads(json.dumps({"scenario": load_file(path).document})))
    assert list(again.cells) == cells
    with pytest.raises(UsageError, match=r"run\.faults\[0\]: must be a string, got integer 3"):
        load_file(write(tmp_path, "[run]\nfaults = [3]\n"))
