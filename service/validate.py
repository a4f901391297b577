"""The validation refresh: statistics of the products against the stations, kept incrementally.

State (``smapds.validation_state``): for every station, estimate and window, the additive sums of
models/moments.py over the window ending on the anchor day (the latest collocated product day).
A refresh, in one REPEATABLE READ transaction under an advisory lock:

1. reads the collocation change log (``smapds.collocation_changes``, written by a trigger) and, for
   each changed (day, station) already inside the windows, subtracts what its previous values
   contributed and adds its current values;
2. moves the anchor to the latest collocated day: adds the new days, subtracts the days that
   left each rolling window;
3. derives the statistics of every station, network, land cover class and the domain (groups sum
   their stations' sums), writes them, appends the domain rows to the history, saves the state and
   deletes the log entries it consumed.

Its cost follows the changed rows and the days the windows moved over, not the record's length.
A full recompute (``full=True``, no state yet, other windows configured, or the anchor moving
back) streams all collocations once.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from models.metrics import TripleCollocation
from models.moments import (
    N_INSIDE,
    WIDTH,
    pair_stats_many,
    pair_sums,
    triple_collocation_from_sums,
    triple_sums,
)
from service.settings import Settings

log = logging.getLogger(__name__)

ESTIMATES: Final = ("product_1km", "model_1km", "coarse_36km", "coarse_9km")
KINDS: Final = (*ESTIMATES, "tc")
VALUES: Final = ("insitu_sm", "sm_1km", "sm_1km_uncertainty", "sm_model", "sm_36km", "sm_9km")
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ValidationConfig:
    windows_days: tuple[int, ...]
    min_pairs: int
    min_triplets: int

    @property
    def windows(self) -> tuple[int, ...]:
        """The rolling windows, then 0 for all time."""
        return (*sorted(set(self.windows_days)), 0)


def validation_config(settings: Settings) -> ValidationConfig:
    return ValidationConfig(
        windows_days=settings.validation_windows_days,
        min_pairs=settings.validation_min_pairs,
        min_triplets=settings.validation_min_triplets,
    )


@dataclass(frozen=True)
class RefreshReport:
    mode: str  # "full", "incremental" or "empty"
    anchor: date | None
    changes: int
    rows_read: int
    stations: int
    seconds: float


def row_sums(values: FloatArray) -> FloatArray:
    """Sums (KINDS, rows, WIDTH) of collocation rows given as (rows, VALUES) with NaN for NULL."""
    insitu, sm, unc, model, c36, c9 = values.T
    return np.stack(
        [
            pair_sums(insitu, sm, uncertainty=unc),
            pair_sums(insitu, model),
            pair_sums(insitu, c36),
            pair_sums(insitu, c9),
            triple_sums(insitu, sm, c36),
        ]
    )


def refresh(
    engine: Engine, *, domain: str, config: ValidationConfig, full: bool = False
) -> RefreshReport:
    """Bring the validation tables of ``domain`` up to date with its collocations."""
    t0 = time.perf_counter()
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(hashtext('smapds.validate:' || :d))"),
                {"d": domain},
            )
            anchor = conn.execute(
                sa.text("SELECT max(product_date) FROM smapds.collocations WHERE domain = :d"),
                {"d": domain},
            ).scalar()
            if anchor is None:
                return RefreshReport("empty", None, 0, 0, 0, time.perf_counter() - t0)
            layout = {"kinds": list(KINDS), "windows": list(config.windows), "width": WIDTH}
            state = _load_state(conn, domain, layout)
            if full or state is None or anchor < state[0]:
                mode = "full"
                stations, sums, rows_read = _full(conn, domain, config.windows, anchor)
                changes = _consume_changes(conn, domain, None)
            else:
                mode = "incremental"
                old_anchor, stations, sums = state
                stations, sums, changes, rows_read = _incremental(
                    conn, domain, config.windows, old_anchor, anchor, stations, sums
                )
            _save_state(conn, domain, layout, anchor, stations, sums)
            _write_statistics(conn, domain, config, anchor, stations, sums)
    report = RefreshReport(
        mode, anchor, changes, rows_read, len(stations), time.perf_counter() - t0
    )
    log.info("validation refreshed", extra={k: str(v) for k, v in report.__dict__.items()})
    return report


# --------------------------------------------------------------------------- state


def _load_state(
    conn: Connection, domain: str, layout: dict[str, Any]
) -> tuple[date, npt.NDArray[np.int64], FloatArray] | None:
    row = conn.execute(
        sa.text(
            "SELECT anchor_date, layout, station_ids, sums FROM smapds.validation_state "
            "WHERE domain = :d"
        ),
        {"d": domain},
    ).one_or_none()
    if row is None or row.layout != layout:
        return None
    stations = np.asarray(row.station_ids, np.int64)
    shape = (len(KINDS), len(layout["windows"]), len(stations), WIDTH)
    sums = np.frombuffer(bytes(row.sums), dtype="<f8").reshape(shape).copy()
    return row.anchor_date, stations, sums


def _save_state(
    conn: Connection,
    domain: str,
    layout: dict[str, Any],
    anchor: date,
    stations: npt.NDArray[np.int64],
    sums: FloatArray,
) -> None:
    conn.execute(
        sa.text("""
        INSERT INTO smapds.validation_state (domain, anchor_date, layout, station_ids, sums)
        VALUES (:d, :a, CAST(:layout AS jsonb), :ids, :sums)
        ON CONFLICT (domain) DO UPDATE SET anchor_date = EXCLUDED.anchor_date,
            layout = EXCLUDED.layout, station_ids = EXCLUDED.station_ids, sums = EXCLUDED.sums,
            refreshed_at = now()
    """),
        {
            "d": domain,
            "a": anchor,
            "layout": json.dumps(layout),
            "ids": [int(s) for s in stations],
            "sums": np.ascontiguousarray(sums, dtype="<f8").tobytes(),
        },
    )


# --------------------------------------------------------------------------- sums


def _in_window(days: npt.NDArray[np.int64], anchor: int, window: int) -> npt.NDArray[np.bool_]:
    inside = days <= anchor
    return inside & (days > anchor - window) if window else inside


def _accumulate(
    sums: FloatArray,
    index: npt.NDArray[np.int64],
    contrib: FloatArray,
    days: npt.NDArray[np.int64],
    windows: Sequence[int],
    anchor: int,
    sign: float = 1.0,
) -> None:
    """Add ``sign * contrib`` (KINDS, rows, WIDTH) of rows at station ``index`` on ``days`` into
    every window (ending on ``anchor``) that contains the row's day."""
    n_stations = sums.shape[2]
    for w, window in enumerate(windows):
        mask = _in_window(days, anchor, window)
        if not mask.any():
            continue
        idx = index[mask]
        part = contrib[:, mask, :]
        for k in range(len(KINDS)):
            for c in range(WIDTH):
                sums[k, w, :, c] += sign * np.bincount(
                    idx, weights=part[k, :, c], minlength=n_stations
                )


def _ordinal(d: date) -> int:
    return d.toordinal()


def _values(rows: Sequence[Any], start: int) -> FloatArray:
    """Columns ``start:start+len(VALUES)`` of result rows as float64 with NaN for NULL."""
    if not rows:
        return np.empty((0, len(VALUES)))
    return np.array([r[start : start + len(VALUES)] for r in rows], dtype=np.float64)


def _station_index(
    stations: npt.NDArray[np.int64], ids: Iterable[int]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], int]:
    """Station ids extended with unseen ones (kept sorted), and the index of each id in it."""
    ids_arr = np.fromiter(ids, np.int64)
    merged = np.union1d(stations, ids_arr)
    return merged, np.searchsorted(merged, ids_arr), len(merged) - len(stations)


def _regrow(sums: FloatArray, old: npt.NDArray[np.int64], new: npt.NDArray[np.int64]) -> FloatArray:
    if len(old) == len(new):
        return sums
    out = np.zeros((*sums.shape[:2], len(new), WIDTH))
    out[:, :, np.searchsorted(new, old), :] = sums
    return out


def _full(
    conn: Connection, domain: str, windows: Sequence[int], anchor: date
) -> tuple[npt.NDArray[np.int64], FloatArray, int]:
    stations = np.asarray(
        conn.execute(
            sa.text(
                "SELECT DISTINCT station_id FROM smapds.collocations WHERE domain = :d "
                "ORDER BY station_id"
            ),
            {"d": domain},
        )
        .scalars()
        .all(),
        np.int64,
    )
    sums = np.zeros((len(KINDS), len(windows), len(stations), WIDTH))
    result = conn.execute(
        sa.text(
            "SELECT c.station_id, c.product_date, c.insitu_sm, c.sm_1km, c.sm_1km_uncertainty, "
            "c.sm_model, c.sm_36km, c.sm_9km FROM smapds.collocations c WHERE c.domain = :d"
        ).execution_options(stream_results=True, yield_per=200_000),
        {"d": domain},
    )
    rows_read = 0
    for chunk in result.partitions():
        rows_read += len(chunk)
        idx = np.searchsorted(stations, np.fromiter((r[0] for r in chunk), np.int64))
        days = np.fromiter((_ordinal(r[1]) for r in chunk), np.int64)
        _accumulate(sums, idx, row_sums(_values(chunk, 2)), days, windows, _ordinal(anchor))
    return stations, sums, rows_read


def _consume_changes(conn: Connection, domain: str, upto: int | None) -> int:
    """Delete the change log entries the refresh has applied (all visible ones when ``upto`` is
    None); entries of transactions not yet visible stay for the next refresh."""
    sql = "DELETE FROM smapds.collocation_changes WHERE domain = :d"
    if upto is not None:
        sql += " AND change_id <= :upto"
    return conn.execute(sa.text(sql), {"d": domain, "upto": upto}).rowcount


def _incremental(
    conn: Connection,
    domain: str,
    windows: Sequence[int],
    old_anchor: date,
    anchor: date,
    stations: npt.NDArray[np.int64],
    sums: FloatArray,
) -> tuple[npt.NDArray[np.int64], FloatArray, int, int]:
    a0, a1 = _ordinal(old_anchor), _ordinal(anchor)
    # 1. changes to days already inside the windows: first logged (= applied) values out,
    #    current values in; changes to later days are covered by step 2
    changes = conn.execute(
        sa.text("""
        SELECT DISTINCT ON (ch.product_date, ch.station_id)
               ch.station_id, ch.product_date, ch.old_insitu_sm, ch.old_sm_1km,
               ch.old_sm_1km_uncertainty, ch.old_sm_model, ch.old_sm_36km, ch.old_sm_9km,
               c.insitu_sm, c.sm_1km, c.sm_1km_uncertainty, c.sm_model, c.sm_36km, c.sm_9km,
               max(ch.change_id) OVER () AS last_change
          FROM smapds.collocation_changes ch
          LEFT JOIN smapds.collocations c
            ON c.domain = ch.domain AND c.product_date = ch.product_date
           AND c.station_id = ch.station_id
         WHERE ch.domain = :d
         ORDER BY ch.product_date, ch.station_id, ch.change_id
    """),
        {"d": domain},
    ).all()
    last_change = max((r.last_change for r in changes), default=None)
    changed = [r for r in changes if _ordinal(r.product_date) <= a0]
    # 2. the days the windows move over: (a0, a1] enters every window; (a0 - w, a1 - w] leaves w
    ranges = [(a0, a1)] + [(a0 - w, min(a1 - w, a0)) for w in windows if w]
    days_moved = sorted({d for lo, hi in ranges for d in range(lo + 1, hi + 1)})
    moved: list[Any] = []
    if days_moved:
        moved = list(
            conn.execute(
                sa.text("""
                SELECT c.station_id, c.product_date, c.insitu_sm, c.sm_1km,
                       c.sm_1km_uncertainty, c.sm_model, c.sm_36km, c.sm_9km
                  FROM smapds.collocations c
                 WHERE c.domain = :d AND c.product_date = ANY(:days)
            """),
                {"d": domain, "days": [date.fromordinal(d) for d in days_moved]},
            )
        )
    ids = [r.station_id for r in changed] + [r[0] for r in moved]
    new_stations, index, _ = _station_index(stations, ids)
    sums = _regrow(sums, stations, new_stations)
    if changed:
        idx = index[: len(changed)]
        days = np.fromiter((_ordinal(r.product_date) for r in changed), np.int64)
        old = row_sums(_values(changed, 2))
        new = row_sums(_values(changed, 2 + len(VALUES)))
        _accumulate(sums, idx, new - old, days, windows, a0)
    if moved:
        idx = index[len(changed) :]
        days = np.fromiter((_ordinal(r[1]) for r in moved), np.int64)
        contrib = row_sums(_values(moved, 2))
        # windows ending on a1 = windows ending on a0 + entering days - leaving days
        for w, window in enumerate(windows):
            entering = (days > a0) & (days <= a1)
            leaving = (
                (days > a0 - window) & (days <= a1 - window) & (days <= a0)
                if window
                else np.zeros_like(entering)
            )
            one = [window]
            sub = sums[:, w : w + 1]
            _accumulate(sub, idx[entering], contrib[:, entering], days[entering], one, a1)
            _accumulate(sub, idx[leaving], contrib[:, leaving], days[leaving], one, a0, sign=-1.0)
    consumed = _consume_changes(conn, domain, last_change) if last_change is not None else 0
    return new_stations, sums, consumed, len(changes) + len(moved)


# --------------------------------------------------------------------------- statistics


def _groups(
    conn: Connection, domain: str, stations: npt.NDArray[np.int64]
) -> dict[str, dict[str, list[int]]]:
    """Members (indices into ``stations``) of each network, land cover class and the domain."""
    rows = conn.execute(
        sa.text("""
        SELECT st.station_id, st.network,
               (SELECT coalesce(nullif(a.description, ''), a.value_text)
                  FROM smapds.station_attributes a
                 WHERE a.station_id = st.station_id AND a.quantity = 'land cover classification'
                 ORDER BY a.source DESC LIMIT 1) AS land_cover
          FROM smapds.stations st WHERE st.station_id = ANY(:ids)
    """),
        {"ids": [int(s) for s in stations]},
    ).all()
    position = {int(s): k for k, s in enumerate(stations)}
    groups: dict[str, dict[str, list[int]]] = {"network": {}, "land_cover": {}}
    for r in rows:
        groups["network"].setdefault(r.network, []).append(position[r.station_id])
        if r.land_cover:
            groups["land_cover"].setdefault(r.land_cover, []).append(position[r.station_id])
    groups["domain"] = {domain: list(range(len(stations)))}
    return groups


def _f(v: float) -> float | None:
    return None if np.isnan(v) else float(v)


def _array(values: Iterable[Any]) -> str:
    """A PostgreSQL array literal (``CAST(:p AS float8[])`` parses it in one call; a Python list
    would become ARRAY[...] with one parser node per element, ~50 times slower at 10^4)."""
    items = []
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            items.append("NULL")
        elif isinstance(v, float):
            items.append(repr(v))
        elif isinstance(v, int | date):
            items.append(str(v))
        else:
            items.append('"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "{" + ",".join(items) + "}"


def _tc_row(
    domain: str, scope: str, key: str, window: int, anchor: date, tc: TripleCollocation
) -> dict[str, Any]:
    values = {"domain": domain, "scope": scope, "key": key, "window": window, "end": anchor}
    values["n"] = tc.n
    for name, triple in (("err", tc.err_std), ("snr", tc.snr_db), ("sens", tc.sensitivity)):
        for who, v in zip(("insitu", "product", "coarse"), triple, strict=True):
            values[f"{name}_{who}"] = _f(v)
    return {**values, "status": tc.status, "reason": tc.reason}


def _write_statistics(
    conn: Connection,
    domain: str,
    config: ValidationConfig,
    anchor: date,
    stations: npt.NDArray[np.int64],
    sums: FloatArray,
) -> None:
    n_est, windows = len(ESTIMATES), config.windows
    scopes: list[tuple[str, str, list[int]]] = [
        ("station", str(int(s)), [k]) for k, s in enumerate(stations)
    ]
    for scope, members in _groups(conn, domain, stations).items():
        scopes += [(scope, key, idx) for key, idx in sorted(members.items())]
    # one sums vector per (scope, window, estimate), in that order
    blocks = [sums[:n_est, :, idx, :].sum(axis=2).transpose(1, 0, 2) for _, _, idx in scopes]
    counts = [(sums[:n_est, :, idx, 0] > 0).sum(axis=2).T for _, _, idx in scopes]
    flat = np.concatenate(blocks).reshape(-1, WIDTH)
    stats = pair_stats_many(flat, min_n=config.min_pairs)
    per_scope = len(windows) * n_est
    meta_scope = [sc for sc, _, _ in scopes for _ in range(per_scope)]
    meta_key = [key for _, key, _ in scopes for _ in range(per_scope)]
    meta_window = [w for _ in scopes for w in windows for _ in range(n_est)]
    meta_estimate = [e for _ in range(len(scopes) * len(windows)) for e in ESTIMATES]
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = np.where(flat[:, 0] > 0, flat[:, N_INSIDE] / flat[:, 0], np.nan)
    cov[np.asarray(meta_estimate) != "product_1km"] = np.nan
    starts = [anchor - timedelta(days=w - 1) if w else None for w in meta_window]
    conn.execute(sa.text("DELETE FROM smapds.validation_stats WHERE domain = :d"), {"d": domain})
    conn.execute(
        sa.text("""
        INSERT INTO smapds.validation_stats
            (domain, scope, scope_key, window_days, estimate, window_start, window_end, n, r,
             r_p, r_ci_low, r_ci_high, rmse, bias, ubrmse, coverage_90, status, reason, stations)
        SELECT :domain, u.* FROM unnest(
            CAST(:scope AS text[]), CAST(:key AS text[]), CAST(:window AS integer[]),
            CAST(:estimate AS text[]), CAST(:start AS date[]), CAST(:end AS date[]),
            CAST(:n AS integer[]), CAST(:r AS float8[]), CAST(:r_p AS float8[]),
            CAST(:lo AS float8[]), CAST(:hi AS float8[]), CAST(:rmse AS float8[]),
            CAST(:bias AS float8[]), CAST(:ubrmse AS float8[]), CAST(:cov AS float8[]),
            CAST(:status AS text[]), CAST(:reason AS text[]), CAST(:stations AS integer[])) u
    """),
        {
            "domain": domain,
            "scope": _array(meta_scope),
            "key": _array(meta_key),
            "window": _array(meta_window),
            "estimate": _array(meta_estimate),
            "start": _array(starts),
            "end": _array([anchor] * len(meta_scope)),
            "n": _array(stats.n.tolist()),
            "r": _array(stats.r.tolist()),
            "r_p": _array(stats.r_p.tolist()),
            "lo": _array(stats.r_ci_low.tolist()),
            "hi": _array(stats.r_ci_high.tolist()),
            "rmse": _array(stats.rmse.tolist()),
            "bias": _array(stats.bias.tolist()),
            "ubrmse": _array(stats.ubrmse.tolist()),
            "cov": _array(cov.tolist()),
            "status": _array(stats.status),
            "reason": _array(stats.reason),
            "stations": _array(np.concatenate(counts).reshape(-1).tolist()),
        },
    )
    tc_k = KINDS.index("tc")
    tc_rows = [
        _tc_row(
            domain,
            scope,
            key,
            window,
            anchor,
            triple_collocation_from_sums(
                sums[tc_k, w, idx, :].sum(axis=0), min_n=config.min_triplets
            ),
        )
        for scope, key, idx in scopes
        if scope in ("station", "domain")
        for w, window in enumerate(windows)
    ]
    conn.execute(sa.text("DELETE FROM smapds.validation_tc WHERE domain = :d"), {"d": domain})
    if tc_rows:
        conn.execute(
            sa.text("""
            INSERT INTO smapds.validation_tc (domain, scope, scope_key, window_days, window_end,
                n, err_std_insitu, err_std_product, err_std_coarse, snr_db_insitu,
                snr_db_product, snr_db_coarse, sensitivity_insitu, sensitivity_product,
                sensitivity_coarse, status, reason)
            SELECT :domain, u.* FROM unnest(
                CAST(:scope AS text[]), CAST(:key AS text[]), CAST(:window AS integer[]),
                CAST(:end AS date[]), CAST(:n AS integer[]), CAST(:err_insitu AS float8[]),
                CAST(:err_product AS float8[]), CAST(:err_coarse AS float8[]),
                CAST(:snr_insitu AS float8[]), CAST(:snr_product AS float8[]),
                CAST(:snr_coarse AS float8[]), CAST(:sens_insitu AS float8[]),
                CAST(:sens_product AS float8[]), CAST(:sens_coarse AS float8[]),
                CAST(:status AS text[]), CAST(:reason AS text[])) u
        """),
            {"domain": domain}
            | {k: _array(r[k] for r in tc_rows) for k in tc_rows[0] if k != "domain"},
        )
    conn.execute(
        sa.text("""
        INSERT INTO smapds.validation_history AS h
            (domain, window_end, window_days, estimate, n, r, rmse, bias, ubrmse, coverage_90,
             status)
        SELECT domain, window_end, window_days, estimate, n, r, rmse, bias, ubrmse, coverage_90,
               status
          FROM smapds.validation_stats WHERE domain = :d AND scope = 'domain'
        ON CONFLICT (domain, window_end, window_days, estimate) DO UPDATE SET
            n = EXCLUDED.n, r = EXCLUDED.r, rmse = EXCLUDED.rmse, bias = EXCLUDED.bias,
            ubrmse = EXCLUDED.ubrmse, coverage_90 = EXCLUDED.coverage_90,
            status = EXCLUDED.status
    """),
        {"d": domain},
    )


def validate(engine: Engine, settings: Settings, day: date) -> None:
    """The service's hook after products and ingests (ledger stage ``validate``): refresh the
    statistics incrementally."""
    refresh(engine, domain=settings.domain, config=validation_config(settings))
