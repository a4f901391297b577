"""The validation report: one self-contained folder (``index.html`` and PNGs beside it) showing how
well the maps agree with the stations over a period, for people who have to decide whether to trust
them.

The page holds, in order:

* the domain-wide statistics as of the latest refresh (``smapds.validation_stats``, rolling windows
  and all time, every estimate), then the same metrics recomputed from ``smapds.collocations`` for
  the requested period with :func:`models.metrics.pair_stats` (which adds Spearman's rho, absent
  from the stored tables because ranks are not additive), with the value added by downscaling
  spelled out (1 km product against the 36 km retrieval and the model before correction);
* scatter plots of the product and of the 36 km retrieval against in situ (hexbin density above
  ``HEXBIN_ABOVE`` pairs) with the 1:1 line and the statistics in the legend;
* time series of chosen stations (default: the ``DEFAULT_STATIONS`` with most pairs): in situ, the
  product with its 90 % band (value +- 1.645 x uncertainty), the 36 km retrieval and, where the
  station measures it, precipitation bars (never invented: without a sensor the caption says so);
* a map of per-station R of the product (all time, ``smapds.station_statistics``), statuses other
  than OK marked;
* the domain-wide triple collocation (``smapds.validation_tc``);
* the per-day uncertainty distribution and its calibration (``smapds.product_uncertainty``);
* the newest comparison of the four downscalers written by ``smapds train``
  (``data_dir/models/comparison-<domain>-*.csv``), or a line saying there is none.

The folder is built in a temporary sibling directory and renamed into place, so a reader never
sees half a report; a previous report in ``out`` is replaced, anything else there is refused.
"""

from __future__ import annotations

import csv
import dataclasses
import html
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from etl.errors import ConfigError
from models.metrics import PairStats, pair_stats
from models.moments import coverage, pair_sums
from service import __version__
from service.validate import ESTIMATES

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

Z_90: Final = 1.6448536269514722
"""Two-sided 90 % quantile of the standard normal distribution (as the validation tables use)."""
HEXBIN_ABOVE: Final = 2000
"""Scatter plots with more pairs than this are drawn as hexbin densities."""
DEFAULT_STATIONS: Final = 3
MAP_LABELS_UP_TO: Final = 40
"""Maps with at most this many stations label each with its id."""
GENERATOR: Final = "smapds report"
"""Written into the page's generator meta tag; marks a folder as a report that may be replaced."""

LABELS: Final = {
    "product_1km": "1 km product",
    "model_1km": "1 km model before correction",
    "coarse_36km": "SMAP 36 km retrieval",
    "coarse_9km": "SMAP 9 km retrieval",
}
_COLUMN: Final = {
    "product_1km": "sm",
    "model_1km": "model",
    "coarse_36km": "c36",
    "coarse_9km": "c9",
}
_ERROR_HEADS: Final = ("RMSE", "bias", "ubRMSE", "in 90 % interval", "status")
_STATUS_MARKERS: Final = {
    "INSUFFICIENT_DATA": ("x", "0.35"),
    "DEGENERATE": ("D", "tab:purple"),
}
_CSS: Final = """
body { font-family: sans-serif; max-width: 1100px; margin: 1em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.2em 0.5em; text-align: right; }
th { background: #eee; } td.text { text-align: left; }
tr.not-ok td { color: #888; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption, p.note { font-size: 0.9em; color: #444; } p.note { font-style: italic; }
"""


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Collocations:
    """Collocation rows of a period as columns (NaN for NULL), ordered by station and day."""

    station: npt.NDArray[np.int64]
    day: npt.NDArray[np.datetime64]
    insitu: FloatArray
    sm: FloatArray
    unc: FloatArray
    model: FloatArray
    c36: FloatArray
    c9: FloatArray

    def __len__(self) -> int:
        return int(self.station.size)

    def estimate(self, name: str) -> FloatArray:
        """The column of an estimate of ``service.validate.ESTIMATES``."""
        values: FloatArray = getattr(self, _COLUMN[name])
        return values

    def where(self, mask: npt.NDArray[np.bool_]) -> Collocations:
        return Collocations(
            **{f.name: getattr(self, f.name)[mask] for f in dataclasses.fields(self)}
        )


def load_collocations(conn: Connection, *, domain: str, start: date, end: date) -> Collocations:
    """The collocations of ``domain`` with product days in [start, end]."""
    rows = conn.execute(
        sa.text("""
        SELECT station_id, product_date, insitu_sm, sm_1km, sm_1km_uncertainty, sm_model,
               sm_36km, sm_9km
          FROM smapds.collocations
         WHERE domain = :d AND product_date BETWEEN :a AND :b
         ORDER BY station_id, product_date
    """),
        {"d": domain, "a": start, "b": end},
    ).all()
    values = np.array([r[2:] for r in rows], dtype=np.float64).reshape(len(rows), 6)
    return Collocations(
        np.array([r[0] for r in rows], dtype=np.int64),
        np.array([r[1] for r in rows], dtype="datetime64[D]"),
        *(np.ascontiguousarray(values[:, k]) for k in range(6)),
    )


def period_statistics(data: Collocations, *, min_pairs: int) -> dict[str, PairStats]:
    """:func:`models.metrics.pair_stats` of every estimate against in situ over ``data``."""
    return {
        name: pair_stats(data.estimate(name), data.insitu, min_n=min_pairs) for name in ESTIMATES
    }


def period_coverage(data: Collocations) -> float:
    """Fraction of the (in situ, product) pairs whose in situ value lies inside the product's
    90 % interval ``sm +- 1.645 x uncertainty`` (a pair without an uncertainty counts as outside,
    as in the validation tables; NaN without pairs)."""
    sums = pair_sums(data.insitu, data.sm, uncertainty=data.unc, z=Z_90)
    return coverage(sums.sum(axis=0))


def parse_station_ids(text: str) -> tuple[int, ...]:
    """``"12,7, 3"`` -> (12, 7, 3); a ConfigError naming the bad item otherwise."""
    ids: list[int] = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        try:
            ids.append(int(item))
        except ValueError:
            raise ConfigError(f"--stations: not a station id: {item!r}") from None
    if not ids:
        raise ConfigError("--stations: give at least one station id (e.g. --stations 12,7)")
    return tuple(dict.fromkeys(ids))


# --------------------------------------------------------------------------- the page


@dataclass(frozen=True)
class ReportResult:
    index: Path
    figures: tuple[str, ...]
    pairs: int
    """(in situ, 1 km product) pairs in the period."""
    stations: int
    """Stations contributing such pairs."""
    notes: tuple[str, ...]
    """What the page says is missing (no data, no precipitation sensor, no comparison, ...)."""


@dataclass
class _Page:
    folder: Path
    parts: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *chunks: str) -> None:
        self.parts.extend(chunks)

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.add(f'<p class="note">{_e(text)}</p>')

    def figure(self, fig: Any, name: str, *, alt: str, caption: str) -> None:
        _save(fig, self.folder / name)
        self.figures.append(name)
        self.add(
            f'<figure><img src="{_e(name)}" alt="{_e(alt)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>"
        )


def write_report(
    engine: Engine,
    *,
    domain: str,
    start: date,
    end: date,
    out: Path,
    data_dir: Path,
    min_pairs: int,
    stations: Sequence[int] | None = None,
) -> ReportResult:
    """Write the report of ``domain`` for product days [start, end] into the folder ``out``.

    ``min_pairs`` is the minimum sample size of the recomputed statistics (the validation setting;
    at least 4, which the Fisher CI needs). ``stations`` chooses the time series (station ids);
    default the ``DEFAULT_STATIONS`` with most (in situ, product) pairs in the period.
    """
    if end < start:
        raise ConfigError(f"--end {end} is before --start {start}")
    out = out.resolve()  # "." or "x/.." have no usable name for the sibling temp folder
    _check_out(out)
    min_n = max(min_pairs, 4)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        tmp.chmod(0o755)
        page = _Page(tmp)
        with engine.connect() as conn:
            data = load_collocations(conn, domain=domain, start=start, end=end)
            _header(page, conn, domain, start, end, data)
            _stored_section(page, conn, domain)
            _period_section(page, data, domain, start, end, min_n)
            _scatter_section(page, data, min_n)
            _timeseries_section(page, conn, data, start, end, stations, min_n)
            _map_section(page, conn, domain)
            _tc_section(page, conn, domain)
            _uncertainty_section(page, conn, domain, start, end)
        _models_section(page, data_dir, domain)
        _write_html(page, tmp / "index.html", domain, start, end)
        _publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    pairs = np.isfinite(data.insitu) & np.isfinite(data.sm)
    result = ReportResult(
        index=out / "index.html",
        figures=tuple(page.figures),
        pairs=int(pairs.sum()),
        stations=int(np.unique(data.station[pairs]).size),
        notes=tuple(page.notes),
    )
    log.info(
        "report written",
        extra={
            "domain": domain,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "out": str(out),
            "pairs": result.pairs,
            "figures": len(result.figures),
        },
    )
    return result


def _header(
    page: _Page, conn: Connection, domain: str, start: date, end: date, data: Collocations
) -> None:
    products = conn.execute(
        sa.text(
            "SELECT count(*) FROM smapds.products WHERE domain = :d "
            "AND product_date BETWEEN :a AND :b"
        ),
        {"d": domain, "a": start, "b": end},
    ).scalar_one()
    pairs = np.isfinite(data.insitu) & np.isfinite(data.sm)
    page.add(
        f"<h1>smapds validation report: {_e(domain)}, {start} to {end}</h1>",
        f"<p>Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by smapds {_e(__version__)}. "
        f"Period: {products} product day(s), {len(data)} collocation row(s), "
        f"{int(pairs.sum())} pair(s) of in situ and 1 km product values from "
        f"{np.unique(data.station[pairs]).size} station(s). Soil moisture in m3/m3; in situ "
        "values are the G-flagged surface observations around the overpass.</p>",
        '<nav><a href="#stored">stored statistics</a> | <a href="#period">period</a> | '
        '<a href="#scatter">scatter</a> | <a href="#timeseries">time series</a> | '
        '<a href="#map">map of R</a> | <a href="#tc">triple collocation</a> | '
        '<a href="#uncertainty">uncertainty</a> | <a href="#models">model comparison</a></nav>',
    )
    if not len(data):
        page.note(
            f"No data: there are no collocations in domain {domain} between {start} and {end} "
            "(no product days there, or no stations collocated with them). The sections below "
            "that depend on the period are empty."
        )


# --------------------------------------------------------------------------- tables


def _stored_section(page: _Page, conn: Connection, domain: str) -> None:
    page.add('<section id="stored"><h2>Domain-wide statistics as of the latest refresh</h2>')
    state = conn.execute(
        sa.text("SELECT anchor_date, refreshed_at FROM smapds.validation_state WHERE domain = :d"),
        {"d": domain},
    ).one_or_none()
    rows = conn.execute(
        sa.text("""
        SELECT window_days, window_start, window_end, estimate, n, stations, r, r_ci_low,
               r_ci_high, rmse, bias, ubrmse, coverage_90, status, reason
          FROM smapds.validation_stats
         WHERE domain = :d AND scope = 'domain'
    """),
        {"d": domain},
    ).all()
    if not rows:
        page.note(
            f"No validation statistics stored for domain {domain}: no collocations have been "
            "validated yet (smapds collocate, then smapds validate)."
        )
        page.add("</section>")
        return
    if state is not None:
        page.add(
            f"<p>smapds.validation_stats, scope domain: pairs of all stations pooled, windows "
            f"ending on {state.anchor_date} (the latest collocated day), refreshed "
            f"{state.refreshed_at:%Y-%m-%d %H:%M} UTC. These do not depend on the period "
            "asked for.</p>"
        )
    order = {e: k for k, e in enumerate(ESTIMATES)}
    rows = sorted(rows, key=lambda r: (r.window_days == 0, r.window_days, order[r.estimate]))
    body = []
    for r in rows:
        window = f"{r.window_days} d" if r.window_days else "all time"
        span = f"{r.window_start or '...'} to {r.window_end}"
        body.append(
            (
                f' class="{_row_class(r.status)}"',
                [
                    _td(window, text=True),
                    _td(span, text=True),
                    _td(LABELS[r.estimate], text=True),
                    _td(str(r.n)),
                    _td(str(r.stations)),
                    _td(_r_ci(r.r, r.r_ci_low, r.r_ci_high)),
                    _td(_fmt(r.rmse)),
                    _td(_fmt(r.bias, signed=True)),
                    _td(_fmt(r.ubrmse)),
                    _td(_pct(r.coverage_90)),
                    _td(_status(r.status, r.reason), text=True),
                ],
            )
        )
    page.add(
        _table(
            [
                "window",
                "days",
                "estimate",
                "n",
                "stations",
                "R [95 % CI]",
                *_ERROR_HEADS,
            ],
            body,
            table_id="stored-stats",
        ),
        "<p>R: Pearson correlation with its 95 % confidence interval (Fisher z); RMSE, bias "
        "(estimate minus in situ) and ubRMSE in m3/m3, dividing by n (pytesmo definitions, "
        "models/metrics.py). In 90 % interval: fraction of in situ values inside the 1 km "
        "product's value +- 1.645 x uncertainty; about 90 % if the uncertainty is calibrated, "
        "lower in practice because station representativeness error is not in the band.</p>",
        "</section>",
    )


def _period_section(
    page: _Page, data: Collocations, domain: str, start: date, end: date, min_pairs: int
) -> None:
    page.add(
        '<section id="period"><h2>Statistics over the period, recomputed from the collocations</h2>'
    )
    if not len(data):
        page.note(f"No data in the period {start} to {end}: nothing to recompute.")
        page.add("</section>")
        return
    stats = period_statistics(data, min_pairs=min_pairs)
    cov = period_coverage(data)
    body = []
    for name in ESTIMATES:
        s = stats[name]
        values: list[tuple[str, float | int | str | None, str]] = [
            ("n", s.n, str(s.n)),
            ("stations", _stations_with_pairs(data, name), ""),
            ("r", s.r, _r_ci(s.r, s.r_ci_low, s.r_ci_high)),
            ("r_p", s.r_p, _fmt(s.r_p, digits=3, sci=True)),
            ("rho", s.rho, _fmt(s.rho, digits=3)),
            ("rmse", s.rmse, _fmt(s.rmse)),
            ("bias", s.bias, _fmt(s.bias, signed=True)),
            ("ubrmse", s.ubrmse, _fmt(s.ubrmse)),
            ("coverage_90", cov if name == "product_1km" else None, ""),
        ]
        cells = [_td(LABELS[name], text=True)]
        for key, value, shown in values:
            if key == "stations":
                shown = str(value)
            if key == "coverage_90":
                shown = _pct(value if isinstance(value, float) else None)
            cells.append(_td(shown, field=key, value=value))
        cells.append(_td(_status(s.status, s.reason), text=True, field="status", value=s.status))
        body.append((f' class="{_row_class(s.status)}" data-estimate="{name}"', cells))
    page.add(
        f"<p>Domain {_e(domain)}, product days {start} to {end}; every row uses the pairs where "
        f"that estimate and the in situ value both exist (minimum {min_pairs} pairs), computed "
        "with models.metrics.pair_stats. Spearman's rho is computed here only: the stored "
        "tables cannot keep it (ranks are not additive).</p>",
        _table(
            [
                "estimate",
                "n",
                "stations",
                "R [95 % CI]",
                "p(R)",
                "Spearman rho",
                *_ERROR_HEADS,
            ],
            body,
            table_id="period-stats",
        ),
        f"<p>{_e(_value_added(data, stats, min_pairs))}</p>",
        "</section>",
    )


def _stations_with_pairs(data: Collocations, name: str) -> int:
    ok = np.isfinite(data.insitu) & np.isfinite(data.estimate(name))
    return int(np.unique(data.station[ok]).size)


def _value_added(data: Collocations, stats: dict[str, PairStats], min_pairs: int) -> str:
    """A sentence comparing the product with the 36 km retrieval and the uncorrected model."""
    product, coarse, model = stats["product_1km"], stats["coarse_36km"], stats["model_1km"]
    if product.status != "OK" or coarse.status != "OK":
        return (
            "Value added by downscaling: cannot be judged over this period (1 km product "
            f"{product.status}, 36 km retrieval {coarse.status})."
        )
    both = np.isfinite(data.sm) & np.isfinite(data.c36)
    same = data.where(both)
    p2 = pair_stats(same.sm, same.insitu, min_n=min_pairs)
    c2 = pair_stats(same.c36, same.insitu, min_n=min_pairs)
    text = (
        f"Value added by downscaling: R {product.r:.3f} for the 1 km product against "
        f"{coarse.r:.3f} for the 36 km retrieval (difference {product.r - coarse.r:+.3f}) and "
        f"{_fmt(model.r, digits=3)} for the model before correction; ubRMSE {product.ubrmse:.4f} "
        f"against {coarse.ubrmse:.4f} m3/m3 (difference {product.ubrmse - coarse.ubrmse:+.4f})."
    )
    if p2.status == "OK" and c2.status == "OK":
        text += (
            f" On the {p2.n} pairs where both exist (the product also covers the retrieval's "
            f"gaps): R {p2.r:.3f} against {c2.r:.3f}, ubRMSE {p2.ubrmse:.4f} against "
            f"{c2.ubrmse:.4f} m3/m3."
        )
    return text


def _tc_section(page: _Page, conn: Connection, domain: str) -> None:
    page.add(
        '<section id="tc"><h2>Triple collocation (in situ, 1 km product, 36 km retrieval)</h2>'
    )
    rows = conn.execute(
        sa.text("""
        SELECT * FROM smapds.validation_tc WHERE domain = :d AND scope = 'domain'
         ORDER BY window_days = 0, window_days
    """),
        {"d": domain},
    ).all()
    if not rows:
        page.note(f"No triple collocation results stored for domain {domain}.")
        page.add("</section>")
        return
    body = []
    for r in rows:
        cells = [
            _td(f"{r.window_days} d" if r.window_days else "all time", text=True),
            _td(str(r.window_end)),
            _td(str(r.n)),
        ]
        for what in ("err_std", "snr_db", "sensitivity"):
            for who in ("insitu", "product", "coarse"):
                v = getattr(r, f"{what}_{who}")
                cells.append(_td(_fmt(v, digits=1 if what == "snr_db" else 4)))
        cells.append(_td(_status(r.status, r.reason), text=True))
        body.append((f' class="{_row_class(r.status)}"', cells))
    sources = ("in situ", "product", "36 km")
    page.add(
        _table(
            [
                "window",
                "ending",
                "n",
                *(f"error std {w}" for w in sources),
                *(f"SNR dB {w}" for w in sources),
                *(f"sensitivity {w}" for w in sources),
                "status",
            ],
            body,
            table_id="tc",
        ),
        "<p>Covariance method (Stoffelen 1998; Gruber et al. 2016), all stations pooled, as "
        "of the latest refresh: each dataset's random error standard deviation in its own units "
        "(m3/m3), its signal-to-noise ratio and its data-scaled sensitivity. Caveat: the product "
        "is corrected to the retrieval, so their errors are not independent as triple "
        "collocation assumes; read the product's error with that in mind (NEGATIVE_VARIANCE is "
        "the usual symptom). Pooling stations mixes their climatologies into the signal.</p>",
        "</section>",
    )


def _models_section(page: _Page, data_dir: Path, domain: str) -> None:
    page.add('<section id="models"><h2>The four downscalers compared</h2>')
    folder = data_dir / "models"
    found = sorted(
        folder.glob(f"comparison-{domain}-*.csv") if folder.is_dir() else [],
        key=lambda p: (p.stat().st_mtime, p.name),
    )
    if not found:
        page.note(
            f"No model comparison: smapds train has not written one for domain {domain} "
            f"(looked for {folder}/comparison-{domain}-*.csv)."
        )
        page.add("</section>")
        return
    table = found[-1]
    with open(table, newline="") as fh:
        rows = list(csv.reader(fh))
    head, body = (rows[0], rows[1:]) if rows else ([], [])
    truth = (
        " On the synthetic world, each model's 1 km maps of the hold-out days against the truth: "
        "truth_1km_* on the pixels bilinear interpolation of the retrieval covers too (the "
        "bilinear row, the baseline), truth_filled_* on the gap-filled pixels."
        if "truth_1km_r" in head
        else ""
    )
    page.add(
        f"<p>From {_e(table.name)} (the newest of {len(found)}): scores at 36 km against the "
        "retrieval, spatially blocked cross-validation (cv_*) and temporal hold-out "
        f"(holdout_*).{truth}</p>",
        _table(
            head, [("", [_td(_csv_cell(v), text=k == 0) for k, v in enumerate(r)]) for r in body]
        ),
    )
    png = table.with_suffix(".png")
    if png.is_file():
        shutil.copyfile(png, page.folder / "model_comparison.png")
        page.figures.append("model_comparison.png")
        page.add(
            '<figure><img src="model_comparison.png" alt="model comparison">'
            f"<figcaption>{_e(png.name)}: R and RMSE of each model, blocked CV and "
            "hold-out (and RMSE at 1 km against the truth, on the synthetic world)."
            "</figcaption></figure>"
        )
    page.add("</section>")


# --------------------------------------------------------------------------- plots


def _scatter_section(page: _Page, data: Collocations, min_pairs: int) -> None:
    page.add('<section id="scatter"><h2>Estimates against in situ over the period</h2>')
    if not (np.isfinite(data.insitu) & np.isfinite(data.sm)).any():
        page.note("No pairs of in situ and 1 km product values in the period: no scatter plot.")
        page.add("</section>")
        return
    panels = [
        (
            LABELS[name],
            data.estimate(name),
            pair_stats(data.estimate(name), data.insitu, min_n=min_pairs),
        )
        for name in ("product_1km", "coarse_36km")
    ]
    fig = scatter_figure(data.insitu, panels)
    n = int((np.isfinite(data.insitu) & np.isfinite(data.sm)).sum())
    page.figure(
        fig,
        "scatter.png",
        alt="scatter of the 1 km product and the 36 km retrieval against in situ",
        caption=f"Left: 1 km product, right: 36 km retrieval, against in situ, all stations "
        f"pooled ({'hexbin density' if n > HEXBIN_ABOVE else 'one point per station-day'}); "
        "dashed: 1:1 line; the legend gives n, R [95 % CI], Spearman rho, RMSE, bias and "
        "ubRMSE (m3/m3).",
    )
    page.add("</section>")


def scatter_figure(
    reference: FloatArray, panels: Sequence[tuple[str, FloatArray, PairStats]]
) -> Any:
    """One panel per (label, estimate, stats) against ``reference``, on equal axes with the 1:1 line."""
    plt = _pyplot()
    fig, axes = plt.subplots(
        1, len(panels), figsize=(4.8 * len(panels), 4.6), constrained_layout=True, squeeze=False
    )
    finite = np.concatenate(
        [reference[np.isfinite(reference)]] + [e[np.isfinite(e)] for _, e, _ in panels]
    )
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.5)
    pad = max(0.02, 0.05 * (hi - lo))
    lo, hi = max(0.0, lo - pad), hi + pad
    for ax, (label, estimate, stats) in zip(axes[0], panels, strict=True):
        ok = np.isfinite(reference) & np.isfinite(estimate)
        x, y = reference[ok], estimate[ok]
        if x.size > HEXBIN_ABOVE:
            hb = ax.hexbin(
                x,
                y,
                gridsize=60,
                extent=(lo, hi, lo, hi),
                mincnt=1,
                bins="log",
                cmap="viridis",
                label=_stats_label(stats),
            )
            fig.colorbar(hb, ax=ax, label="pairs per cell", shrink=0.8)
        elif x.size:
            ax.scatter(
                x,
                y,
                s=10,
                alpha=0.5,
                color="tab:blue",
                edgecolors="none",
                label=_stats_label(stats),
            )
        else:
            ax.text(0.5, 0.5, "no pairs", transform=ax.transAxes, ha="center", va="center")
        ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="1:1")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        ax.set_xlabel("in situ (m3/m3)")
        ax.set_ylabel(f"{label} (m3/m3)")
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8, framealpha=0.85)
    return fig


def _stats_label(s: PairStats) -> str:
    if s.status == "INSUFFICIENT_DATA":
        return f"n = {s.n}: too few pairs"
    lines = [f"n = {s.n}"]
    if s.status == "OK":
        lines += [
            f"R = {_r_ci(s.r, s.r_ci_low, s.r_ci_high)}",
            f"rho = {s.rho:.3f}",
        ]
    else:
        lines.append(f"R undefined ({s.reason})")
    lines += [
        f"RMSE = {s.rmse:.4f}",
        f"bias = {s.bias:+.4f}",
        f"ubRMSE = {s.ubrmse:.4f}",
    ]
    return "\n".join(lines)


def _timeseries_section(
    page: _Page,
    conn: Connection,
    data: Collocations,
    start: date,
    end: date,
    requested: Sequence[int] | None,
    min_pairs: int,
) -> None:
    page.add('<section id="timeseries"><h2>Time series at stations</h2>')
    chosen = list(requested) if requested else _busiest(data, DEFAULT_STATIONS)
    names = {
        r.station_id: (r.network, r.station)
        for r in conn.execute(
            sa.text(
                "SELECT station_id, network, station FROM smapds.stations "
                "WHERE station_id = ANY(:ids)"
            ),
            {"ids": chosen},
        )
    }
    if not requested and chosen:
        page.add(
            f"<p>The {len(chosen)} station(s) with most pairs in the period "
            "(choose others with --stations ID,ID).</p>"
        )
    if not chosen:
        page.note("No station has pairs of in situ and product values in the period.")
    for sid in chosen:
        if sid not in names:
            page.note(f"Station {sid}: no such station in the database.")
            continue
        mine = data.where(data.station == sid)
        network, station = names[sid]
        title = f"{network} / {station} (station {sid})"
        if not len(mine):
            page.note(f"{title}: no collocations in the period.")
            continue
        precip, precip_note = _precipitation(conn, sid, start, end)
        stats = pair_stats(mine.sm, mine.insitu, min_n=min_pairs)
        fig = timeseries_figure(
            mine, precip, title=f"{title}: {_stats_label(stats).replace(chr(10), ', ')}"
        )
        page.figure(
            fig,
            f"timeseries_station_{sid}.png",
            alt=f"time series at {title}",
            caption=f"{title}: in situ (black), 1 km product (blue) with its 90 % interval "
            "(value +- 1.645 x uncertainty, shaded), 36 km retrieval (red squares). " + precip_note,
        )
    page.add("</section>")


def _busiest(data: Collocations, k: int) -> list[int]:
    ok = np.isfinite(data.insitu) & np.isfinite(data.sm)
    ids, counts = np.unique(data.station[ok], return_counts=True)
    order = sorted(zip((-counts).tolist(), ids.tolist(), strict=True))
    return [int(sid) for _, sid in order[:k]]


@dataclass(frozen=True)
class Precipitation:
    day: npt.NDArray[np.datetime64]
    amount: FloatArray
    unit: str


def _precipitation(
    conn: Connection, station_id: int, start: date, end: date
) -> tuple[Precipitation | None, str]:
    """Daily (UTC) precipitation at the station from its own sensors, and the caption's words.

    Per sensor the day's G-flagged values are summed; several sensors are averaged. None, with
    the reason, when the station has no precipitation sensor or no such values in the period.
    """
    sensors = conn.execute(
        sa.text("""
        SELECT count(*) AS n, string_agg(DISTINCT coalesce(unit, ''), ', ') AS unit
          FROM smapds.sensors WHERE station_id = :s AND variable = 'precipitation'
    """),
        {"s": station_id},
    ).one()
    if not sensors.n:
        return None, "No precipitation bars: the station has no precipitation sensor."
    t0 = datetime.combine(start, time(0), tzinfo=UTC)
    t1 = datetime.combine(end + timedelta(days=1), time(0), tzinfo=UTC)
    rows = conn.execute(
        sa.text("""
        SELECT p.day, avg(p.total) AS amount
          FROM (SELECT o.sensor_id, (o.time AT TIME ZONE 'UTC')::date AS day,
                       sum(o.value) AS total
                  FROM smapds.sensors s
                  JOIN smapds.observations o ON o.sensor_id = s.sensor_id
                 WHERE s.station_id = :s AND s.variable = 'precipitation'
                   AND o.quality_flag = 'G' AND o.time >= :t0 AND o.time < :t1
                 GROUP BY o.sensor_id, (o.time AT TIME ZONE 'UTC')::date) p
         GROUP BY p.day ORDER BY p.day
    """),
        {"s": station_id, "t0": t0, "t1": t1},
    ).all()
    if not rows:
        return None, (
            "No precipitation bars: the station's precipitation sensor has no G-flagged "
            "observations in the period."
        )
    unit = sensors.unit or "unit not given"
    return (
        Precipitation(
            np.array([r.day for r in rows], dtype="datetime64[D]"),
            np.array([r.amount for r in rows], dtype=np.float64),
            unit,
        ),
        f"Bars: daily precipitation at the station ({unit}; G-flagged observations summed per "
        "UTC day, sensors averaged), axis on the right, hanging from the top.",
    )


def timeseries_figure(data: Collocations, precip: Precipitation | None, *, title: str) -> Any:
    """One station's in situ, product (with its 90 % band), 36 km retrieval and precipitation."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 3.8), constrained_layout=True)
    days = data.day.astype("datetime64[D]").astype(object)
    low, high = data.sm - Z_90 * data.unc, data.sm + Z_90 * data.unc
    band = np.isfinite(low) & np.isfinite(high)
    ax.fill_between(
        days, low, high, where=band, color="tab:blue", alpha=0.2, lw=0, label="90 % interval"
    )
    ax.plot(days, data.sm, "-", color="tab:blue", lw=1.2, label="1 km product")
    ax.plot(days, data.c36, "s", color="tab:red", ms=3, label="36 km retrieval")
    ax.plot(days, data.insitu, "o-", color="black", ms=2.5, lw=0.6, label="in situ")
    ax.set_ylabel("soil moisture (m3/m3)")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if precip is not None:
        ax2 = ax.twinx()
        bars = ax2.bar(
            precip.day.astype(object),
            precip.amount,
            width=0.8,
            color="tab:cyan",
            alpha=0.6,
            label="precipitation",
        )
        top = float(np.nanmax(precip.amount)) if precip.amount.size else 0.0
        ax2.set_ylim(max(top, 1.0) * 3.0, 0.0)
        ax2.set_ylabel(f"precipitation ({precip.unit} per day)")
        ax.set_zorder(ax2.get_zorder() + 1)  # the series in front of the bars
        ax.patch.set_visible(False)
        handles.append(bars)
        labels.append("precipitation")
    ax.legend(handles, labels, loc="lower left", fontsize=8, ncol=5, framealpha=0.85)
    ax.set_title(title, fontsize=9)
    fig.autofmt_xdate()
    return fig


def _map_section(page: _Page, conn: Connection, domain: str) -> None:
    page.add('<section id="map"><h2>Per-station R of the 1 km product (all time)</h2>')
    rows = conn.execute(
        sa.text("""
        SELECT station_id, network, station, ST_X(geom) AS lon, ST_Y(geom) AS lat, n, r, status,
               window_end
          FROM smapds.station_statistics
         WHERE domain = :d AND window_days = 0 AND estimate = 'product_1km'
         ORDER BY station_id
    """),
        {"d": domain},
    ).all()
    if not rows:
        page.note(f"No per-station statistics stored for domain {domain}: no map.")
        page.add("</section>")
        return
    extent = conn.execute(
        sa.text("""
        SELECT ST_XMin(e) AS x0, ST_YMin(e) AS y0, ST_XMax(e) AS x1, ST_YMax(e) AS y1
          FROM (SELECT ST_Extent(footprint) AS e FROM smapds.products WHERE domain = :d) x
    """),
        {"d": domain},
    ).one()
    box = None if extent.x0 is None else (extent.x0, extent.y0, extent.x1, extent.y1)
    fig = map_figure(
        lon=np.array([r.lon for r in rows], dtype=np.float64),
        lat=np.array([r.lat for r in rows], dtype=np.float64),
        r=np.array([r.r for r in rows], dtype=np.float64),
        status=[r.status for r in rows],
        station_ids=[r.station_id for r in rows],
        box=box,
    )
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    page.figure(
        fig,
        "map_r.png",
        alt="map of per-station R",
        caption=f"Pearson R of the 1 km product against in situ per station, all time up to "
        f"{rows[0].window_end} (smapds.station_statistics; as of the latest refresh, not the "
        f"period). Stations by status: {', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}"
        "; other statuses than OK are drawn with their own markers, without a colour. "
        + ("Rectangle: extent of the products." if box else ""),
    )
    page.add("</section>")


def map_figure(
    *,
    lon: FloatArray,
    lat: FloatArray,
    r: FloatArray,
    status: Sequence[str],
    station_ids: Sequence[int],
    box: tuple[float, float, float, float] | None,
) -> Any:
    """Stations at (lon, lat) coloured by R where the status is OK, marked by status elsewhere
    (labelled with their ids when there are few)."""
    plt = _pyplot()
    from matplotlib.patches import Rectangle

    fig, ax = plt.subplots(figsize=(7.5, 5.5), constrained_layout=True)
    st = np.array(status, dtype=object)
    ok = (st == "OK") & np.isfinite(r)
    if ok.any():
        vmin = min(0.0, float(np.floor(r[ok].min() * 10) / 10))
        points = ax.scatter(
            lon[ok],
            lat[ok],
            c=r[ok],
            cmap="RdYlBu",
            vmin=vmin,
            vmax=1.0,
            s=60,
            edgecolors="black",
            linewidths=0.5,
            label="OK",
            zorder=3,
        )
        fig.colorbar(points, ax=ax, label="Pearson R (1 km product vs in situ)", shrink=0.85)
    if lon.size <= MAP_LABELS_UP_TO:
        for sid, x, y in zip(station_ids, lon, lat, strict=True):
            ax.annotate(str(sid), (x, y), xytext=(4, 4), textcoords="offset points", fontsize=7)
    for name in sorted(set(status) - {"OK"}):
        marker, colour = _STATUS_MARKERS.get(name, ("^", "tab:orange"))
        mask = st == name
        ax.scatter(
            lon[mask],
            lat[mask],
            marker=marker,
            color=colour,
            s=50,
            label=name,
            zorder=3,
            linewidths=1.2,
        )
    if box is not None:
        x0, y0, x1, y1 = box
        ax.add_patch(
            Rectangle(
                (x0, y0), x1 - x0, y1 - y0, fill=False, ls="--", color="0.5", label="products"
            )
        )
        ax.set_xlim(min(x0, float(lon.min())) - 0.5, max(x1, float(lon.max())) + 0.5)
        ax.set_ylim(min(y0, float(lat.min())) - 0.5, max(y1, float(lat.max())) + 0.5)
    lat0 = float(np.nanmean(lat))
    ax.set_aspect(1.0 / max(math.cos(math.radians(lat0)), 0.1))
    ax.set_xlabel("longitude (deg E)")
    ax.set_ylabel("latitude (deg N)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8, framealpha=0.85)
    return fig


def _uncertainty_section(
    page: _Page, conn: Connection, domain: str, start: date, end: date
) -> None:
    page.add('<section id="uncertainty"><h2>Uncertainty and its calibration per day</h2>')
    rows = conn.execute(
        sa.text("""
        SELECT product_date, unc_mean, unc_p10, unc_p50, unc_p90, n_stations, coverage_90
          FROM smapds.product_uncertainty
         WHERE domain = :d AND product_date BETWEEN :a AND :b
         ORDER BY product_date
    """),
        {"d": domain, "a": start, "b": end},
    ).all()
    if not rows:
        page.note(f"No products between {start} and {end}: no uncertainty summary.")
        page.add("</section>")
        return
    values = np.array([r[1:] for r in rows], dtype=np.float64).reshape(len(rows), 6)
    days = np.array([r.product_date for r in rows], dtype="datetime64[D]")
    fig = uncertainty_figure(days, values)
    mean_cov = float(np.nanmean(values[:, 5])) if np.isfinite(values[:, 5]).any() else math.nan
    page.figure(
        fig,
        "uncertainty.png",
        alt="uncertainty per day",
        caption="Top: distribution of the per-pixel uncertainty (one standard deviation of the "
        "trees) over the map each day: 10th-90th percentile shaded, median and mean. Bottom: "
        "fraction of the stations' in situ values inside the product's 90 % interval each day "
        f"(mean over the days: {_pct(mean_cov)}); the dotted line is the nominal 90 %. "
        "(smapds.product_uncertainty)",
    )
    if not np.isfinite(values[:, :4]).any():
        page.note("The products of the period carry no uncertainty summary (unc_* are NULL).")
    page.add("</section>")


def uncertainty_figure(days: npt.NDArray[np.datetime64], values: FloatArray) -> Any:
    """``values`` columns: unc_mean, unc_p10, unc_p50, unc_p90, n_stations, coverage_90."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(9, 4.8), sharex=True, constrained_layout=True, height_ratios=(3, 2)
    )
    x = days.astype(object)
    mean, p10, p50, p90, _, cov = values.T
    top.fill_between(
        x,
        p10,
        p90,
        where=np.isfinite(p10) & np.isfinite(p90),
        color="tab:purple",
        alpha=0.25,
        lw=0,
        label="p10-p90",
    )
    top.plot(x, p50, "-", color="tab:purple", label="median")
    top.plot(x, mean, "--", color="black", lw=1, label="mean")
    top.set_ylabel("uncertainty (m3/m3)")
    top.grid(alpha=0.3)
    top.legend(loc="upper left", fontsize=8)
    bottom.plot(x, cov, "o-", color="tab:green", ms=3, label="in 90 % interval")
    bottom.axhline(0.9, ls=":", color="black", lw=1, label="nominal 0.9")
    bottom.set_ylim(-0.05, 1.05)
    bottom.set_ylabel("coverage")
    bottom.grid(alpha=0.3)
    bottom.legend(loc="lower left", fontsize=8)
    fig.autofmt_xdate()
    return fig


# --------------------------------------------------------------------------- output


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    """Write a figure as PNG (no software version in the metadata) and release it."""
    try:
        fig.savefig(path, dpi=100, metadata={"Software": None})
    finally:
        _pyplot().close(fig)


def _write_html(page: _Page, path: Path, domain: str, start: date, end: date) -> None:
    doc = "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f'<meta name="generator" content="{GENERATOR} {_e(__version__)}">',
            f"<title>smapds validation report {_e(domain)} {start} to {end}</title>",
            f"<style>{_CSS}</style></head><body>",
            *page.parts,
            "</body></html>",
            "",
        ]
    )
    path.write_text(doc, encoding="utf-8")


def _is_report(folder: Path) -> bool:
    index = folder / "index.html"
    if not index.is_file():
        return False
    with open(index, encoding="utf-8", errors="replace") as fh:
        return f'<meta name="generator" content="{GENERATOR}' in fh.read(4096)


def _check_out(out: Path) -> None:
    """Refuse an output that is not a directory, or a non-empty one without a previous report."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not _is_report(out):
        raise ConfigError(
            f"--out {out} is not empty and holds no smapds report; give a new or empty directory "
            "(a previous report there is replaced)"
        )


def _publish(tmp: Path, out: Path) -> None:
    """Rename the finished folder into place; a previous report is moved aside, then deleted."""
    for f in _walk(tmp):
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if not out.exists():
        os.replace(tmp, out)
        return
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except OSError:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _walk(folder: Path) -> Iterator[Path]:
    yield from (p for p in sorted(folder.iterdir()) if p.is_file())


# --------------------------------------------------------------------------- formatting


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _td(
    shown: str,
    *,
    text: bool = False,
    field: str | None = None,
    value: float | int | str | None = None,
) -> str:
    attrs = ' class="text"' if text else ""
    if field is not None:
        attrs += f' data-field="{_e(field)}" data-value="{_e(_raw(value))}"'
    return f"<td{attrs}>{_e(shown)}</td>"


def _raw(value: float | int | str | None) -> str:
    """Machine-readable value of a cell: repr of a float (round-trips exactly), '' for none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(float(value)) if isinstance(value, float) else str(value)


def _table(
    head: Sequence[str], body: Sequence[tuple[str, Sequence[str]]], *, table_id: str | None = None
) -> str:
    ident = f' id="{_e(table_id)}"' if table_id else ""
    lines = [f"<table{ident}>", "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>"]
    lines += [f"<tr{attrs}>" + "".join(cells) + "</tr>" for attrs, cells in body]
    lines.append("</table>")
    return "\n".join(lines)


def _row_class(status: str) -> str:
    return "ok" if status == "OK" else "not-ok"


def _status(status: str, reason: str | None) -> str:
    return status if not reason else f"{status} ({reason})"


def _fmt(v: float | None, *, digits: int = 4, signed: bool = False, sci: bool = False) -> str:
    if v is None or math.isnan(v):
        return "-"
    if sci and v != 0 and abs(v) < 10 ** (-digits):
        return f"{v:.{digits - 1}e}"
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def _pct(v: float | None) -> str:
    return "-" if v is None or math.isnan(v) else f"{100 * v:.1f} %"


def _r_ci(r: float | None, low: float | None, high: float | None) -> str:
    if r is None or math.isnan(r):
        return "-"
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return f"{r:.3f}"
    return f"{r:.3f} [{low:.3f}, {high:.3f}]"


def _csv_cell(v: str) -> str:
    """A comparison CSV value as shown: floats to 4 significant decimals, the rest as written."""
    try:
        f = float(v)
    except ValueError:
        return v
    return v if f.is_integer() and "." not in v else f"{f:.4f}"
