"""A benchmark session: get an etcd (embedded or given), run, save, clean up — whatever happens."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from etcdbench.backends import make_backend
from etcdbench.backends.base import Endpoint
from etcdbench.errors import UsageError
from etcdbench.etcd.local import LocalEtcd, find_etcd_binary
from etcdbench.results.io import environment, new_results, write_atomic
from etcdbench.scenario import RunConfig
from etcdbench.workload.runner import Progress, run_once


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
    with contextlib.ExitStack() as stack:
        if endpoints:
            endpoint = Endpoint(tuple(endpoints))
            etcd_info: dict[str, Any] = {"embedded": False, "endpoints": list(endpoints)}
            etcd_pid = None
        else:
            local = stack.enter_context(LocalEtcd(find_etcd_binary(etcd_bin)))
            endpoint = Endpoint((local.client_url,))
            etcd_info = {
                "embedded": True,
                "endpoints": [local.client_url],
                "binary": local.binary,
                "args": local.args,
            }
            etcd_pid = local.pid

        admin = make_backend(config.backend, endpoint, v2_watch=config.v2_watch)
        stack.callback(admin.close)
        admin.check()
        etcd_info["server_version"] = admin.server_version()
        if endpoints:
            existing = admin.count_prefix(config.prefix)
            if existing and not force:
                raise UsageError(
                    f"--prefix: {config.prefix} already holds {existing} keys on {endpoints[0]}; "
                    "etcdbench would overwrite and delete them (--force allows it; or pick another --prefix)"
                )
            if not keep:
                stack.callback(admin.delete_prefix, config.prefix)

        results = new_results(environment(etcd=etcd_info))
        start_revision = admin.current_revision() + 1
        run = run_once(config, endpoint, start_revision, etcd_pid=etcd_pid, progress=progress)
        results["runs"].append(run)
        results["complete"] = True
        if save:
            save(results)
        return results


def saver(output: Path) -> Callable[[dict[str, Any]], None]:
    return lambda results: write_atomic(output, results)
