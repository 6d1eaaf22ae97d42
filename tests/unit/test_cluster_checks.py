"""LocalCluster and the Target of a cluster, with no etcd started: sizes refused, a stop before a start, a
member that cannot be reached."""

from __future__ import annotations

import pytest

from etcdbench.backends.members import describe_member
from etcdbench.bench.target import Target
from etcdbench.errors import UsageError
from etcdbench.etcd.cluster import LocalCluster


def test_cluster_size_is_checked() -> None:
    with pytest.raises(UsageError, match=r"^--cluster-size: must be >= 1"):
        LocalCluster("/nonexistent/etcd", size=0)
    with pytest.raises(UsageError, match=r"^--cluster-size: must be >= 1"):
        Target(endpoints=None, cluster_size=0)
    with pytest.raises(UsageError, match=r"^--cluster-size: .*not with --endpoints"):
        Target(endpoints=["http://127.0.0.1:2379"], cluster_size=3)


def test_stop_is_safe_before_start() -> None:
    LocalCluster("/nonexistent/etcd").stop()


def test_an_unreachable_member_is_described_with_its_error() -> None:
    member = describe_member("http://127.0.0.1:9")
    assert member["url"] == "http://127.0.0.1:9"
    assert member["version"] is member["member_id"] is member["is_leader"] is None
    assert "/version" in member["error"]
