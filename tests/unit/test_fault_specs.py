"""Faults without an etcd: the --fault syntax and its refusals, and the injector acting on the member a
fault names (on stand-in members)."""

from __future__ import annotations

import time

import pytest

from etcdbench.backends.fake import FakeEtcd, fake_admin
from etcdbench.bench.target import run_watch
from etcdbench.config.faults import Fault, parse_fault
from etcdbench.config.run import RunConfig
from etcdbench.errors import UsageError
from etcdbench.etcd.faults import FaultInjector


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("pause@2:1.5", Fault("pause", 2.0, 1.5)),
        ("restart@1s:2s", Fault("restart", 1.0, 2.0)),
        ("kill@3", Fault("kill", 3.0)),
        ("compact@0.5", Fault("compact", 0.5)),
        ("defrag@1", Fault("defrag", 1.0)),
        ("kill-member@1:2", Fault("kill-member", 1.0, 2.0)),
        ("kill-leader@0.5s:1s", Fault("kill-leader", 0.5, 1.0)),
    ],
)
def test_fault_syntax(text: str, fault: Fault) -> None:
    assert parse_fault(text) == fault
    assert parse_fault(str(fault)) == fault


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("explode@1", "is not KIND@SECONDS"),
        ("pause", "is not KIND@SECONDS"),
        ("pause@x:1", "is not KIND@SECONDS"),
        ("pause@1", "needs a duration"),
        ("compact@1:2", "takes no duration"),
        ("kill-leader@1", "needs a duration"),
        ("kill-member@1", "needs a duration"),
        ("kill-@1:1", "is not KIND@SECONDS"),
        ("kill-everything@1:1", "is not KIND@SECONDS"),
    ],
)
def test_malformed_faults_are_refused(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=f"^--fault: .*{message}"):
        parse_fault(text)


def test_a_fault_after_the_writes_end_is_refused() -> None:
    with pytest.raises(UsageError, match="starts after the writes end"):
        RunConfig(duration_s=2, warmup_s=0, faults=("pause@5:1",))


def test_signal_faults_need_the_embedded_etcd() -> None:
    with pytest.raises(UsageError, match="needs the embedded etcd"):
        run_watch(RunConfig(faults=("pause@1:1",)), endpoints=["http://127.0.0.1:9"], etcd_bin=None)


def test_cluster_faults_need_an_embedded_cluster() -> None:
    with pytest.raises(UsageError, match=r"kill-leader@1:1: needs an embedded cluster \(--cluster-size"):
        run_watch(RunConfig(faults=("kill-leader@1:1",)), endpoints=["http://127.0.0.1:9"], etcd_bin=None)


class FakeMember:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.running = True
        self.events: list[str] = []

    def pause(self) -> None:
        self.events.append("pause")

    def resume(self) -> None:
        self.events.append("resume")

    def kill(self) -> None:
        self.events.append("kill")
        self.running = False

    def restart(self, timeout: float = 20.0) -> None:
        self.events.append("restart")
        self.running = True
        self.pid += 100


class FakeCluster:
    def __init__(self, leader: int) -> None:
        self.members = [FakeMember(10), FakeMember(11), FakeMember(12)]
        self.leader = leader

    def wait_for_leader(self, timeout: float = 20.0) -> int:
        return self.leader


@pytest.mark.parametrize(("kind", "leader", "victim"), [("kill-leader", 1, 1), ("kill-member", 0, 1)])
def test_cluster_faults_pick_their_member(kind: str, leader: int, victim: int) -> None:
    cluster = FakeCluster(leader)
    restarted: list[int] = []
    injector = FaultInjector([Fault(kind, 0.0, 0.01)], cluster.members[0], fake_admin(FakeEtcd()), cluster)
    injector.on_restart = restarted.append
    injector.start(time.monotonic())
    injector.stop()
    (record,) = injector.timeline
    assert "error" not in record, record
    assert record["member"] == victim
    assert cluster.members[victim].events == ["kill", "restart"]
    assert restarted == [cluster.members[victim].pid]
    assert all(not m.events for i, m in enumerate(cluster.members) if i != victim)


def test_member_faults_act_on_member_0_of_a_cluster() -> None:
    cluster = FakeCluster(leader=2)
    injector = FaultInjector(
        [Fault("restart", 0.0, 0.01)], cluster.members[0], fake_admin(FakeEtcd()), cluster
    )
    injector.start(time.monotonic())
    injector.stop()
    assert cluster.members[0].events == ["kill", "restart"]
    assert "member" not in injector.timeline[0]


def test_a_cluster_fault_without_a_cluster_is_recorded_as_an_error() -> None:
    injector = FaultInjector([Fault("kill-member", 0.0, 0.01)], FakeMember(1), fake_admin(FakeEtcd()))
    injector.start(time.monotonic())
    injector.stop()
    assert "needs an embedded cluster" in injector.timeline[0]["error"]
