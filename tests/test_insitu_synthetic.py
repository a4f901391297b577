"""Downloads written by the synthetic world's ISMN writer load completely, also in parallel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl.grid import ease2, get_domain
from etl.synthetic.ismn import Station, StationSeries, stm_text
from service.ingest import exit_code, ingest_ismn

DOMAIN = get_domain("demo")


def _stations(n: int) -> list[Station]:
    r0, c0 = DOMAIN.offset(1)
    out = []
    for k in range(n):
        row, col = 20 + 37 * k, 30 + 41 * k
        lon, lat = ease2(1).lonlat(r0 + row, c0 + col)
        out.append(
            Station(
                network="SYN_CLUS1" if k % 2 else "SYN_SPARSE",
                name=f"C1-{k:02d}",
                lon=round(float(lon), 5),
                lat=round(float(lat), 5),
                row=row,
                col=col,
                elevation_m=40.0 + k,
                sensor="ThetaProbe-ML2X",
                bias=0.0,
                saturation=0.45,
            )
        )
    return out


def _series(k: int, hours: int) -> StationSeries:
    rng = np.random.default_rng(k)
    times = np.datetime64("2024-02-27T00", "h") + np.arange(hours).astype("timedelta64[h]")
    keep = rng.random(hours) > 0.1  # gaps are missing lines
    values = np.round(rng.uniform(0.05, 0.5, hours), 4)
    flags = ["C03,D06" if v > 0.45 else "D06" if v > 0.44 else "G" for v in values]
    return StationSeries(
        times=times[keep],
        values=values[keep],
        flags=[f for f, ok in zip(flags, keep, strict=True) if ok],
    )


@pytest.fixture(scope="module")
def download(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, list[Station], list[StationSeries]]:
    folder = tmp_path_factory.mktemp("synthetic") / "Data_seperate_files_header_20240227_20240303"
    stations = _stations(6)
    series = [_series(k, 24 * 6) for k in range(len(stations))]
    for station, s in zip(stations, series, strict=True):
        base = folder / station.network / station.name
        base.mkdir(parents=True)
        name = (
            f"{station.network}_{station.network}_{station.name}_sm_0.050000_0.050000_"
            f"{station.sensor}_20240227_20240303.stm"
        )
        (base / name).write_bytes(stm_text(station, s).encode("ascii"))
    return folder, stations, series


def test_a_synthetic_download_loads_every_row_in_parallel(
    writer: Engine, download: tuple[Path, list[Station], list[StationSeries]]
) -> None:
    folder, stations, series = download
    summaries = ingest_ismn(writer, [folder], domain=DOMAIN, workers=2)
    assert exit_code(summaries) == 0 and {s.status for s in summaries} == {"OK"}
    with writer.connect() as conn:
        rows = conn.execute(
            sa.text("""
            SELECT st.network, st.station, o.time, o.value, o.quality_flag
              FROM smapds.observations o JOIN smapds.sensors USING (sensor_id)
              JOIN smapds.stations st USING (station_id)
             ORDER BY st.station, o.time""")
        ).all()
        cells = {
            r.station: (r.row_1km, r.col_1km)
            for r in conn.execute(
                sa.text(
                    "SELECT s.station, c.row_1km, c.col_1km FROM smapds.stations s "
                    "JOIN smapds.station_cells c USING (station_id) WHERE c.domain = 'demo'"
                )
            )
        }
        months = conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = 'smapds.observations'::regclass"
            )
        ).scalar()
    assert months == 2  # February and March 2024
    by_station: dict[str, list[tuple[object, ...]]] = {}
    for r in rows:
        by_station.setdefault(r.station, []).append((r.time, r.value, r.quality_flag))
    for station, s in zip(stations, series, strict=True):
        got = by_station[station.name]
        assert len(got) == len(s.values)
        assert [v for _, v, _ in got] == [float(v) for v in s.values]
        assert [f for _, _, f in got] == s.flags
        assert got[0][0].isoformat()[:13] == str(s.times[0])[:13]  # UTC hour kept
        assert cells[station.name] == (station.row, station.col)  # the writer's own cell
