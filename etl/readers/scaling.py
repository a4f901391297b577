"""Decode stored integer codes into float32 physical values by a product's own, explicit rule.

Scale conventions differ between products (MOD11 LST multiplies by 0.02, MOD09 reflectance divides by
10000, MOD13 stores the divisor in ``scale_factor``), so a reader never applies a file's CF attributes
blindly: it states the rule (scale, offset, fill, valid range, special codes) and may check that the
file's attributes agree with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, kw_only=True)
class CodeRule:
    """physical = stored * scale + offset, for stored values in [valid_min, valid_max].

    ``fill`` values and ``special`` codes (e.g. MOD16A2 32761-32766 for water, urban, barren, ...)
    become NaN; special codes are reported separately so callers can tell "no data" from "not
    vegetated".
    """

    scale: float
    offset: float
    fill: tuple[int, ...]
    valid_min: float
    valid_max: float
    special: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Decoded:
    """Physical values (float32, NaN where not valid) and the special code where one applies (0 elsewhere)."""

    values: npt.NDArray[np.float32]
    special_code: npt.NDArray[np.int32] | None


def decode(stored: npt.NDArray[Any], rule: CodeRule) -> Decoded:
    """Apply ``rule`` to ``stored``; arithmetic in float64, result float32."""
    raw = np.asarray(stored)
    bad = np.zeros(raw.shape, dtype=bool)
    for code in rule.fill:
        bad |= raw == code
    special_code = None
    if rule.special:
        is_special = np.isin(raw, np.fromiter(rule.special, dtype=np.int64))
        special_code = np.where(is_special, raw, 0).astype(np.int32)
        bad |= is_special
    with np.errstate(invalid="ignore"):
        bad |= (raw < rule.valid_min) | (raw > rule.valid_max)
        if raw.dtype.kind == "f":
            bad |= ~np.isfinite(raw)
    values = (raw.astype(np.float64) * rule.scale + rule.offset).astype(np.float32)
    values[bad] = np.nan
    return Decoded(values=values, special_code=special_code)
