"""The apiserver's other traffic beside the measured run: the measured books stay exact with it on,
its counts agree with what etcd holds, LISTs really paginate, its keys are the run's own (checked
before, deleted after, others' untouched) (what needs no etcd: tests/unit/test_background_spec.py).

Counts and keys only, never timings; a short run's verdict is not asserted.
"""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path

import pytest
from cli_console import run_cli
from etcd_store import Store
from test_interrupt import DURATION, OBJECTS, RATE, assert_nothing_left, finish, start

from etcdbench._pb.etcd import rpc_pb2
from etcdbench.backends.base import Endpoint
from etcdbench.backends.v2 import V2Backend
from etcdbench.backends.v3 import V3Backend, prefix_range_end
from etcdbench.encoding.objects import object_key
from etcdbench.errors import EXIT_USAGE

SMALL = ("--rate", "50", "--duration", "1.5", "--warmup", "0.5", "--objects", "6", "--drain", "3")
PRELOAD = 1_200  # pods: the LISTs' resource dir holds these (the 6 seeded objects among them)
BACKGROUND = (
    "--preload",
    f"pod={PRELOAD}",
    "--bg-list-rate",
    "4",
    "--bg-list-page",
    "500",
    "--bg-get-rate",
    "20",
    "--bg-event-rate",
    "30",
    "--bg-watches",
    "3",
)


@pytest.fixture
def prefix() -> str:
    return f"/etcdbench-bg/{uuid.uuid4().hex[:12]}/"


def test_a_v3_list_really_paginates_at_one_revision(store: Store, prefix: str) -> None:
    for i in range(25):
        store.put(f"{prefix}pods/ns/p{i:03d}", b"x" * 10)
    backend = V3Backend(Endpoint((store.url,)))
    try:
        pages, keys, start, revision = 0, 0, b"", 0
        while True:
            page = backend.list_page(prefix + "pods/", start, 10, revision)
            if pages == 0:
                store.put(f"{prefix}pods/ns/p999", b"after the first page")  # not in this LIST
            pages += 1
            keys += page.keys
            revision = page.revision
            if page.next_key is None:
                break
            start = page.next_key
        assert (pages, keys) == (3, 25)
        assert backend.get_value(f"{prefix}pods/ns/p001") is not None
        assert backend.get_value(f"{prefix}pods/ns/nothing") is None
    finally:
        backend.close()
        store.seeded.add(f"{prefix}pods/ns/p999")


def test_a_v2_list_is_one_recursive_get(store: Store, prefix: str) -> None:
    for i in range(25):
        store.v2_put(f"{prefix}pods/ns/p{i:03d}", "x")
    backend = V2Backend(Endpoint((store.url,)))
    try:
        page = backend.list_page(prefix + "pods/", b"", 10)
        assert (page.keys, page.next_key) == (25, None)
        assert backend.get_value(f"{prefix}pods/ns/p001") is not None
        assert backend.get_value(f"{prefix}pods/ns/nothing") is None
    finally:
        backend.close()


def _events_in_etcd(store: Store, config_prefix: str, v2: bool) -> int:
    events = config_prefix.rstrip("/") + "-background/events/"
    if v2:
        return sum(1 for k, (v, _, _) in store.v2().items() if k.startswith(events) and v != b"<dir>")
    return len(_v3_keys(store, events))


def _v3_keys(store: Store, under: str) -> list[str]:
    """Keys under `under`, keys only (a whole-store read of the preload would pass gRPC's 4 MB)."""
    key = under.encode()
    request = rpc_pb2.RangeRequest(key=key, range_end=prefix_range_end(key), keys_only=True)
    return [kv.key.decode() for kv in store._kv.Range(request, timeout=10).kvs]


@pytest.mark.parametrize(
    "argv", [("--backend", "v3"), ("--backend", "v2", "--encoding", "json")], ids=["v3", "v2"]
)
def test_with_background_load_the_books_stay_exact_and_its_counts_match_etcd(
    store: Store, prefix: str, argv: tuple[str, ...]
) -> None:
    v2 = "v2" in argv
    code, out, err = run_cli(
        "watch", "--endpoints", store.url, "--prefix", prefix, *SMALL, *BACKGROUND, *argv, "--keep", "--json"
    )
    assert code in (0, 1), err  # the verdict of a 2 s run on a busy host is not the point
    run = json.loads(out)["runs"][0]
    c = run["counters"]
    # The measured books: every write received once, nothing missed, nothing foreign seen.
    assert c["written"] > 0 and c["received"] == c["written"] and c["missed"] == 0
    assert c["foreign_events"] == c["other_shard_events"] == c["decode_errors"] == 0
    bg = run["background"]
    ev, lists, gets, watches = bg["events"], bg["lists"], bg["gets"], bg["watches"]
    # Events: what the background says it wrote is what etcd holds under its prefix (kept: --keep).
    assert ev["done"] > 0 and ev["errors"] == 0 and ev["inflight_at_stop"] == 0
    assert _events_in_etcd(store, prefix, v2) == ev["done"]
    # ... and what the Events' watch received (the other two watch idle types).
    assert watches["count"] == 3 and watches["events_received"] == ev["done"]
    # LISTs: every one read the whole resource dir, in pages of 500 on v3, in one GET on v2.
    stored = PRELOAD  # the 6 seeded objects are preloaded ones (indexes 0-5)
    assert lists["done"] > 0 and lists["errors"] == 0
    assert lists["keys"] == lists["done"] * stored
    assert lists["pages"] == lists["done"] * (1 if v2 else -(-stored // 500))
    # GETs: of objects that exist.
    assert gets["done"] > 0 and gets["errors"] == 0 and gets["not_found"] == 0
    assert run["latency_us"]["watch"]["count"] > 0
    for name in ("lists", "gets", "events"):
        assert bg[name]["latency_us"]["count"] > 0  # ops intended in the measured window
    assert "background" in run["cpu"]
    if bg["fell_behind"]:
        assert any("background load fell behind" in r for r in run["verdict"]["client_bound_reasons"])
    # --keep left them: remove the run's keys as a user would (none of them is a seeded one).
    if v2:
        store.seeded_v2.update(k for k, (v, _, _) in store.v2().items() if k.startswith(prefix.rstrip("/")))
    else:
        store.seeded.update(_v3_keys(store, prefix.rstrip("/")))


@pytest.mark.parametrize("v2", [False, True], ids=["v3", "v2"])
def test_background_keys_go_after_the_run_and_others_stay(store: Store, prefix: str, v2: bool) -> None:
    beside = prefix.rstrip("/") + "-background/events/default/someone-elses-event"
    store.put(beside, b"theirs")
    store.v2_put(beside + "-v2", "theirs")
    before_v3, before_v2 = store.both()
    argv = ("--backend", "v2", "--encoding", "json") if v2 else ()
    code, out, err = run_cli(
        "watch",
        "--endpoints",
        store.url,
        "--prefix",
        prefix,
        *SMALL,
        "--bg-event-rate",
        "30",
        *argv,
        "--json",
    )
    assert code in (0, 1), err
    assert json.loads(out)["runs"][0]["background"]["events"]["done"] > 0
    after_v3, after_v2 = store.both()
    assert after_v3 == before_v3  # the run's Events gone, the foreign one as it was
    assert after_v2 == before_v2


def test_a_background_key_that_exists_is_never_overwritten(store: Store, prefix: str) -> None:
    theirs = prefix.rstrip("/") + "-background/" + object_key("event", 0)
    store.put(theirs, b"theirs")
    before = store.v3()[1]
    code, _, err = run_cli(
        "watch", "--endpoints", store.url, "--prefix", prefix, *SMALL, "--bg-event-rate", "30", "--json"
    )
    assert code == EXIT_USAGE and theirs in err and len(err.strip().splitlines()) == 1
    assert store.v3()[1] == before


def test_ctrl_c_stops_the_background_with_the_others_and_keeps_its_counts(tmp_path: Path) -> None:
    run = start(tmp_path, "--json", "--bg-event-rate", "20", "--bg-get-rate", "20", "--bg-watches", "2")

    def writing() -> bool:  # the writer, the watcher and the background, and t0 passed
        try:
            return len(run.workers()) == 3 and run.revision() > 1 + OBJECTS + RATE // 2
        except Exception:
            return False

    run.wait_for("writes", writing)
    processes = run.processes()
    run.signal(signal.SIGINT, True)
    out, _ = finish(run)
    assert_nothing_left(run, processes)  # the background process too
    (r,) = json.loads(out)["runs"]
    assert r["incomplete"].startswith("interrupted by SIGINT") and "missing" not in r
    c = r["counters"]
    assert c["written"] == c["received"] and c["missed"] == 0
    bg = r["background"]
    assert bg["events"]["done"] > 0 and bg["events"]["errors"] == 0 and bg["gets"]["done"] > 0
    assert 0 < bg["stopped_after_s"] < DURATION
    assert bg["watches"]["events_received"] == bg["events"]["done"]
