"""The command line through `python -m etcdbench`, with no etcd: bad input gives one line, exit 2, nothing
else; an endpoint that is not etcd (or nothing) is one error, exit 3."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from cli_console import etcdbench

BAD = [  # each names its flag (or command) second: the error must name it
    ["watch", "--backend", "v4"],
    ["watch", "--encoding", "yaml"],
    ["watch", "--kind", "deployment"],
    ["watch", "--rate", "0"],
    ["watch", "--rate", "fast"],
    ["watch", "--rate", "nan"],
    ["watch", "--duration", "-1"],
    ["watch", "--writers", "0"],
    ["watch", "--writers", "two"],
    ["watch", "--warmup", "-2"],
    ["watch", "--slo-p99", "1x"],
    ["watch", "--slo-p99", "soon"],
    ["watch", "--v2-watch", "sse"],
    ["watch", "--decode-prev", "never"],
    ["watch", "--prefix", "registry"],
    ["watch", "--endpoints", "http://127.0.0.1"],
    ["watch", "--etcd-bin", "/nonexistent/etcd"],
    ["watch", "--output", "/proc/etcdbench.json"],
    ["watch", "--no-such-flag"],
    ["frobnicate"],
]


@pytest.mark.parametrize("argv", BAD, ids=[" ".join(a) for a in BAD])
def test_bad_input_is_one_line_naming_the_input(argv: list[str], tmp_path: Path) -> None:
    names = argv[1] if len(argv) > 1 else argv[0]
    proc = (
        etcdbench(*argv, "--duration", "1")
        if argv[0] == "watch" and "--duration" not in argv
        else etcdbench(*argv)
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert names in lines[0]
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize(("mode", "body"), [(0o644, "#!/bin/sh\n"), (0o755, "#!/bin/sh\necho hello\n")])
def test_etcd_bin_that_is_not_an_executable_etcd(tmp_path: Path, mode: int, body: str) -> None:
    fake = tmp_path / "etcd"
    fake.write_text(body)
    fake.chmod(mode)
    proc = etcdbench("watch", "--duration", "1", "--etcd-bin", str(fake), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: --etcd-bin: ") and str(fake) in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_etcd_bin_from_environment_is_named(tmp_path: Path) -> None:
    proc = etcdbench("watch", "--duration", "1", env={"ETCD_BIN": str(tmp_path / "missing")})
    assert proc.returncode == 2
    assert "ETCD_BIN" in proc.stderr


def test_unreachable_endpoint_exits_3_without_traceback(tmp_path: Path) -> None:
    proc = etcdbench("watch", "--endpoints", "http://127.0.0.1:9", "--duration", "1", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.strip().startswith("error: cannot reach etcd")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists()  # nothing half-written


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "not valid JSON"),
        ('{"a": 1}', "not an etcdbench results file"),
        ('{"format": "etcdbench-results", "schema_version": 99}', "schema_version 99 is not supported"),
    ],
)
def test_show_refuses_bad_results_files(tmp_path: Path, content: str, message: str) -> None:
    f = tmp_path / "r.json"
    f.write_text(content)
    proc = etcdbench("show", str(f))
    assert proc.returncode == 2
    assert message in proc.stderr and str(f) in proc.stderr


def test_help_lists_the_watch_flags() -> None:
    proc = etcdbench("watch", "--help")
    assert proc.returncode == 0
    for flag in ("--backend", "--encoding", "--rate", "--slo-p99", "--v2-watch", "--endpoints", "--json"):
        assert flag in proc.stdout


@pytest.mark.parametrize(
    ("backend", "message"),
    [("v3", "is not an etcd v3 endpoint: it does not speak gRPC"), ("v2", "is not an etcd server")],
)
def test_an_http_server_that_is_not_etcd_is_named(tmp_path: Path, backend: str, message: str) -> None:
    import http.server

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        proc = etcdbench("watch", "--backend", backend, "--endpoints", url, "--duration", "1", cwd=tmp_path)
    finally:
        server.shutdown()
    assert proc.returncode == 3
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "results").exists()
