"""The one rule for which coarse soil-moisture retrievals are usable, shared by every reader and model.

SMAP L3 (SPL3SMP, SPL3SMP_E; product versions 8 and 9) rule, from the product specification and the
granule's own attributes: a retrieval is valid when the value is not the fill (-9999), lies within
the valid range 0.02-0.5 m3/m3, and ``retrieval_qual_flag`` bit 0 ("retrieval recommended") is clear.
Traps handled:

* The flag's fill value 65534 has bit 0 clear (0b1111_1111_1111_1110), so a bare bit test would call
  a cell with no retrieval "recommended": fill is tested before bits.
* The valid range is stored as float32 (valid_min = 0.01999999955); comparing float32 data against
  the float64 0.02 would drop retrievals of exactly float32(0.02). Comparisons are made in float32.
* A valid-looking value under a fill flag (or the reverse) is not valid: both must agree.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

SMAP_SM_FILL: Final = np.float32(-9999.0)
"""_FillValue of every float variable of SMAP L3 (soil_moisture, tb_time_seconds, ...)."""
SMAP_FLAG_FILL: Final = np.uint16(65534)
"""_FillValue of the uint16 flag variables (retrieval_qual_flag, surface_flag)."""
SMAP_SM_VALID_MIN: Final = np.float32(0.02)
SMAP_SM_VALID_MAX: Final = np.float32(0.5)
RECOMMENDED_BIT: Final = 0
"""Bit 0 of retrieval_qual_flag: 0 = retrieval recommended (1s in flag_masks)."""

BoolArray = npt.NDArray[np.bool_]


def in_valid_range(
    values: npt.ArrayLike, *, fill: float, valid_min: float, valid_max: float
) -> BoolArray:
    """Finite, not ``fill``, and within [valid_min, valid_max], compared in the data's own precision."""
    a = np.asarray(values)
    dtype = a.dtype if a.dtype.kind == "f" else np.dtype(np.float64)
    a = a.astype(dtype, copy=False)
    lo, hi, fv = dtype.type(valid_min), dtype.type(valid_max), dtype.type(fill)
    with np.errstate(invalid="ignore"):
        ok: BoolArray = np.isfinite(a) & (a != fv) & (a >= lo) & (a <= hi)
    return ok


def flags_clear(flags: npt.ArrayLike, *, fill: int, mask: int) -> BoolArray:
    """True where ``flags`` is not ``fill`` and none of the bits in ``mask`` is set (fill tested first)."""
    flag = np.asarray(flags)
    if flag.dtype.kind not in "iu":
        raise TypeError(f"quality flags must be an integer array, got {flag.dtype}")
    ok: BoolArray = (flag != fill) & ((flag & mask) == 0)
    return ok


def recommended_mask(retrieval_qual_flag: npt.ArrayLike) -> BoolArray:
    """SMAP L3: True where retrieval_qual_flag is not the 65534 fill and bit 0 is clear (recommended)."""
    return flags_clear(retrieval_qual_flag, fill=int(SMAP_FLAG_FILL), mask=1 << RECOMMENDED_BIT)


def validity_mask(*, soil_moisture: npt.ArrayLike, retrieval_qual_flag: npt.ArrayLike) -> BoolArray:
    """SMAP L3 validity: soil moisture not fill, in 0.02-0.5 m3/m3, and flag not fill with bit 0 clear.

    Both arrays are as stored in the file (float32 with -9999 fill, uint16 with 65534 fill) and have
    the same shape. This is the rule used for the product's ``soil_moisture`` variable, for training
    data and for residual correction.
    """
    sm = np.asarray(soil_moisture)
    flag = np.asarray(retrieval_qual_flag)
    if sm.shape != flag.shape:
        raise ValueError(
            f"soil_moisture {sm.shape} and retrieval_qual_flag {flag.shape} differ in shape"
        )
    return in_valid_range(
        sm,
        fill=float(SMAP_SM_FILL),
        valid_min=float(SMAP_SM_VALID_MIN),
        valid_max=float(SMAP_SM_VALID_MAX),
    ) & recommended_mask(flag)
