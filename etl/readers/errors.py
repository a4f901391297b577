"""Typed input errors of the readers: a file that does not open, and a file whose layout has drifted.

Both derive from :class:`etl.errors.InputError`, so their status is ``QUARANTINED``: the granule is set
aside with the reason recorded, and the day goes on (degraded) rather than failing or, worse, reading a
changed layout wrongly. Every message names the file and what is wrong with it.
"""

from __future__ import annotations

from etl.errors import InputError


class CorruptFileError(InputError):
    """The file is missing, truncated, or does not open as the format it claims to be."""


class SchemaDriftError(InputError):
    """The file opens but is not laid out as the reader knows the product.

    A missing group or variable, an unexpected shape, dtype, fill value, grid or time unit, or
    identification metadata (product, date) that contradicts the file name.
    """
