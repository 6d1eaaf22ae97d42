"""Kubernetes-shaped objects to store in etcd: Pods, Nodes and Events as a kube-apiserver stores them.

Each object is a valid core/v1 API object in its JSON form (``kind`` and ``apiVersion`` set, no
``resourceVersion``, which the apiserver never writes to etcd), built deterministically from
``(kind, index, profile)``: no random state and no wall clock, so two runs store byte-identical values.

Two size profiles (SIZE_PROFILES):

- ``k8s-1.6`` (the default): one fixed shape per kind, sized as below. Kept byte-identical so that
  results stay comparable across versions.
- ``modern``: sizes drawn per index from the distributions below; the random source is SHA-256 of
  ``(kind, index, counter)``, so an index always gives the same object.

``k8s-1.6`` sizes (index 0; other indexes differ by a few bytes), JSON including the trailing
newline / protobuf with the ``k8s\\0`` envelope:

- Pod: 5,989 / 3,630 bytes. Two containers, three volumes (ConfigMap, the projected service-account
  token volume Kubernetes injects, emptyDir), two managedFields entries, running status. The 2017
  scalability envelope assumed 4 KB per Pod; modern Pods average 10-20 KB.
- Node: 6,954 / 5,327 bytes. Four conditions, 20 cached images (digest and tag names), capacity and
  allocatable. A real Node stored by Kubernetes was 5,508 bytes in protobuf; Nodes with long image
  lists reach 130-180 KB.
- Event: 1,108 / 659 bytes.

``modern`` draws (sizes measured over indexes 0-1,999, JSON p50 / p90 / p99 / max):

- Pod: app + proxy + 0-3 sidecars (2-5 containers; 50/30/10/10 %), 0-4 extra ConfigMap volumes, app
  env vars lognormal (median 8, sigma 0.5, 5-40) plus 1-4 in every other container, eight more
  labels, four managers in managedFields, and a ``kubectl.kubernetes.io/last-applied-configuration``
  annotation repeating the applied spec as a JSON string. 1 % of Pods are outliers whose app has
  280-340 env vars. JSON 15.5 / 21 / 25 / 77 KB (outliers 61-81 KB over 10,000); protobuf ~25 % smaller.
- Node: the kubelet's image list, 10-600 images (lognormal, median 55, sigma 0.9), each named by
  digest and 0-2 tags, from a cluster-wide pool of 1,009 images. JSON 16 / 46 / 107 / 146 KB, minimum
  5.3 KB. (A kubelet reports at most 50 images by default, its nodeStatusMaxImages; Nodes of
  130-180 KB come from clusters that raised or disabled that cap.)
- Event: a kubelet reason drawn from 11 (7 Normal, short messages; 4 Warning with longer ones, such
  as a failing exec probe's 1-8 output lines, and repeat counts). JSON 1.1-1.8 KB.

Kubernetes' Go marshaller also writes zero-valued non-pointer fields (empty strings, false) that these
objects simply leave out, so a real protobuf value with the same content is slightly larger.

Every object carries the annotation ``STAMP_ANNOTATION: STAMP_PLACEHOLDER``. Writers encode an object
once and then, per write, replace the placeholder bytes with a fresh stamp of exactly
``STAMP_WIDTH`` printable ASCII characters (no ``"`` or ``\\``): the width is fixed so protobuf length
prefixes stay valid and JSON needs no escaping.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from statistics import NormalDist
from typing import Any, TypeVar

KINDS = ("pod", "node", "event")
SIZE_PROFILES = ("k8s-1.6", "modern")
STAMP_ANNOTATION = "etcdbench.io/stamp"
STAMP_WIDTH = 38
STAMP_PLACEHOLDER = "?" * STAMP_WIDTH  # replaced byte-for-byte per write by the writers

# 5,000 nodes and 30 pods per node: the Kubernetes 1.6 scalability envelope (150,000 pods).
NODE_COUNT = 5000
NAMESPACE_COUNT = 10
PODS_PER_REPLICASET = 30

_EPOCH = datetime(2017, 3, 30, tzinfo=UTC)
_RESOURCES = {"pod": "pods", "node": "minions", "event": "events"}
# Kubernetes' name-suffix alphabet (no vowels, no confusable digits).
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def resource_of(kind: str) -> str:
    """The etcd resource directory of a kind; Nodes live under /registry/minions for historical reasons."""
    try:
        return _RESOURCES[kind]
    except KeyError:
        raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}") from None


def object_key(kind: str, index: int) -> str:
    """Key under the /registry/ prefix: pods/<ns>/<name>, minions/<name> or events/<ns>/<name>."""
    resource = resource_of(kind)
    if kind == "node":
        return f"{resource}/{_node_name(index)}"
    if kind == "pod":
        return f"{resource}/{_namespace(index)}/{_pod_name(index)}"
    return f"{resource}/{_namespace(index)}/{_event_name(index)}"


def size_profile_of(profile: str) -> str:
    """The profile itself if it is one of SIZE_PROFILES; otherwise ValueError naming the choices."""
    if profile not in SIZE_PROFILES:
        raise ValueError(f"unknown size profile {profile!r}; choose one of {', '.join(SIZE_PROFILES)}")
    return profile


def build_object(kind: str, index: int, profile: str = "k8s-1.6") -> dict[str, Any]:
    """A fresh, deterministic object of the kind for index (a new dict each call: safe to mutate).

    profile "k8s-1.6" gives the fixed-shape objects (the default, byte-identical across versions);
    "modern" gives objects whose size is drawn per index from the distributions documented above."""
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    resource_of(kind)  # validates kind
    modern = size_profile_of(profile) == "modern"
    if kind == "pod":
        return _modern_pod(index) if modern else _pod(index)
    if kind == "node":
        return _modern_node(index) if modern else _node(index)
    return _modern_event(index) if modern else _event(index)


# ---------------------------------------------------------------------------------------- helpers


def _ts(seconds: int) -> str:
    """RFC3339 in UTC with second precision, the way metav1.Time marshals."""
    return (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _uid(*parts: object) -> str:
    """A stable UUID-shaped uid (version 4 layout) derived from parts."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def _hex(length: int, *parts: object) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:length]


def _suffix(n: int, width: int) -> str:
    """n written in Kubernetes' suffix alphabet, fixed width: distinct n give distinct suffixes."""
    base = len(_SUFFIX_ALPHABET)
    chars = []
    for _ in range(width):
        n, r = divmod(n, base)
        chars.append(_SUFFIX_ALPHABET[r])
    return "".join(reversed(chars))


def _namespace(index: int) -> str:
    """Namespace of pod (and event) index: a ReplicaSet's pods share its namespace."""
    return f"team-{index // PODS_PER_REPLICASET % NAMESPACE_COUNT:02d}"


def _node_name(index: int) -> str:
    return f"node-{index:05d}"


def _replicaset(index: int) -> tuple[str, str]:
    """(deployment name, pod-template-hash) of the ReplicaSet that owns pod index."""
    rs = index // PODS_PER_REPLICASET
    return f"web-{rs:04d}", _suffix(int(_hex(15, "replicaset", rs), 16), 10)


_POD_SUFFIXES = len(_SUFFIX_ALPHABET) ** 5


def _pod_name(index: int) -> str:
    deployment, template_hash = _replicaset(index)
    if index < _POD_SUFFIXES:
        # Multiplying by a number coprime to 27**5 permutes the 5-char suffixes: unique, random-looking.
        suffix = _suffix((index * 7_368_787 + 1_234_567) % _POD_SUFFIXES, 5)
    else:
        suffix = _suffix(index, 7)  # beyond 14 million pods: longer, still unique
    return f"{deployment}-{template_hash}-{suffix}"


def _event_name(index: int) -> str:
    # Kubernetes names events <object>.<hex nanoseconds>.
    return f"{_pod_name(index)}.{0x14B0E1C6A3F00000 + index * 1_000_003:x}"


def _ip(prefix: str, n: int) -> str:
    return f"{prefix}.{(n >> 8) & 0xFF}.{n & 0xFF}"


def _fields(*paths: str) -> dict[str, Any]:
    """A server-side-apply field set: each dotted path "f:a.f:b" becomes nested {"f:a": {"f:b": {}}}.

    Segments are split on "|" so that keys containing dots (labels, annotations) stay intact."""
    root: dict[str, Any] = {}
    for path in paths:
        node = root
        for seg in path.split("|"):
            node = node.setdefault(seg, {})
    return root


# ---------------------------------------------------------------------------------------- Pod


_POD_IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.39"
_SIDECAR_IMAGE = "docker.io/envoyproxy/envoy:v1.28.0"


def _container(
    cname: str, img: str, port_name: str, port: int, cpu: str, mem: str, token_volume: str
) -> dict[str, Any]:
    env: list[dict[str, Any]] = [
        {
            "name": "POD_NAME",
            "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
        },
        {"name": "LISTEN_PORT", "value": str(port)},
    ]
    return {
        "name": cname,
        "image": img,
        "ports": [{"name": port_name, "containerPort": port, "protocol": "TCP"}],
        "env": env,
        "resources": {
            "limits": {"cpu": "500m", "memory": mem},
            "requests": {"cpu": cpu, "memory": "64Mi"},
        },
        "volumeMounts": [
            {"name": "config", "readOnly": True, "mountPath": "/etc/web"},
            {"name": "cache", "mountPath": "/var/cache/web"},
            {
                "name": token_volume,
                "readOnly": True,
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
            },
        ],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    }


def _container_status(index: int, cname: str, img: str, started: int) -> dict[str, Any]:
    digest = hashlib.sha256(img.encode()).hexdigest()
    return {
        "name": cname,
        "state": {"running": {"startedAt": _ts(started)}},
        "lastState": {},
        "ready": True,
        "restartCount": 0,
        "image": img,
        "imageID": f"{img.split(':')[0]}@sha256:{digest}",
        "containerID": f"containerd://{_hex(64, 'container', index, cname)}",
        "started": True,
    }


def _pod(index: int) -> dict[str, Any]:
    ns, name = _namespace(index), _pod_name(index)
    deployment, template_hash = _replicaset(index)
    rs_name = f"{deployment}-{template_hash}"
    node_index = index % NODE_COUNT
    node = _node_name(node_index)
    created = index
    token_volume = f"kube-api-access-{_suffix(int(_hex(8, 'token', index), 16), 5)}"
    app_labels = {"app": deployment, "pod-template-hash": template_hash, "tier": "frontend"}
    image, sidecar_image = _POD_IMAGE, _SIDECAR_IMAGE

    container_fields = [
        'f:env|k:{"name":"POD_NAME"}|f:valueFrom|f:fieldRef',
        "f:image",
        "f:name",
        "f:resources|f:limits|f:cpu",
        'f:volumeMounts|k:{"mountPath":"/etc/web"}|f:name',
    ]
    spec_fields = _fields(
        "f:metadata|f:generateName",
        "f:metadata|f:labels|.",
        "f:metadata|f:labels|f:app",
        "f:metadata|f:labels|f:pod-template-hash",
        "f:metadata|f:labels|f:tier",
        "f:metadata|f:ownerReferences|.",
        'f:metadata|f:ownerReferences|k:{"uid":"' + _uid("replicaset", rs_name) + '"}',
        *(f'f:spec|f:containers|k:{{"name":"app"}}|{p}' for p in container_fields),
        *(f'f:spec|f:containers|k:{{"name":"proxy"}}|{p}' for p in container_fields),
        "f:spec|f:dnsPolicy",
        "f:spec|f:enableServiceLinks",
        "f:spec|f:restartPolicy",
        "f:spec|f:schedulerName",
        "f:spec|f:securityContext",
        "f:spec|f:terminationGracePeriodSeconds",
        "f:spec|f:volumes|.",
        'f:spec|f:volumes|k:{"name":"cache"}|f:emptyDir',
        'f:spec|f:volumes|k:{"name":"config"}|f:configMap|f:defaultMode',
        'f:spec|f:volumes|k:{"name":"config"}|f:configMap|f:name',
    )
    status_fields = _fields(
        'f:status|f:conditions|k:{"type":"ContainersReady"}|.',
        'f:status|f:conditions|k:{"type":"ContainersReady"}|f:lastTransitionTime',
        'f:status|f:conditions|k:{"type":"ContainersReady"}|f:status',
        'f:status|f:conditions|k:{"type":"Initialized"}|.',
        'f:status|f:conditions|k:{"type":"Ready"}|.',
        'f:status|f:conditions|k:{"type":"Ready"}|f:status',
        "f:status|f:containerStatuses",
        "f:status|f:hostIP",
        "f:status|f:phase",
        "f:status|f:podIP",
        "f:status|f:podIPs|.",
        'f:status|f:podIPs|k:{"ip":"' + _ip("10.244", index) + '"}',
        "f:status|f:startTime",
    )

    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "generateName": f"{rs_name}-",
            "namespace": ns,
            "uid": _uid("pod", index),
            "creationTimestamp": _ts(created),
            "labels": dict(app_labels),
            "annotations": {
                STAMP_ANNOTATION: STAMP_PLACEHOLDER,
                "prometheus.io/scrape": "true",
                "prometheus.io/port": "9102",
            },
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": rs_name,
                    "uid": _uid("replicaset", rs_name),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
            "managedFields": [
                {
                    "manager": "kube-controller-manager",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": _ts(created),
                    "fieldsType": "FieldsV1",
                    "fieldsV1": spec_fields,
                },
                {
                    "manager": "kubelet",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": _ts(created + 4),
                    "fieldsType": "FieldsV1",
                    "fieldsV1": status_fields,
                    "subresource": "status",
                },
            ],
        },
        "spec": {
            "volumes": [
                {"name": "config", "configMap": {"name": f"{deployment}-config", "defaultMode": 420}},
                {"name": "cache", "emptyDir": {}},
                {
                    "name": token_volume,
                    "projected": {
                        "sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                            {
                                "configMap": {
                                    "name": "kube-root-ca.crt",
                                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                                }
                            },
                            {
                                "downwardAPI": {
                                    "items": [
                                        {
                                            "path": "namespace",
                                            "fieldRef": {
                                                "apiVersion": "v1",
                                                "fieldPath": "metadata.namespace",
                                            },
                                        }
                                    ]
                                }
                            },
                        ],
                        "defaultMode": 420,
                    },
                },
            ],
            "containers": [
                _container("app", image, "http", 8080, "100m", "256Mi", token_volume),
                _container("proxy", sidecar_image, "admin", 9901, "50m", "128Mi", token_volume),
            ],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "serviceAccount": "default",
            "nodeName": node,
            "securityContext": {},
            "schedulerName": "default-scheduler",
            "tolerations": [
                {
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
                {
                    "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
            ],
            "priority": 0,
            "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
        },
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": cond, "status": "True", "lastTransitionTime": _ts(created + delay)}
                for cond, delay in (
                    ("Initialized", 1),
                    ("Ready", 4),
                    ("ContainersReady", 4),
                    ("PodScheduled", 0),
                )
            ],
            "hostIP": _ip("10.128", node_index),
            "podIP": _ip("10.244", index),
            "podIPs": [{"ip": _ip("10.244", index)}],
            "startTime": _ts(created + 1),
            "containerStatuses": [
                _container_status(index, "app", image, created + 3),
                _container_status(index, "proxy", sidecar_image, created + 3),
            ],
            "qosClass": "Burstable",
        },
    }


# ---------------------------------------------------------------------------------------- Node

_NODE_IMAGES = (
    ("registry.k8s.io/etcd:3.5.1-0", 98_888_614),
    ("registry.k8s.io/kube-apiserver:v1.23.1", 32_598_656),
    ("registry.k8s.io/kube-controller-manager:v1.23.1", 30_168_986),
    ("registry.k8s.io/kube-proxy:v1.23.1", 39_272_869),
    ("registry.k8s.io/kube-scheduler:v1.23.1", 15_130_925),
    ("registry.k8s.io/coredns/coredns:v1.8.6", 13_585_107),
    ("registry.k8s.io/pause:3.6", 301_773),
    ("registry.k8s.io/metrics-server/metrics-server:v0.5.2", 25_778_102),
    ("registry.k8s.io/ingress-nginx/controller:v1.1.0", 104_097_336),
    ("registry.k8s.io/e2e-test-images/agnhost:2.39", 51_105_200),
    ("docker.io/envoyproxy/envoy:v1.28.0", 60_251_043),
    ("docker.io/calico/node:v3.21.2", 74_389_010),
    ("docker.io/calico/cni:v3.21.2", 81_092_104),
    ("docker.io/calico/kube-controllers:v3.21.2", 54_687_223),
    ("docker.io/library/nginx:1.21.4", 56_733_981),
    ("docker.io/library/redis:6.2.6", 40_264_512),
    ("docker.io/library/postgres:14.1", 130_719_480),
    ("quay.io/prometheus/node-exporter:v1.3.1", 10_347_719),
    ("quay.io/prometheus/prometheus:v2.32.1", 81_652_014),
    ("quay.io/jetstack/cert-manager-controller:v1.6.1", 17_924_325),
)


def _node(index: int) -> dict[str, Any]:
    name = _node_name(index)
    created = index
    heartbeat = created + 3600
    zone = f"zone-{'abc'[index % 3]}"
    capacity = {
        "cpu": "8",
        "ephemeral-storage": "101445540Ki",
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
        "memory": "32880300Ki",
        "pods": "110",
    }
    allocatable = dict(capacity, cpu="7910m", memory="29647532Ki", **{"ephemeral-storage": "93492209510"})
    labels = {
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "node.kubernetes.io/instance-type": "n2-standard-8",
        "topology.kubernetes.io/region": "region-1",
        "topology.kubernetes.io/zone": zone,
    }

    def condition(ctype: str, status: str, reason: str, message: str) -> dict[str, Any]:
        return {
            "type": ctype,
            "status": status,
            "lastHeartbeatTime": _ts(heartbeat),
            "lastTransitionTime": _ts(created + 10),
            "reason": reason,
            "message": message,
        }

    status_fields = _fields(
        *(
            f'f:status|f:conditions|k:{{"type":"{t}"}}|f:lastHeartbeatTime'
            for t in ("DiskPressure", "MemoryPressure", "PIDPressure", "Ready")
        ),
        "f:status|f:images",
        "f:status|f:nodeInfo|f:bootID",
    )
    return {
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "uid": _uid("node", index),
            "creationTimestamp": _ts(created),
            "labels": labels,
            "annotations": {
                STAMP_ANNOTATION: STAMP_PLACEHOLDER,
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
            "managedFields": [
                {
                    "manager": "kubelet",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": _ts(created),
                    "fieldsType": "FieldsV1",
                    "fieldsV1": _fields(
                        *(f"f:metadata|f:labels|f:{k}" for k in labels),
                        "f:metadata|f:annotations|f:volumes.kubernetes.io/controller-managed-attach-detach",
                    ),
                },
                {
                    "manager": "kubelet",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": _ts(heartbeat),
                    "fieldsType": "FieldsV1",
                    "fieldsV1": status_fields,
                    "subresource": "status",
                },
            ],
        },
        "spec": {
            "podCIDR": f"10.244.{index % 256}.0/24",
            "providerID": f"gce://etcdbench/{zone}/{name}",
            "podCIDRs": [f"10.244.{index % 256}.0/24"],
        },
        "status": {
            "capacity": capacity,
            "allocatable": allocatable,
            "conditions": [
                condition(
                    "MemoryPressure",
                    "False",
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                ),
                condition(
                    "DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"
                ),
                condition(
                    "PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"
                ),
                condition(
                    "Ready", "True", "KubeletReady", "kubelet is posting ready status. AppArmor enabled"
                ),
            ],
            "addresses": [
                {"type": "InternalIP", "address": _ip("10.128", index)},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": _hex(32, "machine", index),
                "systemUUID": _uid("system", index),
                "bootID": _uid("boot", index),
                "kernelVersion": "5.10.0-10-amd64",
                "osImage": "Debian GNU/Linux 11 (bullseye)",
                "containerRuntimeVersion": "containerd://1.4.12",
                "kubeletVersion": "v1.23.1",
                "kubeProxyVersion": "v1.23.1",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
            "images": [
                {
                    "names": [
                        f"{img.split(':')[0]}@sha256:{hashlib.sha256(img.encode()).hexdigest()}",
                        img,
                    ],
                    "sizeBytes": size,
                }
                for img, size in _NODE_IMAGES
            ],
        },
    }


# ---------------------------------------------------------------------------------------- Event


def _event(index: int) -> dict[str, Any]:
    ns, pod = _namespace(index), _pod_name(index)
    node = _node_name(index % NODE_COUNT)
    when = _ts(index + 3)
    return {
        "kind": "Event",
        "apiVersion": "v1",
        "metadata": {
            "name": _event_name(index),
            "namespace": ns,
            "uid": _uid("event", index),
            "creationTimestamp": when,
            "annotations": {STAMP_ANNOTATION: STAMP_PLACEHOLDER},
            "managedFields": [
                {
                    "manager": "kubelet",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": when,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": _fields(
                        "f:count",
                        "f:firstTimestamp",
                        "f:involvedObject",
                        "f:lastTimestamp",
                        "f:message",
                        "f:reason",
                        "f:reportingComponent",
                        "f:reportingInstance",
                        "f:source|f:component",
                        "f:source|f:host",
                        "f:type",
                    ),
                }
            ],
        },
        "involvedObject": {
            "kind": "Pod",
            "namespace": ns,
            "name": pod,
            "uid": _uid("pod", index),
            "apiVersion": "v1",
            "fieldPath": "spec.containers{app}",
        },
        "reason": "Started",
        "message": "Started container app",
        "source": {"component": "kubelet", "host": node},
        "firstTimestamp": when,
        "lastTimestamp": when,
        "count": 1,
        "type": "Normal",
        "reportingComponent": "kubelet",
        "reportingInstance": node,
    }


# ---------------------------------------------------------------------------------------- modern profile

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


def _container_fields(container: dict[str, Any]) -> dict[str, Any]:
    """The managedFields field set of one container: scalar fields, each env var, port and mount."""
    return {
        ".": {},
        "f:image": {},
        "f:imagePullPolicy": {},
        "f:name": {},
        "f:resources": {"f:limits": {}, "f:requests": {}},
        "f:env": {
            f'k:{{"name":"{e["name"]}"}}': {
                ".": {},
                "f:name": {},
                "f:value" if "value" in e else "f:valueFrom": {},
            }
            for e in container["env"]
        },
        "f:ports": {
            f'k:{{"containerPort":{p["containerPort"]},"protocol":"TCP"}}': {
                ".": {},
                "f:containerPort": {},
                "f:name": {},
                "f:protocol": {},
            }
            for p in container["ports"]
        },
        "f:volumeMounts": {
            f'k:{{"mountPath":"{m["mountPath"]}"}}': {".": {}, "f:mountPath": {}, "f:name": {}}
            for m in container["volumeMounts"]
        },
    }


def _merge_fields(root: dict[str, Any], fields: dict[str, Any]) -> None:
    """Adds a field set to root, in place."""
    for key, value in fields.items():
        if key in root:
            _merge_fields(root[key], value)
        else:
            root[key] = value


def _modern_pod(index: int) -> dict[str, Any]:
    """The 2017 Pod grown the way production Pods grow: sidecars, env vars, volumes, labels, managers
    and a kubectl last-applied-configuration annotation that repeats the applied spec as a JSON string."""
    draws = _Draws("pod", index)
    outlier = draws.uniform() < 0.01
    pod = _pod(index)
    meta, spec, status = pod["metadata"], pod["spec"], pod["status"]
    ns, created = meta["namespace"], index
    deployment = meta["labels"]["app"]
    token_volume = spec["volumes"][2]["name"]
    containers = spec["containers"]
    for cname, image, port_name, port, cpu, mem in _SIDECARS[: draws.choice(_SIDECAR_COUNTS)]:
        containers.append(_container(cname, image, port_name, port, cpu, mem, token_volume))
        status["containerStatuses"].append(_container_status(index, cname, image, created + 3))
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
        "checksum/config": _hex(64, "config", deployment),
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

    controller = meta["managedFields"][0]["fieldsV1"]
    _merge_fields(
        controller,
        _fields(
            *(f"f:metadata|f:labels|f:{k}" for k in meta["labels"]),
            *(f"f:metadata|f:annotations|f:{k}" for k in user_annotations),
            *(f'f:spec|f:volumes|k:{{"name":"{v["name"]}"}}|.' for v in spec["volumes"]),
        ),
    )
    for container in containers:
        key = f'k:{{"name":"{container["name"]}"}}'
        _merge_fields(controller, {"f:spec": {"f:containers": {key: _container_fields(container)}}})
    meta["managedFields"] += [
        {
            "manager": "kubectl-client-side-apply",
            "operation": "Update",
            "apiVersion": "v1",
            "time": _ts(created),
            "fieldsType": "FieldsV1",
            "fieldsV1": _fields(
                "f:metadata|f:annotations|.",
                "f:metadata|f:annotations|f:kubectl.kubernetes.io/last-applied-configuration",
            ),
        },
        {
            "manager": "kube-scheduler",
            "operation": "Update",
            "apiVersion": "v1",
            "time": _ts(created),
            "fieldsType": "FieldsV1",
            "fieldsV1": _fields(
                "f:status|f:conditions|.",
                'f:status|f:conditions|k:{"type":"PodScheduled"}|.',
                'f:status|f:conditions|k:{"type":"PodScheduled"}|f:lastProbeTime',
                'f:status|f:conditions|k:{"type":"PodScheduled"}|f:lastTransitionTime',
                'f:status|f:conditions|k:{"type":"PodScheduled"}|f:status',
            ),
            "subresource": "status",
        },
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
        for img, size in _NODE_IMAGES
    ]
    for i in range(len(pool), _IMAGE_POOL_SIZE):
        draws = _Draws("image", i)
        service = draws.choice(_SERVICE_WORDS)
        repo = f"{draws.choice(_REGISTRIES)}/{service}/{service}-{draws.choice(_ROLE_WORDS)}"
        version = f"v{draws.integer(0, 4)}.{draws.integer(0, 40)}.{draws.integer(0, 20)}"
        tags = (f"{repo}:{version}", f"{repo}:{version}-{_hex(7, 'commit', i)}")
        names = (f"{repo}@sha256:{_hex(64, 'image', i)}", *tags[: draws.choice((0, 1, 1, 1, 2, 2))])
        pool.append((names, draws.lognormal(80_000_000, 1.0, 1_000_000, 2_000_000_000)))
    return tuple(pool)


def _modern_node(index: int) -> dict[str, Any]:
    """The 2017 Node with a drawn number of cached images (10-600, lognormal, median 55), largest
    first as the kubelet reports them: the images list is what makes big Nodes big."""
    draws = _Draws("node", index)
    node = _node(index)
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
_CONTAINER_IMAGES = {"app": _POD_IMAGE, "proxy": _SIDECAR_IMAGE}
# A failing exec readiness probe prints one line per failed dependency: 1-8 lines.
_PROBE_DEPENDENCIES = ("postgres", "redis", "kafka", "payments-api", "search", "s3", "vault", "smtp")
_PROBE_LINE = "check {dep}: FAILED (dial tcp {ip}:{port}: connect: connection refused)\n"


def _modern_event(index: int) -> dict[str, Any]:
    """The 2017 Event with a drawn kubelet reason and message (20-700 characters); Warnings repeat."""
    draws = _Draws("event", index)
    event = _event(index)
    involved = event["involvedObject"]
    container = draws.choice(tuple(_CONTAINER_IMAGES))
    reason, event_type, template = draws.choice(_EVENT_TEMPLATES)
    dependencies = _PROBE_DEPENDENCIES[: draws.integer(1, len(_PROBE_DEPENDENCIES))]
    ip = _ip("10.96", draws.integer(0, 65535))
    message = template.format(
        image=_CONTAINER_IMAGES[container],
        ms=draws.integer(200, 9000),
        size=draws.integer(10**6, 10**8),
        container=container,
        probe_output="".join(
            _PROBE_LINE.format(dep=dep, ip=ip, port=5432 + k) for k, dep in enumerate(dependencies)
        ),
        pod=involved["name"],
        ns=involved["namespace"],
        uid=involved["uid"],
        cm=f"{involved['name'].rsplit('-', 2)[0]}-settings",
        sandbox=_hex(64, "sandbox", index),
    )
    count = draws.lognormal(4, 1.2, 1, 5000) if event_type == "Warning" else 1
    event.update(
        reason=reason,
        message=message,
        type=event_type,
        count=count,
        lastTimestamp=_ts(index + 3 + (count - 1) * 17),
    )
    if reason.startswith(("Failed", "Sandbox")):
        del involved["fieldPath"]  # about the Pod, not one of its containers
    else:
        involved["fieldPath"] = f"spec.containers{{{container}}}"
    return event
