"""Every malformed flag, file and results document: one line naming it, exit 2, nothing started or written.

Commands run in this process (`cli.run`, as `etcdbench` does) with `session.Target.__enter__` replaced
by a tripwire: a test fails if anything gets as far as starting or reaching an etcd.
"""

from __future__ import annotations

import copy
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from paths import DATA
from rich.console import Console

from etcdbench.backends.credentials import parse_endpoint, parse_endpoints
from etcdbench.cli.app import run
from etcdbench.config.file import Overrides, load_file
from etcdbench.config.run import MAX_WRITER_IDS, STAMP_SEQ_DIGITS, STAMP_WRITER_DIGITS, RunConfig
from etcdbench.errors import UsageError
from etcdbench.results.io import load, redact_argv
from etcdbench.workload.accounting import format_stamp

SAMPLE = DATA / "results-v2.json"
SECRET = "hunter2"


def tripwire(self: Any) -> Any:
    """Stands in for session.Target.__enter__, where etcd is started or reached: bad input got through."""
    raise AssertionError(f"an etcd would be started or reached for bad input: {self.endpoints}")


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    import etcdbench.bench.target

    monkeypatch.setattr(etcdbench.bench.target.Target, "__enter__", tripwire)
    monkeypatch.delenv("ETCDBENCH_RUN_ID", raising=False)
    monkeypatch.delenv("ETCDBENCH_PASSWORD", raising=False)
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def cli(*argv: str) -> tuple[int, str, str]:
    out = Console(file=io.StringIO(), width=200, color_system=None)
    err = Console(file=io.StringIO(), width=200, color_system=None)
    code = run(list(argv), out, err)
    return code, out.file.getvalue(), err.file.getvalue()  # type: ignore[attr-defined]


def refused(*argv: str) -> str:
    """The one error line of a command that must be refused as bad usage; nothing on stdout."""
    code, out, err = cli(*argv)
    assert code == 2, (code, out, err)
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def snapshot(directory: Path) -> set[Path]:
    return set(directory.rglob("*"))


# ---------------------------------------------------------------------------------------- flags

FLAGS = [
    (["watch", "--rate", "inf"], "error: argument --rate: 'inf' is not a finite number"),
    (["watch", "--rate", "nan"], "error: argument --rate: 'nan' is not a finite number"),
    (["watch", "--rate", "2e6"], "error: --rate: must be at most 1,000,000"),
    (["watch", "--ttl", "nan"], "error: argument --ttl: 'nan' is not a duration"),
    (["watch", "--ttl", "inf"], "error: argument --ttl: 'inf' is not a duration"),
    (["watch", "--ttl", "-1"], "error: --ttl: must be >= 0, got -1"),
    (["watch", "--ttl", "0.4"], "error: --ttl: etcd counts TTLs in whole seconds, got 0.4"),
    (["watch", "--drain", "inf"], "error: argument --drain: 'inf' is not a duration"),
    (["watch", "--duration", "8d"], "error: argument --duration: '8d' is not a duration"),
    (["watch", "--duration", "1e400"], "error: argument --duration: '1e400' is not a duration"),
    (["watch", "--duration", "9" * 400], "is longer than 7 days"),
    (["watch", "--warmup", "200h"], "error: argument --warmup: '200h' is longer than 7 days"),
    (["watch", "--drain", "700000"], "error: argument --drain: '700000' is longer than 7 days"),
    (["watch", "--slo-p99", "9" * 400 + "s"], "error: --slo-p99: '999"),
    (["watch", "--watchers", "100000"], "error: --watchers: must be at most 1,000"),
    (["watch", "--watchers", "1000"], "error: --watchers: 1000 watches at 1 per stream would take more"),
    (["watch", "--watchers-per-stream", "0"], "error: --watchers-per-stream: must be > 0"),
    (["watch", "--writers", "10000"], "error: --writers: must be at most 256"),
    (
        ["watch", "--writers", "200", "--shard", "0/60", "--endpoints", "http://127.0.0.1:2379"],
        f"error: --writers: 200 writers x 60 shards is more than the {MAX_WRITER_IDS} writer ids",
    ),
    (["watch", "--objects", "100000000"], "error: --objects: must be at most 10,000,000"),
    (["watch", "--max-inflight", "1000000"], "error: --max-inflight: must be at most 10,000"),
    (["watch", "--preload", "pod=100000000"], "error: --preload: pod=100000000 must be from 0 to"),
    (["watch", "--preload", "pod=²"], "error: --preload: 'pod=²' is not KIND=COUNT"),
    (["watch", "--mix", "update=²,create=1"], "error: --mix: 'update=²' is not OP=WEIGHT"),
    (["watch", "--shard", "²/3"], "error: --shard: '²/3' is not I/N"),
    (["watch", "--shard", "0/" + "9" * 5000], "error: --shard: "),
    (["watch", "--prefix", "/a\x01/"], "error: --prefix: '/a\\x01/' holds a control character"),
    (["watch", "--prefix", "/a\udcff/"], "is not UTF-8 text"),
    (["watch", "--fault", "pause@" + "9" * 400 + ":1"], "9' is longer than 7 days)"),
    (["watch", "--fault", "pause@8d:1"], "error: --fault: 'pause@8d:1' is not KIND@SECONDS"),
    (["watch", "--fault", "pause@100:1"], "error: --fault: pause@100:1 starts after the writes end"),
    (["watch", "--cluster-size", "100"], "error: --cluster-size: must be from 1 to 9, got 100"),
    (["watch", "--cluster-size", "-1"], "error: --cluster-size: must be from 1 to 9, got -1"),
    (["watch", "--endpoints", "http://127.0.0.1:abc"], "error: --endpoints: 'http://127.0.0.1:abc': port"),
    (["watch", "--endpoints", "http://127.0.0.1:99999"], "port '99999' is not a number from 1 to 65535"),
    (["watch", "--endpoints", "http://127.0.0.1:0"], "port '0' is not a number from 1 to 65535"),
    (["watch", "--endpoints", "http://etcd.example"], "'http://etcd.example' has no port: give it, e.g."),
    (["watch", "--endpoints", "ftp://h:1"], "error: --endpoints: 'ftp://h:1' is not an http:// or https://"),
    (["watch", "--endpoints", "http://h:1/v3"], "'http://h:1/v3' has a path or query"),
    (["watch", "--endpoints", "http://[::1"], "error: --endpoints: "),
    (["watch", "--endpoints", ","], "error: --endpoints: no URL given"),
    (["watch", "--endpoints", "0\n0"], "error: --endpoints: 'http://0\\n0': '0\\n0' is not a host name"),
    (["watch", "--kind", "\x1b[2J\u2028"], "error: argument --kind: invalid choice: '\\x1b[2J\\u2028'"),
    (["capacity", "--start", "inf"], "error: argument --start: 'inf' is not a finite number"),
    (["capacity", "--start", "2e6"], "error: --rate: must be at most 1,000,000"),
    (["capacity", "--budget", "9" * 400 + "h"], "error: argument --budget: "),
    (["capacity", "--resolution", "nan"], "error: --resolution: 'nan' is not a percentage"),
    (["run", "--max-cells", "0", "x.toml"], "error: --max-cells: must be >= 1, got 0"),
    (["capacity", "--writers=--"], "error: argument --writers: expected one argument"),
    (["watch", "--output=--"], "error: argument --output: expected one argument"),
]


@pytest.mark.parametrize(("argv", "message"), FLAGS, ids=[" ".join(a)[:60] for a, _ in FLAGS])
def test_a_bad_flag_is_one_line_naming_it(cwd: Path, argv: list[str], message: str) -> None:
    if argv[0] == "run":
        (cwd / "x.toml").write_text("[run]\nrate = 100\n")
    before = snapshot(cwd)
    assert message in refused(*argv)
    assert snapshot(cwd) == before  # nothing written, not even results/


def test_the_stamp_bounds_are_read_off_the_stamp_format() -> None:
    writer, seq, _ = format_stamp(MAX_WRITER_IDS - 1, 10**STAMP_SEQ_DIGITS - 1, 0).split(":")
    assert len(writer) == STAMP_WRITER_DIGITS and len(seq) == STAMP_SEQ_DIGITS
    assert len(format_stamp(MAX_WRITER_IDS, 0, 0).split(":")[0]) > STAMP_WRITER_DIGITS  # why the bound
    RunConfig(writers=100, shards=100, shard=99, rate=20_000, duration_s=1, warmup_s=0)  # 10,000 ids: fits
    with pytest.raises(UsageError, match="writer ids"):
        RunConfig(writers=101, shards=100, shard=0, rate=20_000, duration_s=1, warmup_s=0)


# ---------------------------------------------------------------------------------------- secrets

LEAKS = [
    ["watch", f"--pass={SECRET}"],
    ["watch", "--pass", SECRET],
    ["watch", "--passw", SECRET],
    ["watch", f"--password={SECRET}"],
    ["watch", "--password", SECRET],
    ["watch", "--user", "bob", SECRET],
    ["watch", f"--no-such-flag={SECRET}"],
    ["watch", "--user", f"bob:{SECRET}", "--endpoints", "http://127.0.0.1:2379"],
    ["watch", "--endpoints", f"http://bob:{SECRET}@127.0.0.1:2379"],
    ["watch", "--endpoints", f"bob:{SECRET}@127.0.0.1:2379"],
    ["watch", "--endpoints", f"https://bob:{SECRET}@127.0.0.1:abc"],
    ["watch", "--endpoints", f"http://127.0.0.1:2379,http://bob:{SECRET}@h"],
    ["show", "r.json", SECRET],
    [f"--{SECRET}"],
]


@pytest.mark.parametrize("argv", LEAKS, ids=[" ".join(a) for a in LEAKS])
def test_no_error_echoes_a_secret(cwd: Path, argv: list[str]) -> None:
    line = refused(*argv)
    assert SECRET not in line


def test_userinfo_in_an_endpoint_points_at_user_and_password_file(cwd: Path) -> None:
    line = refused("watch", "--endpoints", f"http://bob:{SECRET}@127.0.0.1:2379")
    assert line == (
        "error: --endpoints: a user or password in a URL is refused (the URL is not echoed): "
        "use --user NAME with --password-file PATH or $ETCDBENCH_PASSWORD"
    )


def test_an_abbreviated_flag_is_refused_and_the_full_one_suggested(cwd: Path) -> None:
    line = refused("watch", f"--pass={SECRET}")
    assert line == (
        "error: unrecognized arguments: --pass (1 value(s) not echoed: one may be a secret); "
        "did you mean --password-file?"
    )


def test_the_password_never_reaches_the_process_table_through_our_own_argv() -> None:
    # A second line of defence for documents built by other callers: the CLI refuses these first.
    argv = [
        "watch",
        "--endpoints",
        f"http://bob:{SECRET}@h:1",
        "--user",
        f"bob:{SECRET}",
        f"--user=al:{SECRET}",
    ]
    assert SECRET not in " ".join(redact_argv(argv))
    assert redact_argv(["watch", "--prefix", "/a@b/"]) == ["watch", "--prefix", "/a@b/"]


def test_argparse_errors_through_main_have_no_traceback_and_no_secret(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "etcdbench", "watch", f"--pass={SECRET}"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and SECRET not in proc.stderr and "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------------------- endpoints


@pytest.mark.parametrize(
    ("text", "tls", "url"),
    [
        ("127.0.0.1:2379", False, "http://127.0.0.1:2379"),  # as etcdctl takes it
        ("127.0.0.1:2379", True, "https://127.0.0.1:2379"),  # TLS files given: https
        ("etcd-0.etcd:2379", False, "http://etcd-0.etcd:2379"),
        ("HTTPS://etcd:2379/", False, "https://etcd:2379"),
        ("http://[::1]:2379", False, "http://[::1]:2379"),
        ("[::1]:2379", False, "http://[::1]:2379"),
    ],
)
def test_endpoints_are_normalised_to_scheme_host_port(text: str, tls: bool, url: str) -> None:
    assert parse_endpoint(text, tls=tls) == url


def test_v2_and_v3_read_one_url_alike(cwd: Path) -> None:
    from etcdbench.backends.base import Endpoint
    from etcdbench.backends.v2 import V2Backend
    from etcdbench.backends.v3 import addresses

    for url in ("http://etcd.example", "http://etcd.example:abc"):
        with pytest.raises(UsageError, match="--endpoints"):
            addresses(Endpoint((url,)))
        with pytest.raises(UsageError, match="--endpoints"):
            V2Backend(Endpoint((url,)))
    assert addresses(Endpoint(("etcd.example:2379",))) == (("etcd.example", 2379),)


def test_host_port_without_scheme_is_accepted_by_the_command_line(cwd: Path) -> None:
    assert parse_endpoints(" 127.0.0.1:2379 , h:1 ") == ["http://127.0.0.1:2379", "http://h:1"]
    # accepted, so the run gets as far as the (tripwired) target
    with pytest.raises(AssertionError, match="an etcd would be started or reached"):
        cli("watch", "--endpoints", "127.0.0.1:2379", "--duration", "1")


# ---------------------------------------------------------------------------------------- scenario files


SCENARIOS = [
    ("rate = inf\n", "x.toml: rate: unknown top-level key"),
    ("[run]\nrate = inf\n", "x.toml: run.rate: must be at most 1,000,000 (docs/scenarios.md, Limits), "
     "got inf"),
    ("[run]\nrate = nan\n", "x.toml: run.rate: must be a number, got nan"),
    ("[run]\nttl_s = inf\n", "x.toml: run.ttl_s: must be at most 604,800"),
    ("[matrix]\nrate = [100, inf]\n", "x.toml: matrix.rate (cell x[rate=inf]): must be at most"),
    ("[run]\nwriters = 100000\n", "x.toml: run.writers: must be at most 256"),
    ("[run]\nwatchers = true\n", "x.toml: run.watchers: must be a whole number, got boolean true"),
    ("[run]\nduration_s = '10 days'\n", "x.toml: run.duration_s: '10 days' is not a duration"),
    ("[run]\nduration_s = true\n", "x.toml: run.duration_s: must be a number, got boolean true"),
    ("[run]\nfaults = 'pause@1:1'\n", "x.toml: run.faults: must be a list"),
    ("[run]\nfaults = [1]\n", "x.toml: run.faults[0]: must be a string"),
    ("[run]\npreload = {pod = 'x'}\n", "x.toml: run.preload.pod: must be a whole number"),
    ("[run]\npreload = {pod = 100000000}\n", "x.toml: run.preload: pod=100000000 must be from 0 to"),
    ("[run]\nprefix = \"/a\\u0000/\"\n", "x.toml: run.prefix: '/a\\x00/' holds a control character"),
    ("[run]\nwhen = 1979-05-27\n", "x.toml: run.when: unknown RunConfig field"),
    ("[run]\nrate = 1979-05-27\n", "x.toml: run.rate: must be a number, got date"),
    ("scale = 1e9\n", "x.toml: scale: must be at most 1000"),
    ("scale = inf\n", "x.toml: scale: must be a finite number > 0, got inf"),
    ("[cluster]\nnodes = 9223372036854775807\n", "x.toml: cluster: node=9223372036854775807 must be"),
    ("[cluster]\nnodes = 5000\nheartbeat_s = 1e-300\n", "x.toml: cluster.heartbeat_s: must be at most"),
    ("a = " + "[" * 5000 + "]" * 5000 + "\n", "x.toml: "),
    ("\x00\xff", "x.toml: "),
    ("[matrix]\nrate = [" + ",".join(str(100 + i) for i in range(100)) + "]\nwriters = ["
     + ",".join(str(1 + i) for i in range(100)) + "]\n",
     "x.toml: matrix: 10,000 cells, each a whole run, is more than --max-cells 100; "
     "pass --max-cells 10000 to run them all"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), SCENARIOS, ids=[m[:50] for _, m in SCENARIOS])
def test_a_bad_scenario_file_is_one_line_naming_file_and_key(cwd: Path, text: str, message: str) -> None:
    (cwd / "x.toml").write_bytes(
        text.encode("utf-8", "surrogateescape") if "\xff" not in text else b"\x00\xff"
    )
    before = snapshot(cwd)
    line = refused("run", "x.toml")
    assert line.startswith("error: " + message) or message in line, line
    assert snapshot(cwd) == before


def test_max_cells_lets_a_large_matrix_through(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text("[matrix]\nrate = [" + ",".join(str(100 + i) for i in range(150)) + "]\n")
    with pytest.raises(UsageError, match="150 cells"):
        load_file(path)
    assert len(load_file(path, Overrides(max_cells=150)).cells) == 150


# ---------------------------------------------------------------------------------------- results files


def sample() -> dict[str, Any]:
    doc = json.loads(SAMPLE.read_text())
    assert isinstance(doc, dict)
    return doc


def drop(path: str) -> dict[str, Any]:
    doc = sample()
    *parents, last = path.split(".")
    node: Any = doc
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    del node[last]
    return doc


def put(path: str, value: Any) -> dict[str, Any]:
    doc = sample()
    *parents, last = path.split(".")
    node: Any = doc
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    node[int(last) if isinstance(node, list) else last] = value
    return doc


MALFORMED = [
    (drop("environment"), "malformed results document: environment: missing"),
    (put("environment", []), "malformed results document: environment: must be an object, got []"),
    (put("environment.etcd", "3.5"), "environment.etcd: must be an object"),
    (put("runs", {}), "runs: must be an array"),
    (put("runs.0", 7), "runs[0]: must be an object"),
    (drop("runs.0.counters"), "runs[0].counters: missing"),
    (put("runs.0.counters.written", "12"), "runs[0].counters.written: must be a number or an object"),
    (put("runs.0.counters.written", True), "runs[0].counters.written: must be a number"),
    (put("runs.0.verdict", {"reasons": []}), "runs[0].verdict.pass: missing"),
    (put("runs.0.latency_us.watch", 3), "runs[0].latency_us.watch: must be an object"),
    (put("runs.0.label", None), "runs[0].label: must be a string"),
    (put("complete", "yes"), "complete: must be true or false"),
    (put("scenario", []), "scenario: must be an object or null"),
]


@pytest.mark.parametrize(("doc", "message"), MALFORMED, ids=[m[:50] for _, m in MALFORMED])
def test_a_malformed_results_document_is_refused_by_every_reader(
    cwd: Path, doc: dict[str, Any], message: str
) -> None:
    bad = cwd / "bad.json"
    bad.write_text(json.dumps(doc))
    (cwd / "good.json").write_text(SAMPLE.read_text())
    before = snapshot(cwd)
    for argv in (
        ["show", "bad.json"],
        ["compare", "good.json", "bad.json"],
        ["compare", "bad.json", "good.json", "--fail-if", "missed > 0"],
        ["export", "bad.json", "--format", "csv"],
        ["export", "bad.json", "--format", "perfdash", "--out", "out.json"],
        ["merge", "bad.json", "good.json", "-o", "merged.json"],
        ["plot", "bad.json", "--out", "plots"],
        ["run", "--from", "bad.json"],
    ):
        line = refused(*argv)
        assert line.startswith("error: bad.json: ") and message in line, (argv, line)
    assert snapshot(cwd) == before  # no merged.json, no plots/, no out.json


@pytest.mark.parametrize("blob", ["not base64 at all", "!!!", "AAAA", "HISTFAAAA" + "A" * 40])
def test_a_histogram_that_is_not_one_is_refused_not_crashed_on(cwd: Path, blob: str) -> None:
    # Past the shape check: hdrh raises its own exception types (not ValueError) for a bad blob.
    doc = sample()
    for hist in doc["runs"][0]["latency_us"].values():
        hist["hdr"] = blob
    (cwd / "odd.json").write_text(json.dumps(doc))
    line = refused("export", "odd.json", "--format", "hgrm", "--run", doc["runs"][0]["label"])
    assert line.startswith("error: odd.json: malformed results document (ValueError: "), line
    for argv in (
        ["show", "odd.json"],
        ["compare", "odd.json", "odd.json"],
        ["export", "odd.json", "--format", "csv"],
    ):
        code, _, err = cli(*argv)
        assert code == 0 or err.startswith("error: odd.json"), err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\x01\xff\xfe", "binary.json: not UTF-8 text, so not a results file"),
        (b"[" * 100_000, "binary.json: JSON nested too deeply to be a results file"),
        (b"", "binary.json: not valid JSON"),
        (b"[]", "binary.json: not an etcdbench results file"),
    ],
)
def test_show_on_a_file_that_is_not_results(cwd: Path, content: bytes, message: str) -> None:
    (cwd / "binary.json").write_bytes(content)
    assert refused("show", "binary.json").startswith(f"error: {message}")


def test_ls_skips_what_it_cannot_read_saying_so_and_lists_the_rest(cwd: Path) -> None:
    d = cwd / "results"
    d.mkdir()
    (d / "good.json").write_text(SAMPLE.read_text())
    (d / "binary.json").write_bytes(b"\x00\x01\xff\xfe")
    (d / "no-env.json").write_text(json.dumps(drop("environment")))
    (d / "deep.json").write_text("[" * 100_000)
    code, out, err = cli("ls", str(d))
    assert code == 0 and err == ""
    assert "good.json" in out and "v3+protobuf pod @200/s mix x2 watchers" in out
    assert "skipped 3 file(s) that are not readable results:" in out
    assert "binary.json: not UTF-8 text, so not a results file" in out
    assert "no-env.json: malformed results document: environment: missing" in out
    assert "deep.json: JSON nested too deeply" in out


def test_the_committed_samples_still_load() -> None:
    for path in sorted(DATA.glob("results-v*.json")):
        assert load(path)["runs"]
    assert copy.deepcopy(sample()) == sample()


def test_a_full_disk_at_save_time_is_one_error_and_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import etcdbench.results.io as results_io
    from etcdbench.errors import EXIT_RUNTIME, EtcdbenchError

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(json, "dump", full)  # the module results.io writes with
    with pytest.raises(
        EtcdbenchError, match=r"r\.json: cannot be written \(No space left on device\)"
    ) as info:
        results_io.write_atomic(tmp_path / "r.json", results_io.load(SAMPLE))  # upgraded: a current document
    assert info.value.exit_code == EXIT_RUNTIME
    assert list(tmp_path.iterdir()) == []
