"""LocalCluster: several members of one etcd cluster on 127.0.0.1, their leader, and client failover."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from processes import running

from etcdbench.backends.base import Endpoint, WatchEvent
from etcdbench.backends.members import describe_member
from etcdbench.backends.v3 import V3Backend
from etcdbench.etcd import find_etcd_binary
from etcdbench.etcd.cluster import LocalCluster


def test_cluster_elects_a_leader_fails_over_and_cleans_up() -> None:
    cluster = LocalCluster(find_etcd_binary(), size=3)
    with cluster:
        urls, pids = cluster.client_urls, cluster.pids
        assert len(set(urls)) == 3 and len(set(pids)) == 3
        args = cluster.members[0].args
        assert "--enable-v2=true" in args
        assert args[args.index("--initial-cluster-state") + 1] == "new"
        assert args[args.index("--initial-cluster") + 1].count("=http://127.0.0.1:") == 3
        leader = cluster.leader_index()
        assert leader is not None

        # What a run records about its endpoints: one leader, three members with distinct ids.
        members = [describe_member(url) for url in urls]
        assert [m["is_leader"] for m in members].count(True) == 1
        assert members[leader]["is_leader"]
        assert len({m["member_id"] for m in members}) == 3
        assert {m["version"] for m in members} == {cluster.version}

        # One client over all members: kill member 0 (the one pick_first connected to); the watch
        # stream breaks, reconnects to another member and still sees every later put.
        client = V3Backend(Endpoint(tuple(urls)))
        start = client.current_revision() + 1
        seen: list[Any] = []
        watching = threading.Thread(target=lambda: seen.extend(client.watch("/c/", start)), daemon=True)
        watching.start()
        done = threading.Event()
        client.put_async("/c/before", b"1", lambda exc: done.set())
        assert done.wait(10)
        cluster.members[0].kill()
        assert not cluster.members[0].running and cluster.members[0].pid not in cluster.pids
        new_leader = cluster.wait_for_leader()
        assert new_leader != 0
        errors: list[BaseException | None] = []

        def record(exc: BaseException | None) -> None:
            errors.append(exc)
            done.set()

        for _ in range(20):  # the first put may land on a member still electing: retry as writers do
            done.clear()
            errors.clear()
            client.put_async("/c/after", b"2", record)
            assert done.wait(15)
            if errors == [None]:
                break
            time.sleep(0.25)
        assert errors == [None], errors
        deadline = time.monotonic() + 15
        while len(seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        client.cancel()
        watching.join(5)
        client.close()
        assert [e.key for e in seen if isinstance(e, WatchEvent)] == ["/c/before", "/c/after"]
        assert client.reconnects >= 1

        cluster.members[0].restart()
        assert cluster.members[0].running and len(cluster.pids) == 3
        dirs = [m.data_dir for m in cluster.members]
        pids = cluster.pids
    assert not any(os.path.exists(d) for d in dirs)
    assert not any(running(p) for p in pids)
    cluster.stop()  # idempotent
