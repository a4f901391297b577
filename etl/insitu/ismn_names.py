"""What ISMN file names say: variable, depths, instrument of a data file; the station of a static file.

Data files are ``<CSE>_<NETWORK>_<STATION>_<var>_<from>_<to>_<INSTRUMENT>_<start>_<end>.stm``. The
dates are those of the download query, not of the data, and are ignored. Station, network and
instrument may themselves contain underscores, so the name is read from the right, where the fields
have fixed shapes. Static variable files are ``<CSE>_<NETWORK>_<STATION>_static_variables.csv``;
ISMN repeats the network as the CSE identifier, which is how the network/station boundary is found.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from etl.errors import InputError
from etl.insitu.model import ISMN_VARIABLES

STATIC_SUFFIX: Final = "_static_variables.csv"
DATA_SUFFIX: Final = ".stm"

_DATA_NAME = re.compile(
    r"(?P<prefix>.+)_(?P<var>[A-Za-z]+)_(?P<d0>-?\d+(?:\.\d+)?)_(?P<d1>-?\d+(?:\.\d+)?)"
    r"_(?P<instrument>.+)_(?P<start>\d{8})_(?P<end>\d{8})\.stm",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class DataName:
    """The fields of an ISMN data file name."""

    prefix: str
    """``<CSE>_<NETWORK>_<STATION>``"""
    variable: str
    depth_from_m: float
    depth_to_m: float
    instrument: str

    def station_after(self, cse: str, network: str) -> str | None:
        """The station part of the name, given the CSE and network from the file contents."""
        head = f"{cse}_{network}_"
        return self.prefix[len(head) :] if self.prefix.startswith(head) else None


def parse_data_name(name: str) -> DataName:
    """Read an ``.stm`` file name; InputError naming the file when it does not follow ISMN."""
    m = _DATA_NAME.fullmatch(name)
    if m is None:
        raise InputError(
            f"{name}: not an ISMN data file name "
            "(<CSE>_<NETWORK>_<STATION>_<var>_<from>_<to>_<INSTRUMENT>_<start>_<end>.stm); "
            "the variable and depths cannot be told"
        )
    code = m["var"].lower()
    variable = ISMN_VARIABLES.get(code, (code, ""))[0]
    return DataName(
        prefix=m["prefix"],
        variable=variable,
        depth_from_m=float(m["d0"]),
        depth_to_m=float(m["d1"]),
        instrument=m["instrument"],
    )


def static_candidates(name: str) -> list[tuple[str, str]]:
    """Possible (network, station) readings of a static variables file name, likeliest first.

    ``A_A_STATION`` (CSE equal to network, as ISMN writes them) come first; any other
    ``CSE_NETWORK_STATION`` split follows. The loader keeps the first that names a known station.
    """
    if not name.endswith(STATIC_SUFFIX):
        raise InputError(f"{name}: not an ISMN static variables file name (*{STATIC_SUFFIX})")
    prefix = name[: -len(STATIC_SUFFIX)]
    parts = prefix.split("_")
    same: list[tuple[str, str]] = []
    other: list[tuple[str, str]] = []
    for i in range(1, len(parts) - 1):
        for j in range(i + 1, len(parts)):
            cse, network, station = "_".join(parts[:i]), "_".join(parts[i:j]), "_".join(parts[j:])
            (same if cse == network else other).append((network, station))
    if not same and not other:
        raise InputError(f"{name}: expected <CSE>_<NETWORK>_<STATION>{STATIC_SUFFIX}")
    return same + other
