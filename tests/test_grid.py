"""The EASE-Grid 2.0 contract: constants, NSIDC's cell centres, nesting, domains, block operations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from etl.errors import GridError
from etl.grid import (
    DOMAINS,
    block_expand,
    block_mean,
    ease2,
    get_domain,
    nesting_factor,
)


def _nsidc(reference_data: Path, what: str) -> np.ndarray:
    path = reference_data / "ease2" / f"EASE2_M36km.{what}.964x406x1.double"
    return np.fromfile(path, dtype="<f8").reshape(406, 964)


def test_grid_shapes_and_transforms_follow_the_published_constants() -> None:
    for res, shape, cell in (
        (36, (406, 964), 36032.220840584),
        (9, (1624, 3856), 9008.055210146),
        (1, (14616, 34704), 1000.89502334956),
    ):
        g = ease2(res)
        assert g.shape == shape
        assert g.transform.a == cell and g.transform.e == -cell
        assert (g.transform.c, g.transform.f) == (-17367530.44516, 7314540.83064)
        assert g.crs.to_epsg() == 6933


def test_36km_cell_centres_match_nsidc_everywhere(reference_data: Path) -> None:
    lats, lons = _nsidc(reference_data, "lats"), _nsidc(reference_data, "lons")
    rows, cols = np.meshgrid(np.arange(406), np.arange(964), indexing="ij")
    lon, lat = ease2(36).lonlat(rows, cols)
    assert np.abs(lon - lons).max() < 1e-6
    assert np.abs(lat - lats).max() < 1e-6


def test_rowcol_inverts_lonlat_on_every_nsidc_centre(reference_data: Path) -> None:
    lats, lons = _nsidc(reference_data, "lats"), _nsidc(reference_data, "lons")
    rows, cols = ease2(36).rowcol(lons, lats)
    expected_rows, expected_cols = np.meshgrid(np.arange(406), np.arange(964), indexing="ij")
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_array_equal(cols, expected_cols)


def test_smap_file_coordinates_agree_with_the_grid_where_retrieved(reference_data: Path) -> None:
    import netCDF4

    with netCDF4.Dataset(reference_data / "smap" / "SC_SPL3SMP_008_prefetch.nc4") as nc:
        nc.set_auto_mask(False)
        groups = [nc, *nc.groups.values()]
        arrays = {name: g.variables[name][:] for g in groups for name in g.variables}
    lat = next(v for k, v in arrays.items() if k.endswith("latitude"))
    lon = next(v for k, v in arrays.items() if k.endswith("longitude"))
    good = (lat != -9999) & (lon != -9999)
    assert good.sum() > 1000, "the file should carry real coordinates somewhere"
    rows, cols = np.nonzero(good)
    glon, glat = ease2(36).lonlat(rows, cols)
    assert np.abs(glon - lon[good]).max() < 1e-4  # float32 in the file
    assert np.abs(glat - lat[good]).max() < 1e-4


def test_the_three_grids_nest_exactly() -> None:
    g36, g9, g1 = ease2(36), ease2(9), ease2(1)
    assert nesting_factor(36, 1) == 36 and nesting_factor(36, 9) == 4 and nesting_factor(9, 1) == 9
    assert g1.cell_size * 36 == pytest.approx(g36.cell_size, abs=1e-6)
    assert g9.cell_size * 4 == pytest.approx(g36.cell_size, abs=1e-6)
    # the centre of a 36 km cell is the shared corner of its central 1 km cells
    x36, y36 = g36.xy(100, 500)
    x1, y1 = g1.xy(100 * 36 + 17, 500 * 36 + 17)
    assert x1 + g1.cell_size / 2 == pytest.approx(x36, abs=1e-6)
    assert y1 - g1.cell_size / 2 == pytest.approx(y36, abs=1e-6)
    # every 1 km centre inside a 36 km cell maps back to that cell
    rows, cols = np.meshgrid(np.arange(3600, 3636), np.arange(18000, 18036), indexing="ij")
    lon, lat = g1.lonlat(rows, cols)
    r36, c36 = g36.rowcol(lon, lat)
    assert set(r36.ravel()) == {100} and set(c36.ravel()) == {500}
    with pytest.raises(GridError):
        nesting_factor(9, 36)


def test_rowcol_rejects_points_off_the_grid_and_keeps_the_dateline() -> None:
    g = ease2(36)
    with pytest.raises(GridError, match="outside"):
        g.rowcol([0.0], [89.0])
    with pytest.raises(GridError, match="finite"):
        g.rowcol([np.nan], [0.0])
    with pytest.raises(GridError):
        g.rowcol([181.0], [0.0])
    _, cols = g.rowcol([180.0, -180.0], [0.0, 0.0])
    assert cols.tolist() == [963, 0]


def test_unknown_resolution_and_domain_are_named_in_the_error() -> None:
    with pytest.raises(GridError, match="25 km; allowed: 36, 9, 1"):
        ease2(25)
    with pytest.raises(GridError, match="'atlantis'; allowed: china, demo"):
        get_domain("atlantis")


@pytest.mark.parametrize("name", sorted(DOMAINS))
def test_domains_are_windows_aligned_to_36km_cells(name: str) -> None:
    d = get_domain(name)
    for res in (36, 9, 1):
        f = nesting_factor(36, res)
        r0, c0 = d.offset(res)
        nr, nc = d.shape(res)
        assert r0 % f == 0 and c0 % f == 0 and nr % f == 0 and nc % f == 0
        t = d.transform(res)
        assert (t.c, t.f) == pytest.approx((d.bounds()[0], d.bounds()[3]))
        assert t.a == ease2(res).cell_size
    # the 1 km window's lon/lat centres fall in the same 36 km cells as the window says
    lon, lat = d.lonlat(1)
    rows, cols = ease2(36).rowcol(lon[::36, ::36], lat[::36, ::36])
    assert rows[0, 0] == d.row36 and cols[0, 0] == d.col36
    assert rows[-1, -1] == d.row36 + d.nrows36 - 1 and cols[-1, -1] == d.col36 + d.ncols36 - 1


def test_china_domain_covers_china() -> None:
    china = get_domain("china")
    west, south, east, north = china.bbox_lonlat()
    assert west <= 73.0 and east >= 136.0 and south <= 18.0 and north >= 54.0
    assert china.shape(1) == (3708, 6120)
    r, c = china.rowcol(
        1, [116.39, 87.62, 126.53], [39.91, 43.83, 45.80]
    )  # Beijing, Urumqi, Harbin
    assert ((r >= 0) & (r < 3708) & (c >= 0) & (c < 6120)).all()
    with pytest.raises(GridError, match="outside domain"):
        china.rowcol(1, [2.35], [48.85])  # Paris


def test_a_domain_outside_the_grid_is_refused() -> None:
    from etl.grid import Domain

    with pytest.raises(GridError, match="outside the 36 km grid"):
        Domain("bad", row36=400, col36=0, nrows36=10, ncols36=10)


def test_block_mean_is_exact_and_nan_aware() -> None:
    rng = np.random.default_rng(1)
    fine = rng.uniform(0.05, 0.45, size=(72, 108))
    fine[:36, :36] = np.nan  # an all-missing block
    fine[40, 40] = np.nan
    mean, count = block_mean(fine, 36)
    assert mean.shape == (2, 3) and np.isnan(mean[0, 0]) and count[0, 0] == 0
    assert count[1, 1] == 36 * 36 - 1
    assert mean[1, 1] == pytest.approx(np.nanmean(fine[36:, 36:72]), abs=1e-15)
    # expansion back and re-aggregation is the identity on valid blocks
    again, _ = block_mean(block_expand(mean, 36), 36)
    np.testing.assert_allclose(again[1:], mean[1:], rtol=0, atol=1e-15)


def test_block_mean_with_weights_and_leading_axes() -> None:
    values = np.arange(16, dtype=float).reshape(1, 4, 4)
    weights = np.zeros((1, 4, 4))
    weights[0, 0, 0] = 1.0
    mean, count = block_mean(values, 2, weights=weights)
    assert mean.shape == (1, 2, 2)
    assert mean[0, 0, 0] == 0.0 and np.isnan(mean[0, 1, 1]) and count[0, 1, 1] == 4


def test_block_operations_refuse_shapes_that_do_not_nest() -> None:
    with pytest.raises(GridError, match="not a multiple"):
        block_mean(np.zeros((10, 10)), 36)
    with pytest.raises(GridError):
        block_expand(np.zeros((2, 2)), 0)
