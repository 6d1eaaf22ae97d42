"""TLS like a real control plane: `--tls` on the embedded etcd, certificates made and removed by
etcdbench, and our own HTTP/2 (v3) and HTTP/1.1 (v2) clients over TLS, checked against a real etcd
(the certificates alone: tests/unit/test_tls_certs.py).

The concurrency tests are what an OpenSSL-unsafe design would break: many puts in flight from
several threads on one TLS connection while its reader thread decrypts the answers, beside a watch
stream in the same process; every count must come out exact.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cli_console import TINY_SCENARIO, start_etcdbench
from paths import ROOT
from tls_pki import client_creds

from etcdbench._pb.etcd import rpc_pb2
from etcdbench.backends import make_backend
from etcdbench.backends.base import Endpoint, WatchEvent
from etcdbench.backends.credentials import Credentials
from etcdbench.backends.transport.h2 import (
    ConnectionLost,
    StreamCall,
    UnaryClient,
    client_context,
    request_headers,
)
from etcdbench.backends.v2 import V2Backend
from etcdbench.backends.v3 import PUT_PATH, WATCH_PATH
from etcdbench.bench.target import Target, run_watch
from etcdbench.config.run import RunConfig
from etcdbench.errors import EtcdError
from etcdbench.etcd import certs
from etcdbench.etcd.certs import Pki, TemporaryPki
from etcdbench.etcd.local import LocalEtcd

THREADS = 4
PUTS_PER_THREAD = 250


@pytest.fixture(scope="module")
def pki() -> Iterator[Pki]:
    """etcdbench's own certificates (etcd.certs), in place of conftest's openssl ones: conftest's
    tls_etcd serves these here."""
    with TemporaryPki() as made:
        yield made


def address(server: LocalEtcd) -> tuple[str, int]:
    parts = urlsplit(server.client_url)
    assert parts.hostname and parts.port
    return parts.hostname, parts.port


# -- refusals ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["v3", "v2"])
def test_a_plaintext_client_is_refused(tls_etcd: LocalEtcd, backend: str) -> None:
    plain = tls_etcd.client_url.replace("https://", "http://")
    b = make_backend(backend, Endpoint((plain,)))
    try:
        with pytest.raises(EtcdError):
            b.check()
    finally:
        b.close()
    if backend == "v3":  # our HTTP/2 client without TLS: the server answers no HTTP/2 at all
        client = UnaryClient((address(tls_etcd),), timeout_s=5)
        outcome: list[BaseException | None] = []
        done = threading.Event()
        request = rpc_pb2.PutRequest(key=b"/etcdbench-test/plain", value=b"x").SerializeToString()
        headers = request_headers("{}:{}".format(*address(tls_etcd)), PUT_PATH)

        def finished(exc: BaseException | None) -> None:
            outcome.append(exc)
            done.set()

        client.call(headers, request, finished)
        try:
            assert done.wait(15)
        finally:
            client.close()
        assert isinstance(outcome[0], (ConnectionLost, TimeoutError))


def test_a_client_without_a_client_certificate_is_refused(tls_etcd: LocalEtcd, pki: Pki) -> None:
    no_cert = client_context(pki.ca)
    with pytest.raises(ssl.SSLError, match=r"(?i)certificate"):
        StreamCall(address(tls_etcd), request_headers("x", WATCH_PATH, tls=True), no_cert)
    for backend in ("v3", "v2"):
        b = make_backend(backend, Endpoint((tls_etcd.client_url,), Credentials(pki.ca)))
        try:
            with pytest.raises(EtcdError, match=r"requires a client certificate \(pass --cert and --key\)"):
                b.check()
        finally:
            b.close()


# -- our clients over TLS, under concurrency --------------------------------------------------------


def write_from_threads(writer: Callable[[int], None], answered: threading.Semaphore, total: int) -> None:
    """writer(t) on THREADS threads at once; then every one of the `total` answers, each within 60 s."""
    threads = [threading.Thread(target=writer, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for _ in range(total):
        assert answered.acquire(timeout=60)


def test_h2_over_tls_puts_from_many_threads_beside_a_watch_are_counted_exactly(
    tls_etcd: LocalEtcd, pki: Pki, fresh_prefix: str
) -> None:
    ctx = client_context(pki.ca, pki.client_cert, pki.client_key)
    authority = "{}:{}".format(*address(tls_etcd))
    key = fresh_prefix.encode()
    watch = StreamCall(address(tls_etcd), request_headers(authority, WATCH_PATH, tls=True), ctx)
    assert watch._conn.tls is not None and watch._conn.tls.alpn == "h2"
    create = rpc_pb2.WatchCreateRequest(key=key, range_end=key[:-1] + b"0", prev_kv=True)
    watch.send(rpc_pb2.WatchRequest(create_request=create).SerializeToString())
    total = THREADS * PUTS_PER_THREAD
    seen: dict[bytes, int] = {}
    watched = threading.Event()

    def read_watch() -> None:
        with contextlib.suppress(ConnectionLost):  # how the stream ends on cancel()
            for message in watch:
                for ev in rpc_pb2.WatchResponse.FromString(message).events:
                    seen[ev.kv.key] = seen.get(ev.kv.key, 0) + 1
                if sum(seen.values()) >= total:
                    watched.set()

    reader = threading.Thread(target=read_watch, daemon=True)
    reader.start()
    time.sleep(0.3)  # the watch is created before the first put

    client = UnaryClient((address(tls_etcd),), timeout_s=30, tls=ctx)
    headers = request_headers(authority, PUT_PATH, tls=True)
    lock = threading.Lock()
    ok: list[int] = []
    failed: list[BaseException] = []
    answered = threading.Semaphore(0)

    def done(exc: BaseException | None) -> None:
        with lock:
            (ok.append(1) if exc is None else failed.append(exc))
        answered.release()

    def writer(t: int) -> None:
        for i in range(PUTS_PER_THREAD):
            value = bytes([65 + t]) * (100 + 37 * i % 3000)  # records of many sizes
            request = rpc_pb2.PutRequest(key=b"%s%d-%d" % (key, t, i), value=value)
            client.call(headers, request.SerializeToString(), done)

    try:
        write_from_threads(writer, answered, total)
        assert client._conn is not None and client._conn.tls is not None
        assert client._conn.tls.alpn == "h2"
        assert failed == [] and len(ok) == total
        assert watched.wait(60)
    finally:
        client.close()
        watch.cancel()
    reader.join(10)
    assert len(seen) == total and set(seen.values()) == {1}


def test_v2_over_tls_puts_from_many_threads_beside_a_watch_are_counted_exactly(
    tls_etcd: LocalEtcd, pki: Pki, fresh_prefix: str
) -> None:
    endpoint = Endpoint((tls_etcd.client_url,), client_creds(pki))
    backend = V2Backend(endpoint, max_inflight=16)
    watcher = V2Backend(endpoint)
    backend.check()
    start = backend.current_revision() + 1
    total = THREADS * 100
    seen: dict[str, int] = {}
    watched = threading.Event()

    def read_watch() -> None:
        for item in watcher.watch(fresh_prefix, start):
            if isinstance(item, WatchEvent):
                seen[item.key] = seen.get(item.key, 0) + 1
                if sum(seen.values()) >= total:
                    watched.set()
                    return

    reader = threading.Thread(target=read_watch, daemon=True)
    reader.start()
    lock = threading.Lock()
    results: list[BaseException | None] = []
    answered = threading.Semaphore(0)

    def done(exc: BaseException | None) -> None:
        with lock:
            results.append(exc)
        answered.release()

    def writer(t: int) -> None:
        for i in range(total // THREADS):
            backend.put_async(f"{fresh_prefix}{t}-{i}", b"v" * (50 + i * 7), done)

    try:
        write_from_threads(writer, answered, total)
        assert results == [None] * total
        assert watched.wait(60)
        conn = watcher._connection()
        try:
            conn.request(b"GET", b"/version", timeout=5)
            sock = conn._sock
            assert isinstance(sock, ssl.SSLSocket) and sock.version() in ("TLSv1.2", "TLSv1.3")
        finally:
            conn.close()
    finally:
        watcher.close()
        backend.close()
    reader.join(10)
    assert len(seen) == total and set(seen.values()) == {1}


# -- --tls: the embedded etcd, exact books, nothing left behind -------------------------------------


@pytest.fixture
def made_dirs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The directories of every certificate set made meanwhile."""
    dirs: list[str] = []
    generate = certs.generate

    def spy(directory: str | Path) -> Pki:
        dirs.append(str(directory))
        return generate(directory)

    monkeypatch.setattr(certs, "generate", spy)
    return dirs


@pytest.mark.parametrize(("backend", "members"), [("v3", 1), ("v2", 1), ("v3", 3), ("v2", 3)])
def test_tls_embedded_etcd_runs_with_exact_books_and_leaves_no_certificate(
    backend: str, members: int, fresh_prefix: str, made_dirs: list[str]
) -> None:
    config = RunConfig(
        backend=backend, rate=200, duration_s=1.0, warmup_s=0.0, objects=20, prefix=fresh_prefix, tls=True
    )
    results = run_watch(config, endpoints=None, etcd_bin=None, cluster_size=members).to_dict()
    (run,) = results["runs"]
    c = run["counters"]
    assert results["complete"]
    assert c["written"] == c["received"] == 200 and c["missed"] == c["errors"] == 0
    env = results["environment"]
    assert env["tls"] is True and env["v3_client"] == "native"
    assert env["etcd"]["tls"]["client_cert_auth"] is True
    assert env["etcd"]["tls"]["peer_tls"] is (members > 1)
    assert all(url.startswith("https://127.0.0.1:") for url in env["etcd"]["endpoints"])
    args = env["etcd"]["args"]
    assert "--client-cert-auth=true" in args
    assert ("--peer-client-cert-auth=true" in args) is (members > 1)
    text = json.dumps(results)
    assert "PRIVATE KEY" not in text
    assert len(made_dirs) == 1 and not Path(made_dirs[0]).exists()


def test_certificates_are_removed_when_a_run_fails(made_dirs: list[str]) -> None:
    with pytest.raises(RuntimeError), Target(endpoints=None, tls=True) as target:
        assert target.endpoint.tls and Path(made_dirs[0]).is_dir()
        raise RuntimeError("a run failed")
    assert not Path(made_dirs[0]).exists()


def test_certificates_and_etcd_are_gone_after_ctrl_c(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
    env["PYTHONPATH"] = str(ROOT)
    env["TMPDIR"] = str(tmp_path)  # the certificates and etcd's data dir go here: watched below
    proc = start_etcdbench(
        "watch", "--tls", "--duration", "60", "--rate", "50", "--json", cwd=tmp_path, env=env
    )
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob("etcdbench-etcd-*")) or not list(tmp_path.glob("etcdbench-pki-*")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
            time.sleep(0.1)
        time.sleep(3)  # well into the run
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130
    assert list(tmp_path.glob("etcdbench-pki-*")) == []
    assert list(tmp_path.glob("etcdbench-etcd-*")) == []


MATRIX = TINY_SCENARIO + "tls = [true, false]\n"  # v3 and v2 cells, each with TLS and without


def test_a_tls_matrix_axis_starts_one_etcd_per_value_and_removes_its_certificates(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
    env["PYTHONPATH"] = str(ROOT)
    env["TMPDIR"] = str(tmp_path)  # the certificates go here: none may be left
    scenario, out = tmp_path / "tiny.toml", tmp_path / "tiny.json"
    scenario.write_text(MATRIX)
    proc = start_etcdbench("run", str(scenario), "--output", str(out), cwd=tmp_path, env=env)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode in (0, 1), stderr
    results = json.loads(out.read_text())
    runs = results["runs"]
    assert [(r["config"]["tls"], r["backend"]) for r in runs] == [  # grouped by etcd: each starts once
        (True, "v3"),
        (True, "v2"),
        (False, "v3"),
        (False, "v2"),
    ]
    for run in runs:
        c = run["counters"]
        assert c["written"] == c["received"] == 150 and c["missed"] == c["errors"] == 0, run["label"]
        assert run["label"].endswith(" tls") == run["config"]["tls"]
    with_tls, without = results["environment"]["etcds"]
    assert with_tls["tls"]["client_cert_auth"] and without["tls"] is None
    assert not list(tmp_path.glob("etcdbench-pki-*"))
    assert "etcdbench-pki-" not in out.read_text()  # etcd's args name no certificate or key file
    assert with_tls["args"][with_tls["args"].index("--key-file") + 1] == "(generated)"
