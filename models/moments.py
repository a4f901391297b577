"""Additive sufficient statistics of paired and tripled series, and the metrics computed from them.

Sums of values, squares and cross products can be added and subtracted, so statistics over a
window that moves by one day, or over a group of stations, cost as little as the data that changed
(the validation refresh keeps them per station and window). Everything that :func:`models.metrics.
pair_stats` gives is a function of these sums except Spearman's rho (ranks are not additive),
which is NaN here; triple collocation needs only the covariance matrix, which the sums give.

Layout of a sums vector (float64, ``WIDTH`` long), for series a, b, c (a pair leaves c zero)::

    [n, sa, sb, sc, saa, sbb, scc, sab, sac, sbc, n_inside]

``n_inside`` counts pairs whose reference lies inside the estimate's interval (calibration of an
uncertainty band; see :func:`pair_sums`).

Formulas (n pairs, estimate b, reference a; one pass over the sums, dividing by n unless said):
``bias = (sb - sa) / n``; ``RMSE^2 = (saa + sbb - 2 sab) / n``; ``ubRMSE^2 = RMSE^2 - bias^2``;
Pearson ``R = (n sab - sa sb) / sqrt((n saa - sa^2)(n sbb - sb^2))``; covariances for triple
collocation ``C_ij = (s_ij - s_i s_j / n) / (n - 1)`` (as ``np.cov``). These are the definitions of
:mod:`models.metrics` (pytesmo's), rewritten on sums; a series whose sum of squared deviations is
below ``1e-12`` of its sum of squares counts as constant (the one-pass form cannot tell a constant
from rounding noise below that).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import special

from models.metrics import (
    Z_95,
    PairStats,
    Status,
    TripleCollocation,
    tc_from_covariance,
)

WIDTH: Final = 11
N, SA, SB, SC, SAA, SBB, SCC, SAB, SAC, SBC, N_INSIDE = range(WIDTH)
_NAN: Final = math.nan
_FLAT: Final = 1e-12

FloatArray = npt.NDArray[np.float64]


def pair_sums(
    reference: FloatArray,
    estimate: FloatArray,
    *,
    uncertainty: FloatArray | None = None,
    z: float = 1.6448536269514722,
) -> FloatArray:
    """Per-row sums (rows, WIDTH) of the pairs; rows where either value is NaN contribute zeros.

    With ``uncertainty`` (one standard deviation of the estimate), ``n_inside`` counts the pairs
    with ``|reference - estimate| <= z * uncertainty`` (default z: the two-sided 90 % normal
    interval); rows without an uncertainty count as outside.
    """
    a = np.asarray(reference, np.float64)
    b = np.asarray(estimate, np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    a0, b0 = np.where(ok, a, 0.0), np.where(ok, b, 0.0)
    out = np.zeros((a.size, WIDTH))
    out[:, N] = ok
    out[:, SA], out[:, SB] = a0, b0
    out[:, SAA], out[:, SBB], out[:, SAB] = a0 * a0, b0 * b0, a0 * b0
    if uncertainty is not None:
        u = np.asarray(uncertainty, np.float64)
        with np.errstate(invalid="ignore"):
            out[:, N_INSIDE] = ok & np.isfinite(u) & (np.abs(a - b) <= z * u)
    return out


def triple_sums(a: FloatArray, b: FloatArray, c: FloatArray) -> FloatArray:
    """Per-row sums (rows, WIDTH) of the triplets; rows with any NaN contribute zeros."""
    x, y, w = (np.asarray(v, np.float64) for v in (a, b, c))
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(w)
    x0, y0, w0 = (np.where(ok, v, 0.0) for v in (x, y, w))
    out = np.zeros((x.size, WIDTH))
    out[:, N] = ok
    out[:, SA], out[:, SB], out[:, SC] = x0, y0, w0
    out[:, SAA], out[:, SBB], out[:, SCC] = x0 * x0, y0 * y0, w0 * w0
    out[:, SAB], out[:, SAC], out[:, SBC] = x0 * y0, x0 * w0, y0 * w0
    return out


def _n(s: FloatArray) -> int:
    return round(float(s[N]))


@dataclass(frozen=True)
class PairStatsArrays:
    """:class:`models.metrics.PairStats` of many sums vectors at once (one entry per row)."""

    n: npt.NDArray[np.int64]
    r: FloatArray
    r_p: FloatArray
    r_ci_low: FloatArray
    r_ci_high: FloatArray
    rmse: FloatArray
    bias: FloatArray
    ubrmse: FloatArray
    status: list[Status]
    reason: list[str | None]

    def row(self, k: int) -> PairStats:
        return PairStats(
            n=int(self.n[k]),
            r=float(self.r[k]),
            r_p=float(self.r_p[k]),
            r_ci_low=float(self.r_ci_low[k]),
            r_ci_high=float(self.r_ci_high[k]),
            rho=_NAN,
            rho_p=_NAN,
            rmse=float(self.rmse[k]),
            bias=float(self.bias[k]),
            ubrmse=float(self.ubrmse[k]),
            status=self.status[k],
            reason=self.reason[k],
        )


def pair_stats_many(sums: FloatArray, *, min_n: int) -> PairStatsArrays:
    """:func:`models.metrics.pair_stats` of estimate b against reference a for each row of
    ``sums`` (rows, WIDTH), vectorised; Spearman's rho is not available from sums."""
    if min_n < 4:
        raise ValueError(f"pair_stats_many needs min_n >= 4, got {min_n}")
    s = np.atleast_2d(np.asarray(sums, np.float64))
    n = np.rint(s[:, N]).astype(np.int64)
    sa, sb, saa, sbb, sab = (s[:, i] for i in (SA, SB, SAA, SBB, SAB))
    with np.errstate(all="ignore"):
        nf = np.maximum(n, 1).astype(np.float64)
        bias = (sb - sa) / nf
        msd = np.maximum((saa + sbb - 2.0 * sab) / nf, 0.0)
        rmse = np.sqrt(msd)
        ubrmse = np.sqrt(np.maximum(msd - bias * bias, 0.0))
        var_a, var_b = nf * saa - sa * sa, nf * sbb - sb * sb
        flat_a = var_a <= _FLAT * nf * saa
        flat_b = var_b <= _FLAT * nf * sbb
        r = np.clip((nf * sab - sa * sb) / np.sqrt(var_a * var_b), -1.0, 1.0)
        df = nf - 2.0
        t_sq = r * r * df / ((1.0 - r) * (1.0 + r))
        r_p = special.betainc(0.5 * df, 0.5, np.minimum(df / (df + t_sq), 1.0))
        r_p = np.where(np.abs(r) == 1.0, 0.0, r_p)
        half = Z_95 / np.sqrt(nf - 3.0)
        z = np.arctanh(r)
        low = np.where(np.abs(r) == 1.0, r, np.tanh(z - half))
        high = np.where(np.abs(r) == 1.0, r, np.tanh(z + half))
    few = n < min_n
    flat = ~few & (flat_a | flat_b)
    for a in (rmse, bias, ubrmse):
        a[few] = _NAN
    for a in (r, r_p, low, high):
        a[few | flat] = _NAN
    status: list[Status] = []
    reason: list[str | None] = []
    for k in range(len(n)):
        if few[k]:
            status.append("INSUFFICIENT_DATA")
            reason.append(f"{n[k]} pairs, need at least {min_n}")
        elif flat[k]:
            names = [m for m, f in (("estimate", flat_b[k]), ("reference", flat_a[k])) if f]
            verb = "has" if len(names) == 1 else "have"
            status.append("DEGENERATE")
            reason.append(f"{' and '.join(names)} {verb} zero variance")
        else:
            status.append("OK")
            reason.append(None)
    return PairStatsArrays(n, r, r_p, low, high, rmse, bias, ubrmse, status, reason)


def pair_stats_from_sums(s: FloatArray, *, min_n: int) -> PairStats:
    """:func:`models.metrics.pair_stats` of estimate b against reference a, from sums (rho NaN)."""
    return pair_stats_many(s, min_n=min_n).row(0)


def triple_collocation_from_sums(s: FloatArray, *, min_n: int) -> TripleCollocation:
    """:func:`models.metrics.triple_collocation` of (a, b, c) from sums."""
    n = _n(s)
    nans = (_NAN, _NAN, _NAN)
    if n < min_n:
        return TripleCollocation(
            n, nans, nans, nans, "INSUFFICIENT_DATA", f"{n} triplets, need at least {min_n}"
        )
    first = (SA, SB, SC)
    square = {(0, 0): SAA, (1, 1): SBB, (2, 2): SCC, (0, 1): SAB, (0, 2): SAC, (1, 2): SBC}
    cov = np.empty((3, 3))
    for (i, j), k in square.items():
        cov[i, j] = cov[j, i] = (s[k] - s[first[i]] * s[first[j]] / n) / (n - 1)
    flat = [
        name
        for i, name in enumerate(("x", "y", "z"))
        if cov[i, i] * (n - 1) <= _FLAT * s[square[(i, i)]]
    ]
    if flat:
        verb = "has" if len(flat) == 1 else "have"
        return TripleCollocation(
            n, nans, nans, nans, "DEGENERATE", f"{' and '.join(flat)} {verb} zero variance"
        )
    return tc_from_covariance(n, cov)


def coverage(s: FloatArray) -> float:
    """Fraction of the pairs inside the interval (NaN without pairs)."""
    n = _n(s)
    return float(s[N_INSIDE]) / n if n else _NAN
