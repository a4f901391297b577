"""Behaviour of the validation metrics: hand-computed values, scipy agreement, NaN and status rules."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator

import numpy as np
import pytest
from scipy import stats

from models.metrics import (
    Z_95,
    PairStats,
    TripleCollocation,
    bias,
    pair_stats,
    pearson_r,
    rmse,
    triple_collocation,
    ubrmse,
)

PAIR_NUMBERS = ("r", "r_p", "r_ci_low", "r_ci_high", "rho", "rho_p", "rmse", "bias", "ubrmse")
CORRELATION_NUMBERS = ("r", "r_p", "r_ci_low", "r_ci_high", "rho", "rho_p")


@pytest.fixture
def no_warnings() -> Iterator[None]:
    """Any RuntimeWarning (division by zero, invalid value, constant input) fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def correlated_pairs(seed: int, n: int, r: float = 0.7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ref = rng.normal(0.25, 0.06, n)
    est = 0.02 + 0.9 * ref + rng.normal(0.0, 0.06 * math.sqrt(1 / r**2 - 1), n)
    return est, ref


# --------------------------------------------------------------------------- pair statistics


def test_small_example_matches_hand_computed_values() -> None:
    # e - r = [-1, 0, -1, 0, -1]; de = [-2,-1,0,1,2], dr = [-1.6,-1.6,.4,.4,2.4]
    s = pair_stats([1, 2, 3, 4, 5], [2, 2, 4, 4, 6], min_n=4)
    assert s.status == "OK" and s.reason is None and s.n == 5
    assert s.bias == pytest.approx(-0.6)
    assert s.rmse == pytest.approx(math.sqrt(0.6))
    assert s.ubrmse == pytest.approx(math.sqrt(0.6 - 0.36))
    assert s.r == pytest.approx(10 / math.sqrt(10 * 11.2))
    # t^2 = r^2 (n-2) / (1 - r^2) = 25, so t = 5 with 3 degrees of freedom
    assert s.r_p == pytest.approx(2 * stats.t.sf(5.0, 3))
    half = 1.959964 / math.sqrt(5 - 3)
    assert s.r_ci_low == pytest.approx(math.tanh(math.atanh(s.r) - half), abs=1e-6)
    assert s.r_ci_high == pytest.approx(math.tanh(math.atanh(s.r) + half), abs=1e-6)
    # mid-ranks of the reference [1.5, 1.5, 3.5, 3.5, 5]: rho = 9 / sqrt(10 * 9)
    assert s.rho == pytest.approx(9 / math.sqrt(90))


def test_z_95_is_the_two_sided_normal_quantile() -> None:
    assert pytest.approx(stats.norm.ppf(0.975), abs=1e-15) == Z_95


@pytest.mark.parametrize("n", [5, 12, 200])
def test_correlations_agree_with_scipy(n: int) -> None:
    est, ref = correlated_pairs(seed=n, n=n)
    s = pair_stats(est, ref, min_n=4)
    pr = stats.pearsonr(est, ref)
    sr = stats.spearmanr(est, ref)
    assert s.r == pytest.approx(pr.statistic, rel=1e-12)
    assert s.r_p == pytest.approx(pr.pvalue, rel=1e-9)
    assert s.rho == pytest.approx(sr.statistic, rel=1e-12)
    assert s.rho_p == pytest.approx(sr.pvalue, rel=1e-9)
    assert pearson_r(est, ref) == (s.r, s.r_p)


def test_bias_is_estimate_minus_reference() -> None:
    ref = np.array([0.20, 0.25, 0.30, 0.35])
    assert bias(ref + 0.05, ref) == pytest.approx(0.05)
    assert bias(ref - 0.05, ref) == pytest.approx(-0.05)
    assert pair_stats(ref + 0.05, ref, min_n=4).bias == pytest.approx(0.05)


@pytest.mark.parametrize("seed", range(5))
def test_rmse_squared_is_bias_squared_plus_ubrmse_squared(seed: int) -> None:
    est, ref = correlated_pairs(seed, 500)
    s = pair_stats(est, ref, min_n=10)
    assert s.rmse**2 == pytest.approx(s.bias**2 + s.ubrmse**2, rel=1e-12)
    assert (s.rmse, s.bias, s.ubrmse) == (rmse(est, ref), bias(est, ref), ubrmse(est, ref))


@pytest.mark.parametrize("seed", range(5))
def test_ubrmse_equals_rmse_of_anomalies_dividing_by_n(seed: int) -> None:
    est, ref = correlated_pairs(seed, 300)
    anomalies = (est - est.mean()) - (ref - ref.mean())
    assert ubrmse(est, ref) == pytest.approx(math.sqrt(np.sum(anomalies**2) / est.size), rel=1e-10)
    assert rmse(est, ref) == pytest.approx(math.sqrt(np.sum((est - ref) ** 2) / est.size))


def test_pairs_with_a_missing_value_on_either_side_are_dropped() -> None:
    est, ref = correlated_pairs(3, 60)
    holey_est, holey_ref = est.copy(), ref.copy()
    holey_est[[0, 7]] = np.nan
    holey_ref[[7, 20, 33]] = np.nan
    holey_ref[41] = np.inf
    keep = np.ones(60, bool)
    keep[[0, 7, 20, 33, 41]] = False
    assert pair_stats(holey_est, holey_ref, min_n=10) == pair_stats(est[keep], ref[keep], min_n=10)
    assert pair_stats(holey_est, holey_ref, min_n=10).n == 55
    assert rmse(holey_est, holey_ref) == rmse(est[keep], ref[keep])
    assert pearson_r(holey_est, holey_ref) == pearson_r(est[keep], ref[keep])


def test_masked_cells_count_as_missing() -> None:
    est, ref = correlated_pairs(4, 40)
    mask = np.zeros(40, bool)
    mask[:5] = True
    masked_est = np.ma.masked_array(np.where(mask, 99.0, est), mask=mask)
    assert pair_stats(masked_est, ref, min_n=10) == pair_stats(est[5:], ref[5:], min_n=10)


def test_maps_are_compared_cell_by_cell_in_float64() -> None:
    est, ref = correlated_pairs(5, 64)
    s_map = pair_stats(est.reshape(8, 8).astype(np.float32), ref.reshape(8, 8), min_n=10)
    s_flat = pair_stats(est.astype(np.float32).astype(np.float64), ref, min_n=10)
    assert s_map == s_flat
    assert all(type(getattr(s_map, f)) is float for f in PAIR_NUMBERS)


def test_too_few_pairs_give_nan_with_status_and_reason(no_warnings: None) -> None:
    s = pair_stats([0.1, 0.2, np.nan, 0.3], [0.2, 0.2, 0.3, 0.25], min_n=10)
    assert s.n == 3
    assert s.status == "INSUFFICIENT_DATA"
    assert s.reason == "3 pairs, need at least 10"
    assert all(math.isnan(getattr(s, f)) for f in PAIR_NUMBERS)


def test_empty_input_is_insufficient_not_an_error(no_warnings: None) -> None:
    s = pair_stats(np.zeros(0, np.float32), np.zeros(0), min_n=30)
    assert (s.n, s.status, s.reason) == (0, "INSUFFICIENT_DATA", "0 pairs, need at least 30")
    assert all(math.isnan(getattr(s, f)) for f in PAIR_NUMBERS)
    assert math.isnan(rmse([], [])) and math.isnan(bias([], [])) and math.isnan(ubrmse([], []))
    assert all(math.isnan(v) for v in pearson_r([], []))


def test_constant_reference_is_degenerate_but_errors_are_still_reported(no_warnings: None) -> None:
    est = np.array([0.21, 0.24, 0.33, 0.28, 0.30, 0.26, 0.22, 0.35, 0.31, 0.27])
    ref = np.full(10, 0.3)  # the float mean of 0.3s is not exactly 0.3: must still be "constant"
    s = pair_stats(est, ref, min_n=5)
    assert s.status == "DEGENERATE"
    assert s.reason == "reference has zero variance"
    assert all(math.isnan(getattr(s, f)) for f in CORRELATION_NUMBERS)
    assert s.bias == pytest.approx(est.mean() - 0.3)
    assert s.rmse == pytest.approx(math.sqrt(np.mean((est - 0.3) ** 2)))
    assert s.ubrmse == pytest.approx(est.std())
    assert all(math.isnan(v) for v in pearson_r(est, ref))


def test_both_constant_names_both() -> None:
    s = pair_stats(np.full(6, 0.2), np.full(6, 0.3), min_n=4)
    assert (s.status, s.reason) == ("DEGENERATE", "estimate and reference have zero variance")
    assert s.bias == pytest.approx(-0.1) and s.rmse == pytest.approx(0.1)
    assert s.ubrmse == pytest.approx(0.0, abs=1e-12)


def test_perfect_correlation_has_a_closed_interval_and_no_warnings(no_warnings: None) -> None:
    ref = np.linspace(0.1, 0.4, 20)
    s = pair_stats(ref.copy(), ref, min_n=10)
    assert (s.status, s.r, s.r_p, s.r_ci_low, s.r_ci_high) == ("OK", 1.0, 0.0, 1.0, 1.0)
    s = pair_stats(-ref, ref, min_n=10)
    assert (s.r, s.r_p, s.r_ci_low, s.r_ci_high) == (-1.0, 0.0, -1.0, -1.0)
    s = pair_stats(2 * ref + 0.01, ref, min_n=10)  # R within rounding of 1
    assert s.status == "OK" and s.r == pytest.approx(1.0, abs=1e-12)
    assert s.r_ci_low <= s.r <= s.r_ci_high <= 1.0 and s.r_p < 1e-12


def test_confidence_interval_contains_r_and_narrows_with_n() -> None:
    widths = []
    for n in (10, 40, 160, 640):
        s = pair_stats(*correlated_pairs(7, n), min_n=10)
        assert s.r_ci_low < s.r < s.r_ci_high
        assert s.r_ci_low > -1.0 and s.r_ci_high < 1.0
        widths.append(s.r_ci_high - s.r_ci_low)
    assert widths == sorted(widths, reverse=True)
    assert widths[-1] < widths[0] / 4


def test_confidence_interval_covers_the_true_r_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(11)
    cov = [[1.0, 0.6], [0.6, 1.0]]
    hits = 0
    for _ in range(400):
        est, ref = rng.multivariate_normal([0, 0], cov, size=50).T
        s = pair_stats(est, ref, min_n=10)
        hits += s.r_ci_low <= 0.6 <= s.r_ci_high
    assert 0.92 <= hits / 400 <= 0.98


def test_as_dict_has_every_field() -> None:
    s = pair_stats([1, 2, 3, 4, 5], [2, 2, 4, 4, 6], min_n=4)
    d = s.as_dict()
    assert list(d) == [*("n", *PAIR_NUMBERS), "status", "reason"]
    assert PairStats(**d) == s  # type: ignore[arg-type]


def test_misuse_raises() -> None:
    with pytest.raises(ValueError, match="common shape"):
        pair_stats([1, 2, 3, 4], [1, 2, 3], min_n=4)
    with pytest.raises(ValueError, match="min_n >= 4"):
        pair_stats([1, 2, 3, 4], [1, 2, 3, 4], min_n=3)
    with pytest.raises(ValueError, match="min_n >= 3"):
        triple_collocation([1, 2, 3], [1, 2, 3], [1, 2, 3], min_n=2)


# --------------------------------------------------------------------------- triple collocation

ERR_SD = (0.02, 0.03, 0.04)
SCALE = (1.0, 0.8, 1.3)


def synthetic_triplet(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """x, y, z = a + b * truth + independent noise; returns also the truth's std."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(0.25, 0.06, n)
    offsets = (0.0, 0.05, -0.02)
    x, y, z = (
        a + b * truth + rng.normal(0.0, sd, n)
        for a, b, sd in zip(offsets, SCALE, ERR_SD, strict=True)
    )
    return x, y, z, float(truth.std(ddof=1))


def test_triple_collocation_recovers_known_errors_on_synthetic_data() -> None:
    x, y, z, sd_truth = synthetic_triplet(seed=2016, n=100_000)
    tc = triple_collocation(x, y, z, min_n=100)
    assert (tc.n, tc.status, tc.reason) == (100_000, "OK", None)
    for got, want in zip(tc.err_std, ERR_SD, strict=True):
        assert got == pytest.approx(want, rel=0.03)
    for got, b in zip(tc.sensitivity, SCALE, strict=True):
        assert got == pytest.approx(b * sd_truth, rel=0.02)
    for got, b, sd in zip(tc.snr_db, SCALE, ERR_SD, strict=True):
        assert got == pytest.approx(10 * math.log10((b * 0.06) ** 2 / sd**2), abs=0.3)


def test_triple_collocation_matches_pytesmo_covariance_formulas() -> None:
    # pytesmo.metrics.tcol_metrics(x, y, z, ref_ind=0): snr = -10 log10(C_ii C_jk / (C_ij C_ik) - 1),
    # beta_y = C_xz / C_yz, beta_z = C_xy / C_zy, err_std = sqrt(C_ii - C_ij C_ik / C_jk) * beta_i
    x, y, z, _ = synthetic_triplet(seed=5, n=2_000)
    c = np.cov(np.vstack((x, y, z)))
    tc = triple_collocation(x, y, z, min_n=100)
    beta = (1.0, c[0, 2] / c[1, 2], c[0, 1] / c[2, 1])
    for i, j, k in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
        snr = -10 * math.log10(c[i, i] * c[j, k] / (c[i, j] * c[i, k]) - 1)
        assert tc.snr_db[i] == pytest.approx(snr, rel=1e-10)
        scaled_err = math.sqrt(c[i, i] - c[i, j] * c[i, k] / c[j, k]) * beta[i]
        assert tc.err_std[i] * abs(beta[i]) == pytest.approx(scaled_err, rel=1e-10)
        assert tc.sensitivity[0] / tc.sensitivity[i] == pytest.approx(beta[i], rel=1e-10)


def test_triple_collocation_drops_incomplete_triplets() -> None:
    x, y, z, _ = synthetic_triplet(seed=6, n=500)
    hx, hz = x.copy(), z.copy()
    hx[3] = np.nan
    hz[[3, 10, 11]] = np.nan
    keep = np.isfinite(hx) & np.isfinite(hz)
    tc = triple_collocation(hx, y, hz, min_n=100)
    assert tc.n == 497
    assert tc == triple_collocation(x[keep], y[keep], z[keep], min_n=100)


def test_anticorrelated_product_gets_a_negative_sensitivity() -> None:
    x, y, z, _ = synthetic_triplet(seed=8, n=20_000)
    tc = triple_collocation(x, -y, z, min_n=100)
    assert tc.status == "OK"
    assert tc.sensitivity[0] > 0 and tc.sensitivity[1] < 0 and tc.sensitivity[2] > 0
    assert tc.err_std == triple_collocation(x, y, z, min_n=100).err_std


def test_negative_error_variance_is_nan_for_that_dataset_only(no_warnings: None) -> None:
    # y and z share one error with opposite signs: their errors are cross-correlated (-1), which
    # violates TC's assumptions and drives x's error variance estimate below zero.
    rng = np.random.default_rng(3)
    truth = rng.normal(0.25, 0.06, 5_000)
    shared = rng.normal(0.0, 0.03, truth.size)
    tc = triple_collocation(truth, truth + shared, truth - shared, min_n=100)
    assert tc.status == "NEGATIVE_VARIANCE"
    assert tc.reason is not None and tc.reason.startswith(
        "error variance estimate not positive for x (-"
    )
    assert math.isnan(tc.err_std[0]) and math.isnan(tc.snr_db[0])
    assert all(math.isfinite(v) for v in (*tc.err_std[1:], *tc.snr_db[1:], *tc.sensitivity))


def test_too_few_triplets_give_nan_with_status_and_reason(no_warnings: None) -> None:
    x, y, z, _ = synthetic_triplet(seed=9, n=50)
    tc = triple_collocation(x, y, z, min_n=100)
    assert (tc.n, tc.status, tc.reason) == (
        50,
        "INSUFFICIENT_DATA",
        "50 triplets, need at least 100",
    )
    assert all(math.isnan(v) for v in (*tc.err_std, *tc.snr_db, *tc.sensitivity))


@pytest.mark.parametrize(
    ("x", "y", "z", "reason"),
    [
        ([0.3] * 6, [1, 2, 3, 4, 5, 7], [2, 1, 4, 3, 6, 5], "x has zero variance"),
        # centred x = [-1.5, -0.5, 0.5, 1.5] is exactly orthogonal to y
        ([1, 2, 3, 4], [1, -1, -1, 1], [2, 1, 2, 5], "zero covariance between x and y"),
        # every pair anti-correlated: no sign of the sensitivities can explain that
        ([1, 2, 3], [2, 3, 1], [3, 1, 2], "covariances imply a negative signal"),
    ],
)
def test_degenerate_covariances_give_nan_with_reason(
    no_warnings: None, x: list[float], y: list[float], z: list[float], reason: str
) -> None:
    tc = triple_collocation(x, y, z, min_n=3)
    assert tc.status == "DEGENERATE"
    assert tc.reason is not None and tc.reason.startswith(reason)
    assert all(math.isnan(v) for v in (*tc.err_std, *tc.snr_db, *tc.sensitivity))


def test_triple_collocation_as_dict_is_flat() -> None:
    x, y, z, _ = synthetic_triplet(seed=10, n=1_000)
    tc = triple_collocation(x, y, z, min_n=100)
    d = tc.as_dict()
    assert d["err_std_y"] == tc.err_std[1] and d["snr_db_z"] == tc.snr_db[2]
    assert d["sensitivity_x"] == tc.sensitivity[0] and d["status"] == "OK"
    assert len(d) == 1 + 9 + 2
    assert isinstance(tc, TripleCollocation)
