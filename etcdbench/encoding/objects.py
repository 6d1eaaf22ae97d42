"""Kubernetes-shaped objects to store in etcd: Pods, Nodes and Events as a kube-apiserver stores them.

Each object is a valid core/v1 API object in its JSON form (``kind`` and ``apiVersion`` set, no
``resourceVersion``, which the apiserver never writes to etcd), built deterministically from
``(kind, index)``: no randomness and no wall clock, so two runs store byte-identical values.

Sizes (index 0; other indexes differ by a few bytes), JSON including the trailing newline / protobuf
with the ``k8s\\0`` envelope:

- Pod: 5,989 / 3,630 bytes. Two containers, three volumes (ConfigMap, the projected service-account
  token volume Kubernetes injects, emptyDir), two managedFields entries, running status. The 2017
  scalability envelope assumed 4 KB per Pod; modern Pods average 10-20 KB.
- Node: 6,954 / 5,327 bytes. Four conditions, 20 cached images (digest and tag names), capacity and
  allocatable. A real Node stored by Kubernetes was 5,508 bytes in protobuf; Nodes with long image
  lists reach 130-180 KB.
- Event: 1,108 / 659 bytes.

Kubernetes' Go marshaller also writes zero-valued non-pointer fields (empty strings, false) that these
objects simply leave out, so a real protobuf value with the same content is slightly larger.

Every object carries the annotation ``STAMP_ANNOTATION: STAMP_PLACEHOLDER``. Writers encode an object
once and then, per write, replace the placeholder bytes with a fresh stamp of exactly
``STAMP_WIDTH`` printable ASCII characters (no ``"`` or ``\\``): the width is fixed so protobuf length
prefixes stay valid and JSON needs no escaping.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

KINDS = ("pod", "node", "event")
STAMP_ANNOTATION = "etcdbench.io/stamp"
STAMP_WIDTH = 38
STAMP_PLACEHOLDER = "?" * STAMP_WIDTH  # replaced byte-for-byte per write by the writers

# 5,000 nodes and 30 pods per node: the Kubernetes 1.6 scalability envelope (150,000 pods).
NODE_COUNT = 5000
NAMESPACE_COUNT = 10
PODS_PER_REPLICASET = 30

_EPOCH = datetime(2017, 3, 30, tzinfo=timezone.utc)
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


def build_object(kind: str, index: int) -> dict[str, Any]:
    """A fresh, deterministic object of the kind for index (a new dict each call: safe to mutate)."""
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    resource_of(kind)  # validates kind
    if kind == "pod":
        return _pod(index)
    if kind == "node":
        return _node(index)
    return _event(index)


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


def _pod(index: int) -> dict[str, Any]:
    ns, name = _namespace(index), _pod_name(index)
    deployment, template_hash = _replicaset(index)
    rs_name = f"{deployment}-{template_hash}"
    node_index = index % NODE_COUNT
    node = _node_name(node_index)
    created = index
    token_volume = f"kube-api-access-{_suffix(int(_hex(8, 'token', index), 16), 5)}"
    app_labels = {"app": deployment, "pod-template-hash": template_hash, "tier": "frontend"}
    image = "registry.k8s.io/e2e-test-images/agnhost:2.39"
    sidecar_image = "docker.io/envoyproxy/envoy:v1.28.0"

    def container(cname: str, img: str, port_name: str, port: int, cpu: str, mem: str) -> dict[str, Any]:
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

    def container_status(cname: str, img: str, started: int) -> dict[str, Any]:
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
                container("app", image, "http", 8080, "100m", "256Mi"),
                container("proxy", sidecar_image, "admin", 9901, "50m", "128Mi"),
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
                container_status("app", image, created + 3),
                container_status("proxy", sidecar_image, created + 3),
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
