"""The modern size profile: the k8s-1.6 objects grown the way production objects grow.

Each object's size is drawn per index (docs/methodology.md, "Objects and their sizes", has the
distributions and the sizes they give); the random source is SHA-256 of (kind, index, counter), so an
index always gives the same object.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Iterator, Sequence
from statistics import NormalDist
from typing import Any, TypeVar

from etcdbench.encoding import shapes
from etcdbench.encoding.managed_fields import field_set, managed_entry
from etcdbench.encoding.naming import PODS_PER_REPLICASET, hex_id, ip, timestamp
from etcdbench.encoding.shapes import (
    NODE_IMAGES,
    POD_IMAGE,
    SIDECAR_IMAGE,
    container_spec,
    container_status,
)

_NORMAL = NormalDist()
_T = TypeVar("_T")


class _Draws:
    """Deterministic draws for one object: SHA-256 of (seed, counter) in counter mode.

    No random-module state and no clock: the same seed always gives the same sequence."""

    def __init__(self, *seed: object) -> None:
        self._seed = "/".join(map(str, seed))
        self._counter = 0
        self._pool = b""

    def uniform(self) -> float:
        """A number in the open interval (0, 1)."""
        if len(self._pool) < 7:
            self._pool += hashlib.sha256(f"{self._seed}#{self._counter}".encode()).digest()
            self._counter += 1
        chunk, self._pool = self._pool[:7], self._pool[7:]
        return (int.from_bytes(chunk, "big") + 0.5) / 2**56

    def integer(self, low: int, high: int) -> int:
        """Uniform over low..high, both included."""
        return low + int(self.uniform() * (high - low + 1))

    def lognormal(self, median: float, sigma: float, low: int, high: int) -> int:
        """round(median * e**(sigma * Z)), Z standard normal, clipped to low..high."""
        return min(high, max(low, round(median * math.exp(sigma * _NORMAL.inv_cdf(self.uniform())))))

    def choice(self, options: Sequence[_T]) -> _T:
        return options[int(self.uniform() * len(options))]


# Sidecars a modern Pod adds to app + proxy: (name, image, port name, port, cpu request, memory limit).
_SIDECARS = (
    ("log-shipper", "cr.fluentbit.io/fluent/fluent-bit:2.2.0", "http-metrics", 2020, "20m", "128Mi"),
    ("vault-agent", "docker.io/hashicorp/vault:1.15.2", "vault", 8200, "10m", "64Mi"),
    (
        "cloud-sql-proxy",
        "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0",
        "postgres",
        5432,
        "50m",
        "256Mi",
    ),
)
_SIDECAR_COUNTS = (0, 0, 0, 0, 0, 1, 1, 1, 2, 3)  # drawn uniformly: 2-5 containers
_CONFIG_VOLUMES = ("settings", "feature-flags", "templates", "logging")
# Env var j of a container is <prefix>_<setting>[_<n>]; a value template per setting.
_ENV_PREFIXES: tuple[str, ...] = ("DB", "CACHE", "KAFKA", "OTEL", "AUTH", "S3", "HTTP", "GRPC")
_ENV_PREFIXES += ("LOG", "METRICS", "FEATURE", "SEARCH", "MAIL", "PAYMENTS", "SESSION", "QUEUE")
_ENV_SETTINGS = (
    ("HOST", "{p}.{ns}.svc.cluster.local"),
    ("PORT", "{port}"),
    ("URL", "https://{p}.{ns}.svc.cluster.local:8443/api/v2"),
    ("TIMEOUT_MS", "{n}"),
    ("ENABLED", "true"),
    ("LOG_LEVEL", "info"),
    ("POOL_SIZE", "{small}"),
    ("MAX_RETRIES", "{small}"),
    ("REGION", "europe-west1"),
    ("BUCKET", "etcdbench-{p}-{ns}"),
    ("USER", "svc-{p}"),
    ("TLS_CA_FILE", "/etc/settings/{p}-ca.crt"),
    ("CONNECT_TIMEOUT", "{n}ms"),
    ("SAMPLING_RATIO", "0.{small}"),
)
_ENV_NAMES = len(_ENV_PREFIXES) * len(_ENV_SETTINGS)


def _env(draws: _Draws, ns: str, count: int) -> list[dict[str, Any]]:
    """count distinct application env vars, starting at a drawn position in the name table."""
    start = draws.integer(0, _ENV_NAMES - 1)
    env = []
    for j in range(start, start + count):
        prefix = _ENV_PREFIXES[j % len(_ENV_PREFIXES)]
        setting, template = _ENV_SETTINGS[j // len(_ENV_PREFIXES) % len(_ENV_SETTINGS)]
        name = f"{prefix}_{setting}" + (f"_{j // _ENV_NAMES}" if j >= _ENV_NAMES else "")
        n = draws.integer(1, 9999)
        value = template.format(p=prefix.lower(), ns=ns, port=1024 + n, n=n, small=n % 64 + 1)
        env.append({"name": name, "value": value})
    return env


def _container_fields(container: dict[str, Any]) -> Iterator[str]:
    """The managedFields paths of one container: its scalar fields, each env var, port and mount."""
    yield from (
        ".",
        "f:image",
        "f:imagePullPolicy",
        "f:name",
        "f:resources|f:limits",
        "f:resources|f:requests",
    )
    for e in container["env"]:
        env = f'f:env|k:{{"name":"{e["name"]}"}}'
        yield from (f"{env}|.", f"{env}|f:name", f"{env}|f:value" if "value" in e else f"{env}|f:valueFrom")
    for p in container["ports"]:
        port = f'f:ports|k:{{"containerPort":{p["containerPort"]},"protocol":"TCP"}}'
        yield from (f"{port}|.", f"{port}|f:containerPort", f"{port}|f:name", f"{port}|f:protocol")
    for m in container["volumeMounts"]:
        mount = f'f:volumeMounts|k:{{"mountPath":"{m["mountPath"]}"}}'
        yield from (f"{mount}|.", f"{mount}|f:mountPath", f"{mount}|f:name")


def build_pod(index: int) -> dict[str, Any]:
    """The 2017 Pod grown the way production Pods grow: sidecars, env vars, volumes, labels, managers
    and a kubectl last-applied-configuration annotation that repeats the applied spec as a JSON string."""
    draws = _Draws("pod", index)
    outlier = draws.uniform() < 0.01
    pod = shapes.build_pod(index)
    meta, spec, status = pod["metadata"], pod["spec"], pod["status"]
    ns, created = meta["namespace"], index
    deployment = meta["labels"]["app"]
    token_volume = spec["volumes"][2]["name"]
    containers = spec["containers"]
    for cname, image, port_name, port, cpu, mem in _SIDECARS[: draws.choice(_SIDECAR_COUNTS)]:
        containers.append(container_spec(cname, image, port_name, port, cpu, mem, token_volume))
        status["containerStatuses"].append(container_status(index, cname, image, created + 3))
    for volume in _CONFIG_VOLUMES[: draws.integer(0, len(_CONFIG_VOLUMES))]:
        cm = {
            "name": f"{deployment}-{volume}",
            "items": [{"key": f"{volume}.yaml", "path": f"{volume}.yaml"}],
        }
        spec["volumes"].append({"name": volume, "configMap": {**cm, "defaultMode": 420}})
        containers[0]["volumeMounts"].append(
            {"name": volume, "readOnly": True, "mountPath": f"/etc/{volume}"}
        )
    # The app carries most settings; 1% of Pods carry hundreds (the ~70 KB outliers).
    app_env = draws.integer(280, 340) if outlier else draws.lognormal(8, 0.5, 5, 40)
    containers[0]["env"] += _env(draws, ns, app_env)
    for container in containers[1:]:
        container["env"] += _env(draws, ns, draws.integer(1, 4))

    meta["labels"].update(
        {
            "app.kubernetes.io/name": deployment,
            "app.kubernetes.io/instance": f"{deployment}-{ns}",
            "app.kubernetes.io/version": f"1.{index // PODS_PER_REPLICASET % 40}.0",
            "app.kubernetes.io/component": "server",
            "app.kubernetes.io/part-of": "storefront",
            "app.kubernetes.io/managed-by": "Helm",
            "helm.sh/chart": f"{deployment}-1.4.2",
            "environment": "production",
        }
    )
    user_annotations = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9102",
        "checksum/config": hex_id(64, "config", deployment),
        "kubectl.kubernetes.io/default-container": "app",
        "cluster-autoscaler.kubernetes.io/safe-to-evict": "true",
    }
    applied = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "annotations": user_annotations,
            "labels": meta["labels"],
            "name": meta["name"],
            "namespace": ns,
        },
        "spec": {
            "containers": [
                {
                    **{k: c[k] for k in ("env", "image", "name", "ports", "resources")},
                    "volumeMounts": [m for m in c["volumeMounts"] if m["name"] != token_volume],
                }
                for c in containers
            ],
            "volumes": [v for v in spec["volumes"] if v["name"] != token_volume],
        },
    }
    last_applied = json.dumps(applied, separators=(",", ":"), sort_keys=True) + "\n"
    meta["annotations"].update(user_annotations)
    meta["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = last_applied

    # The controller's entry also owns what the grown spec added; kubectl and the scheduler add theirs.
    field_set(
        *(f"f:metadata|f:labels|f:{k}" for k in meta["labels"]),
        *(f"f:metadata|f:annotations|f:{k}" for k in user_annotations),
        *(f'f:spec|f:volumes|k:{{"name":"{v["name"]}"}}|.' for v in spec["volumes"]),
        *(
            f'f:spec|f:containers|k:{{"name":"{c["name"]}"}}|{path}'
            for c in containers
            for path in _container_fields(c)
        ),
        into=meta["managedFields"][0]["fieldsV1"],
    )
    meta["managedFields"] += [
        managed_entry(
            "kubectl-client-side-apply",
            timestamp(created),
            field_set(
                "f:metadata|f:annotations|.",
                "f:metadata|f:annotations|f:kubectl.kubernetes.io/last-applied-configuration",
            ),
        ),
        managed_entry(
            "kube-scheduler",
            timestamp(created),
            field_set(
                "f:status|f:conditions|.",
                'f:status|f:conditions|k:{"type":"PodScheduled"}|.',
                'f:status|f:conditions|k:{"type":"PodScheduled"}|f:lastProbeTime',
                'f:status|f:conditions|k:{"type":"PodScheduled"}|f:lastTransitionTime',
                'f:status|f:conditions|k:{"type":"PodScheduled"}|f:status',
            ),
            subresource="status",
        ),
    ]
    return pod


_IMAGE_POOL_SIZE = 1009  # prime: any stride in 1..1008 visits distinct images
_REGISTRIES = (
    "123456789012.dkr.ecr.us-east-1.amazonaws.com",
    "europe-west1-docker.pkg.dev/etcdbench-prod/services",
    "ghcr.io/etcdbench",
    "quay.io/etcdbench",
    "registry.gitlab.com/etcdbench/platform",
    "docker.io/etcdbench",
)
_SERVICE_WORDS = ("cart", "checkout", "search", "catalog", "billing", "auth", "gateway", "ledger", "media")
_ROLE_WORDS = ("api", "worker", "consumer", "migrations", "cron", "indexer", "frontend", "exporter")


@functools.cache
def _image_pool() -> tuple[tuple[tuple[str, ...], int], ...]:
    """(names, sizeBytes) of the images a cluster's Nodes have pulled: the 2017 Node's 20, then
    generated ones named by digest and by 0-2 tags (digest only when pulled by digest)."""
    pool: list[tuple[tuple[str, ...], int]] = [
        ((f"{img.split(':')[0]}@sha256:{hashlib.sha256(img.encode()).hexdigest()}", img), size)
        for img, size in NODE_IMAGES
    ]
    for i in range(len(pool), _IMAGE_POOL_SIZE):
        draws = _Draws("image", i)
        service = draws.choice(_SERVICE_WORDS)
        repo = f"{draws.choice(_REGISTRIES)}/{service}/{service}-{draws.choice(_ROLE_WORDS)}"
        version = f"v{draws.integer(0, 4)}.{draws.integer(0, 40)}.{draws.integer(0, 20)}"
        tags = (f"{repo}:{version}", f"{repo}:{version}-{hex_id(7, 'commit', i)}")
        names = (f"{repo}@sha256:{hex_id(64, 'image', i)}", *tags[: draws.choice((0, 1, 1, 1, 2, 2))])
        pool.append((names, draws.lognormal(80_000_000, 1.0, 1_000_000, 2_000_000_000)))
    return tuple(pool)


def build_node(index: int) -> dict[str, Any]:
    """The 2017 Node with a drawn number of cached images (10-600, lognormal, median 55), largest
    first as the kubelet reports them: the images list is what makes big Nodes big."""
    draws = _Draws("node", index)
    node = shapes.build_node(index)
    pool = _image_pool()
    count = draws.lognormal(55, 0.9, 10, 600)
    start, stride = draws.integer(0, _IMAGE_POOL_SIZE - 1), draws.integer(1, _IMAGE_POOL_SIZE - 1)
    picked = sorted(
        (pool[(start + k * stride) % _IMAGE_POOL_SIZE] for k in range(count)), key=lambda p: -p[1]
    )
    node["status"]["images"] = [{"names": list(names), "sizeBytes": size} for names, size in picked]
    return node


# Kubelet events: (reason, type, message template); drawn uniformly, so 7 of 11 are Normal.
_EVENT_TEMPLATES = (
    ("Pulling", "Normal", 'Pulling image "{image}"'),
    ("Pulled", "Normal", 'Successfully pulled image "{image}" in {ms}ms. Image size: {size} bytes.'),
    ("Pulled", "Normal", 'Container image "{image}" already present on machine'),
    ("Created", "Normal", "Created container {container}"),
    ("Started", "Normal", "Started container {container}"),
    ("Killing", "Normal", "Stopping container {container}"),
    ("SandboxChanged", "Normal", "Pod sandbox changed, it will be killed and re-created."),
    ("Unhealthy", "Warning", "Readiness probe failed: {probe_output}"),
    ("BackOff", "Warning", "Back-off restarting failed container {container} in pod {pod}_{ns}({uid})"),
    ("FailedMount", "Warning", 'MountVolume.SetUp failed for volume "settings" : configmap "{cm}" not found'),
    (
        "FailedCreatePodSandBox",
        "Warning",
        "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup network for sandbox "
        '"{sandbox}": plugin type="calico" failed (add): error getting ClusterInformation: Get '
        '"https://10.96.0.1:443/apis/crd.projectcalico.org/v1/clusterinformations/default": '
        "dial tcp 10.96.0.1:443: i/o timeout",
    ),
)
_CONTAINER_IMAGES = {"app": POD_IMAGE, "proxy": SIDECAR_IMAGE}
# A failing exec readiness probe prints one line per failed dependency: 1-8 lines.
_PROBE_DEPENDENCIES = ("postgres", "redis", "kafka", "payments-api", "search", "s3", "vault", "smtp")
_PROBE_LINE = "check {dep}: FAILED (dial tcp {ip}:{port}: connect: connection refused)\n"


def build_event(index: int) -> dict[str, Any]:
    """The 2017 Event with a drawn kubelet reason and message (20-700 characters); Warnings repeat."""
    draws = _Draws("event", index)
    event = shapes.build_event(index)
    involved = event["involvedObject"]
    container = draws.choice(tuple(_CONTAINER_IMAGES))
    reason, event_type, template = draws.choice(_EVENT_TEMPLATES)
    dependencies = _PROBE_DEPENDENCIES[: draws.integer(1, len(_PROBE_DEPENDENCIES))]
    probe_ip = ip("10.96", draws.integer(0, 65535))
    message = template.format(
        image=_CONTAINER_IMAGES[container],
        ms=draws.integer(200, 9000),
        size=draws.integer(10**6, 10**8),
        container=container,
        probe_output="".join(
            _PROBE_LINE.format(dep=dep, ip=probe_ip, port=5432 + k) for k, dep in enumerate(dependencies)
        ),
        pod=involved["name"],
        ns=involved["namespace"],
        uid=involved["uid"],
        cm=f"{involved['name'].rsplit('-', 2)[0]}-settings",
        sandbox=hex_id(64, "sandbox", index),
    )
    count = draws.lognormal(4, 1.2, 1, 5000) if event_type == "Warning" else 1
    event.update(
        reason=reason,
        message=message,
        type=event_type,
        count=count,
        lastTimestamp=timestamp(index + 3 + (count - 1) * 17),
    )
    if reason.startswith(("Failed", "Sandbox")):
        del involved["fieldPath"]  # about the Pod, not one of its containers
    else:
        involved["fieldPath"] = f"spec.containers{{{container}}}"
    return event
