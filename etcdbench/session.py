"""Where runs happen: an etcd target (embedded or given) that outlives any number of runs.

`Target` starts or checks etcd once; each `run()` then measures one `RunConfig` on it and leaves the
prefix empty behind it, so runs in a matrix or a capacity search do not see each other's keys.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from etcdbench.backends import make_backend
from etcdbench.backends.base import Backend, Endpoint
from etcdbench.backends.v3 import V3Backend
from etcdbench.errors import EtcdError, UsageError
from etcdbench.etcd.local import LocalEtcd, find_etcd_binary
from etcdbench.faults import NEEDS_LOCAL, FaultInjector, parse_fault
from etcdbench.results.io import environment, new_results
from etcdbench.scenario import RunConfig
from etcdbench.workload.runner import Progress, run_once


class Target:
    """An etcd to run against: started here when `endpoints` is empty, else the given cluster."""

    def __init__(
        self,
        *,
        endpoints: list[str] | None,
        etcd_bin: str | None = None,
        force: bool = False,
        keep: bool = False,
    ) -> None:
        self.endpoints = endpoints
        self.etcd_bin = etcd_bin
        self.force = force
        self.keep = keep
        self._stack = contextlib.ExitStack()
        self.endpoint = Endpoint(())
        self.etcd_pid: int | None = None
        self.info: dict[str, Any] = {}
        self._checked: set[str] = set()
        self.local: LocalEtcd | None = None

    def __enter__(self) -> Target:
        with self._stack as stack:
            if self.endpoints:
                self.endpoint = Endpoint(tuple(self.endpoints))
                self.info = {"embedded": False, "endpoints": list(self.endpoints)}
            else:
                local = self.local = stack.enter_context(LocalEtcd(find_etcd_binary(self.etcd_bin)))
                self.endpoint = Endpoint((local.client_url,))
                self.etcd_pid = local.pid
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
        self._stack.close()

    def results(self) -> dict[str, Any]:
        """A new, empty results document for runs on this target."""
        return new_results(environment(etcd=self.info))

    def run(self, config: RunConfig, progress: Progress | None = None) -> dict[str, Any]:
        """Measure one config. A run after which etcd cannot be reached is marked `incomplete`."""
        faults = [parse_fault(f) for f in config.faults]
        for f in faults:
            if f.kind in NEEDS_LOCAL and self.local is None:
                raise UsageError(f"--fault {f}: needs the embedded etcd, not --endpoints")
        admin = make_backend(config.backend, self.endpoint, v2_watch=config.v2_watch)
        stack = contextlib.ExitStack()
        stack.callback(admin.close)
        with stack:
            admin.check()
            self.info["server_version"] = admin.server_version()
            if config.prefix not in self._checked:  # our own leftovers from an earlier run are fine
                existing = admin.count_prefix(config.prefix)
                if existing and self.endpoints and not self.force:
                    raise UsageError(
                        f"--prefix: {config.prefix} already holds {existing} keys on {self.endpoints[0]}: "
                        "etcdbench would overwrite and delete them (--force allows it)"
                    )
                self._checked.add(config.prefix)
            injector = None
            if faults:
                v3 = V3Backend(self.endpoint)  # compaction and defragmentation are v3 calls
                stack.callback(v3.close)
                injector = FaultInjector(faults, self.local, v3)
            try:
                run = run_once(config, self.endpoint, admin, self.etcd_pid, progress, injector)
            except BaseException:
                if not (self.keep and self.endpoints):
                    with contextlib.suppress(Exception):
                        admin.delete_prefix(config.prefix)
                raise
            after = self._reconnect(config)  # a fault may have left the old connection backing off
            if isinstance(after, str):
                run["incomplete"] = f"etcd could not be reached after the run: {after}"
                return run  # nothing to clean up on an etcd that is gone
            try:
                if not (self.keep and self.endpoints):
                    after.delete_prefix(config.prefix)
            finally:
                after.close()
            return run

    def _reconnect(self, config: RunConfig, attempts: int = 10) -> Backend | str:
        """A fresh, checked connection, or why none could be made (tried for about 5 s)."""
        reason = ""
        for _ in range(attempts):
            backend = make_backend(config.backend, self.endpoint, v2_watch=config.v2_watch)
            try:
                backend.check()
                return backend
            except EtcdError as exc:
                backend.close()
                reason = str(exc)
                time.sleep(0.5)
        return reason


def run_watch(
    config: RunConfig,
    *,
    endpoints: list[str] | None,
    etcd_bin: str | None,
    force: bool = False,
    keep: bool = False,
    save: Callable[[dict[str, Any]], None] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run `config` once; `save` gets the results after the run (and is where files are written)."""
    with Target(endpoints=endpoints, etcd_bin=etcd_bin, force=force, keep=keep) as target:
        run = target.run(config, progress)
        results = target.results()
        results["runs"].append(run)
        results["complete"] = "incomplete" not in run
        if save:
            save(results)
        return results
