"""Parser of ISMN ``*_static_variables.csv``: per-station soil, land cover and climate attributes.

The file is semicolon-separated with a header row (``quantity_name;unit;depth_from[m];depth_to[m];
value;description;quantity_source_name;...``) and a trailing semicolon on every line; fields are never
quoted, and a double quote appears as an ordinary character (HWSD's resolution ``30"``), so no quote
processing is done. Values are kept as given (``130`` for the CCI class, ``Cfa`` for Koeppen-Geiger,
``-99.90`` as ISMN's unknown depth). The station is named only by the file name.
"""

from __future__ import annotations

import csv
from typing import Final

from etl.errors import InputError
from etl.insitu.ismn_names import static_candidates
from etl.insitu.model import Attribute, ParsedStatic, Reason, Reject
from etl.insitu.text import clip, decode, split_lines, to_number

REQUIRED: Final = (
    "quantity_name",
    "unit",
    "depth_from[m]",
    "depth_to[m]",
    "value",
    "description",
    "quantity_source_name",
)
_CORE: Final = frozenset(REQUIRED)


def parse_static_variables(data: bytes, *, name: str) -> ParsedStatic:
    """Parse a static variables file; InputError naming the file when its columns are wrong."""
    candidates = static_candidates(name)
    lines = split_lines(decode(data))
    records = list(csv.reader(lines, delimiter=";", quoting=csv.QUOTE_NONE))
    first = next((i for i, r in enumerate(records) if any(f.strip() for f in r)), None)
    if first is None:
        raise InputError(f"{name}: empty file")
    header = [f.strip() for f in records[first]]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise InputError(
            f"{name}: line {first + 1}: missing column(s) {', '.join(missing)}; "
            f"expected {';'.join(REQUIRED)};..."
        )
    col = {c: header.index(c) for c in header if c}
    attributes: list[Attribute] = []
    rejects: list[Reject] = []
    seen: set[tuple[str, str, float | None, float | None]] = set()
    read = 0
    for i in range(first + 1, len(records)):
        fields = [f.strip() for f in records[i]]
        if not any(fields):
            continue
        read += 1
        line = clip(lines[i])

        def get(column: str, fields: list[str] = fields) -> str:
            j = col[column]
            return fields[j] if j < len(fields) else ""

        if len(fields) < len(REQUIRED):
            detail = f"expected at least {len(REQUIRED)} fields, found {len(fields)}"
            rejects.append(Reject(i + 1, Reason.WRONG_COLUMN_COUNT, detail, line))
            continue
        quantity, value = get("quantity_name"), get("value")
        if not quantity or not value:
            detail = "quantity_name and value are required"
            rejects.append(Reject(i + 1, Reason.MISSING_FIELD, detail, line))
            continue
        depths = [to_number(get(c)) for c in ("depth_from[m]", "depth_to[m]")]
        bad = [
            c
            for c, d in zip(("depth_from[m]", "depth_to[m]"), depths, strict=True)
            if get(c) and d is None
        ]
        if bad:
            detail = f"{bad[0]} {get(bad[0])!r} is not a number"
            rejects.append(Reject(i + 1, Reason.NON_NUMERIC_VALUE, detail, line))
            continue
        attribute = Attribute(
            quantity=quantity,
            source=get("quantity_source_name") or "unknown",
            depth_from_m=depths[0],
            depth_to_m=depths[1],
            value_text=value,
            value_num=to_number(value),
            unit=get("unit") or None,
            description=get("description") or None,
            details={c: get(c) for c in col if c not in _CORE and get(c)},
        )
        if attribute.key in seen:
            detail = "same quantity, source and depths as an earlier line"
            rejects.append(Reject(i + 1, Reason.DUPLICATE_KEY, detail, line))
            continue
        seen.add(attribute.key)
        attributes.append(attribute)
    return ParsedStatic(
        candidates=candidates, attributes=attributes, rejects=rejects, rows_read=read
    )
