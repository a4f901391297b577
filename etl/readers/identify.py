"""Say what a granule is from its name (and, for SMAP, its contents): the product key of a reader.

Used by the operator tools (``smapds inspect``, ``smapds convert``) on files an operator points at;
the pipeline never guesses, it knows which input each file came from.
"""

from __future__ import annotations

import re
from pathlib import Path

from etl.readers.errors import SchemaDriftError
from etl.readers.modis import PRODUCTS as SINUSOIDAL_PRODUCTS

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^SMAP_L3_SM_P_E_\d{8}_"), "SPL3SMP_E"),
    (re.compile(r"^SMAP_L3_SM_P_\d{8}_"), "SPL3SMP"),
    (re.compile(r"^3B-(DAY|HHR)(-[EL])?\.MS\.MRG\.3IMERG\."), "IMERG"),
    (re.compile(r"^chirps-v2\.0\.", re.IGNORECASE), "CHIRPS"),
    *((re.compile(rf"^{re.escape(p)}\."), p) for p in SINUSOIDAL_PRODUCTS),
)


def identify(path: Path) -> str:
    """The reader product key for ``path``; SchemaDriftError when the name says nothing known."""
    for pattern, product in _PATTERNS:
        if pattern.search(path.name):
            return product
    raise SchemaDriftError(
        f"{path}: cannot tell the product from the file name; known name patterns: SMAP L3 "
        "(SMAP_L3_SM_P[_E]_YYYYMMDD_...), IMERG (3B-DAY...), CHIRPS, "
        f"{', '.join(SINUSOIDAL_PRODUCTS)} (PRODUCT.AYYYYDDD...)"
    )
