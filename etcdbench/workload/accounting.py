"""Exact event accounting: every acknowledged write is received, missed or duplicated.

Each write carries a fixed-width *stamp* in an annotation of the object it writes:
`WWWW:SSSSSSSSSSSS:NNNNNNNNNNNNNNNNNNNN` = writer id, the writer's sequence number, and the write's
intended send time (CLOCK_MONOTONIC nanoseconds, which all processes on one host share). The watcher
decodes the object, reads the stamp back and marks (writer, seq) as seen. Writers mark what etcd
acknowledged. Reconciling the two gives the counters without any sampling.
"""

from __future__ import annotations

import itertools
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from etcdbench.config.run import STAMP_SEQ_DIGITS, STAMP_WRITER_DIGITS

STAMP_FORMAT = f"{{:0{STAMP_WRITER_DIGITS}d}}:{{:0{STAMP_SEQ_DIGITS}d}}:{{:020d}}"


def format_stamp(writer: int, seq: int, intended_ns: int) -> str:
    return STAMP_FORMAT.format(writer, seq, intended_ns)


def parse_stamp(stamp: str) -> tuple[int, int, int]:
    """(writer, seq, intended_ns); raises ValueError on anything that is not a stamp."""
    writer, seq, intended = stamp.split(":")
    return int(writer), int(seq), int(intended)


class SeqSet:
    """A growable set of small non-negative ints, one bit each: seq i is bit i % 8 of byte i // 8.

    One bit, not one byte, per write: the writers' and the watcher's ledgers are the only state that
    grows with a run (1M writes = 125 kB per process), which keeps a long run's memory flat.
    """

    __slots__ = ("bits",)

    def __init__(self, data: bytes = b"") -> None:
        self.bits = bytearray(data)

    def add(self, seq: int) -> bool:
        """Mark seq; True when it was not marked before."""
        bits = self.bits
        i = seq >> 3
        if i >= len(bits):
            bits.extend(bytes(max(i + 1 - len(bits), len(bits))))
        mask = 1 << (seq & 7)
        byte = bits[i]
        if byte & mask:
            return False
        bits[i] = byte | mask
        return True

    def __contains__(self, seq: int) -> bool:
        i = seq >> 3
        return i < len(self.bits) and bool(self.bits[i] >> (seq & 7) & 1)

    def __len__(self) -> int:
        return self.as_int().bit_count()

    def as_int(self) -> int:
        # Bit i set for member i: AND and bit_count work on the whole set at once.
        return int.from_bytes(self.bits, "little")


class Revisions:
    """The revision of each seq, 4 bytes a write instead of 8: an offset from a base set by the first
    revision recorded (2**30 below it, so that a revision a little out of order still fits and 0 can mean
    "none"). A run's revisions span far less than the 3 * 2**30 above the base that fit."""

    __slots__ = ("base", "offsets")
    SLACK = 1 << 30

    def __init__(self, base: int = 0, data: bytes = b"") -> None:
        self.base = base
        self.offsets = array("I")
        self.offsets.frombytes(data)

    def set(self, seq: int, revision: int) -> None:
        if not self.base:
            self.base = revision - self.SLACK
        offsets = self.offsets
        if seq >= len(offsets):
            offsets.frombytes(bytes(4 * max(seq + 1 - len(offsets), len(offsets))))  # doubling, as SeqSet
        offsets[seq] = revision - self.base

    def get(self, seq: int) -> int:
        """The revision recorded for seq, 0 if none."""
        offset = self.offsets[seq] if seq < len(self.offsets) else 0
        return self.base + offset if offset else 0

    def encode(self) -> tuple[int, bytes]:
        return self.base, self.offsets.tobytes()


class EventLedger:
    """The watcher's side: which stamped writes it has seen, at which revision, and in what order.

    A write seen a second time is a duplicate of one of two kinds, told apart by its revision: at a new
    revision it is our own retried put that etcd applied twice (expected: the first answer was lost);
    at the revision already seen it is the same event delivered twice, a watch defect.
    """

    def __init__(self) -> None:
        self.seen: dict[int, SeqSet] = {}
        # writer -> revision of each seq's first sighting (4 bytes a write: what tells the kinds apart)
        self.revisions: dict[int, Revisions] = {}
        self.more_revisions: dict[tuple[int, int], set[int]] = {}  # (writer, seq) -> later revisions
        self.events = 0  # stamped events delivered, duplicates included
        self.duplicates_retried = 0
        self.duplicates_redelivered = 0
        self.out_of_order = 0  # a revision not above the previous one on the same stream
        self.last_revision = 0

    def record(self, writer: int, seq: int, revision: int) -> bool:
        """Account one delivered event; True when this write is seen for the first time."""
        self.events += 1
        if revision <= self.last_revision:
            self.out_of_order += 1
        else:
            self.last_revision = revision
        seen = self.seen.get(writer)
        if seen is None:
            seen = self.seen[writer] = SeqSet()
            self.revisions[writer] = Revisions()
        revs = self.revisions[writer]
        if seen.add(seq):
            revs.set(seq, revision)
            return True
        # Seen before: at this very revision (redelivered), or at a new one (applied again). A write
        # applied more than twice needs all its revisions: the rare ones past the first live here.
        more = self.more_revisions.setdefault((writer, seq), set())
        if revision == revs.get(seq) or revision in more:
            self.duplicates_redelivered += 1
        else:
            more.add(revision)
            self.duplicates_retried += 1
        return False

    def restart(self, revision: int) -> None:
        """After a relist the stream resumes at revision + 1: order is checked from there."""
        self.last_revision = revision

    @property
    def duplicates(self) -> int:
        return self.duplicates_retried + self.duplicates_redelivered

    @property
    def distinct(self) -> int:
        return self.events - self.duplicates


@dataclass(frozen=True)
class Reconciled:
    written: int  # acknowledged by etcd
    received: int  # acknowledged and seen by the watcher
    missed: int  # acknowledged, never seen
    unacknowledged_seen: int  # a put that failed on our side but that etcd applied and the watcher saw


def reconcile(acked: dict[int, bytes], seen: dict[int, bytes]) -> Reconciled:
    """Join writer acknowledgements with watcher sightings, writer by writer."""
    written = received = unacked_seen = 0
    for writer in acked.keys() | seen.keys():
        a = SeqSet(acked.get(writer, b"")).as_int()
        s = SeqSet(seen.get(writer, b"")).as_int()
        written += a.bit_count()
        received += (a & s).bit_count()
        unacked_seen += (s & ~a).bit_count()
    return Reconciled(written, received, written - received, unacked_seen)


def in_gaps(revision: int, gaps: list[tuple[int, int]]) -> bool:
    """Whether `revision` lies in a relist's gap: (last revision delivered, relist revision]."""
    return any(after < revision <= upto for after, upto in gaps)


def split_missed(
    acked: dict[int, bytes],
    seen: dict[int, bytes],
    revisions: dict[int, Revisions],
    gaps: list[tuple[int, int]],
    lost: Iterable[int] = (),
) -> tuple[int, int, int]:
    """The acknowledged puts never seen, and the writes of revisions `lost` (deletes never seen), by
    cause: (inside a relist's gap, outside every gap, revision unknown). A lost write's revision (from
    the writer's acknowledgement; 0: unknown) says which."""
    relist = undelivered = unknown = 0
    for rev in itertools.chain(_missed_revisions(acked, seen, revisions), lost):
        if not rev:
            unknown += 1
        elif in_gaps(rev, gaps):
            relist += 1
        else:
            undelivered += 1
    return relist, undelivered, unknown


def _missed_revisions(
    acked: dict[int, bytes], seen: dict[int, bytes], revisions: dict[int, Revisions]
) -> Iterator[int]:
    """The revision of each acknowledged put never seen (0: unknown)."""
    for writer, bits in acked.items():
        missed = SeqSet(bits).as_int() & ~SeqSet(seen.get(writer, b"")).as_int()
        revs = revisions.get(writer) or Revisions()
        while missed:
            low = missed & -missed
            missed ^= low
            yield revs.get(low.bit_length() - 1)
