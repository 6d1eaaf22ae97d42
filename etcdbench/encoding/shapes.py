"""The k8s-1.6 size profile: one fixed shape per kind, the Pod, Node and Event of a 2017 cluster.

Kept byte-identical across versions so that results stay comparable (tests/unit/test_sizes.py holds
their digests; docs/methodology.md, "Objects and their sizes", their sizes and contents). The objects
carry no stamp: objects.build_object adds it.
"""

from __future__ import annotations

import hashlib
from typing import Any

from etcdbench.encoding.managed_fields import field_set, managed_entry
from etcdbench.encoding.naming import (
    NODE_COUNT,
    event_name,
    hex_id,
    ip,
    namespace,
    node_name,
    pod_name,
    replicaset,
    suffix,
    timestamp,
    uid,
)

# ---------------------------------------------------------------------------------------- Pod

POD_IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.39"
SIDECAR_IMAGE = "docker.io/envoyproxy/envoy:v1.28.0"


def container_spec(
    cname: str, img: str, port_name: str, port: int, cpu: str, mem: str, token_volume: str
) -> dict[str, Any]:
    """A container of the Pod (the app, its proxy, and in the modern profile its sidecars)."""
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


def container_status(index: int, cname: str, img: str, started: int) -> dict[str, Any]:
    """The kubelet's status of a running container."""
    digest = hashlib.sha256(img.encode()).hexdigest()
    return {
        "name": cname,
        "state": {"running": {"startedAt": timestamp(started)}},
        "lastState": {},
        "ready": True,
        "restartCount": 0,
        "image": img,
        "imageID": f"{img.split(':')[0]}@sha256:{digest}",
        "containerID": f"containerd://{hex_id(64, 'container', index, cname)}",
        "started": True,
    }


def build_pod(index: int) -> dict[str, Any]:
    """A running Pod of a ReplicaSet: two containers, three volumes, two managers."""
    ns, name = namespace(index), pod_name(index)
    deployment, template_hash = replicaset(index)
    rs_name = f"{deployment}-{template_hash}"
    node_index = index % NODE_COUNT
    node = node_name(node_index)
    created = index
    token_volume = f"kube-api-access-{suffix(int(hex_id(8, 'token', index), 16), 5)}"
    app_labels = {"app": deployment, "pod-template-hash": template_hash, "tier": "frontend"}
    image, sidecar_image = POD_IMAGE, SIDECAR_IMAGE

    container_fields = [
        'f:env|k:{"name":"POD_NAME"}|f:valueFrom|f:fieldRef',
        "f:image",
        "f:name",
        "f:resources|f:limits|f:cpu",
        'f:volumeMounts|k:{"mountPath":"/etc/web"}|f:name',
    ]
    spec_fields = field_set(
        "f:metadata|f:generateName",
        "f:metadata|f:labels|.",
        "f:metadata|f:labels|f:app",
        "f:metadata|f:labels|f:pod-template-hash",
        "f:metadata|f:labels|f:tier",
        "f:metadata|f:ownerReferences|.",
        'f:metadata|f:ownerReferences|k:{"uid":"' + uid("replicaset", rs_name) + '"}',
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
    status_fields = field_set(
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
        'f:status|f:podIPs|k:{"ip":"' + ip("10.244", index) + '"}',
        "f:status|f:startTime",
    )

    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "generateName": f"{rs_name}-",
            "namespace": ns,
            "uid": uid("pod", index),
            "creationTimestamp": timestamp(created),
            "labels": dict(app_labels),
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9102"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": rs_name,
                    "uid": uid("replicaset", rs_name),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
            "managedFields": [
                managed_entry("kube-controller-manager", timestamp(created), spec_fields),
                managed_entry("kubelet", timestamp(created + 4), status_fields, subresource="status"),
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
                container_spec("app", image, "http", 8080, "100m", "256Mi", token_volume),
                container_spec("proxy", sidecar_image, "admin", 9901, "50m", "128Mi", token_volume),
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
                {"type": cond, "status": "True", "lastTransitionTime": timestamp(created + delay)}
                for cond, delay in (
                    ("Initialized", 1),
                    ("Ready", 4),
                    ("ContainersReady", 4),
                    ("PodScheduled", 0),
                )
            ],
            "hostIP": ip("10.128", node_index),
            "podIP": ip("10.244", index),
            "podIPs": [{"ip": ip("10.244", index)}],
            "startTime": timestamp(created + 1),
            "containerStatuses": [
                container_status(index, "app", image, created + 3),
                container_status(index, "proxy", sidecar_image, created + 3),
            ],
            "qosClass": "Burstable",
        },
    }


# ---------------------------------------------------------------------------------------- Node

NODE_IMAGES = (
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


def build_node(index: int) -> dict[str, Any]:
    """A ready Node: four conditions, capacity and allocatable, 20 cached images."""
    name = node_name(index)
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
            "lastHeartbeatTime": timestamp(heartbeat),
            "lastTransitionTime": timestamp(created + 10),
            "reason": reason,
            "message": message,
        }

    metadata_fields = field_set(
        *(f"f:metadata|f:labels|f:{k}" for k in labels),
        "f:metadata|f:annotations|f:volumes.kubernetes.io/controller-managed-attach-detach",
    )
    status_fields = field_set(
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
            "uid": uid("node", index),
            "creationTimestamp": timestamp(created),
            "labels": labels,
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
            "managedFields": [
                managed_entry("kubelet", timestamp(created), metadata_fields),
                managed_entry("kubelet", timestamp(heartbeat), status_fields, subresource="status"),
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
                {"type": "InternalIP", "address": ip("10.128", index)},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": hex_id(32, "machine", index),
                "systemUUID": uid("system", index),
                "bootID": uid("boot", index),
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
                for img, size in NODE_IMAGES
            ],
        },
    }


# ---------------------------------------------------------------------------------------- Event


def build_event(index: int) -> dict[str, Any]:
    """The kubelet's "Started container app" Event of pod index."""
    ns, pod = namespace(index), pod_name(index)
    node = node_name(index % NODE_COUNT)
    when = timestamp(index + 3)
    return {
        "kind": "Event",
        "apiVersion": "v1",
        "metadata": {
            "name": event_name(index),
            "namespace": ns,
            "uid": uid("event", index),
            "creationTimestamp": when,
            "annotations": {},  # the stamp's alone (objects.build_object adds it)
            "managedFields": [
                managed_entry(
                    "kubelet",
                    when,
                    field_set(
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
                )
            ],
        },
        "involvedObject": {
            "kind": "Pod",
            "namespace": ns,
            "name": pod,
            "uid": uid("pod", index),
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
