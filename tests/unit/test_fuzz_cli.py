"""Fuzz: random argv for every command, random bytes, JSON and TOML as files => exit 0-3, no traceback.

Commands run in this process through `cli.run` (what `etcdbench` runs), so an exception other than
etcdbench's own typed errors fails the test with the argv that raised it. Nothing can start or reach an
etcd: `session.Target.__enter__` is replaced by a stand-in that raises EtcdError (exit 3), so an input
that passes every check (the Target's own refusals included) ends exactly where a real run would start
or reach its etcd. Deterministic (derandomize) and bounded (max_examples), with no deadline: a loaded
host makes it slower, not flaky.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paths import DATA
from rich.console import Console

import etcdbench.bench.target
from etcdbench.cli.app import build_parser, run
from etcdbench.config.file import CLUSTER_KEYS, FILE_FIELDS, TOP_KEYS
from etcdbench.errors import EtcdError

SAMPLE = json.loads((DATA / "results-v2.json").read_text())
EXIT_CODES = {0, 1, 2, 3}
FUZZ = settings(
    derandomize=not os.environ.get("ETCDBENCH_FUZZ_RANDOM"),  # set it to explore beyond the fixed sequence
    database=None,
    deadline=None,
    max_examples=int(os.environ.get("ETCDBENCH_FUZZ_EXAMPLES", "100")),  # more: set it, e.g. 5000
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def no_etcd(self: Any) -> Any:
    """session.Target.__enter__'s stand-in: an input that got this far passed every check (the Target's
    own too); this is where the run would start or reach etcd."""
    raise EtcdError("fuzz: no etcd in this test")


@contextmanager
def sandbox(directory: Path) -> Iterator[None]:
    """Run in `directory` (relative paths land there), with no etcd and no password to find."""
    old = Path.cwd()
    env = {
        k: v for k, v in os.environ.items() if k not in ("ETCDBENCH_PASSWORD", "ETCD_BIN", "ETCDBENCH_RUN_ID")
    }
    os.chdir(directory)
    try:
        with (
            mock.patch.object(etcdbench.bench.target.Target, "__enter__", no_etcd),
            mock.patch.dict(os.environ, env, clear=True),
        ):
            yield
    finally:
        os.chdir(old)


def cli(argv: list[str]) -> tuple[int, str]:
    out = Console(file=io.StringIO(), width=120, color_system=None)
    err = Console(file=io.StringIO(), width=120, color_system=None)
    try:
        code = run(argv, out, err)
    except SystemExit as exc:  # argparse's own exits (none expected: --help is not generated)
        code = exc.code if isinstance(exc.code, int) else 2
    except Exception as exc:
        raise AssertionError(f"etcdbench {argv!r} raised {type(exc).__name__}: {exc}") from exc
    text = err.file.getvalue()  # type: ignore[attr-defined]
    assert code in EXIT_CODES, (argv, code, text)
    assert "Traceback" not in text, (argv, text)
    if code == 2:
        assert text.startswith("error: ") and len(text.strip().splitlines()) == 1, (argv, text)
    return code, text


# ---------------------------------------------------------------------------------------- the parser

PARSER = build_parser()
SUBCOMMANDS: dict[str, argparse.ArgumentParser] = next(
    a.choices for a in PARSER._actions if isinstance(a, argparse._SubParsersAction)
)
FILES = ("results.json", "other.json", "scenario.toml", "missing.json", "dir", "out/x.json")
# Values that broke or nearly broke a parser: not-quite numbers, edge numbers, odd URLs, odd text.
VALUES = (
    *("0", "-1", "1", "2", "0.5", "1e3", "1e309", "-0", "inf", "-inf", "nan", "NaN", "9" * 40, "²", "\u0661"),
    *("", " ", "1s", "250ms", "1h", "99999999h", "5%", "0%", "100%", "1_000", "0x10", "1/2", "0/1", "2/1"),
    *("http://127.0.0.1:1", "127.0.0.1:1", "https://h:1", "http://h", "http://u:p@h:1", "h:abc", "[::1]:1"),
    *("v2", "v3", "pod=1", "pod=²", "update=1,create=1", "delete=1", "pause@1:1", "compact@0.5", "kill@9e9"),
    *("/registry/", "/", "/x\x00/", "a,b", ",", "--", "-x", "missed > 0", "watch.p99 > +10%", "\udcff"),
)
PATHISH = {"file", "files", "scenario", "from_results", "output", "out", "directory", "password_file"}
PATHISH |= {"cacert", "cert", "key", "etcd_bin"}


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        a
        for a in parser._actions
        if a.option_strings and not isinstance(a, argparse._HelpAction | argparse._VersionAction)
    ]


def positionals(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not a.option_strings]


@st.composite
def value_for(draw: st.DrawFn, action: argparse.Action) -> str:
    if action.type is Path or action.dest in PATHISH:  # only the sandbox's files: root can write anywhere
        return draw(st.sampled_from(FILES))
    pools = [st.sampled_from(VALUES), st.text(max_size=12)]
    if action.choices:
        pools.insert(0, st.sampled_from([str(c) for c in action.choices]))
    return draw(st.one_of(pools))


@st.composite
def argvs(draw: st.DrawFn) -> list[str]:
    command = draw(st.sampled_from(sorted(SUBCOMMANDS)))
    parser = SUBCOMMANDS[command]
    argv = [command]
    for action in positionals(parser):
        count = 2 if action.nargs == "+" else draw(st.integers(0, 1)) if action.nargs == "?" else 1
        argv += [draw(st.sampled_from(FILES)) for _ in range(count)]
    flags = options(parser)
    for action in draw(st.lists(st.sampled_from(flags), max_size=6)) if flags else []:
        flag = draw(st.sampled_from(action.option_strings))
        if action.nargs == 0:
            argv.append(flag)
        elif draw(st.booleans()):
            argv += [flag, draw(value_for(action))]
        else:
            argv.append(f"{flag}={draw(value_for(action))}")
    if draw(st.integers(0, 9)) == 0:  # a stray word or flag
        argv.insert(draw(st.integers(1, len(argv))), draw(st.sampled_from(VALUES)))
    return argv


# ---------------------------------------------------------------------------------------- files

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path in a JSON document."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        yield (*prefix, key)
        yield from _paths(child, (*prefix, key))


SAMPLE_PATHS = list(_paths(SAMPLE))


@st.composite
def mutated_sample(draw: st.DrawFn) -> Any:
    """The committed sample with a few keys deleted or given random values: past the first checks."""
    doc = json.loads(json.dumps(SAMPLE))
    for path in draw(st.lists(st.sampled_from(SAMPLE_PATHS), min_size=1, max_size=3)):
        node = doc
        try:
            for key in path[:-1]:
                node = node[key]
            if draw(st.booleans()) and isinstance(node, dict):
                del node[path[-1]]
            else:
                node[path[-1]] = draw(json_values)
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation removed or replaced the parent
    return doc


HDR_PATHS = [p for p in SAMPLE_PATHS if p[-1] == "hdr"]


@st.composite
def bad_histograms(draw: st.DrawFn) -> Any:
    """The sample with an HDR blob replaced: random base64, a truncated or bit-flipped real one."""
    doc = json.loads(json.dumps(SAMPLE))
    path = draw(st.sampled_from(HDR_PATHS))
    node = doc
    for key in path[:-1]:
        node = node[key]
    real = base64.b64decode(node["hdr"])
    flipped = st.integers(0, len(real) * 8 - 1).map(
        lambda bit: bytes(b ^ (1 << bit % 8) if i == bit // 8 else b for i, b in enumerate(real))
    )
    raw = draw(st.one_of(st.binary(max_size=64), flipped, st.integers(0, len(real)).map(lambda n: real[:n])))
    node["hdr"] = base64.b64encode(raw).decode()
    return doc


results_files = st.one_of(
    st.binary(max_size=64),
    json_values.map(lambda v: json.dumps(v).encode()),
    json_values.map(
        lambda v: json.dumps({"format": "etcdbench-results", "schema_version": 2, "x": v}).encode()
    ),
    mutated_sample().map(lambda d: json.dumps(d).encode()),
    bad_histograms().map(lambda d: json.dumps(d).encode()),
)

TOML_VALUES = (
    "1",
    "0",
    "-5",
    "1.5",
    "inf",
    "nan",
    "true",
    '"x"',
    '"v3"',
    "[1, 2]",
    "[]",
    "{pod = 1}",
    "1979-05-27",
)


@st.composite
def scenario_files(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=64))
    keys = st.sampled_from([*FILE_FIELDS, "bogus"])
    value = st.sampled_from(TOML_VALUES)
    lines = [f"{k} = {draw(value)}" for k in draw(st.lists(st.sampled_from([*TOP_KEYS, "x"]), max_size=2))]
    lines = [ln for ln in lines if not ln.startswith(("cluster", "run", "matrix"))]
    lines += [
        "[cluster]",
        *(f"{k} = {draw(value)}" for k in draw(st.lists(st.sampled_from(CLUSTER_KEYS), max_size=2))),
    ]
    lines += ["[run]", *(f"{k} = {draw(value)}" for k in draw(st.lists(keys, max_size=4, unique=True)))]
    axes = draw(st.lists(keys, max_size=2, unique=True))
    lines += ["[matrix]", *(f"{k} = [{draw(value)}, {draw(value)}]" for k in axes)]
    return "\n".join(lines).encode()


# ---------------------------------------------------------------------------------------- the tests


def test_fuzz_every_command_with_random_argv(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(json.dumps(SAMPLE))
    (tmp_path / "other.json").write_bytes(b"\x00\xff")
    (tmp_path / "scenario.toml").write_text("[run]\nrate = 100\nduration_s = 1\nwarmup_s = 0\n")
    (tmp_path / "dir").mkdir()
    seen: set[int] = set()

    @FUZZ
    @given(argvs())
    def check(argv: list[str]) -> None:
        if "plot" in argv[:1] and "results.json" in argv:
            argv = [a if a != "results.json" else "other.json" for a in argv]  # PNGs take a second each
        code, _ = cli(argv)
        seen.add(code)

    with sandbox(tmp_path):
        check()
    assert {2, 3} <= seen  # refusals, and inputs valid all the way to the (absent) etcd


def test_fuzz_random_results_files_for_every_reader(tmp_path: Path) -> None:
    (tmp_path / "good.json").write_text(json.dumps(SAMPLE))
    ls_dir = tmp_path / "ls"
    ls_dir.mkdir()

    readers = [
        ["show", "r.json"],
        ["ls", "ls"],
        ["compare", "good.json", "r.json", "--fail-if", "missed > 0"],
        ["export", "r.json", "--format", "csv"],
        ["export", "r.json", "--format", "perfdash"],
        ["export", "r.json", "--format", "hgrm", "--run", SAMPLE["runs"][0]["label"]],
        ["merge", "r.json", "good.json", "-o", "merged.json"],
        ["run", "--from", "r.json"],
    ]

    @FUZZ
    @given(results_files, st.sampled_from(readers))
    def check(content: bytes, argv: list[str]) -> None:
        (tmp_path / "r.json").write_bytes(content)
        (ls_dir / "r.json").write_bytes(content)
        code, _ = cli(argv)
        if argv[0] == "ls":
            assert code == 0  # ls lists what it can and skips the rest

    with sandbox(tmp_path):
        check()


def test_fuzz_random_scenario_files(tmp_path: Path) -> None:
    @FUZZ
    @given(scenario_files())
    def check(content: bytes) -> None:
        (tmp_path / "s.toml").write_bytes(content)
        code, _ = cli(["run", "s.toml", "--json"])
        assert code in (2, 3)  # refused, or valid up to the etcd it would start

    with sandbox(tmp_path):
        check()


def test_fuzz_broken_histograms_for_the_readers_that_decode_them(tmp_path: Path) -> None:
    label = SAMPLE["runs"][0]["label"]

    @settings(FUZZ, max_examples=max(FUZZ.max_examples // 3, 10))  # each example renders a comparison
    @given(bad_histograms(), st.sampled_from(["watch", "put", "schedule_slip"]))
    def check(doc: Any, metric: str) -> None:
        (tmp_path / "h.json").write_text(json.dumps(doc))
        cli(["export", "h.json", "--format", "hgrm", "--run", label, "--metric", metric])
        cli(["compare", "h.json", "h.json", "--fail-if", "watch.p99 > +10%"])

    with sandbox(tmp_path):
        check()
