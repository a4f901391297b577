"""Validation metrics for soil-moisture estimates (paired statistics and triple collocation), defined as in TU Wien's pytesmo.

Conventions, shared by every function here:

* Inputs are array-likes of one common shape (any number of dimensions; maps are flattened) and are
  computed in float64. A pair or triplet is dropped when any member is NaN, +-inf or masked.
* ``estimate`` is the product under test and ``reference`` what it is judged against, so a positive
  bias means the estimate is too wet.
* Nothing is guessed: where a quantity is undefined (too few samples, zero variance, a negative
  variance estimate) it is NaN, and the result carries ``status`` (``OK``, ``INSUFFICIENT_DATA``,
  ``DEGENERATE``) and a human-readable ``reason``.
* The minimum sample size ``min_n`` is a science choice and therefore a required keyword.

Definitions follow ``pytesmo.metrics`` (TU Wien, https://github.com/TUW-GEO/pytesmo; read from
``src/pytesmo/metrics/pairwise.py``, ``_fast_pairwise.pyx`` and ``tcol.py``): bias is
``mean(x) - mean(y)``, RMSD and ubRMSD divide by n, Pearson's p-value is the two-sided t-test
(``_pearsonr_from_moments``), the Pearson CI is Fisher's z (``pearson_r_ci``), and triple
collocation uses the covariance notation (``tcol_metrics``). Where this module deliberately differs
from pytesmo, the docstring says so.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
from scipy import special, stats

__all__ = [
    "Z_95",
    "PairStats",
    "Status",
    "TripleCollocation",
    "bias",
    "fisher_ci",
    "pair_stats",
    "pearson_p",
    "pearson_r",
    "rmse",
    "tc_from_covariance",
    "triple_collocation",
    "ubrmse",
]

Status = Literal["OK", "INSUFFICIENT_DATA", "DEGENERATE", "NEGATIVE_VARIANCE"]

Z_95: Final = 1.959963984540054
"""Two-sided 95 % quantile of the standard normal distribution, ``scipy.stats.norm.ppf(0.975)``."""

_NAN: Final = math.nan
_TC_NAMES: Final = ("x", "y", "z")

FloatArray = npt.NDArray[np.float64]


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class PairStats:
    """Agreement of an estimate with a reference over ``n`` valid pairs (see :func:`pair_stats`).

    All float fields are NaN unless defined; ``reason`` is None exactly when ``status == "OK"``.
    """

    n: int
    r: float
    r_p: float
    r_ci_low: float
    r_ci_high: float
    rho: float
    rho_p: float
    rmse: float
    bias: float
    ubrmse: float
    status: Status
    reason: str | None

    def as_dict(self) -> dict[str, float | int | str | None]:
        """The fields as a flat mapping (for a table row or a JSON log line)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TripleCollocation:
    """Triple-collocation error estimates for x, y and z over ``n`` triplets (see :func:`triple_collocation`).

    ``err_std`` is each dataset's random-error standard deviation in that dataset's own units,
    ``snr_db`` its signal-to-noise ratio in dB, ``sensitivity`` its data-scaled sensitivity
    ``beta_i * sigma_T`` (signal standard deviation in its own units). NaN where undefined.
    """

    n: int
    err_std: tuple[float, float, float]
    snr_db: tuple[float, float, float]
    sensitivity: tuple[float, float, float]
    status: Status
    reason: str | None

    def as_dict(self) -> dict[str, float | int | str | None]:
        """Flat mapping with one key per dataset, e.g. ``err_std_x``, ``snr_db_y``, ``sensitivity_z``."""
        out: dict[str, float | int | str | None] = {"n": self.n}
        for field in ("err_std", "snr_db", "sensitivity"):
            values: tuple[float, float, float] = getattr(self, field)
            out.update({f"{field}_{name}": v for name, v in zip(_TC_NAMES, values, strict=True)})
        out.update({"status": self.status, "reason": self.reason})
        return out


# --------------------------------------------------------------------------- input handling


def _valid(*arrays: npt.ArrayLike) -> tuple[FloatArray, ...]:
    """The inputs as flat float64 arrays, keeping only positions where every input is finite.

    Masked arrays count their masked cells as missing (``np.asarray`` alone would expose the values
    under the mask).
    """
    arrs = [np.ma.filled(np.ma.asarray(a, dtype=np.float64), np.nan) for a in arrays]
    shapes = {a.shape for a in arrs}
    if len(shapes) != 1:
        raise ValueError(f"inputs must have one common shape, got {[a.shape for a in arrs]}")
    flat = [a.ravel() for a in arrs]
    keep = np.logical_and.reduce([np.isfinite(a) for a in flat])
    return tuple(a[keep] for a in flat)


def _check_min_n(min_n: int, *, floor: int, what: str) -> None:
    if isinstance(min_n, bool) or not isinstance(min_n, int | np.integer) or min_n < floor:
        raise ValueError(f"{what} needs an integer min_n >= {floor}, got {min_n!r}")


def _sum_sq_dev(a: FloatArray) -> float:
    """Sum of squared deviations from the mean; exactly 0.0 for a constant array.

    The explicit constant test matters: the float mean of e.g. ten copies of 0.3 is not exactly 0.3,
    so the deviations, and a correlation computed from them, would be rounding noise.
    """
    if a.size == 0 or a.min() == a.max():
        return 0.0
    d = a - a.mean()
    return float(d @ d)


def _zero_variance(*named: tuple[str, FloatArray]) -> str | None:
    """Reason naming the constant inputs (e.g. "reference has zero variance"), None if none is."""
    flat = [name for name, a in named if _sum_sq_dev(a) == 0.0]
    if not flat:
        return None
    return f"{' and '.join(flat)} {'has' if len(flat) == 1 else 'have'} zero variance"


# --------------------------------------------------------------------------- pair metrics


def _pairs_without_correlation(
    n: int, errors: tuple[float, float, float], status: Status, reason: str
) -> PairStats:
    """A PairStats whose correlation fields are NaN; ``errors`` is (RMSE, bias, ubRMSE)."""
    rmse_, bias_, ubrmse_ = errors
    return PairStats(
        n=n,
        r=_NAN,
        r_p=_NAN,
        r_ci_low=_NAN,
        r_ci_high=_NAN,
        rho=_NAN,
        rho_p=_NAN,
        rmse=rmse_,
        bias=bias_,
        ubrmse=ubrmse_,
        status=status,
        reason=reason,
    )


def _error_stats(e: FloatArray, r: FloatArray) -> tuple[float, float, float]:
    """(RMSE, bias, ubRMSE) of already-cleaned pairs; NaN for none."""
    if e.size == 0:
        return _NAN, _NAN, _NAN
    d = e - r
    b = float(d.mean())
    msd = float(d @ d) / d.size
    return math.sqrt(msd), b, math.sqrt(max(msd - b * b, 0.0))


def _pearson(e: FloatArray, r: FloatArray) -> tuple[float, float]:
    """(R, two-sided p) of already-cleaned pairs; NaN if n < 3 or either has zero variance."""
    n = e.size
    see, srr = _sum_sq_dev(e), _sum_sq_dev(r)
    if n < 3 or see == 0.0 or srr == 0.0:
        return _NAN, _NAN
    ser = float((e - e.mean()) @ (r - r.mean()))
    coef = min(1.0, max(-1.0, ser / math.sqrt(see * srr)))  # sqrt(s*s) == s exactly
    return coef, pearson_p(coef, n)


def pearson_p(coef: float, n: int) -> float:
    """Two-sided p-value of Pearson's R = ``coef`` over n pairs (see :func:`pearson_r`)."""
    if math.isnan(coef) or n < 3:
        return _NAN
    if abs(coef) == 1.0:
        return 0.0
    df = n - 2
    t_sq = coef * coef * df / ((1.0 - coef) * (1.0 + coef))
    return float(special.betainc(0.5 * df, 0.5, min(df / (df + t_sq), 1.0)))


def fisher_ci(coef: float, n: int) -> tuple[float, float]:
    """95 % CI of Pearson's R by Fisher's z; NaN unless n > 3; (R, R) when |R| == 1."""
    if n <= 3 or math.isnan(coef):
        return _NAN, _NAN
    if abs(coef) == 1.0:  # atanh(+-1) is infinite; tanh(+-inf +- h) is +-1 again
        return coef, coef
    z, half = math.atanh(coef), Z_95 / math.sqrt(n - 3)
    return math.tanh(z - half), math.tanh(z + half)


def rmse(estimate: npt.ArrayLike, reference: npt.ArrayLike) -> float:
    """Root-mean-square error (pytesmo's RMSD), dividing by n.

    ``RMSE = sqrt( (1/n) * sum_i (e_i - r_i)^2 )`` over the n pairs where both are finite; NaN for
    n = 0. Reference: Entekhabi et al. (2010), "Performance metrics for soil moisture retrievals
    and application requirements", J. Hydrometeorol. 11:832-840; ``pytesmo.metrics.rmsd``
    (ddof = 0).
    """
    e, r = _valid(estimate, reference)
    return _error_stats(e, r)[0]


def bias(estimate: npt.ArrayLike, reference: npt.ArrayLike) -> float:
    """Mean bias, estimate minus reference: positive means the estimate is too wet.

    ``bias = mean(e) - mean(r) = (1/n) * sum_i (e_i - r_i)`` over the n pairs where both are finite;
    NaN for n = 0. Reference: Entekhabi et al. (2010), J. Hydrometeorol. 11:832-840;
    ``pytesmo.metrics.bias(x, y) = mean(x) - mean(y)`` with x the estimate.
    """
    e, r = _valid(estimate, reference)
    return _error_stats(e, r)[1]


def ubrmse(estimate: npt.ArrayLike, reference: npt.ArrayLike) -> float:
    """Unbiased RMSE: the RMSE left after removing the mean bias, dividing by n.

    ``ubRMSE = sqrt( max(RMSE^2 - bias^2, 0) )``, which equals the RMSE of the anomalies,
    ``sqrt( (1/n) * sum_i ((e_i - mean(e)) - (r_i - mean(r)))^2 )`` (the ``max`` only absorbs
    rounding); NaN for n = 0. Reference: Entekhabi et al. (2010), J. Hydrometeorol. 11:832-840; ``pytesmo.metrics.ubrmsd`` (ddof = 0).
    """
    e, r = _valid(estimate, reference)
    return _error_stats(e, r)[2]


def pearson_r(estimate: npt.ArrayLike, reference: npt.ArrayLike) -> tuple[float, float]:
    """Pearson's correlation coefficient and its two-sided p-value: ``(R, p)``.

    ``R = sum(de * dr) / sqrt(sum(de^2) * sum(dr^2))`` with ``de = e - mean(e)``,
    ``dr = r - mean(r)``, clipped to [-1, 1]; ``p = I_{df/(df + t^2)}(df/2, 1/2)`` (regularised
    incomplete beta function) with ``t^2 = R^2 * df / (1 - R^2)``, ``df = n - 2``: the two-sided
    t-test of R = 0 for bivariate normal data, p = 0 when |R| = 1. NaN for n < 3 or when either
    input has zero variance. Reference: Fisher (1915), Biometrika 10:507-521;
    ``pytesmo.metrics.pearson_r`` / ``_pearsonr_from_moments``; agrees with ``scipy.stats.pearsonr``.
    """
    e, r = _valid(estimate, reference)
    return _pearson(e, r)


def pair_stats(estimate: npt.ArrayLike, reference: npt.ArrayLike, *, min_n: int) -> PairStats:
    """All pair metrics of an estimate against a reference, with a status instead of guesses.

    Pairs where either value is NaN (or inf, or masked) are dropped first; ``n`` counts the rest.

    * ``n < min_n``: every number is NaN, status ``INSUFFICIENT_DATA``.
    * Either input constant: R, rho, their p-values and the CI are NaN, status ``DEGENERATE``;
      RMSE, bias and ubRMSE are still defined and reported.
    * Otherwise status ``OK`` and every field is a number.

    Formulas (n pairs, ``e`` estimate, ``r`` reference):

    * ``bias = mean(e) - mean(r)``; ``RMSE = sqrt(mean((e - r)^2))``;
      ``ubRMSE = sqrt(max(RMSE^2 - bias^2, 0))`` (see :func:`bias`, :func:`rmse`, :func:`ubrmse`;
      Entekhabi et al. 2010, J. Hydrometeorol. 11:832-840).
    * ``r``, ``r_p``: Pearson's R and two-sided p (see :func:`pearson_r`).
    * ``r_ci_low``, ``r_ci_high``: 95 % CI by Fisher's z, ``tanh(atanh(R) -+ 1.959964 / sqrt(n - 3))``
      (Fisher 1921, Metron 1:3-32; Bonett & Wright 2000, Psychometrika 65:23-28;
      ``pytesmo.metrics.pearson_r_ci``); (R, R) when |R| = 1.
    * ``rho``, ``rho_p``: Spearman's rank correlation (Pearson's R of the mid-ranks) and its
      two-sided p-value from the t approximation, as ``scipy.stats.spearmanr``
      (Spearman 1904, Am. J. Psychol. 15:72-101; ``pytesmo.metrics.spearman_r``).

    ``min_n`` must be at least 4 (the Fisher CI needs n > 3).
    """
    _check_min_n(min_n, floor=4, what="pair_stats")
    e, r = _valid(estimate, reference)
    n = int(e.size)
    if n < min_n:
        nans = (_NAN, _NAN, _NAN)
        return _pairs_without_correlation(
            n, nans, "INSUFFICIENT_DATA", f"{n} pairs, need at least {min_n}"
        )
    errors = _error_stats(e, r)
    flat = _zero_variance(("estimate", e), ("reference", r))
    if flat:
        return _pairs_without_correlation(n, errors, "DEGENERATE", flat)
    coef, p = _pearson(e, r)
    low, high = fisher_ci(coef, n)
    spear = stats.spearmanr(e, r)
    return PairStats(
        n=n,
        r=coef,
        r_p=p,
        r_ci_low=low,
        r_ci_high=high,
        rho=float(spear.statistic),
        rho_p=float(spear.pvalue),
        rmse=errors[0],
        bias=errors[1],
        ubrmse=errors[2],
        status="OK",
        reason=None,
    )


# --------------------------------------------------------------------------- triple collocation


def _tc_undefined(n: int, status: Status, reason: str) -> TripleCollocation:
    nans = (_NAN, _NAN, _NAN)
    return TripleCollocation(n, nans, nans, nans, status, reason)


def triple_collocation(
    x: npt.ArrayLike, y: npt.ArrayLike, z: npt.ArrayLike, *, min_n: int
) -> TripleCollocation:
    """Triple collocation by the covariance method: error std, SNR and sensitivity of x, y and z.

    Error model (Stoffelen 1998, J. Geophys. Res. 103:7755-7766; covariance notation of Gruber
    et al. 2016, "Recent advances in (soil moisture) triple collocation analysis",
    Int. J. Appl. Earth Obs. Geoinf. 45:200-211): ``i = a_i + b_i * T + eps_i`` for i in x, y, z,
    with T the unknown truth. Assumptions: (1) each dataset is linearly related to the truth;
    (2) the errors are mutually uncorrelated (zero error cross-correlation); (3) the errors are
    independent of the truth; (4) stationarity: a, b and the error variance are constant over the
    sample. Then, with ``C_ij`` the sample covariances (divisor n - 1, as ``np.cov`` in pytesmo)
    and (i, j, k) each cyclic ordering of (x, y, z):

    * signal variance ``S_i = b_i^2 var(T) = C_ij * C_ik / C_jk``;
    * error variance ``var(eps_i) = C_ii - C_ij * C_ik / C_jk``; ``err_std = sqrt(var(eps_i))``, in
      the units of dataset i (Gruber et al.'s unscaled error variance);
    * ``snr_db = 10 * log10(S_i / var(eps_i)) = -10 * log10(C_ii * C_jk / (C_ij * C_ik) - 1)``;
      the squared correlation with the truth of extended TC (McColl et al. 2014, "Extended triple
      collocation", Geophys. Res. Lett. 41:6229-6236) is ``R_i^2 = 1 / (1 + 10^(-snr_db / 10))``;
    * ``sensitivity = b_i * sigma_T = +-sqrt(S_i)``, the data-scaled sensitivity (b_i is only
      identifiable up to the unknown scale of T), with the sign of x taken as positive and those of
      y and z following the signs of ``C_xy`` and ``C_xz``.

    Status ``DEGENERATE`` (never a made-up number) when: a dataset is constant or a covariance is
    zero, or ``C_xy * C_xz * C_yz < 0`` (every signal variance estimate negative) -- all NaN; or a
    dataset's error variance estimate is not positive (sampling noise, or a violated assumption
    such as correlated errors) -- status ``NEGATIVE_VARIANCE``: that dataset's ``err_std`` and
    ``snr_db`` are NaN and the reason names it, the other numbers stay. ``n < min_n`` gives ``INSUFFICIENT_DATA``. The estimates'
    sampling error shrinks only as ~1/sqrt(n), so ``min_n`` for TC is normally far larger than for
    a correlation; it must be at least 3.

    Cross-checked against ``pytesmo.metrics.tcol_metrics(x, y, z, ref_ind=0)``: its ``snr`` equals
    ``snr_db`` wherever the error variances are positive (pytesmo takes absolute values, after
    Gruber et al. 2020, where this module returns NaN); its ``beta`` (rescaling coefficients to x)
    is ``sensitivity_x / sensitivity_i``; its ``err_std`` is ours rescaled to x,
    ``err_std_i * |beta_i|``.
    """
    _check_min_n(min_n, floor=3, what="triple_collocation")
    xs, ys, zs = _valid(x, y, z)
    n = int(xs.size)
    if n < min_n:
        return _tc_undefined(n, "INSUFFICIENT_DATA", f"{n} triplets, need at least {min_n}")
    flat = _zero_variance(*zip(_TC_NAMES, (xs, ys, zs), strict=True))
    if flat:
        return _tc_undefined(n, "DEGENERATE", flat)
    return tc_from_covariance(n, np.cov(np.vstack((xs, ys, zs))))


def tc_from_covariance(n: int, c: FloatArray) -> TripleCollocation:
    """Triple collocation from the 3 x 3 sample covariance matrix of n triplets (see
    :func:`triple_collocation`, which cleans the data and checks n and constant inputs first)."""
    pairs = ((0, 1), (0, 2), (1, 2))
    zero = [f"{_TC_NAMES[i]} and {_TC_NAMES[j]}" for i, j in pairs if c[i, j] == 0.0]
    if zero:
        return _tc_undefined(n, "DEGENERATE", f"zero covariance between {', '.join(zero)}")
    if c[0, 1] * c[0, 2] * c[1, 2] < 0.0:
        return _tc_undefined(
            n,
            "DEGENERATE",
            "covariances imply a negative signal variance for every dataset "
            f"(C_xy={c[0, 1]:.3g}, C_xz={c[0, 2]:.3g}, C_yz={c[1, 2]:.3g})",
        )
    signs = (1.0, math.copysign(1.0, c[0, 1]), math.copysign(1.0, c[0, 2]))
    err_std: list[float] = []
    snr_db: list[float] = []
    sensitivity: list[float] = []
    bad: list[str] = []
    for i, j, k in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
        signal = float(c[i, j] * c[i, k] / c[j, k])  # > 0 after the sign test above
        err_var = float(c[i, i]) - signal
        sensitivity.append(signs[i] * math.sqrt(signal))
        if err_var > 0.0:
            err_std.append(math.sqrt(err_var))
            snr_db.append(10.0 * math.log10(signal / err_var))
        else:
            err_std.append(_NAN)
            snr_db.append(_NAN)
            bad.append(f"{_TC_NAMES[i]} ({err_var:.3g})")
    reason = None
    if bad:
        reason = (
            f"error variance estimate not positive for {', '.join(bad)}: "
            "sampling noise or violated assumptions (e.g. cross-correlated errors)"
        )
    return TripleCollocation(
        n=n,
        err_std=(err_std[0], err_std[1], err_std[2]),
        snr_db=(snr_db[0], snr_db[1], snr_db[2]),
        sensitivity=(sensitivity[0], sensitivity[1], sensitivity[2]),
        status="NEGATIVE_VARIANCE" if bad else "OK",
        reason=reason,
    )
