"""Who object i is: its names, uids, IPs and times, each derived from the index alone.

No random state and no wall clock: the same index always gives the same strings, in every profile.
workload/preload.py makes values from these strings too (it swaps them into an encoded reference).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

# 5,000 nodes and 30 pods per node: the Kubernetes 1.6 scalability envelope (150,000 pods).
NODE_COUNT = 5000
NAMESPACE_COUNT = 10
PODS_PER_REPLICASET = 30

EPOCH = datetime(2017, 3, 30, tzinfo=UTC)
# Kubernetes' name-suffix alphabet (no vowels, no confusable digits).
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
POD_SUFFIXES = len(_SUFFIX_ALPHABET) ** 5  # pods named with a 5-character suffix


def timestamp(seconds: int) -> str:
    """RFC3339 in UTC with second precision, the way metav1.Time marshals."""
    return (EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def uid(*parts: object) -> str:
    """A stable UUID-shaped uid (version 4 layout) derived from parts."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def hex_id(length: int, *parts: object) -> str:
    """length hex digits derived from parts (container IDs, machine IDs, hashes)."""
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:length]


def suffix(n: int, width: int) -> str:
    """n written in Kubernetes' suffix alphabet, fixed width: distinct n give distinct suffixes."""
    base = len(_SUFFIX_ALPHABET)
    chars = []
    for _ in range(width):
        n, r = divmod(n, base)
        chars.append(_SUFFIX_ALPHABET[r])
    return "".join(reversed(chars))


def namespace(index: int) -> str:
    """Namespace of pod (and event) index: a ReplicaSet's pods share its namespace."""
    return f"team-{index // PODS_PER_REPLICASET % NAMESPACE_COUNT:02d}"


def node_name(index: int) -> str:
    return f"node-{index:05d}"


def replicaset(index: int) -> tuple[str, str]:
    """(deployment name, pod-template-hash) of the ReplicaSet that owns pod index."""
    rs = index // PODS_PER_REPLICASET
    return f"web-{rs:04d}", suffix(int(hex_id(15, "replicaset", rs), 16), 10)


def pod_name(index: int) -> str:
    deployment, template_hash = replicaset(index)
    if index >= POD_SUFFIXES:  # beyond 14 million pods: longer, still unique
        return f"{deployment}-{template_hash}-{suffix(index, 7)}"
    # Multiplying by a number coprime to 27**5 permutes the 5-char suffixes: unique, random-looking.
    return f"{deployment}-{template_hash}-{suffix((index * 7_368_787 + 1_234_567) % POD_SUFFIXES, 5)}"


def event_name(index: int) -> str:
    # Kubernetes names events <object>.<hex nanoseconds>.
    return f"{pod_name(index)}.{0x14B0E1C6A3F00000 + index * 1_000_003:x}"


def ip(prefix: str, n: int) -> str:
    return f"{prefix}.{(n >> 8) & 0xFF}.{n & 0xFF}"
