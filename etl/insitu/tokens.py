"""Vectorised reading of whitespace-separated ASCII text: lines, tokens, dates, times, decimals, flags.

The fast path of the ISMN parser (millions of lines): numpy finds every line break and token of a
file at once and converts whole columns of tokens, with no Python code per line. Every reader
returns which tokens it could read (``ok``); the parser reads the other lines one by one with the
rules of :mod:`etl.insitu.text`, which stay the reference. So the fast path only accepts what the
line-by-line rules accept, gives the same results, and changes nothing but the speed:

- lines break at CR LF, CR or LF (as :func:`etl.insitu.text.split_lines`); tokens are separated
  by the ASCII characters ``str.split`` splits on;
- dates are ``YYYY/MM/DD`` (a real day, 1900-2100), times ``HH:MM`` (00:00-23:59);
- decimals are plain ``[-+]digits[.digits]`` whose digits make an integer up to 2**53: that
  integer and the power of ten are then exact doubles and IEEE division rounds their quotient
  correctly, so the result is the double nearest the decimal, as ``float()`` and PostgreSQL's
  ``float8`` input give (Clinger's fast path). Exponents and longer numbers are left to the
  line-by-line reading.

The readers take ``data`` as :attr:`Tokens.data`, whose zero padding lets them read fixed-width
windows past the end of the last token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from etl.insitu.model import Labels
from etl.insitu.text import MAX_YEAR, MIN_YEAR

Ints = NDArray[np.int64]
Mask = NDArray[np.bool_]

_CR, _LF = 0x0D, 0x0A
PADDING: Final = 64
MAX_DIGITS: Final = 18  # the integer of the digits fits int64
_MAX_DECIMAL_CHARS: Final = MAX_DIGITS + 2  # a sign and a point
_MAX_EXACT: Final = 2**53  # integers up to this are exact doubles
_POW10: Final = 10.0 ** np.arange(MAX_DIGITS + 1)  # exact doubles (up to 1e22)
_DAYS_IN_MONTH: Final = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
_LOW_BYTES: Final = np.array(
    [(1 << (8 * k)) - 1 for k in range(8)] + [(1 << 64) - 1], dtype=np.uint64
)  # the lowest k bytes of a word set, k = 0..8
_FEW: Final = 8  # distinct labels found by comparisons before sorting
_MICROS_PER_DAY: Final = 86_400_000_000
_MICROS_PER_MINUTE: Final = 60_000_000


@dataclass(frozen=True)
class Tokens:
    """The lines of a text and their whitespace-separated tokens, as byte offsets into ``data``
    (the text's bytes followed by :data:`PADDING` zero bytes, so a fixed-width window from any token
    stays inside the array).

    Lines are numbered from 0; ``line_starts``/``line_ends`` delimit their content (line break
    excluded); token ``k`` of line ``i`` is token number ``first_token[i] + k``.
    """

    data: NDArray[np.uint8]
    line_starts: Ints
    line_ends: Ints
    token_starts: Ints
    token_ends: Ints
    first_token: Ints
    token_counts: Ints

    def line(self, i: int) -> str:
        """Line ``i`` as text (without its line break)."""
        return self.data[self.line_starts[i] : self.line_ends[i]].tobytes().decode("ascii")

    def field(self, lines: Ints, k: int) -> tuple[Ints, Ints]:
        """(starts, ends) of token ``k`` of each of ``lines``, which must have more than k tokens."""
        token = self.first_token[lines] + k
        return self.token_starts[token], self.token_ends[token]


def split_tokens(text: str) -> Tokens | None:
    """The lines and tokens of ``text``; None when it is not plain ASCII or holds a NUL character
    (the caller then reads it line by line)."""
    if not text.isascii() or "\x00" in text:
        return None
    raw = text.encode("ascii")
    size = len(raw)
    data = np.zeros(size + PADDING, dtype=np.uint8)
    data[:size] = np.frombuffer(raw, dtype=np.uint8)
    at, following, n_breaking = _line_breaks(data)
    line_starts = np.concatenate(([0], following))
    line_ends = np.append(at, size)
    if line_starts[-1] == size:  # nothing after the last line break: no line there
        line_starts, line_ends = line_starts[:-1], line_ends[:-1]
    if np.count_nonzero(data[:size] < 32) == n_breaking:
        inside = data > 32  # no tab or other control character: only CR, LF and space separate
    else:
        inside = ~_whitespace(data)
        inside[size:] = False
    edges = np.flatnonzero(inside[1:] != inside[:-1]) + 1  # token starts and ends, alternating
    if inside[0]:
        edges = np.concatenate(([0], edges))
    token_starts, token_ends = edges[0::2], edges[1::2]
    first_token = np.searchsorted(token_starts, line_starts)
    return Tokens(
        data=data,
        line_starts=line_starts,
        line_ends=line_ends,
        token_starts=token_starts,
        token_ends=token_ends,
        first_token=first_token,
        token_counts=np.searchsorted(token_starts, line_ends) - first_token,
    )


def _line_breaks(data: NDArray[np.uint8]) -> tuple[Ints, Ints, int]:
    """Where each line break starts, where the line after it starts (a break is CR LF, CR or LF),
    and how many CR and LF bytes there are. Files with one kind of line end (nearly all) take a
    shortcut."""
    is_cr, is_lf = data == _CR, data == _LF
    cr = np.flatnonzero(is_cr)
    n_lf = int(np.count_nonzero(is_lf))
    if not n_lf:
        return cr, cr + 1, len(cr)
    if not len(cr):
        lf = np.flatnonzero(is_lf)
        return lf, lf + 1, n_lf
    if n_lf == len(cr) and bool(is_lf[cr + 1].all()):  # CR LF only (the padding keeps cr + 1 valid)
        return cr, cr + 2, 2 * n_lf
    breaks = is_cr.copy()  # at every CR, and at every LF not after a CR
    breaks[1:] |= is_lf[1:] & ~is_cr[:-1]
    breaks[0] |= is_lf[0]
    at = np.flatnonzero(breaks)
    return at, at + 1 + (is_cr[at] & is_lf[at + 1]), len(cr) + n_lf


def _whitespace(data: NDArray[np.uint8]) -> Mask:
    """The bytes ``str.split`` separates on in ASCII text: 9-13 (\\t \\n \\v \\f \\r), 28-32."""
    return ((data - np.uint8(9)) <= 4) | ((data - np.uint8(28)) <= 4)


def ismn_days(data: NDArray[np.uint8], starts: Ints, ends: Ints) -> tuple[Ints, Mask]:
    """Days since 1970-01-01 of ``YYYY/MM/DD`` tokens, and which are real days in 1900-2100.

    Sub-daily series repeat a date on consecutive lines: each run of equal tokens is read once.
    """
    head, run = _runs(data, starts, ends)
    starts, ends = starts[head], ends[head]
    col = _columns(data, starts, 10)
    ok = (ends - starts == 10) & (col[4] == ord("/")) & (col[7] == ord("/"))
    for j in (0, 1, 2, 3, 5, 6, 8, 9):
        ok &= (col[j] >= ord("0")) & (col[j] <= ord("9"))
    digit = col.astype(np.int64) - ord("0")
    year = digit[0] * 1000 + digit[1] * 100 + digit[2] * 10 + digit[3]
    month = digit[5] * 10 + digit[6]
    day = digit[8] * 10 + digit[9]
    ok &= (year >= MIN_YEAR) & (year <= MAX_YEAR) & (month >= 1) & (month <= 12) & (day >= 1)
    month = np.where(ok, month, 1)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    ok &= day <= _DAYS_IN_MONTH[month] + ((month == 2) & leap)
    return _days_from_civil(year, month, day)[run], ok[run]


def hhmm_minutes(data: NDArray[np.uint8], starts: Ints, ends: Ints) -> tuple[Ints, Mask]:
    """Minutes after midnight of ``HH:MM`` tokens, and which are times of day (00:00-23:59)."""
    word = _words(data, starts, 1)[0]
    char = [(word >> np.uint64(8 * j)) & np.uint64(0xFF) for j in range(5)]
    ok = (ends - starts == 5) & (char[2] == ord(":"))
    for j in (0, 1, 3, 4):
        ok &= (char[j] >= ord("0")) & (char[j] <= ord("9"))
    digit = [c.astype(np.int64) - ord("0") for c in char]
    hours = digit[0] * 10 + digit[1]
    minutes = digit[3] * 10 + digit[4]
    ok &= (hours <= 23) & (minutes <= 59)
    return hours * 60 + minutes, ok


def utc_times(days: Ints, minutes: Ints) -> NDArray[np.datetime64]:
    """``datetime64[us]`` of days since 1970-01-01 plus minutes."""
    micros = days * _MICROS_PER_DAY + minutes * _MICROS_PER_MINUTE
    return micros.astype("datetime64[us]")


def decimals(data: NDArray[np.uint8], starts: Ints, ends: Ints) -> tuple[NDArray[np.float64], Mask]:
    """Values of plain decimal tokens (``[-+]digits[.digits]``, the digits an integer up to 2**53),
    exactly as ``float()`` reads them, and which tokens are of that form."""
    lengths = ends - starts
    if not len(lengths):
        return np.zeros(0), np.zeros(0, dtype=np.bool_)
    width = int(min(lengths.max(), _MAX_DECIMAL_CHARS))
    col = _columns(data, starts, width)
    negative = col[0] == ord("-")
    signed = negative | (col[0] == ord("+"))
    mantissa = np.zeros(len(lengths), dtype=np.int64)
    n_digits = np.zeros(len(lengths), dtype=np.int64)
    fraction = np.zeros(len(lengths), dtype=np.int64)
    point = np.zeros(len(lengths), dtype=np.bool_)
    ok = lengths <= width
    for j in range(width):
        inside = j < lengths
        value = col[j] - np.uint8(ord("0"))  # wraps below '0': not a digit
        digit = inside & (value <= 9)
        is_point = inside & (col[j] == ord("."))
        ok &= digit | is_point | ~inside | (signed if j == 0 else False)
        ok &= ~(is_point & point)
        mantissa = np.where(digit, mantissa * 10 + value, mantissa)
        n_digits += digit
        fraction += digit & point
        point |= is_point
    ok &= (n_digits >= 1) & (n_digits <= MAX_DIGITS) & (mantissa <= _MAX_EXACT)
    magnitude = mantissa / _POW10[np.minimum(fraction, MAX_DIGITS)]
    return np.where(negative, -magnitude, magnitude), ok


def labels(data: NDArray[np.uint8], starts: Ints, ends: Ints) -> Labels:
    """The tokens as :class:`Labels` (an empty span is the empty label)."""
    lengths = ends - starts
    if not len(lengths):
        return Labels(np.zeros(0, dtype=np.intp), ())
    longest = int(lengths.max())
    if longest > PADDING:  # very long flags: rare enough for Python
        spans = zip(starts.tolist(), ends.tolist(), strict=True)
        return Labels.of([data[a:b].tobytes().decode("ascii") for a, b in spans])
    words = _words(data, starts, -(-longest // 8) or 1)
    for k, word in enumerate(words):  # clear the bytes after each token (tokens never hold NUL)
        word &= _LOW_BYTES[np.clip(lengths - 8 * k, 0, 8)]
    keys = words[0] if len(words) == 1 else np.stack(words, axis=1)
    first, codes = _distinct(keys)
    names = tuple(data[starts[i] : ends[i]].tobytes().decode("ascii") for i in first.tolist())
    return Labels(codes, names)


def _distinct(keys: NDArray[np.uint64]) -> tuple[Ints, NDArray[np.intp]]:
    """(index of the first row of each distinct key, code of each row) for keys of one or more
    words per row. A few distinct values (flags) are found by comparisons, more by sorting."""
    if keys.ndim == 1:
        codes = np.full(len(keys), -1, dtype=np.intp)
        first: list[int] = []
        for code in range(_FEW):
            rest = np.flatnonzero(codes < 0)
            if not len(rest):
                return np.array(first, dtype=np.int64), codes
            first.append(int(rest[0]))
            codes[keys == keys[rest[0]]] = code
    axis = 0 if keys.ndim > 1 else None
    _, index, inverse = np.unique(keys, axis=axis, return_index=True, return_inverse=True)
    return index.astype(np.int64), inverse.reshape(-1).astype(np.intp)


def _days_from_civil(year: Ints, month: Ints, day: Ints) -> Ints:
    """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's ``days_from_civil``)."""
    y = year - (month <= 2)
    era = y // 400
    year_of_era = y - era * 400
    day_of_year = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    days: Ints = era * 146097 + day_of_era - 719468
    return days


def _runs(data: NDArray[np.uint8], starts: Ints, ends: Ints) -> tuple[Ints, Ints]:
    """(first token of each run of equal consecutive tokens of at most 16 characters, run of each
    token); a longer token is a run of its own."""
    if not len(starts):
        return starts, starts
    low, high = _words(data, starts, 2)
    lengths = ends - starts
    low &= _LOW_BYTES[np.clip(lengths, 0, 8)]
    high &= _LOW_BYTES[np.clip(lengths - 8, 0, 8)]
    new = np.ones(len(starts), dtype=np.bool_)
    new[1:] = (low[1:] != low[:-1]) | (high[1:] != high[:-1]) | (lengths[1:] != lengths[:-1])
    new |= lengths > 16
    head = np.flatnonzero(new)
    return head, np.cumsum(new.astype(np.int64)) - 1


def _words(data: NDArray[np.uint8], starts: Ints, count: int) -> list[NDArray[np.uint64]]:
    """The ``count`` little-endian 8-byte words from each start (the padding keeps them inside)."""
    view = np.ndarray(shape=(len(data) - 7,), dtype="<u8", buffer=data, strides=(1,))
    return [view[starts + 8 * k] for k in range(count)]


def _window(data: NDArray[np.uint8], starts: Ints, width: int) -> NDArray[np.uint8]:
    """(rows, width) bytes from each start (``data`` padded as in :class:`Tokens`)."""
    return sliding_window_view(data, width)[starts]


def _columns(data: NDArray[np.uint8], starts: Ints, width: int) -> NDArray[np.uint8]:
    """(width, rows): byte j of each window is row j, contiguous."""
    return np.ascontiguousarray(_window(data, starts, width).T)
