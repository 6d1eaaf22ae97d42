"""The standing state's values, made at etcd's speed and byte-identical to the builder's.

Building and encoding one object costs 0.2-2 ms of Python (encoding/objects.py, then the codec), about
a hundred times what storing it costs: the preload of 155,000 keys was bound by it. But a ``k8s-1.6``
object of index i differs from the object of index r only in a few index-derived strings ("atoms":
its names, uids, IPs, timestamps, container IDs), and two indexes whose atoms have the same lengths
encode to values of the same layout (protobuf length prefixes included). So a value is made from an
encoded reference of its class by replacing the reference's atoms with its own, which costs a few
microseconds.

Exactness is checked, not assumed: the second index seen of each class is also built the slow way and
compared, and so is one index in every VERIFY_EVERY; a class that fails its first check is built the
slow way from then on, and a later mismatch raises (a preload failure, never a wrong value stored
silently). Objects of the ``modern`` profile, whose shape varies per index, are always built the slow
way. tests/test_preload.py compares the two ways over wide index ranges of every kind and encoding.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable

from etcdbench.encoding import naming
from etcdbench.encoding.codec import Codec
from etcdbench.encoding.objects import build_object

VERIFY_EVERY = 512  # one value in this many is also built the slow way and compared

_EPOCH_S = int(naming.EPOCH.timestamp())


class TemplateMismatch(RuntimeError):
    """A value made from a template differed from the builder's: nothing more may be stored."""


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _uid(*parts: object) -> str:
    """naming.uid without the uuid module: the same string (v4 layout of SHA-256's first 16 bytes)."""
    b = bytearray(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:16])
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@functools.lru_cache(maxsize=64)
def _day(day: int) -> str:
    return naming.timestamp(day * 86400)[:11]


def _ts(seconds: int) -> str:
    """naming.timestamp, the date cached by day."""
    day, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    return f"{_day(day)}{hours:02d}:{rest // 60:02d}:{rest % 60:02d}Z"


@functools.lru_cache(maxsize=64)
def _replicaset(rs: int) -> tuple[str, str, str, str]:
    """(deployment, template hash, ReplicaSet name, its uid) of ReplicaSet rs (30 pods share one)."""
    deployment, template_hash = naming.replicaset(rs * naming.PODS_PER_REPLICASET)
    name = f"{deployment}-{template_hash}"
    return deployment, template_hash, name, _uid("replicaset", name)


def _pod_name(index: int) -> tuple[str, ...]:
    """naming.pod_name, and the ReplicaSet's (deployment, hash, name, uid) it is made of."""
    rs = _replicaset(index // naming.PODS_PER_REPLICASET)
    if index < naming.POD_SUFFIXES:
        suffix = naming.suffix((index * 7_368_787 + 1_234_567) % naming.POD_SUFFIXES, 5)
    else:
        suffix = naming.suffix(index, 7)
    return (f"{rs[2]}-{suffix}", *rs)


def _times(*seconds: int) -> list[bytes]:
    """Each time as its JSON string and as protobuf's Time{seconds} (tag 0x08 + varint)."""
    out: list[bytes] = []
    for s in seconds:
        out.append(_ts(s).encode())
        out.append(b"\x08" + _varint(_EPOCH_S + s))
    return out


def _pod_atoms(index: int) -> list[bytes]:
    name, deployment, template_hash, rs_name, rs_uid = _pod_name(index)
    node_index = index % naming.NODE_COUNT
    text = [
        name,
        rs_name,
        deployment,
        template_hash,
        naming.namespace(index),
        _uid("pod", index),
        rs_uid,
        naming.node_name(node_index),
        f"kube-api-access-{naming.suffix(int(naming.hex_id(8, 'token', index), 16), 5)}",
        naming.ip("10.244", index),
        naming.ip("10.128", node_index),
        naming.hex_id(64, "container", index, "app"),
        naming.hex_id(64, "container", index, "proxy"),
    ]
    return [t.encode() for t in text] + _times(index, index + 1, index + 3, index + 4)


def _node_atoms(index: int) -> list[bytes]:
    text = [
        naming.node_name(index),
        f"zone-{'abc'[index % 3]}",
        _uid("node", index),
        f"10.244.{index % 256}.0/24",
        naming.ip("10.128", index),
        naming.hex_id(32, "machine", index),
        _uid("system", index),
        _uid("boot", index),
    ]
    return [t.encode() for t in text] + _times(index, index + 10, index + 3600)


def _event_atoms(index: int) -> list[bytes]:
    pod = _pod_name(index)[0]
    text = [
        f"{pod}.{0x14B0E1C6A3F00000 + index * 1_000_003:x}",
        pod,
        naming.namespace(index),
        _uid("event", index),
        _uid("pod", index),
        naming.node_name(index % naming.NODE_COUNT),
    ]
    return [t.encode() for t in text] + _times(index + 3)


_ATOMS: dict[str, Callable[[int], list[bytes]]] = {
    "pod": _pod_atoms,
    "node": _node_atoms,
    "event": _event_atoms,
}


class _Template:
    """A reference value and its atoms: makes the value of any index of the same class."""

    def __init__(self, value: bytes, atoms: list[bytes]) -> None:
        self.value = value
        # Longest first: an atom that contains another (a pod's name contains its ReplicaSet's) wins.
        order = sorted(set(atoms), key=len, reverse=True)
        pattern = re.compile(b"|".join(re.escape(a) for a in order))
        # The value split once into literal pieces and the atoms between them (by position in atoms).
        self.pieces: list[bytes] = []
        self.slots: list[int] = []
        start = 0
        for m in pattern.finditer(value):
            self.pieces.append(value[start : m.start()])
            self.slots.append(atoms.index(m.group()))
            start = m.end()
        self.tail = value[start:]
        self.trusted = False

    def make(self, atoms: list[bytes]) -> bytes:
        out: list[bytes] = []
        for piece, slot in zip(self.pieces, self.slots, strict=True):
            out.append(piece)
            out.append(atoms[slot])
        out.append(self.tail)
        return b"".join(out)


class PreloadValues:
    """The encoded value (stamp placeholder in place) of each object the preload stores."""

    def __init__(self, codec: Codec, profile: str) -> None:
        self.codec = codec
        self.profile = profile
        self._templates: dict[tuple[object, ...], _Template | None] = {}
        self.built = 0  # values built the slow way (references, checks, untemplatable classes)
        self.templated = 0

    def slow(self, kind: str, index: int) -> bytes:
        self.built += 1
        return self.codec.encode(build_object(kind, index, self.profile))

    def value(self, kind: str, index: int) -> bytes:
        if self.profile != "k8s-1.6" or kind not in _ATOMS:
            return self.slow(kind, index)
        atoms = _ATOMS[kind](index)
        # Same atom lengths and the same atoms equal to each other: the same layout.
        klass = (kind, tuple(map(len, atoms)), tuple(atoms.index(a) for a in atoms))
        if klass not in self._templates:
            self._templates[klass] = _Template(self.slow(kind, index), atoms)
            return self._templates[klass].value  # type: ignore[union-attr]
        template = self._templates[klass]
        if template is None:
            return self.slow(kind, index)
        made = template.make(atoms)
        if not template.trusted or index % VERIFY_EVERY == 0:
            exact = self.slow(kind, index)
            if made != exact:
                if template.trusted:
                    raise TemplateMismatch(f"preload: template of {kind} {index} differs from the builder")
                self._templates[klass] = None  # this class is built the slow way from now on
                return exact
            template.trusted = True
        else:
            self.templated += 1
        return made
