"""Deterministic random streams and spatially correlated random fields for the synthetic world.

Every random quantity draws from its own named stream, seeded from (seed, name, indices), so adding
a new quantity never shifts the numbers of another and a day can be regenerated on its own.
"""

from __future__ import annotations

import zlib

import numpy as np
import numpy.typing as npt
from scipy import sparse

F32 = npt.NDArray[np.float32]


def stream(seed: int, name: str, *indices: int) -> np.random.Generator:
    """A PCG64 generator for the quantity ``name`` (and e.g. a day index), independent of others."""
    key = [int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode("ascii")), *(int(i) for i in indices)]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(key)))


def _bspline_matrix(n_fine: int, step: int) -> sparse.csr_matrix:
    """Sparse (n_fine x n_coarse) matrix of cubic B-spline weights, coarse spacing ``step`` cells."""
    u = np.arange(n_fine, dtype=np.float64) / step + 1.0
    base = np.floor(u).astype(np.int64) - 1
    t = u - np.floor(u)
    weights = np.stack(
        [
            (1 - t) ** 3 / 6,
            (3 * t**3 - 6 * t**2 + 4) / 6,
            (-3 * t**3 + 3 * t**2 + 3 * t + 1) / 6,
            t**3 / 6,
        ],
        axis=1,
    )
    rows = np.repeat(np.arange(n_fine), 4)
    cols = (base[:, None] + np.arange(4)[None, :]).ravel()
    n_coarse = n_fine // step + 4
    return sparse.csr_matrix(
        (weights.ravel().astype(np.float32), (rows, cols)), shape=(n_fine, n_coarse)
    )


def bspline_upsample(coarse: F32, shape: tuple[int, int], *, step: int) -> F32:
    """Smooth a lattice with spacing ``step`` cells onto the fine grid ``shape`` (cubic B-spline).

    ``coarse`` has shape (rows // step + 4, cols // step + 4); node k sits at fine index
    (k - 1) * step, so the lattice starts one node before the grid.
    """
    rows = _bspline_matrix(shape[0], step) @ coarse
    fine = np.ascontiguousarray((_bspline_matrix(shape[1], step) @ rows.T).T, dtype=np.float32)
    return fine


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], *, scale_cells: float) -> F32:
    """A standardised (mean 0, sd 1) random field correlated over about ``scale_cells`` cells.

    White noise on a grid ``scale_cells`` times coarser is smoothed onto the fine grid with a
    separable cubic B-spline (two sparse matrix products): cheap even for the China domain
    (3708 x 6120) and smooth (C2) at the chosen scale.
    """
    nr, nc = shape
    step = max(1, round(scale_cells))
    coarse = rng.standard_normal((nr // step + 4, nc // step + 4)).astype(np.float32)
    fine = bspline_upsample(coarse, shape, step=step)
    fine -= np.float32(fine.mean(dtype=np.float64))
    sd = float(fine.std(dtype=np.float64))
    fine /= np.float32(sd if sd > 0 else 1.0)
    return fine


def fractal_field(
    rng: np.random.Generator, shape: tuple[int, int], *, scales_cells: tuple[float, ...]
) -> F32:
    """Sum of smooth fields at several scales, amplitude proportional to scale (a 1/f spectrum)."""
    total = np.zeros(shape, dtype=np.float32)
    for s in scales_cells:
        total += np.float32(s) * smooth_field(rng, shape, scale_cells=s)
    total -= np.float32(total.mean())
    sd = float(total.std())
    out: F32 = (total / np.float32(sd if sd > 0 else 1.0)).astype(np.float32)
    return out
