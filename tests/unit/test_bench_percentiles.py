"""The percentile math of bench/ingest.py (what its p50/p99 figures mean): nearest rank."""

import pytest

from bench.ingest import percentile, summary


def test_nearest_rank_percentiles_of_a_hundred_values():
    values = [float(n) for n in range(100, 0, -1)]  # 1..100, unsorted
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0  # 0.99 * 100 is 98.999... in floating point: still rank 99
    assert percentile(values, 1.0) == 100.0
    assert percentile(values, 0.001) == 1.0


def test_a_p99_over_fewer_than_a_hundred_values_is_the_maximum():
    assert percentile([0.3, 0.1, 0.2], 0.99) == 0.3
    assert percentile([], 0.5) is None


def test_summary_reports_milliseconds():
    result = summary([0.010, 0.020, 0.030, 0.040])
    assert result == {"n": 4, "p50_ms": 20.0, "p90_ms": 40.0, "p99_ms": 40.0, "max_ms": 40.0}


@pytest.mark.parametrize("q", [0.5, 0.9, 0.99])
def test_a_percentile_is_one_of_the_values(q):
    values = [0.0123, 0.5, 0.0077, 2.25, 0.31]
    assert percentile(values, q) in values
