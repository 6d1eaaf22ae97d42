"""Where runs happen: an etcd target (embedded or given) that outlives any number of runs.

`Target` starts or checks etcd once; each `run()` then measures one `RunConfig` on it and removes
what the run wrote, so runs in a matrix or a capacity search do not see each other's keys.

On an etcd given by --endpoints, which may hold someone's data, a run touches only its own keys: the
names it writes are known before it starts (workload.ops.written_keys), a run that would overwrite a
key it did not write is refused, and afterwards exactly its own keys created since it started are
deleted, on every way out (end, error, Ctrl-C). A root prefix, Kubernetes' /registry/, and faults
that disrupt every client of that etcd need an explicit flag. The embedded etcd is etcdbench's alone:
there the prefix is simply emptied.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import replace
from types import TracebackType
from typing import Any

from etcdbench.backends import client_environment, make_admin, make_server_admin
from etcdbench.backends.base import Admin, Endpoint
from etcdbench.backends.credentials import Credentials
from etcdbench.backends.members import describe_member
from etcdbench.config.faults import check_faults, parse_fault
from etcdbench.config.run import EXTERNAL_PREFIX, RunConfig
from etcdbench.errors import EtcdError, UsageError
from etcdbench.etcd.barrier import Barrier, resolve_run_id
from etcdbench.etcd.certs import TemporaryPki
from etcdbench.etcd.cluster import LocalCluster
from etcdbench.etcd.faults import FaultInjector
from etcdbench.etcd.local import LocalEtcd, TlsFiles, flag_notes, resolve_etcd
from etcdbench.interrupt import Interrupted, shielded
from etcdbench.metrics.cpu import sampling_interval
from etcdbench.metrics.etcd_view import EtcdMetricsSampler
from etcdbench.network.proxy import DelayProxy, wants_proxy
from etcdbench.results.io import environment, new_results
from etcdbench.results.model import EtcdInfo, EtcdServer, ResultsFile, Run
from etcdbench.results.verdict import judged
from etcdbench.workload.background import background_prefix
from etcdbench.workload.ops import written_keys
from etcdbench.workload.runner import Progress, run_once

SHARD_WAIT_S = 300.0  # how long a shard waits for the others to be ready
RELEASE_PASSES = 5  # own-key deletion passes after a run, at most (see OwnKeys.release)
REGISTRY_PREFIX = "/registry/"  # Kubernetes' keys: an apiserver would read what we write there


def check_prefix(prefix: str, *, external: bool, allow_registry: bool) -> None:
    """Refuse a prefix that is the root of someone's data on an etcd given by --endpoints."""
    if not external:
        return
    if prefix in ("", "/"):
        raise UsageError(
            f"--prefix: {prefix!r} is the root of every key of the etcd given by --endpoints; "
            f"give etcdbench a prefix of its own, e.g. {EXTERNAL_PREFIX}"
        )
    if (REGISTRY_PREFIX.startswith(prefix) or prefix.startswith(REGISTRY_PREFIX)) and not allow_registry:
        raise UsageError(
            f"--prefix: {prefix} overlaps Kubernetes' {REGISTRY_PREFIX} on the etcd given by --endpoints, "
            f"where an apiserver would read etcdbench's objects; use e.g. {EXTERNAL_PREFIX}, or pass "
            "--allow-registry-prefix if no Kubernetes cluster uses that etcd"
        )


class OwnKeys:
    """The keys one run writes on an etcd it shares, and the revision before it wrote any of them.

    `claim` refuses a run that would overwrite a key it did not write; `release` deletes exactly the
    run's keys created after that revision, so a key someone else had, or made meanwhile under
    another name, is never deleted.
    """

    def __init__(self, config: RunConfig) -> None:
        self.prefix = config.prefix
        self.keys = written_keys(config)  # this shard's writers only
        # With shards, the other shards' keys (they may be writing already) are not someone else's.
        self.run_keys = written_keys(config, range(config.total_writers)) if config.shards > 1 else self.keys
        self.before = -1  # not claimed: nothing to release
        # The background load's Events live beside the prefix, outside the measured watch: checked for
        # collisions and released the same way (others' keys there are no concern of the watch).
        self.background = background_prefix(config) if config.bg_event_rate else None

    def claim(self, admin: Admin, where: str, *, beside_others: bool) -> None:
        """Take the revision before the run and check what exists under the prefix at it (UsageError).

        beside_others: keys of others that the run would not touch are allowed (--force, or already
        allowed for this prefix).
        """
        revision, existing = admin.list_keys(self.prefix)
        colliding = sorted(self.keys.intersection(existing))
        if self.background is not None:
            colliding += sorted(self.keys.intersection(admin.list_keys(self.background, revision)[1]))
        if colliding:
            raise UsageError(
                f"--prefix: {len(colliding)} of the keys this run would write exist on {where}, e.g. "
                f"{colliding[0]}; etcdbench never overwrites a key it did not write (use another --prefix)"
            )
        others = len(existing.keys() - self.run_keys)
        if others and not beside_others:
            raise UsageError(
                f"--prefix: {self.prefix} already holds {others} keys on {where}: etcdbench would never "
                "overwrite or delete them, but its watch would see their changes (--force runs beside them)"
            )
        self.before = revision

    def release(self, admin: Admin) -> int:
        """Delete the run's own keys (those created after the claim); how many were deleted."""
        if self.before < 0:
            return 0
        total = 0
        # A write a killed writer had sent may be applied after a pass listed the prefix: look again
        # until a pass finds nothing left.
        prefixes = [self.prefix] if self.background is None else [self.prefix, self.background]
        for _ in range(RELEASE_PASSES):
            deleted = sum(admin.delete_own(self.keys, p, self.before) for p in prefixes)
            total += deleted
            if not deleted:
                break
        return total


_TLS_EXTERNAL = (
    "--tls: starts the embedded etcd with TLS; for an etcd given by --endpoints use "
    "https:// URLs with --cacert (and --cert/--key)"
)


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
        allow_registry_prefix: bool = False,
        allow_disruptive_faults: bool = False,
        run_id: str | None = None,
        etcd: str = "",
        tls: bool = False,
    ) -> None:
        """`tls`: the embedded etcd serves only TLS with client-certificate auth (peers too), with a CA
        and certificates made at start and removed afterwards (etcd/certs.py)."""
        if cluster_size < 1:
            raise UsageError(f"--cluster-size: must be >= 1, got {cluster_size}")
        if cluster_size > 1 and endpoints:
            raise UsageError("--cluster-size: starts an embedded cluster; not with --endpoints")
        if tls and endpoints:
            raise UsageError(_TLS_EXTERNAL)
        self.tls = tls
        self.endpoints = endpoints
        self.credentials = credentials  # TLS files and etcd user for `endpoints`; never in `info`
        self.etcd_bin = etcd_bin
        self.etcd = etcd  # the runs' `etcd` value: "" the default binary, a version, or a path
        self.force = force  # run beside others' keys under the prefix (never overwriting or deleting them)
        self.keep = keep
        self.allow_registry_prefix = allow_registry_prefix
        self.allow_disruptive_faults = allow_disruptive_faults
        self.run_id = run_id  # --run-id as given; sharded runs fall back to $ETCDBENCH_RUN_ID
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
        # Entered again (a fresh etcd for each cell of a matrix): nothing of the last etcd carries over.
        self.local, self.cluster, self.proxy = None, None, None
        with self._stack as stack:
            if self.endpoints:
                self.endpoint = Endpoint(tuple(self.endpoints), self.credentials)
                self.info = {"embedded": False, "endpoints": list(self.endpoints)}
                if self.endpoint.tls:
                    creds = self.credentials
                    self.info["tls"] = {"client_cert": bool(creds is not None and creds.cert)}
            else:
                if self.credentials is not None:
                    raise UsageError("TLS and auth settings need --endpoints: the embedded etcd has neither")
                binary = resolve_etcd(self.etcd, self.etcd_bin)
                files, credentials = None, None
                if self.tls:  # removed after etcd has stopped (the stack unwinds in reverse)
                    pki = stack.enter_context(TemporaryPki())
                    files = TlsFiles(
                        pki.server_cert,
                        pki.server_key,
                        pki.ca,
                        client_cert=pki.client_cert,
                        client_key=pki.client_key,
                        peer=self.cluster_size > 1,
                    )
                    credentials = Credentials(pki.ca, pki.client_cert, pki.client_key)
                if self.cluster_size > 1:
                    cluster = self.cluster = stack.enter_context(
                        LocalCluster(binary, self.cluster_size, tls=files)
                    )
                    self.endpoint = Endpoint(tuple(cluster.client_urls), credentials)
                    self.info = {
                        "embedded": True,
                        "endpoints": cluster.client_urls,
                        "binary": binary,
                        "requested": self.etcd or None,
                        "args": shown_args(cluster.members[0].args),  # each member's: under `members`
                        "flag_notes": flag_notes(cluster.members[0].version),
                        "tls": _tls_info(files),
                    }
                    self._stack = stack.pop_all()
                    return self
                local = self.local = stack.enter_context(LocalEtcd(binary, tls=files))
                self.endpoint = Endpoint((local.client_url,), credentials)
                self.info = {
                    "embedded": True,
                    "endpoints": [local.client_url],
                    "binary": local.binary,
                    "requested": self.etcd or None,
                    "args": shown_args(local.args),
                    "flag_notes": flag_notes(local.version),
                    "tls": _tls_info(files),
                }
            self._stack = stack.pop_all()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with shielded():  # etcd stopped and its data dir removed, even with a second Ctrl-C
            self._stack.close()

    def etcd_info(self) -> EtcdInfo:
        """The etcd of the runs as the environment describes it, as it stands (a run adds to `info`:
        the server version, and the members of several endpoints)."""
        return EtcdInfo.from_dict(self.info)

    def results(self) -> ResultsFile:
        """A new, empty results document for runs on this target."""
        # which v3 client, whether the clients spoke TLS
        return new_results(environment(self.etcd_info(), **client_environment(self.endpoint)))

    def check(self, config: RunConfig) -> None:
        """Refuse what this target must not run, before anything starts: one line naming the flag.

        Needs no etcd: the CLI asks it of every run of a command before starting one.
        """
        external = bool(self.endpoints)
        if config.etcd and external:
            raise UsageError(f"--etcd: {config.etcd} chooses the embedded etcd; not with --endpoints")
        if not external and config.etcd != self.etcd:
            raise UsageError(
                f"--etcd: the run asks for etcd {config.etcd or '(default)'}, "
                f"this target starts {self.etcd or '(default)'}"
            )
        if config.tls and external:
            raise UsageError(_TLS_EXTERNAL)
        if not external and config.tls != self.tls:
            raise UsageError(
                f"--tls: the run asks for an etcd {'with' if config.tls else 'without'} TLS, "
                f"this target starts one {'with' if self.tls else 'without'}"
            )
        check_faults(
            [parse_fault(f) for f in config.faults],
            backend=config.backend,
            external=external,
            cluster=self.cluster_size > 1 and not external,
            allow_disruptive=self.allow_disruptive_faults,
        )
        if config.shards > 1:
            if not external:
                raise UsageError(
                    f"--shard: {config.shard}/{config.shards}: shards meet in the etcd they share; "
                    "give it with --endpoints (an embedded etcd is each process's own)"
                )
            resolve_run_id(self.run_id, config.shards)
        check_prefix(config.prefix, external=external, allow_registry=self.allow_registry_prefix)

    def run(self, config: RunConfig, progress: Progress | None = None) -> Run:
        """Measure one config. A run after which etcd cannot be reached is marked `incomplete`."""
        self.check(config)
        faults = [parse_fault(f) for f in config.faults]
        endpoint = self._through_network(config)  # every client of the run: writers, watchers, admin
        admin = make_admin(config.backend, endpoint)
        stack = contextlib.ExitStack()
        stack.callback(admin.close)
        with stack:
            admin.check()
            self.info["server_version"] = admin.server_version()
            if len(self.endpoint.urls) > 1 and "members" not in self.info:  # as at the first run
                self.info["members"] = self._members()
            etcd = self.etcd_record()
            own = None  # an embedded etcd is ours: its prefix is simply emptied
            if self.endpoints:
                own = OwnKeys(config)
                keys = make_admin(config.backend, self.endpoint)
                allowed = self.force or config.prefix in self._checked
                try:  # once a prefix was allowed, keys others write there later are no surprise
                    own.claim(keys, self.endpoints[0], beside_others=allowed)
                finally:
                    keys.close()
                self._checked.add(config.prefix)
            injector = None
            if faults:
                server = make_server_admin(endpoint)  # compaction and defragmentation act on etcd's store
                stack.callback(server.close)
                if self.cluster is not None:  # pause/restart/kill act on member 0
                    injector = FaultInjector(faults, self.cluster.members[0], server, self.cluster)
                else:
                    injector = FaultInjector(faults, self.local, server)
            barrier = None
            if config.shards > 1:
                run_id = resolve_run_id(self.run_id, config.shards)
                barrier = Barrier(endpoint, config.prefix, run_id, config.shard, config.shards, SHARD_WAIT_S)
                stack.callback(barrier.close)  # its meeting keys go on every way out
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
                    # etcd's own counters, asked of etcd itself (not through the delay proxy)
                    etcd_metrics=EtcdMetricsSampler(
                        self.endpoint.urls,
                        self.endpoint.credentials,
                        max(1.0, sampling_interval(config.warmup_s + config.duration_s)),
                    ),
                )
            except BaseException as exc:
                if isinstance(exc, Interrupted) and isinstance(exc.partial, Run):
                    if exc.partial.etcd_server is None:
                        exc.partial = replace(exc.partial, etcd_server=etcd)
                    if endpoint is not self.endpoint:
                        with shielded(), contextlib.suppress(Exception):
                            exc.partial = self._proxy().attach(config, exc.partial)
                # An interrupted embedded etcd is about to go anyway. A shard's own keys go too: the
                # other shards' books may see their deletes, but nothing of this run is left behind.
                gone = isinstance(exc, KeyboardInterrupt) and not self.endpoints
                if not gone:
                    with shielded(), contextlib.suppress(Exception):
                        self._clean(config, own)
                raise
            run = replace(run, etcd_server=etcd)  # `etcd` is etcd's own view (its /metrics)
            if endpoint is not self.endpoint:
                run = self._proxy().attach(config, run)
            after = self._reconnect(config, endpoint)  # a fault may have left the old connection backing off
            if isinstance(after, str):
                run = judged(
                    replace(run, incomplete=f"etcd could not be reached after the run: {after}"), config
                )
                return run  # nothing to clean up on an etcd that is gone
            after.close()
            try:
                if barrier is not None:
                    barrier.finish()  # no shard deletes a key while another's watcher still counts
            finally:
                with shielded():
                    self._clean(config, own)
            return run

    def etcd_record(self) -> EtcdServer:
        """Which etcd served a run, kept in the run itself: a matrix over `etcd` has several.

        requested: the run's etcd value or null, server_version, member_versions (one per endpoint),
        binary and flag_notes (embedded only)."""
        members = self.info.get("members")
        versions = [m.get("version") for m in members] if members else [self.info.get("server_version")]
        embedded = bool(self.info.get("embedded"))
        return EtcdServer(
            requested=self.etcd or None,
            server_version=self.info.get("server_version"),
            member_versions=versions,
            binary=self.info.get("binary") if embedded else None,
            flag_notes=self.info.get("flag_notes", []) if embedded else None,
        )

    def _clean(self, config: RunConfig, own: OwnKeys | None) -> None:
        """Remove what the run wrote: its own keys on a shared etcd (unless --keep), else the prefix."""
        if own is None:
            admin = make_admin(config.backend, self.endpoint)
            try:
                admin.delete_prefix(config.prefix)
                if config.background:
                    admin.delete_prefix(background_prefix(config))
            finally:
                admin.close()
        elif not self.keep:
            keys = make_admin(config.backend, self.endpoint)
            try:
                own.release(keys)
            finally:
                keys.close()

    def _members(self) -> list[dict[str, Any]]:
        """Who each endpoint is: `{url, version, member_id, is_leader}` (and `args` when embedded),
        asked of each alone (backends.members); one that does not answer has nulls and the `error`."""
        members = []
        for i, url in enumerate(self.endpoint.urls):
            member = describe_member(url, self.endpoint.credentials)
            if self.cluster is not None:
                member["args"] = shown_args(self.cluster.members[i].args)
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

    def _reconnect(self, config: RunConfig, endpoint: Endpoint, attempts: int = 20) -> Admin | str:
        """A fresh, checked connection, or why none could be made (tried for about 10 s)."""
        reason = ""
        for _ in range(attempts):
            backend = make_admin(config.backend, endpoint)
            try:
                backend.check()
                return backend
            except EtcdError as exc:
                backend.close()
                reason = str(exc)
                time.sleep(0.5)
        return reason


def shown_args(args: list[str]) -> list[str]:
    """etcd's command line as results keep it: the generated TLS files' paths (temporary, gone after
    the run, and one of them a private key's) replaced by what they are."""
    shown = list(args)
    for i, arg in enumerate(shown[:-1]):
        if arg.endswith(("-cert-file", "-key-file", "-ca-file")):
            shown[i + 1] = "(generated)"
    return shown


def _tls_info(files: TlsFiles | None) -> dict[str, Any] | None:
    """How the embedded etcd used TLS (None: plain HTTP); names no file (they are gone after the run)."""
    if files is None:
        return None
    return {
        "client_cert_auth": files.client_cert_auth,
        "peer_tls": files.peer,
        "certificates": "generated at start by etcdbench (ECDSA P-256, one CA), removed afterwards",
    }


def run_watch(
    config: RunConfig,
    *,
    endpoints: list[str] | None,
    etcd_bin: str | None,
    force: bool = False,
    keep: bool = False,
    save: Callable[[ResultsFile], None] | None = None,
    progress: Progress | None = None,
    credentials: Credentials | None = None,
    cluster_size: int = 1,
    allow_registry_prefix: bool = False,
    allow_disruptive_faults: bool = False,
    run_id: str | None = None,
) -> ResultsFile:
    """Run `config` once; `save` gets the results after the run (and is where files are written)."""
    target = Target(
        endpoints=endpoints,
        etcd_bin=etcd_bin,
        force=force,
        keep=keep,
        credentials=credentials,
        cluster_size=cluster_size,
        allow_registry_prefix=allow_registry_prefix,
        allow_disruptive_faults=allow_disruptive_faults,
        run_id=run_id,
        etcd=config.etcd,
        tls=config.tls,
    )
    target.check(config)  # before an embedded etcd is started
    with target:
        run = target.run(config, progress)
        results = replace(target.results(), runs=[run], complete=run.incomplete is None)
        if save:
            save(results)
        return results
