"""Where runs happen: an etcd target (embedded or given) that outlives any number of runs.

`Target` starts or checks etcd once; each `run()` then measures one `RunConfig` on it and leaves the
prefix empty behind it, so runs in a matrix or a capacity search do not see each other's keys.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from types import TracebackType
from typing import Any

from etcdbench.backends import make_backend, v3_client
from etcdbench.backends.base import Backend, Endpoint
from etcdbench.backends.v3 import V3Backend
from etcdbench.errors import EtcdError, UsageError
from etcdbench.etcd.cluster import LocalCluster
from etcdbench.etcd.local import LocalEtcd, find_etcd_binary
from etcdbench.faults import NEEDS_CLUSTER, NEEDS_LOCAL, FaultInjector, parse_fault
from etcdbench.interrupt import Interrupted, shielded
from etcdbench.network.proxy import DelayProxy, wants_proxy
from etcdbench.results.io import environment, new_results
from etcdbench.results.model import verdict
from etcdbench.scenario import RunConfig
from etcdbench.security import Credentials
from etcdbench.shard import Barrier
from etcdbench.workload.runner import Progress, run_once

SHARD_WAIT_S = 300.0  # how long a shard waits for the others to be ready
MEMBER_TIMEOUT_S = 5.0  # per member, when asking each endpoint of a cluster who it is


class Target:
    """An etcd to run against: started here when `endpoints` is empty (one member, or a cluster of
    `cluster_size`), else the given cluster."""

    def __init__(
        self,
        *,
        endpoints: list[str] | None,
        etcd_bin: str | None = None,
        force: bool = False,
        keep: bool = False,
        credentials: Credentials | None = None,
        cluster_size: int = 1,
    ) -> None:
        if cluster_size < 1:
            raise UsageError(f"--cluster-size: must be >= 1, got {cluster_size}")
        if cluster_size > 1 and endpoints:
            raise UsageError("--cluster-size: starts an embedded cluster; not with --endpoints")
        self.endpoints = endpoints
        self.credentials = credentials  # TLS files and etcd user for `endpoints`; never in `info`
        self.etcd_bin = etcd_bin
        self.force = force
        self.keep = keep
        self.cluster_size = cluster_size
        self._stack = contextlib.ExitStack()
        self.endpoint = Endpoint(())
        self.info: dict[str, Any] = {}
        self._checked: set[str] = set()
        self.local: LocalEtcd | None = None
        self.cluster: LocalCluster | None = None
        self.proxy: DelayProxy | None = None  # started by the first run that asks for a network

    @property
    def etcd_pids(self) -> list[int]:
        """Every running embedded etcd process (CPU attribution); none for an external etcd."""
        if self.cluster is not None:
            return self.cluster.pids
        if self.local is not None and self.local.running:
            return [self.local.pid]
        return []

    def __enter__(self) -> Target:
        with self._stack as stack:
            if self.endpoints:
                self.endpoint = Endpoint(tuple(self.endpoints), self.credentials)
                self.info = {"embedded": False, "endpoints": list(self.endpoints)}
            else:
                if self.credentials is not None:
                    raise UsageError("TLS and auth settings need --endpoints: the embedded etcd has neither")
                binary = find_etcd_binary(self.etcd_bin)
                if self.cluster_size > 1:
                    cluster = self.cluster = stack.enter_context(LocalCluster(binary, self.cluster_size))
                    self.endpoint = Endpoint(tuple(cluster.client_urls))
                    self.info = {
                        "embedded": True,
                        "endpoints": cluster.client_urls,
                        "binary": binary,
                        "args": cluster.members[0].args,  # each member's: under `members`
                    }
                    self._stack = stack.pop_all()
                    return self
                local = self.local = stack.enter_context(LocalEtcd(binary))
                self.endpoint = Endpoint((local.client_url,))
                self.info = {
                    "embedded": True,
                    "endpoints": [local.client_url],
                    "binary": local.binary,
                    "args": local.args,
                }
            self._stack = stack.pop_all()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with shielded():  # etcd stopped and its data dir removed, even with a second Ctrl-C
            self._stack.close()

    def results(self) -> dict[str, Any]:
        """A new, empty results document for runs on this target."""
        env = environment(etcd=self.info)
        env["v3_client"] = v3_client(self.endpoint)  # which v3 client wrote and watched (v3 runs)
        return new_results(env)

    def run(self, config: RunConfig, progress: Progress | None = None) -> dict[str, Any]:
        """Measure one config. A run after which etcd cannot be reached is marked `incomplete`."""
        faults = [parse_fault(f) for f in config.faults]
        for f in faults:
            if f.kind in NEEDS_CLUSTER and self.cluster is None:
                raise UsageError(f"--fault {f}: needs an embedded cluster (--cluster-size 3)")
            if f.kind in NEEDS_LOCAL and self.local is None and self.cluster is None:
                raise UsageError(f"--fault {f}: needs the embedded etcd, not --endpoints")
        endpoint = self._through_network(config)  # every client of the run: writers, watchers, admin
        admin = make_backend(config.backend, endpoint, v2_watch=config.v2_watch)
        stack = contextlib.ExitStack()
        stack.callback(admin.close)
        with stack:
            admin.check()
            self.info["server_version"] = admin.server_version()
            if len(self.endpoint.urls) > 1 and "members" not in self.info:  # as at the first run
                self.info["members"] = self._members()
            sharded = config.shards > 1  # the shards share the prefix: the others may be writing already
            if config.prefix not in self._checked and not sharded:  # our own leftovers are fine
                existing = admin.count_prefix(config.prefix)
                if existing and self.endpoints and not self.force:
                    raise UsageError(
                        f"--prefix: {config.prefix} already holds {existing} keys on {self.endpoints[0]}: "
                        "etcdbench would overwrite and delete them (--force allows it)"
                    )
                self._checked.add(config.prefix)
            injector = None
            if faults:
                v3 = V3Backend(endpoint)  # compaction and defragmentation are v3 calls
                stack.callback(v3.close)
                if self.cluster is not None:  # pause/restart/kill act on member 0
                    injector = FaultInjector(faults, self.cluster.members[0], v3, self.cluster)
                else:
                    injector = FaultInjector(faults, self.local, v3)
            barrier = None
            if sharded:
                barrier = Barrier(endpoint, config.prefix, config.shard, config.shards, SHARD_WAIT_S)
                stack.callback(barrier.close)
            try:
                run = run_once(
                    config,
                    endpoint,
                    admin,
                    self.etcd_pids,
                    progress,
                    injector,
                    barrier.start_ns if barrier else None,
                    network=self.proxy if endpoint is not self.endpoint else None,
                )
            except BaseException as exc:
                if isinstance(exc, Interrupted) and exc.partial is not None and endpoint is not self.endpoint:
                    with shielded(), contextlib.suppress(Exception):
                        self._proxy().attach(config, exc.partial)
                # Never pull keys from under a shard; an interrupted embedded etcd is about to go anyway.
                gone = isinstance(exc, KeyboardInterrupt) and not self.endpoints
                if not (self.keep and self.endpoints) and not sharded and not gone:
                    with shielded(), contextlib.suppress(Exception):
                        admin.delete_prefix(config.prefix)
                raise
            if endpoint is not self.endpoint:
                self._proxy().attach(config, run)
            after = self._reconnect(config, endpoint)  # a fault may have left the old connection backing off
            if isinstance(after, str):
                run["incomplete"] = f"etcd could not be reached after the run: {after}"
                run["verdict"] = verdict(run, config)
                return run  # nothing to clean up on an etcd that is gone
            try:
                owns_cleanup = barrier.finish() if barrier else True
                if owns_cleanup and not (self.keep and self.endpoints):
                    after.delete_prefix(config.prefix)
            finally:
                after.close()
            return run

    def _members(self) -> list[dict[str, Any]]:
        """Who each endpoint is: `{url, version, member_id, is_leader}` (and `args` when embedded).

        Asked of each endpoint alone with v3 Maintenance Status; an etcd that does not answer it is
        asked over HTTP instead (`/version`, and `/v2/stats/self` for its id and the leader's). An
        endpoint that answers neither is listed with nulls and the `error`.
        """
        members = []
        for i, url in enumerate(self.endpoint.urls):
            member = _describe_member(url, self.endpoint.credentials)
            if self.cluster is not None:
                member["args"] = self.cluster.members[i].args
            members.append(member)
        return members

    def _through_network(self, config: RunConfig) -> Endpoint:
        """The endpoint the run's clients use: etcd's own, or the delay proxy's shaped as `config` asks."""
        if not wants_proxy(config):
            return self.endpoint
        if self.proxy is None:
            self.proxy = self._stack.enter_context(DelayProxy(self.endpoint))
        self.proxy.set_shape(config)
        return self.proxy.endpoint

    def _proxy(self) -> DelayProxy:
        assert self.proxy is not None
        return self.proxy

    def _reconnect(self, config: RunConfig, endpoint: Endpoint, attempts: int = 20) -> Backend | str:
        """A fresh, checked connection, or why none could be made (tried for about 10 s)."""
        reason = ""
        for _ in range(attempts):
            backend = make_backend(config.backend, endpoint, v2_watch=config.v2_watch)
            try:
                backend.check()
                return backend
            except EtcdError as exc:
                backend.close()
                reason = str(exc)
                time.sleep(0.5)
        return reason


def _describe_member(url: str, credentials: Credentials | None = None) -> dict[str, Any]:
    """One endpoint's `{url, version, member_id, is_leader}`, asked of it alone (see Target._members)."""
    import grpc

    member: dict[str, Any] = {"url": url, "version": None, "member_id": None, "is_leader": None}
    v3 = V3Backend(Endpoint((url,), credentials))
    try:
        status = v3.status()
        member["version"] = str(status["version"])
        member["member_id"] = f"{int(status['member']):x}"
        member["is_leader"] = int(status["leader"]) == int(status["member"])
        return member
    except (grpc.RpcError, EtcdError) as exc:
        v3_error = str(exc.details()) if isinstance(exc, grpc.RpcError) else str(exc)
    finally:
        v3.close()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url.rstrip("/") + "/version", timeout=MEMBER_TIMEOUT_S) as r:
            member["version"] = str(json.loads(r.read())["etcdserver"])
    except (OSError, ValueError, KeyError) as exc:
        member["error"] = f"v3 Status: {v3_error}; /version: {exc}"
        return member
    try:  # the v2 API's own stats name the member and say whether it leads
        with opener.open(url.rstrip("/") + "/v2/stats/self", timeout=MEMBER_TIMEOUT_S) as r:
            stats = json.loads(r.read())
        member["member_id"] = str(stats["id"])
        member["is_leader"] = stats.get("state") == "StateLeader"
    except (OSError, ValueError, KeyError):
        pass
    return member


def run_watch(
    config: RunConfig,
    *,
    endpoints: list[str] | None,
    etcd_bin: str | None,
    force: bool = False,
    keep: bool = False,
    save: Callable[[dict[str, Any]], None] | None = None,
    progress: Progress | None = None,
    credentials: Credentials | None = None,
    cluster_size: int = 1,
) -> dict[str, Any]:
    """Run `config` once; `save` gets the results after the run (and is where files are written)."""
    with Target(
        endpoints=endpoints,
        etcd_bin=etcd_bin,
        force=force,
        keep=keep,
        credentials=credentials,
        cluster_size=cluster_size,
    ) as target:
        run = target.run(config, progress)
        results = target.results()
        results["runs"].append(run)
        results["complete"] = "incomplete" not in run
        if save:
            save(results)
        return results
