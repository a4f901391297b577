"""Parse an OPeNDAP DAP4 DMR (XML) into the layout it describes: groups, variables, dtypes, shapes, attributes.

A DMR is the complete metadata of a real granule (NASA publishes them beside the data), so it is the
reference for what a reader must expect and for building faithful test files. DAP-only content is
dropped (``Container`` attributes such as build_dmrpp_metadata, ``Map`` elements). HDF5 hard links are
expressed by the DMR as an ``HDF5_HARDLINK`` attribute on the second name of the object, whose value
is the path of the first; it is lifted out of the attributes into :attr:`DmrVariable.hardlink`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

_NS: Final = "{http://xml.opendap.org/ns/DAP/4.0#}"
NUMPY_TYPES: Final[dict[str, str]] = {
    "Byte": "u1",  # DAP4 Byte is unsigned
    "UInt8": "u1",
    "Int8": "i1",
    "Int16": "i2",
    "UInt16": "u2",
    "Int32": "i4",
    "UInt32": "u4",
    "Int64": "i8",
    "UInt64": "u8",
    "Float32": "f4",
    "Float64": "f8",
}
VARIABLE_TYPES: Final = frozenset({*NUMPY_TYPES, "String"})
HARDLINK_ATTRIBUTE: Final = "HDF5_HARDLINK"


@dataclass(frozen=True)
class DmrAttribute:
    """One attribute: DAP type name and its value texts."""

    name: str
    type: str
    values: tuple[str, ...]

    def numpy_value(self) -> np.generic | np.ndarray:
        """As the numpy value h5py would store: fixed-length ASCII bytes for strings, typed numbers."""
        if self.type == "String":
            encoded = [v.encode("utf-8") for v in self.values]
            return np.bytes_(encoded[0]) if len(encoded) == 1 else np.array(encoded)
        dtype = np.dtype(NUMPY_TYPES[self.type])
        arr = np.array(
            [float(v) if dtype.kind == "f" else int(v) for v in self.values], dtype=dtype
        )
        return arr[0] if arr.size == 1 else arr


@dataclass(frozen=True)
class DmrVariable:
    """One variable: full path, DAP type, shape, attributes and the object it is a hard link to."""

    path: str
    type: str
    shape: tuple[int, ...]
    attributes: tuple[DmrAttribute, ...]
    hardlink: str | None

    @property
    def name(self) -> str:
        """The last path component."""
        return self.path.rsplit("/", 1)[-1]

    @property
    def group(self) -> str:
        """The parent group's path ("/" for the root)."""
        return self.path.rsplit("/", 1)[0] or "/"

    def attribute(self, name: str) -> DmrAttribute | None:
        """The attribute ``name``, or None."""
        return next((a for a in self.attributes if a.name == name), None)


@dataclass(frozen=True)
class DmrGroup:
    """One group (the root is "/"): its attributes and dimensions."""

    path: str
    attributes: tuple[DmrAttribute, ...]
    dimensions: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Dmr:
    """A parsed DMR: the granule name, every group (parents first) and every variable in file order."""

    name: str
    groups: tuple[DmrGroup, ...]
    variables: tuple[DmrVariable, ...]

    def variable(self, path: str) -> DmrVariable:
        """The variable at ``path``; KeyError naming it if absent."""
        for var in self.variables:
            if var.path == path:
                return var
        raise KeyError(f"DMR {self.name} has no variable {path}")


def parse_dmr(path: Path) -> Dmr:
    """Parse the DMR file at ``path``."""
    root = ET.parse(path).getroot()
    groups: list[DmrGroup] = []
    variables: list[DmrVariable] = []
    dims: dict[str, int] = {}
    _walk(root, "/", groups, variables, dims)
    return Dmr(name=root.get("name", path.name), groups=tuple(groups), variables=tuple(variables))


def _walk(
    element: ET.Element,
    path: str,
    groups: list[DmrGroup],
    variables: list[DmrVariable],
    dims: dict[str, int],
) -> None:
    own_dims = []
    for child in element:
        if _tag(child) == "Dimension":
            full = _join(path, child.get("name", ""))
            dims[full] = int(child.get("size", "0"))
            own_dims.append((child.get("name", ""), dims[full]))
    groups.append(DmrGroup(path=path, attributes=_attributes(element), dimensions=tuple(own_dims)))
    for child in element:
        tag = _tag(child)
        if tag == "Group":
            _walk(child, _join(path, child.get("name", "")), groups, variables, dims)
        elif tag in VARIABLE_TYPES:
            shape = tuple(_dim_size(d, dims) for d in child if _tag(d) == "Dim")
            attrs = _attributes(child)
            link = next((a.values[0] for a in attrs if a.name == HARDLINK_ATTRIBUTE), None)
            variables.append(
                DmrVariable(
                    path=_join(path, child.get("name", "")),
                    type=tag,
                    shape=shape,
                    attributes=tuple(a for a in attrs if a.name != HARDLINK_ATTRIBUTE),
                    hardlink=link,
                )
            )


def _dim_size(dim: ET.Element, dims: dict[str, int]) -> int:
    size = dim.get("size")
    return int(size) if size is not None else dims[dim.get("name", "")]


def _attributes(element: ET.Element) -> tuple[DmrAttribute, ...]:
    out = []
    for child in element:
        if _tag(child) != "Attribute" or child.get("type") == "Container":
            continue
        values = tuple((v.text or "") for v in child if _tag(v) == "Value")
        out.append(
            DmrAttribute(name=child.get("name", ""), type=child.get("type", ""), values=values)
        )
    return tuple(out)


def _tag(element: ET.Element) -> str:
    return element.tag.removeprefix(_NS)


def _join(parent: str, name: str) -> str:
    return f"{parent.rstrip('/')}/{name}"
