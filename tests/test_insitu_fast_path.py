"""The vectorised fast path of the ISMN parser and the binary COPY records: same results as the
line-by-line rules, exact numbers, every line-ending style, every kind of bad line."""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest

from etl.insitu.ismn_stm import parse_stm
from etl.insitu.load import copy_records
from etl.insitu.model import Labels, Reason, Rows
from etl.insitu.text import split_lines
from etl.insitu.tokens import decimals, hhmm_minutes, ismn_days, split_tokens

HV_NAME = "NET_NET_CST-01_sm_0.050000_0.050000_ThetaProbe-ML2X_20200101_20200131.stm"
HV_HEADER = "NET        NET             CST_01             45.00000    10.00000  100.00    0.05    0.05 ThetaProbe-ML2X"
PG_EPOCH = np.datetime64("2000-01-01T00:00:00", "us")


def _random_line(rng: random.Random) -> str:
    """A measurement line, usually good, sometimes broken in one of the ways files break."""
    day = f"2020/{rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}"
    time = f"{rng.randint(0, 23):02d}:{rng.choice([0, 30]):02d}"
    value = rng.choice(
        [
            f"{rng.uniform(0, 0.6):.4f}",
            f"{rng.uniform(-1, 1):.{rng.randint(0, 17)}f}",
            "1e-3",
            "+.5",
        ]
    )
    flags = ["G", "D03,D10", "C01", "M", "D01,D02,D03,D04", f"D{rng.randint(1, 20):02d}"]
    fields = [day, time, value, rng.choice(flags)]
    if rng.random() < 0.8:
        fields.append(rng.choice(["M", "x", "provider-flag-longer-than-eight", "p" * 70]))
    damage = rng.random()
    if damage < 0.03:
        fields[0] = rng.choice(["2020-01-01", "2020/02/30", "1899/12/31", "2020/1/01"])
    elif damage < 0.06:
        fields[1] = rng.choice(["24:00", "1:00", "12:60", "ab:cd"])
    elif damage < 0.09:
        fields[2] = rng.choice(["n/a", "1.2.3", "nan", "inf", "1e999", "0x10", "1_0", "-"])
    elif damage < 0.11:
        fields = fields[:3]
    elif damage < 0.12:
        fields.append("extra")
    separator = rng.choice([" ", "   ", "\t", " \t "])
    return rng.choice(["", " "]) + separator.join(fields) + rng.choice(["", "  "])


def _text_rows(rows: Rows) -> list[tuple[str, float, str, str, int]]:
    return list(
        zip(
            [str(t) for t in rows.times],
            rows.values.tolist(),
            rows.quality_flags.tolist(),
            rows.provider_flags.tolist(),
            rows.line_nos.tolist(),
            strict=True,
        )
    )


@pytest.mark.parametrize("seed", range(5))
def test_the_fast_path_gives_what_reading_line_by_line_gives(seed: int) -> None:
    rng = random.Random(seed)
    lines = [_random_line(rng) for _ in range(3000)]
    lines[rng.randrange(3000)] = ""  # blank lines are skipped, not read
    ending = rng.choice(["\r\n", "\r", "\n"])
    fast = parse_stm((ending.join([HV_HEADER, *lines]) + ending).encode(), name=HV_NAME)
    # one non-ASCII line makes the parser read every line alone, by the reference rule
    alone = parse_stm((ending.join([HV_HEADER, *lines, "é"]) + ending).encode(), name=HV_NAME)
    assert alone.rejects[-1].reason is Reason.WRONG_COLUMN_COUNT
    assert fast.rows_read == alone.rows_read - 1
    assert fast.rejects == alone.rejects[:-1]
    [(_, rows)], [(_, reference)] = fast.blocks, alone.blocks
    assert _text_rows(rows) == _text_rows(reference)
    assert {r.reason for r in fast.rejects} >= {
        Reason.UNPARSEABLE_TIME,
        Reason.NON_NUMERIC_VALUE,
        Reason.WRONG_COLUMN_COUNT,
        Reason.MISSING_FIELD,
        Reason.DUPLICATE_TIME,
    }


def test_values_are_the_doubles_float_reads_and_infinite_ones_are_refused() -> None:
    rng = random.Random(7)
    special = ["0", "-0", "+1", ".5", "5.", "-.25", "9007199254740992", "0.00000000000000001"]
    beyond = ["9007199254740993", "1" * 19, "1e-3"]  # left to the line-by-line reading
    texts = special + beyond
    texts += [f"{rng.uniform(-10, 10):.{rng.randint(0, 17)}f}" for _ in range(20_000)]
    tokens = split_tokens(" ".join(texts))
    assert tokens is not None
    values, ok = decimals(tokens.data, tokens.token_starts, tokens.token_ends)
    assert ok[: len(special)].all() and not ok[len(special) : len(texts) - 20_000].any()
    assert ok.mean() > 0.8
    read = [float(t) for t, k in zip(texts, ok.tolist(), strict=True) if k]
    assert values[ok].tolist() == read
    assert np.signbit(values[texts.index("-0")])
    lines = ["2020/01/01 00:00 1e999 G M", "2020/01/01 01:00 1e-3 G M"]
    parsed = parse_stm(("\r\n".join([HV_HEADER, *lines]) + "\r\n").encode(), name=HV_NAME)
    assert [(r.line_no, r.reason) for r in parsed.rejects] == [(2, Reason.NON_NUMERIC_VALUE)]
    assert parsed.blocks[0][1].values.tolist() == [0.001]


def test_dates_and_times_are_read_as_the_calendar_says() -> None:
    days = ["2020/02/29", "2021/02/29", "1900/02/29", "2000/02/29", "2100/12/31", "1899/12/31"]
    times = ["00:00", "23:59", "24:00", "12:60", "7:00", "07-00"]
    tokens = split_tokens(" ".join(days + times))
    assert tokens is not None
    starts, ends = tokens.token_starts, tokens.token_ends
    n_days, ok_days = ismn_days(tokens.data, starts[:6], ends[:6])
    minutes, ok_times = hhmm_minutes(tokens.data, starts[6:], ends[6:])
    assert ok_days.tolist() == [True, False, False, True, True, False]
    expected = np.array(["2020-02-29", "2000-02-29", "2100-12-31"], dtype="datetime64[D]")
    assert n_days[ok_days].tolist() == expected.astype(np.int64).tolist()
    assert ok_times.tolist() == [True, True, False, False, False, False]
    assert minutes[:2].tolist() == [0, 23 * 60 + 59]


@pytest.mark.parametrize("seed", range(3))
def test_lines_and_tokens_match_the_text_helpers_for_every_line_ending(seed: int) -> None:
    rng = random.Random(seed)
    pieces = ["ab", "7", " ", "\t", "\r", "\n", "\r\n", "\n\r", "\x0b", "\x1c", "x.y"]
    for _ in range(500):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        tokens = split_tokens(text)
        assert tokens is not None
        lines = split_lines(text)
        assert [tokens.line(i) for i in range(len(tokens.line_starts))] == lines
        assert tokens.token_counts.tolist() == [len(line.split()) for line in lines]
    assert split_tokens("caf\u00e9") is None and split_tokens("a\x00b") is None


def _reference_record(
    sensor: int, time: np.datetime64, value: float, quality: str, provider: str, file: int
) -> bytes:
    micros = int((time - PG_EPOCH).astype(np.int64))
    q, p = quality.encode(), provider.encode()
    provider_field = struct.pack("!i", len(p)) + p if provider else struct.pack("!i", -1)
    return (
        struct.pack("!hiiiqid", 6, 4, sensor, 8, micros, 8, value)
        + struct.pack("!i", len(q))
        + q
        + provider_field
        + struct.pack("!ii", 4, file)
    )


def test_copy_records_are_postgresql_binary_tuples_byte_for_byte() -> None:
    quality = ["G", "D03,D10", "G", "U", "G", "grüße"]
    provider = ["M", "", "M", "provider-flag-of-many-bytes", "", "M"]
    rows = Rows(
        times=np.array(
            [
                "2024-05-01T00:00",
                "2024-05-01T01:00",
                "2024-05-31T23:30",
                "2024-06-01T00:00",
                "1999-12-31T23:00",
                "2024-06-02T00:00:00.5",
            ],
            dtype="datetime64[us]",
        ),
        values=np.array([0.25, -0.0, 1e-3, 0.5, 0.1, 0.2]),
        quality_flags=Labels.of(quality),
        provider_flags=Labels.of(provider),
        line_nos=np.arange(2, 8),
    )
    records = copy_records(rows, sensor_id=123456, file_id=7, encoding="utf-8")
    expected = [
        _reference_record(123456, t, v, q, p, 7)
        for t, v, q, p in zip(rows.times, rows.values.tolist(), quality, provider, strict=True)
    ]
    header = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
    assert records.stream(0, 6) == header + b"".join(expected) + b"\xff\xff"
    assert records.stream(2, 4) == header + b"".join(expected[2:4]) + b"\xff\xff"
