from etcdbench.workload.accounting import EventLedger, SeqSet, format_stamp, parse_stamp, reconcile


def test_stamp_is_fixed_width_and_round_trips() -> None:
    stamp = format_stamp(3, 123456, 987654321012345678)
    assert len(stamp) == 38
    assert parse_stamp(stamp) == (3, 123456, 987654321012345678)
    assert len(format_stamp(0, 0, 0)) == 38


def test_seqset_marks_each_seq_once_and_grows() -> None:
    s = SeqSet()
    assert s.add(5) and s.add(0) and s.add(10_000)
    assert not s.add(5)
    assert len(s) == 3
    assert s.as_int() == 1 | 1 << 5 | 1 << 10_000


def test_seqset_takes_one_bit_per_seq() -> None:
    s = SeqSet()
    for seq in range(0, 1_000_000, 2):
        s.add(seq)
    assert len(s) == 500_000
    assert 125_000 <= len(s.bits) < 250_000  # doubling growth: at most twice the bits needed
    assert SeqSet(bytes(s.bits)).as_int() == s.as_int()  # what a process sends is the set
    assert bytes(SeqSet().bits) == b""


def seqs(*members: int) -> bytes:
    s = SeqSet()
    for m in members:
        s.add(m)
    return bytes(s.bits)


def test_ledger_counts_duplicates_and_out_of_order() -> None:
    ledger = EventLedger()
    assert ledger.record(0, 0, revision=10)
    assert ledger.record(0, 1, revision=11)
    assert not ledger.record(0, 1, revision=12)  # the same write delivered twice
    assert ledger.record(1, 0, revision=9)  # a revision going backwards on one stream
    assert (ledger.events, ledger.duplicates, ledger.out_of_order, ledger.distinct) == (4, 1, 1, 3)


def test_ledger_restart_resets_order_after_relist() -> None:
    ledger = EventLedger()
    ledger.record(0, 0, revision=50)
    ledger.restart(20)
    ledger.record(0, 1, revision=21)
    assert ledger.out_of_order == 0


def test_reconcile_joins_acknowledged_and_seen_exactly() -> None:
    acked = {0: seqs(0, 1, 2, 4), 1: seqs(0, 1)}  # writer 0: seq 3 failed on our side
    seen = {0: seqs(0, 2, 3, 4), 2: seqs(0)}  # seq 1 lost; seq 3 applied anyway; writer 2 unknown
    books = reconcile(acked, seen)
    assert books.written == 6
    assert books.received == 3  # writer 0: seqs 0, 2, 4
    assert books.missed == 3  # writer 0 seq 1, writer 1 seqs 0 and 1
    assert books.unacknowledged_seen == 2  # writer 0 seq 3, writer 2 seq 0


def test_ledger_tells_a_retried_write_from_a_redelivered_event() -> None:
    ledger = EventLedger()
    assert ledger.record(0, 0, revision=10)
    assert not ledger.record(0, 0, revision=12)  # our put applied twice: a second revision, one stamp
    assert not ledger.record(0, 0, revision=10)  # the first event delivered again: a watch defect
    assert (ledger.duplicates_retried, ledger.duplicates_redelivered) == (1, 1)


def test_lost_writes_are_placed_by_their_revision_inside_or_outside_a_relist_gap() -> None:
    from etcdbench.workload.accounting import Revisions, split_missed

    revs = Revisions()
    for seq, rev in enumerate([10, 11, 12, 13]):  # seq 4: the API did not say
        revs.set(seq, rev)
    decoded = Revisions(*revs.encode())  # as the writer sends them
    assert [decoded.get(s) for s in range(6)] == [10, 11, 12, 13, 0, 0]
    acked = {0: seqs(0, 1, 2, 3, 4)}
    seen = {0: seqs(0)}
    # One relist: the stream had delivered up to 11 and resumed after 12.
    assert split_missed(acked, seen, {0: decoded}, [(11, 12)]) == (1, 2, 1)  # 12 | 11, 13 | seq 4


def test_a_watch_is_complete_only_when_every_acknowledged_write_was_seen() -> None:
    from etcdbench.backends.base import WatchEvent
    from etcdbench.encoding.codec import get_codec
    from etcdbench.encoding.objects import build_object
    from etcdbench.workload.timeline import Timeline
    from etcdbench.workload.watcher import WatchBook

    codec = get_codec("json")
    template = codec.encode(build_object("pod", 0, "k8s-1.6"))

    def event(seq: int, revision: int) -> WatchEvent:
        value = template.replace(b"?" * 38, format_stamp(0, seq, 0).encode(), 1)
        return WatchEvent("PUT", "/k", revision, value)

    book = WatchBook(Timeline(0, 0.0, 1.0), range(1))
    book.expect({0: seqs(1, 2)}, set())  # seq 0 was applied but its acknowledgement was lost
    book.event(event(0, 5), codec, False)
    book.event(event(1, 6), codec, False)
    assert not book.complete  # two distinct writes seen, two acknowledged: but seq 2 is not here yet
    book.event(event(2, 7), codec, False)
    assert book.complete


def test_a_redelivery_of_a_retried_writes_second_event_is_a_redelivery() -> None:
    ledger = EventLedger()
    ledger.record(0, 0, revision=10)
    ledger.record(0, 0, revision=12)  # applied again
    ledger.record(0, 0, revision=12)  # that second event delivered twice
    assert (ledger.duplicates_retried, ledger.duplicates_redelivered) == (1, 1)
