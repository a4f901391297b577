"""Statistics from additive sums equal the array metrics, and sums add and subtract like windows."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.metrics import pair_stats, triple_collocation
from models.moments import (
    coverage,
    pair_stats_from_sums,
    pair_sums,
    triple_collocation_from_sums,
    triple_sums,
)


def _series(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0.05, 0.45, n)
    a = truth + rng.normal(0, 0.02, n)
    b = 0.9 * truth + 0.03 + rng.normal(0, 0.04, n)
    c = 1.1 * truth - 0.02 + rng.normal(0, 0.03, n)
    a[rng.random(n) < 0.1] = np.nan
    b[rng.random(n) < 0.1] = np.nan
    return a, b, c


def test_pair_statistics_from_sums_equal_the_array_metrics() -> None:
    a, b, _ = _series(1, 3_000)
    want = pair_stats(b, a, min_n=10)
    got = pair_stats_from_sums(pair_sums(a, b).sum(axis=0), min_n=10)
    assert got.status == want.status == "OK" and got.n == want.n
    for field in ("r", "r_p", "r_ci_low", "r_ci_high", "rmse", "bias", "ubrmse"):
        assert getattr(got, field) == pytest.approx(getattr(want, field), rel=1e-10, abs=1e-13)
    assert math.isnan(got.rho)


def test_a_moving_window_by_addition_and_subtraction_equals_recomputing_it() -> None:
    a, b, _ = _series(2, 4_000)
    rows = pair_sums(a, b)
    running = rows[:365].sum(axis=0)
    for end in range(365, 4_000):  # slide the 365-day window over 10 years, one day at a time
        running += rows[end] - rows[end - 365]
    want = pair_stats(b[-365:], a[-365:], min_n=10)
    got = pair_stats_from_sums(running, min_n=10)
    for field in ("r", "rmse", "bias", "ubrmse"):
        assert getattr(got, field) == pytest.approx(getattr(want, field), abs=1e-9)


def test_few_pairs_and_constant_series_get_a_status_not_a_number() -> None:
    a, b, _ = _series(3, 5)
    few = pair_stats_from_sums(pair_sums(a, b).sum(axis=0), min_n=10)
    assert few.status == "INSUFFICIENT_DATA" and math.isnan(few.rmse)
    flat = pair_stats_from_sums(
        pair_sums(np.full(20, 0.3), np.linspace(0.1, 0.3, 20)).sum(0), min_n=10
    )
    assert flat.status == "DEGENERATE" and flat.reason == "reference has zero variance"
    assert math.isnan(flat.r) and flat.rmse > 0


def test_triple_collocation_from_sums_equals_the_array_version() -> None:
    a, b, c = _series(4, 5_000)
    want = triple_collocation(a, b, c, min_n=100)
    got = triple_collocation_from_sums(triple_sums(a, b, c).sum(axis=0), min_n=100)
    assert got.status == want.status == "OK" and got.n == want.n
    np.testing.assert_allclose(got.err_std, want.err_std, rtol=1e-9)
    np.testing.assert_allclose(got.snr_db, want.snr_db, rtol=1e-9)
    few = triple_collocation_from_sums(triple_sums(a[:50], b[:50], c[:50]).sum(0), min_n=100)
    assert few.status == "INSUFFICIENT_DATA"


def test_coverage_counts_references_inside_the_interval() -> None:
    ref = np.array([0.20, 0.30, 0.25, np.nan, 0.10])
    est = np.array([0.21, 0.20, 0.25, 0.30, 0.10])
    unc = np.array([0.01, 0.01, np.nan, 0.01, 0.001])
    s = pair_sums(ref, est, uncertainty=unc).sum(axis=0)
    # inside: |0.01| <= 1.645 * 0.01 (yes), 0.1 (no), no uncertainty (no), 0 (yes)
    assert coverage(s) == pytest.approx(2 / 4)
