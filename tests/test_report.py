"""The validation report on collocations with known values: the page references every plot and
no plot is blank, the period statistics on the page are models.metrics.pair_stats of the same rows,
precipitation bars appear only where a station measures it, an empty period or a database without
collocations gives a page that says so, and the command line writes the same folder."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from matplotlib import image as mpimg
from run_cli import smapds
from sqlalchemy.engine import Engine

from models.metrics import pair_stats
from service.db import Database
from service.report import (
    HEXBIN_ABOVE,
    ReportResult,
    parse_station_ids,
    scatter_figure,
    write_report,
)
from service.validate import ESTIMATES, ValidationConfig, refresh

FIRST = date(2024, 4, 1)
DAYS = 90
PERIOD = (date(2024, 4, 15), date(2024, 6, 15))
MIN_PAIRS = 10
CONFIG = ValidationConfig(windows_days=(30, 90, 365), min_pairs=MIN_PAIRS, min_triplets=100)
COLUMN = {"product_1km": 1, "model_1km": 3, "coarse_36km": 4, "coarse_9km": 5}


def _collocation_rows(station: int, days: int) -> list[dict[str, object]]:
    """Station s lacks in situ every (8 - s)th day, so stations 1, 2, 3 have most pairs; station 4
    has a constant in situ series (DEGENERATE), station 6 only 5 days (INSUFFICIENT_DATA)."""
    rng = np.random.default_rng(100 + station)
    k = np.arange(days)
    truth = np.clip(0.22 + 0.08 * np.sin(k / 15.0) + rng.normal(0, 0.04, days), 0.05, 0.45)
    insitu = truth + rng.normal(0, 0.02, days)
    if station == 4:
        insitu = np.full(days, 0.25)
    product = truth + rng.normal(0, 0.03, days)
    coarse = 0.8 * truth + 0.05 + rng.normal(0, 0.04, days)
    rows = []
    for i in range(days):
        missing = station <= 5 and i % (8 - station) == 0
        rows.append(
            {
                "d": FIRST + timedelta(days=i),
                "s": station,
                "insitu": None if missing else float(insitu[i]),
                "sm": float(product[i]),
                "unc": float(abs(rng.normal(0.025, 0.005))),
                "model": float(product[i] + rng.normal(0, 0.01)),
                "c36": None if i % 4 == 1 else float(coarse[i]),
                "c9": None if i % 5 == 2 else float(coarse[i] + rng.normal(0, 0.01)),
            }
        )
    return rows


def _fill(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text("""
            INSERT INTO smapds.models (name, kind, path, sha256, domain, train_start, train_end,
                                       features)
            VALUES ('m', 'rf', 'models/m', repeat('0', 64), 'demo', '2023-01-01', '2023-12-31',
                    '[]')
        """)
        )
        conn.execute(
            sa.text("""
            INSERT INTO smapds.products (domain, product_date, path, sha256, stac_path,
                model_name, model_sha256, status, valid_fraction, gap_filled_fraction,
                footprint, inputs, software_version, unc_mean, unc_p10, unc_p50, unc_p90)
            SELECT 'demo', d::date, 'p', repeat('0', 64), 's', 'm', repeat('0', 64), 'OK', 1, 0,
                   ST_MakeEnvelope(114, 34, 117, 37, 4326), '{}', 'test',
                   0.026 + 0.004 * sin(k / 9.0), 0.012 + 0.002 * sin(k / 9.0),
                   0.024 + 0.004 * sin(k / 9.0), 0.040 + 0.006 * sin(k / 9.0)
              FROM generate_series(CAST(:a AS date), CAST(:b AS date), interval '1 day')
                   WITH ORDINALITY AS g(d, k)
        """),
            {"a": FIRST, "b": FIRST + timedelta(days=DAYS - 1)},
        )
        for k in range(6):
            sid = conn.execute(
                sa.text("""
                INSERT INTO smapds.stations (network, station, station_key, geom)
                VALUES (:n, :s, :s, ST_SetSRID(ST_MakePoint(114.5 + :k * 0.4, 35 + :k * 0.3), 4326))
                RETURNING station_id
            """),
                {"n": "NET_A" if k % 2 else "NET_B", "s": f"st{k + 1}", "k": k},
            ).scalar_one()
            assert sid == k + 1
            conn.execute(
                sa.text("""
                INSERT INTO smapds.station_attributes (station_id, quantity, source, value_text,
                                                      description)
                VALUES (:s, 'land cover classification', 'CCI_landcover_2010', '10', 'cropland')
            """),
                {"s": sid},
            )
        rows = [r for s in range(1, 7) for r in _collocation_rows(s, DAYS if s != 6 else 5)]
        conn.execute(
            sa.text("""
            INSERT INTO smapds.collocations (domain, product_date, station_id, insitu_sm,
                insitu_n, window_start, window_end, sm_1km, sm_1km_uncertainty, sm_model,
                sm_36km, sm_9km)
            VALUES ('demo', :d, :s, :insitu, CASE WHEN :insitu IS NULL THEN 0 ELSE 4 END,
                    :d - interval '3 hours', :d + interval '3 hours', :sm, :unc, :model,
                    :c36, :c9)
        """),
            rows,
        )
        _precipitation_sensors(conn)


def _precipitation_sensors(conn: sa.Connection) -> None:
    """Station 1 measures rain every third day (G); station 3's gauge has only D-flagged values."""
    conn.execute(
        sa.text("SELECT smapds.ensure_observation_partitions(:a, :b)"),
        {"a": datetime(2024, 4, 1, tzinfo=UTC), "b": datetime(2024, 7, 1, tzinfo=UTC)},
    )
    file_id = conn.execute(
        sa.text(
            "INSERT INTO smapds.ingest_files (path, format, status) "
            "VALUES ('rain.csv', 'csv_observations', 'OK') RETURNING file_id"
        )
    ).scalar_one()
    obs = []
    for station, flag in ((1, "G"), (3, "D01")):
        sensor = conn.execute(
            sa.text("""
            INSERT INTO smapds.sensors (station_id, variable, depth_from_m, depth_to_m,
                                        instrument, unit)
            VALUES (:s, 'precipitation', -1.5, -1.5, 'gauge', 'mm') RETURNING sensor_id
        """),
            {"s": station},
        ).scalar_one()
        for day in range(0, DAYS, 3):
            for hour in (3, 9, 15):
                obs.append(
                    {
                        "s": sensor,
                        "t": datetime.combine(FIRST, datetime.min.time(), tzinfo=UTC)
                        + timedelta(days=day, hours=hour),
                        "v": 0.5 + (day % 7),
                        "q": flag,
                        "f": file_id,
                    }
                )
    conn.execute(
        sa.text("""
        INSERT INTO smapds.observations (sensor_id, time, value, quality_flag, file_id)
        VALUES (:s, :t, :v, :q, :f)
    """),
        obs,
    )


@pytest.fixture(scope="module")
def db(writer: Engine) -> Engine:
    _fill(writer)
    assert refresh(writer, domain="demo", config=CONFIG).mode == "full"
    return writer


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory with two comparison tables of smapds train, the newer with its plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root = tmp_path_factory.mktemp("data")
    models = root / "models"
    models.mkdir()
    head = "model,fit_s,cv_n,cv_r,cv_rmse,cv_bias,cv_ubrmse,holdout_n,holdout_r,holdout_rmse,holdout_bias,holdout_ubrmse\n"
    old = models / "comparison-demo-2023-01-01-2023-03-31.csv"
    old.write_text(head + "rf,1.0,100,0.5,0.05,0.0,0.05,20,0.4,0.06,0.01,0.05\n")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    new = models / "comparison-demo-2024-04-01-2024-06-29.csv"
    new.write_text(
        head
        + "rf,12.5,5000,0.912345,0.0312,-0.0011,0.0311,900,0.88,0.035,0.002,0.0349\n"
        + "xgb,8.1,5000,0.9051,0.0330,0.0004,0.0330,900,0.87,0.036,0.001,0.0359\n"
        + "mlp,20.3,5000,0.8712,0.0381,0.0021,0.0380,900,0.85,0.040,0.003,0.0399\n"
        + "hgb,3.2,5000,0.9002,0.0341,-0.0002,0.0341,900,0.86,0.037,0.000,0.0370\n"
    )
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.bar(["rf", "xgb", "mlp", "hgb"], [0.91, 0.9, 0.87, 0.9])
    fig.savefig(new.with_suffix(".png"))
    plt.close(fig)
    return root


@pytest.fixture(scope="module")
def report(db: Engine, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> ReportResult:
    out = tmp_path_factory.mktemp("reports") / "spring"
    return write_report(
        db,
        domain="demo",
        start=PERIOD[0],
        end=PERIOD[1],
        out=out,
        data_dir=data_dir,
        min_pairs=MIN_PAIRS,
    )


class Page(HTMLParser):
    """The parts of the page the tests look at: images, table rows with their cells, the text."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.images: list[str] = []
        self.tables: dict[str, list[list[dict[str, str]]]] = {}
        self.text: list[str] = []
        self._table: str | None = None
        self._cell: dict[str, str] | None = None
        self.feed(path.read_text(encoding="utf-8"))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "img":
            self.images.append(a["src"])
        elif tag == "table":
            self._table = a.get("id", f"table{len(self.tables)}")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([{"row:" + k: v for k, v in a.items()}])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = {**a, "text": ""}
            self.tables[self._table][-1].append(self._cell)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell["text"] += data

    @property
    def all_text(self) -> str:
        return " ".join(" ".join(self.text).split())


def assert_not_blank(png: Path) -> None:
    pixels = mpimg.imread(png)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100, png
    assert float(pixels.std()) > 0, png
    rgba = np.round(pixels * 255).astype(np.uint8)
    if rgba.shape[-1] == 3:
        rgba = np.concatenate([rgba, np.full((*rgba.shape[:2], 1), 255, np.uint8)], axis=-1)
    colours = np.unique(np.ascontiguousarray(rgba).view(np.uint32))
    assert colours.size > 1, png


def test_the_page_references_every_png_beside_it_and_none_is_blank(report: ReportResult) -> None:
    folder = report.index.parent
    page = Page(report.index)
    pngs = {p.name for p in folder.glob("*.png")}
    assert set(page.images) == pngs == set(report.figures)
    assert {
        "scatter.png",
        "map_r.png",
        "uncertainty.png",
        "model_comparison.png",
        "timeseries_station_1.png",
    } <= pngs
    for name in pngs:
        assert_not_blank(folder / name)
    assert sorted(p.name for p in folder.iterdir()) == sorted([*pngs, "index.html"])
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_period_statistics_on_the_page_are_pair_stats_of_the_same_rows(
    report: ReportResult, db: Engine
) -> None:
    with db.connect() as conn:
        rows = conn.execute(
            sa.text("""
            SELECT insitu_sm, sm_1km, sm_1km_uncertainty, sm_model, sm_36km, sm_9km
              FROM smapds.collocations
             WHERE domain = 'demo' AND product_date BETWEEN :a AND :b
             ORDER BY station_id, product_date
        """),
            {"a": PERIOD[0], "b": PERIOD[1]},
        ).all()
    table = np.array(rows, dtype=np.float64)
    insitu = table[:, 0]
    page_rows = {
        r[0]["row:data-estimate"]: {c["data-field"]: c for c in r[1:] if "data-field" in c}
        for r in Page(report.index).tables["period-stats"][1:]
    }
    assert list(page_rows) == list(ESTIMATES)
    for estimate in ESTIMATES:
        want = pair_stats(table[:, COLUMN[estimate]], insitu, min_n=MIN_PAIRS)
        got = page_rows[estimate]
        assert int(got["n"]["data-value"]) == want.n > 100
        assert got["status"]["data-value"] == want.status == "OK"
        for field in ("r", "r_p", "rho", "rmse", "bias", "ubrmse"):
            value = float(got[field]["data-value"])
            assert value == pytest.approx(getattr(want, field), rel=1e-12, abs=1e-15), field
        assert got["rmse"]["text"] == f"{want.rmse:.4f}"
        low, high = f"{want.r_ci_low:.3f}", f"{want.r_ci_high:.3f}"
        assert got["r"]["text"] == f"{want.r:.3f} [{low}, {high}]"
    ok = np.isfinite(insitu) & np.isfinite(table[:, 1])
    inside = np.abs(insitu[ok] - table[ok, 1]) <= 1.6448536269514722 * table[ok, 2]
    coverage = float(page_rows["product_1km"]["coverage_90"]["data-value"])
    assert coverage == pytest.approx(inside.mean(), abs=1e-12)
    assert report.pairs == int(ok.sum())
    assert "Value added by downscaling: R" in Page(report.index).all_text


def test_the_page_shows_stored_statistics_tc_and_the_newest_model_comparison(
    report: ReportResult,
) -> None:
    page = Page(report.index)
    stored = page.tables["stored-stats"][1:]
    assert len(stored) == 4 * len(ESTIMATES)  # 30, 90, 365 days and all time
    assert [r[1]["text"] for r in stored[::4]] == ["30 d", "90 d", "365 d", "all time"]
    assert len(page.tables["tc"]) == 1 + 4
    models = next(t for k, t in page.tables.items() if k.startswith("table"))
    assert [r[1]["text"] for r in models[1:]] == ["rf", "xgb", "mlp", "hgb"]
    assert models[1][4]["text"] == "0.9123"
    text = page.all_text
    assert "comparison-demo-2024-04-01-2024-06-29.csv (the newest of 2)" in text
    assert "INSUFFICIENT_DATA" in text and "DEGENERATE" in text  # map caption counts them


def test_time_series_default_to_the_busiest_stations_with_rain_only_where_measured(
    report: ReportResult,
) -> None:
    series = [f for f in report.figures if f.startswith("timeseries_")]
    assert series == [f"timeseries_station_{s}.png" for s in (1, 2, 3)]
    captions = {
        fig: " ".join(cap.split())
        for fig, cap in _captions(report.index.read_text(encoding="utf-8")).items()
    }
    assert "Bars: daily precipitation at the station (mm" in captions["timeseries_station_1.png"]
    assert "no precipitation sensor" in captions["timeseries_station_2.png"]
    assert "no G-flagged observations" in captions["timeseries_station_3.png"]
    assert "Bars" not in captions["timeseries_station_2.png"]


def _captions(doc: str) -> dict[str, str]:
    out = {}
    for chunk in doc.split("<figure>")[1:]:
        src = chunk.split('src="', 1)[1].split('"', 1)[0]
        out[src] = chunk.split("<figcaption>", 1)[1].split("</figcaption>", 1)[0]
    return out


def test_an_empty_period_gives_a_page_that_says_there_is_no_data(
    db: Engine, tmp_path: Path
) -> None:
    result = write_report(
        db,
        domain="demo",
        start=date(2030, 1, 1),
        end=date(2030, 1, 31),
        out=tmp_path / "empty",
        data_dir=tmp_path / "no-data-dir",
        min_pairs=MIN_PAIRS,
    )
    page = Page(result.index)
    assert result.pairs == 0 and "period-stats" not in page.tables
    assert (
        "No data: there are no collocations in domain demo between 2030-01-01 and 2030-01-31"
        in (page.all_text)
    )
    assert "No model comparison" in page.all_text
    assert result.figures == ("map_r.png",)  # the stored all-time statistics still exist
    assert set(page.images) == {p.name for p in result.index.parent.glob("*.png")}
    assert_not_blank(result.index.parent / "map_r.png")


@pytest.fixture
def empty_db(cluster_db: Database) -> Iterator[Engine]:
    """A second, freshly migrated database without a single collocation."""
    name = "t_test_report_empty"
    cluster_db.drop_database(name)
    cluster_db.create_database(name, template=cluster_db.dbname)
    engine = cluster_db.engine("writer", dbname=name)
    yield engine
    engine.dispose()
    cluster_db.drop_database(name)


def test_a_database_without_collocations_gives_a_page_not_a_crash(
    empty_db: Engine, tmp_path: Path
) -> None:
    result = write_report(
        empty_db,
        domain="demo",
        start=PERIOD[0],
        end=PERIOD[1],
        out=tmp_path / "r",
        data_dir=tmp_path,
        min_pairs=MIN_PAIRS,
    )
    text = Page(result.index).all_text
    assert result.figures == () and result.pairs == 0
    for said in (
        "No data: there are no collocations",
        "No validation statistics stored for domain demo",
        "No per-station statistics stored",
        "No triple collocation results stored",
        "No products between 2024-04-15 and 2024-06-15",
        "No model comparison",
    ):
        assert said in text


def test_a_new_report_replaces_the_old_one_and_other_folders_are_refused(
    db: Engine, tmp_path: Path
) -> None:
    out = tmp_path / "r"
    common = {"domain": "demo", "data_dir": tmp_path, "min_pairs": MIN_PAIRS}
    first = write_report(db, start=PERIOD[0], end=PERIOD[1], out=out, stations=[4], **common)
    assert "timeseries_station_4.png" in first.figures
    second = write_report(db, start=PERIOD[0], end=PERIOD[1], out=out, stations=[5, 99], **common)
    assert not (out / "timeseries_station_4.png").exists()  # nothing stale is left behind
    assert (out / "timeseries_station_5.png").is_file()
    assert "Station 99: no such station in the database." in second.notes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(Exception, match="holds no smapds report"):
        write_report(db, start=PERIOD[0], end=PERIOD[1], out=foreign, **common)
    assert (foreign / "thesis.tex").read_text() == "precious"
    with pytest.raises(Exception, match="before --start"):
        write_report(db, start=PERIOD[1], end=PERIOD[0], out=out, **common)
    assert parse_station_ids(" 3, 1,3 ") == (3, 1)
    with pytest.raises(Exception, match="not a station id: 'x'"):
        parse_station_ids("3,x")


def test_many_pairs_are_drawn_as_a_hexbin_density(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = HEXBIN_ABOVE + 3000
    ref = rng.uniform(0.05, 0.45, n)
    est = ref + rng.normal(0, 0.03, n)
    fig = scatter_figure(ref, [("1 km product", est, pair_stats(est, ref, min_n=MIN_PAIRS))])
    assert any(type(c).__name__ == "PolyCollection" for c in fig.axes[0].collections)
    fig.savefig(tmp_path / "dense.png")
    assert_not_blank(tmp_path / "dense.png")


def test_the_command_line_writes_the_report(
    db: Engine, database: Database, data_dir: Path, tmp_path: Path
) -> None:
    env = {
        "SMAPDS_DATABASE_URL": database.url("writer"),
        "SMAPDS_DATA_DIR": str(data_dir),
        "SMAPDS_DOMAIN": "demo",
    }
    out = tmp_path / "cli"
    result = smapds(
        "report",
        "--start",
        "2024-05-01",
        "--end",
        "2024-05-31",
        "--out",
        str(out),
        "--stations",
        "2,5",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert str(out / "index.html") in result.stdout
    figures = {p.name for p in out.glob("*.png")}
    assert {"timeseries_station_2.png", "timeseries_station_5.png", "scatter.png"} <= figures
    assert "timeseries_station_1.png" not in figures
    assert set(Page(out / "index.html").images) == figures
