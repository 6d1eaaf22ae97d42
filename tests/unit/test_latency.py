from etcdbench.metrics.latency import HIGHEST_US, LatencyRecorder


def test_percentiles_and_round_trip_through_encoding() -> None:
    rec = LatencyRecorder()
    for v in range(1, 1001):
        rec.record_us(v * 1000)
    s = rec.summary()
    assert s["count"] == 1000
    assert abs(s["p50"] - 500_000) <= 500  # 3 significant figures
    assert abs(s["p99"] - 990_000) <= 1000
    back = LatencyRecorder.decode(s["hdr"])
    assert back.summary()["p99"] == s["p99"]
    assert back.count == 1000


def test_out_of_range_is_counted_not_dropped_silently() -> None:
    rec = LatencyRecorder()
    rec.record_us(HIGHEST_US * 10)
    rec.record_us(5)
    s = rec.summary()
    assert s["out_of_range"] == 1
    assert s["count"] == 1


def test_zero_and_negative_clock_readings_count_as_the_lowest_value() -> None:
    rec = LatencyRecorder()
    rec.record_us(0)
    rec.record_us(-3)
    assert rec.count == 2 and rec.out_of_range == 0


def test_merge_adds_counts_and_out_of_range() -> None:
    a, b = LatencyRecorder(), LatencyRecorder()
    a.record_us(10)
    b.record_us(20)
    b.record_us(HIGHEST_US * 2)
    a.merge(b)
    assert a.count == 2 and a.out_of_range == 1


def test_empty_summary_has_no_made_up_figures() -> None:
    s = LatencyRecorder().summary()
    assert s["p99"] is None and s["max"] is None and s["count"] == 0 and s["hdr"] == ""
