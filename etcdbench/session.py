"""Where runs happen: an etcd target (embedded or given) that outlives any number of runs.

`Target` starts or checks etcd once; each `run()` then measures one `RunConfig` on it and leaves the
prefix empty behind it, so runs in a matrix or a capacity search do not see each other's keys.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from types import TracebackType
from typing import Any

from etcdbench.backends import make_backend
from etcdbench.backends.base import Endpoint
from etcdbench.errors import UsageError
from etcdbench.etcd.local import LocalEtcd, find_etcd_binary
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

    def __enter__(self) -> Target:
        with self._stack as stack:
            if self.endpoints:
                self.endpoint = Endpoint(tuple(self.endpoints))
                self.info = {"embedded": False, "endpoints": list(self.endpoints)}
            else:
                local = stack.enter_context(LocalEtcd(find_etcd_binary(self.etcd_bin)))
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
        admin = make_backend(config.backend, self.endpoint, v2_watch=config.v2_watch)
        try:
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
            try:
                return run_once(config, self.endpoint, admin, self.etcd_pid, progress)
            finally:
                if not (self.keep and self.endpoints):
                    admin.delete_prefix(config.prefix)
        finally:
            admin.close()


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
        results["complete"] = True
        if save:
            save(results)
        return results
