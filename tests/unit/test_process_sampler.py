"""ProcessSampler read while its thread samples: a half-appended sample is not read."""

from __future__ import annotations

from etcdbench.metrics.cpu import ProcessSampler


def test_a_sample_whose_cpu_is_not_appended_yet_is_left_out() -> None:
    sampler = ProcessSampler({}, interval=1.0)  # not started: the test appends the samples itself
    host = sampler._series["host"]
    host.times.extend([10.0, 11.0, 12.0])
    host.cpu_s.extend([0.0, 0.5])  # the sample at 12.0 has its time only, as mid-_sample
    assert sampler.cores("host", 10.0, 12.0) == 0.5  # (0.5 - 0.0) / (11.0 - 10.0)
    host.cpu_s.append(2.5)
    assert sampler.cores("host", 10.0, 12.0) == 1.25  # the whole span once the sample is complete
