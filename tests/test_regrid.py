"""Regridding onto the 1 km domain: exact averages, NaN kept, seams, bilinear, edges, tiling."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine

from etl.errors import GridError
from etl.grid import Domain, block_mean, ease2, get_domain
from etl.regrid import RasterSource, regrid

DEMO = get_domain("demo")
SMALL = Domain("small", row36=82, col36=785, nrows36=2, ncols36=3)  # 72 x 108 km


def _half_km_source(domain: Domain, data: np.ndarray) -> RasterSource:
    """A 500 m raster on the EASE-Grid 2.0 lattice, covering ``domain`` exactly."""
    t = domain.transform(1) @ Affine.scale(0.5)
    return RasterSource(data=data, transform=t, crs="EPSG:6933")


def test_averaging_a_finer_grid_is_the_exact_block_mean() -> None:
    rows, cols = SMALL.shape(1)
    rng = np.random.default_rng(3)
    fine = rng.uniform(0.0, 1.0, size=(rows * 2, cols * 2)).astype(np.float32)
    out = regrid(_half_km_source(SMALL, fine), SMALL, method="average")
    expected, _ = block_mean(fine, 2)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


def test_nodata_is_left_out_of_averages_and_never_becomes_zero() -> None:
    rows, cols = SMALL.shape(1)
    fine = np.full((rows * 2, cols * 2), 0.3, dtype=np.float32)
    fine[0:2, 0:2] = np.nan  # one whole target cell
    fine[2, 2] = np.nan  # a quarter of another
    fine[2, 3] = 0.7
    out = regrid(_half_km_source(SMALL, fine), SMALL, method="average")
    assert np.isnan(out[0, 0])
    assert out[1, 1] == pytest.approx((0.7 + 0.3 + 0.3) / 3, abs=1e-6)
    assert np.isfinite(out).sum() == out.size - 1


def test_tiles_of_one_grid_are_mosaicked_so_seams_do_not_show() -> None:
    rows, cols = SMALL.shape(1)
    fine = np.random.default_rng(5).uniform(size=(rows * 2, cols * 2)).astype(np.float32)
    whole = _half_km_source(SMALL, fine)
    cut = 77  # odd: the seam runs through the middle of 1 km cells
    left = RasterSource(fine[:, :cut], whole.transform, whole.crs)
    right = RasterSource(fine[:, cut:], whole.transform @ Affine.translation(cut, 0), whole.crs)
    np.testing.assert_array_equal(
        regrid([left, right], SMALL, method="average"), regrid(whole, SMALL, method="average")
    )


def test_the_result_does_not_depend_on_the_tile_size() -> None:
    rows, cols = SMALL.shape(1)
    fine = np.random.default_rng(9).uniform(size=(rows * 2, cols * 2)).astype(np.float32)
    src = _half_km_source(SMALL, fine)
    # equal up to float32 rounding (GDAL sums in window order)
    np.testing.assert_allclose(
        regrid(src, SMALL, method="average", tile=16),
        regrid(src, SMALL, method="average", tile=4096),
        rtol=0,
        atol=2e-7,
    )


def test_bilinear_from_a_coarse_lonlat_grid_reproduces_a_smooth_field() -> None:
    west, south, east, north = DEMO.bbox_lonlat()
    lon0, lat1 = np.floor(west) - 1, np.ceil(north) + 1
    nx, ny = int((np.ceil(east) + 1 - lon0) / 0.1), int((lat1 - np.floor(south) + 1) / 0.1)
    lon = lon0 + 0.05 + 0.1 * np.arange(nx)
    lat = lat1 - 0.05 - 0.1 * np.arange(ny)
    field = (lon[None, :] * 0.01 + lat[:, None] * 0.02).astype(np.float32)
    src = RasterSource(field, Affine(0.1, 0, lon0, 0, -0.1, lat1), "EPSG:4326")
    out = regrid(src, DEMO, method="bilinear")
    tlon, tlat = DEMO.lonlat(1)
    np.testing.assert_allclose(out, tlon * 0.01 + tlat * 0.02, atol=2e-5)


def test_averaging_from_another_projection_conserves_the_area_mean() -> None:
    west, south, east, north = SMALL.bbox_lonlat()
    res = 0.002
    lon0, lat1 = west - 0.1, north + 0.1
    nx, ny = int((east + 0.1 - lon0) / res), int((lat1 - (south - 0.1)) / res)
    rng = np.random.default_rng(11)
    field = rng.gamma(2.0, 0.1, size=(ny, nx)).astype(np.float32)
    src = RasterSource(field, Affine(res, 0, lon0, 0, -res, lat1), "EPSG:4326")
    out = regrid(src, SMALL, method="average")
    lon = lon0 + res * (np.arange(nx) + 0.5)
    lat = lat1 - res * (np.arange(ny) + 0.5)
    inside = ((lon >= west) & (lon <= east))[None, :] & ((lat >= south) & (lat <= north))[:, None]
    # equal-area target cells: their plain mean is the area mean; weight source rows by cos(lat)
    weights = np.broadcast_to(np.cos(np.radians(lat))[:, None], field.shape)[inside]
    source_mean = np.average(field[inside], weights=weights)
    assert float(np.nanmean(out)) == pytest.approx(source_mean, rel=2e-3)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("col36", [0, ease2(36).ncols - 3])
def test_a_domain_at_the_antimeridian_regrids_without_error(col36: int) -> None:
    edge = Domain("edge", row36=150, col36=col36, nrows36=2, ncols36=3)
    lon = -180 + 0.125 + 0.25 * np.arange(1440)
    field = np.broadcast_to(np.cos(np.radians(lon))[None, :], (720, 1440)).astype(np.float32)
    src = RasterSource(
        np.ascontiguousarray(field), Affine(0.25, 0, -180, 0, -0.25, 90), "EPSG:4326"
    )
    out = regrid(src, edge, method="bilinear")
    assert np.isfinite(out).all()
    assert out.mean() == pytest.approx(-1.0, abs=0.01)  # cos(180 deg)


def test_a_source_that_misses_the_domain_gives_all_nan() -> None:
    far = RasterSource(np.ones((10, 10), np.float32), Affine(0.1, 0, 10, 0, -0.1, 50), "EPSG:4326")
    assert np.isnan(regrid(far, SMALL, method="bilinear")).all()


def test_misaligned_or_mixed_tiles_and_unknown_methods_are_refused() -> None:
    a = RasterSource(np.ones((4, 4), np.float32), Affine(500, 0, 0, 0, -500, 0), "EPSG:6933")
    b = RasterSource(np.ones((4, 4), np.float32), Affine(250, 0, 0, 0, -250, 0), "EPSG:6933")
    c = RasterSource(np.ones((4, 4), np.float32), Affine(500, 0, 100, 0, -500, 0), "EPSG:6933")
    with pytest.raises(GridError, match="share CRS and pixel size"):
        regrid([a, b], SMALL, method="average")
    with pytest.raises(GridError, match="not aligned"):
        regrid(
            [RasterSource(a.data, Affine(500, 0, 1.7e6, 0, -500, 4e6), a.crs), c],
            DEMO,
            method="average",
        )
    with pytest.raises(GridError, match="unknown method"):
        regrid(a, SMALL, method="cubic")  # type: ignore[arg-type]
