"""Kubernetes-shaped objects to store in etcd: Pods, Nodes and Events as a kube-apiserver stores them.

Each object is a valid core/v1 API object in its JSON form (``kind`` and ``apiVersion`` set, no
``resourceVersion``, which the apiserver never writes to etcd), built deterministically from
``(kind, index, profile)``: no random state and no wall clock, so two runs store byte-identical values.
Its size profile (SIZE_PROFILES) is ``k8s-1.6``, one fixed shape per kind (encoding.shapes), or
``modern``, sizes drawn per index (encoding.modern); docs/methodology.md, "Objects and their sizes",
says what each holds and how large it is.

Every object carries the annotation ``STAMP_ANNOTATION: STAMP_PLACEHOLDER``, first among its
annotations. Writers encode an object once and then, per write, replace the placeholder bytes with a
fresh stamp of exactly ``STAMP_WIDTH`` printable ASCII characters (no ``"`` or ``\\``): the width is
fixed so protobuf length prefixes stay valid and JSON needs no escaping.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from etcdbench.config.run import KINDS, SIZE_PROFILES
from etcdbench.encoding import modern, shapes
from etcdbench.encoding.naming import event_name, namespace, node_name, pod_name

STAMP_ANNOTATION = "etcdbench.io/stamp"
STAMP_WIDTH = 38
STAMP_PLACEHOLDER = "?" * STAMP_WIDTH  # replaced byte-for-byte per write by the writers

_RESOURCES = {"pod": "pods", "node": "minions", "event": "events"}
_BUILDERS: dict[str, dict[str, Callable[[int], dict[str, Any]]]] = {
    "k8s-1.6": {"pod": shapes.build_pod, "node": shapes.build_node, "event": shapes.build_event},
    "modern": {"pod": modern.build_pod, "node": modern.build_node, "event": modern.build_event},
}


def resource_of(kind: str) -> str:
    """The etcd resource directory of a kind; Nodes live under /registry/minions for historical reasons."""
    try:
        return _RESOURCES[kind]
    except KeyError:
        raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}") from None


def resource_prefix(prefix: str, kind: str) -> str:
    """The directory of a kind's objects under `prefix` ('/registry/minions/'): what the measured
    watcher watches and relists, as the kube-apiserver's cacher watches one resource type."""
    return f"{prefix}{resource_of(kind)}/"


def object_key(kind: str, index: int) -> str:
    """Key under the /registry/ prefix: pods/<ns>/<name>, minions/<name> or events/<ns>/<name>."""
    resource = resource_of(kind)
    if kind == "node":
        return f"{resource}/{node_name(index)}"
    if kind == "pod":
        return f"{resource}/{namespace(index)}/{pod_name(index)}"
    return f"{resource}/{namespace(index)}/{event_name(index)}"


def size_profile_of(profile: str) -> str:
    """The profile itself if it is one of SIZE_PROFILES; otherwise ValueError naming the choices."""
    if profile not in SIZE_PROFILES:
        raise ValueError(f"unknown size profile {profile!r}; choose one of {', '.join(SIZE_PROFILES)}")
    return profile


def build_object(kind: str, index: int, profile: str = "k8s-1.6") -> dict[str, Any]:
    """A fresh, deterministic, stamped object of the kind for index (a new dict each call: safe to mutate).

    profile "k8s-1.6" gives the fixed-shape objects (the default, byte-identical across versions);
    "modern" gives objects whose size is drawn per index."""
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    resource_of(kind)  # validates kind
    obj = _BUILDERS[size_profile_of(profile)][kind](index)
    meta = obj["metadata"]
    meta["annotations"] = {STAMP_ANNOTATION: STAMP_PLACEHOLDER, **meta["annotations"]}
    return obj
