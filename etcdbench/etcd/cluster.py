"""A private multi-member etcd cluster on 127.0.0.1: `size` members of one cluster, for runs that
need leader elections and member failures (`--cluster-size 3`, `--fault kill-leader@T:D`).

Each member gets its own free client and peer ports and its own temporary data dir; all are forked
from one long-lived spawner thread (the PR_SET_PDEATHSIG caveat in local.py), so a member restarted
by a fault still dies with us. `start` returns once every member is healthy and a leader is elected.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Sequence

from etcdbench.backends import make_server_admin
from etcdbench.backends.base import Endpoint, ServerStatus
from etcdbench.backends.credentials import Credentials
from etcdbench.errors import EtcdError, UsageError
from etcdbench.etcd.local import EtcdMember, PrivateEtcd, Spawner, TlsFiles, free_ports, url_schemes
from etcdbench.interrupt import shielded


class LocalCluster(PrivateEtcd):
    """`size` etcd members of one cluster on 127.0.0.1; a context manager.

    `members[i]` has the fault methods of a LocalEtcd (pause, resume, kill, restart); `leader_index()`
    asks the members which of them leads.
    """

    def __init__(
        self,
        binary: str,
        size: int = 3,
        *,
        enable_v2: bool = True,
        extra_args: Sequence[str] = (),
        tls: TlsFiles | None = None,
    ) -> None:
        """`tls`: every member serves TLS on its client URL and (with `tls.peer`) on its peer URL."""
        if size < 1:
            raise UsageError(f"--cluster-size: must be >= 1, got {size}")
        self.binary = binary
        self.size = size
        self.enable_v2 = enable_v2
        self.extra_args = list(extra_args)
        self.tls = tls
        self.version = ""
        self.token = ""
        self.members: list[EtcdMember] = []
        self._spawner = Spawner()

    @property
    def client_urls(self) -> list[str]:
        return [m.client_url for m in self.members]

    @property
    def pids(self) -> list[int]:
        """The pids of the members running now (a killed member has none until it is restarted)."""
        return [m.pid for m in self.members if m.running]

    def start(self, timeout: float = 30.0) -> None:
        super().start(timeout)  # longer than one member's: the members also elect a leader

    def _wait_started(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for member in self.members:  # all are running: each waits for a quorum
            member._wait_ready(max(0.1, deadline - time.monotonic()))
        self.wait_for_leader(max(1.0, deadline - time.monotonic()))

    def _started_members(self) -> Sequence[EtcdMember]:
        return self.members

    def _spawn(self) -> None:
        for m in self.members:
            m.stop()
        ports = free_ports(2 * self.size)
        self.token = f"etcdbench-{secrets.token_hex(4)}"
        self.members = [
            EtcdMember(
                self.binary,
                name=f"etcdbench-{i}",
                enable_v2=self.enable_v2,
                extra_args=self.extra_args,
                spawner=self._spawner,
                tls=self.tls,
            )
            for i in range(self.size)
        ]
        scheme, peer_scheme = url_schemes(self.tls)
        peers = [f"{peer_scheme}://127.0.0.1:{ports[2 * i + 1]}" for i in range(self.size)]
        initial = ",".join(f"{m.name}={peer}" for m, peer in zip(self.members, peers, strict=True))
        cluster_args = ["--initial-cluster-state", "new", "--initial-cluster-token", self.token]
        for i, m in enumerate(self.members):
            m.version = self.version
            m._configure(f"{scheme}://127.0.0.1:{ports[2 * i]}", peers[i], initial, cluster_args)
            m._launch()

    def statuses(self) -> list[ServerStatus | None]:
        """The status of each member, None for one that is down, paused or not answering."""
        creds = None
        if self.tls is not None:  # the members' own probe certificate
            creds = Credentials(
                self.tls.ca, self.tls.client_cert or self.tls.cert, self.tls.client_key or self.tls.key
            )

        out: list[ServerStatus | None] = []
        for m in self.members:
            if not m.running or m.paused:  # a paused member would only time out
                out.append(None)
                continue
            backend = make_server_admin(Endpoint((m.client_url,), creds))
            try:
                status = backend.status()
                m.member_id = f"{status.member:x}"
                out.append(status)
            except EtcdError:
                out.append(None)
            finally:
                backend.close()
        return out

    def leader_index(self) -> int | None:
        """Index in `members` of the current leader, or None while there is none (an election; the
        survivors still naming a leader that was just killed count as none)."""
        statuses = self.statuses()
        votes = Counter(s.leader for s in statuses if s is not None and s.leader)
        if not votes:
            return None
        leader = f"{votes.most_common(1)[0][0]:x}"
        for i, m in enumerate(self.members):
            if m.member_id == leader:
                return i if m.running and not m.paused else None
        return None

    def wait_for_leader(self, timeout: float = 20.0) -> int:
        """The leader's index, waiting for an election to end (EtcdError after `timeout`)."""
        deadline = time.monotonic() + timeout
        while True:
            index = self.leader_index()
            if index is not None:
                return index
            if time.monotonic() >= deadline:
                raise EtcdError(f"etcd cluster of {self.size} elected no leader within {timeout:g} s")
            time.sleep(0.1)

    def _stop_members(self) -> None:
        with shielded():  # every member, even with a second Ctrl-C
            for m in self.members:
                m.stop()
            self._spawner.shutdown()
