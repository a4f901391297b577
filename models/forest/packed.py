"""``PackedForest``: the frozen random forest as compact arrays, with its fast exact ``predict``."""

from __future__ import annotations

import hashlib
import logging
import os
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, overload

import numba
import numpy as np
from numpy.typing import ArrayLike, NDArray

from etl.errors import ConfigError, InputError
from models.forest._kernel import (
    FEATURE_BITS,
    MAX_BLOCK_ROWS,
    float32_keys,
    predict_blocks,
)

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
"""Version of the ``.npz`` layout and of the node record; bumped when either changes."""

MAX_FEATURES = (1 << FEATURE_BITS) - 1
"""Most features a packed forest can use (the leaves' virtual feature ``n_features`` must fit)."""

MAX_NODES_PER_TREE = 1 << (32 - FEATURE_BITS)
"""Most nodes in one tree (24-bit child index): 16.7 M, far above a depth-24 tree's ~100 k."""

_LOW32 = np.uint64(0xFFFFFFFF)
_FEATURE_MASK = np.uint64((1 << FEATURE_BITS) - 1)
_NPZ_KEYS = frozenset({"format_version", "n_features", "nodes", "tree_offsets", "source_digest"})


@dataclass(frozen=True, eq=False)
class PackedForest:
    """A fitted scikit-learn forest regressor packed for fast, exact inference.

    ``nodes`` holds one ``uint64`` record per node (layout in :mod:`models.forest._kernel`), each
    tree's nodes in breadth-first order with both children of a node adjacent, trees one after
    another from ``tree_offsets[t]`` to ``tree_offsets[t + 1]``. ``source_digest`` is the
    :func:`forest_digest` of the scikit-learn forest it was packed from. The arrays are read-only;
    the structure is checked on construction, so a damaged file cannot make the kernel read out of
    bounds. ``tree_depths`` is derived from the nodes, never stored.
    """

    nodes: NDArray[np.uint64]
    tree_offsets: NDArray[np.int64]
    n_features: int
    source_digest: str
    tree_depths: NDArray[np.int64] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Own copies, so that making them read-only cannot surprise the caller.
        nodes = np.array(self.nodes, copy=True, order="C")
        offsets = np.array(self.tree_offsets, copy=True, order="C")
        if nodes.dtype != np.uint64 or nodes.ndim != 1:
            raise InputError(
                f"packed forest: nodes must be 1-D uint64, got {nodes.dtype} {nodes.shape}"
            )
        if offsets.dtype != np.int64 or offsets.ndim != 1:
            raise InputError(f"packed forest: tree_offsets must be 1-D int64, got {offsets.dtype}")
        if not 1 <= self.n_features <= MAX_FEATURES:
            raise InputError(
                f"packed forest: n_features={self.n_features} outside [1, {MAX_FEATURES}]"
            )
        depths = _check_structure(nodes=nodes, tree_offsets=offsets, n_features=self.n_features)
        for arr in (nodes, offsets, depths):
            arr.flags.writeable = False
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "tree_offsets", offsets)
        object.__setattr__(self, "tree_depths", depths)

    # ----------------------------------------------------------------------------------------
    @property
    def n_trees(self) -> int:
        return int(self.tree_offsets.size - 1)

    @property
    def n_nodes(self) -> int:
        return int(self.nodes.size)

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays the kernel reads (8 per node)."""
        return int(self.nodes.nbytes + self.tree_offsets.nbytes + self.tree_depths.nbytes)

    # ----------------------------------------------------------------------------------------
    @classmethod
    def from_sklearn(cls, forest: Any) -> PackedForest:
        """Pack a fitted ``RandomForestRegressor`` (or ``ExtraTreesRegressor``), single output.

        Thresholds are rounded *down* to float32: scikit-learn sends a row left when
        ``float64(x) <= t`` for its float32 ``x``, and for a float32 ``x`` that holds exactly when
        ``x <= t32`` with ``t32`` the largest float32 not above ``t``. Leaf values are stored as
        float32 (relative error <= 6e-8, i.e. < 4e-8 m3/m3 on the mean).
        """
        estimators = getattr(forest, "estimators_", None)
        if not estimators:
            raise InputError(f"{type(forest).__name__} is not a fitted forest (no estimators_)")
        if getattr(forest, "n_outputs_", 1) != 1:
            raise InputError(
                f"only single-output forests can be packed, got n_outputs_={forest.n_outputs_}"
            )
        n_features = int(forest.n_features_in_)
        if n_features > MAX_FEATURES:
            raise InputError(
                f"forest uses {n_features} features; at most {MAX_FEATURES} can be packed"
            )
        records = [_pack_tree(est.tree_, n_features=n_features) for est in estimators]
        sizes = np.array([r.size for r in records], dtype=np.int64)
        offsets = np.concatenate([np.zeros(1, np.int64), np.cumsum(sizes)])
        return cls(
            nodes=np.concatenate(records),
            tree_offsets=offsets,
            n_features=n_features,
            source_digest=forest_digest(forest),
        )

    def save(self, path: Path) -> None:
        """Write the forest as a plain ``.npz`` (no pickled objects), atomically (temp + rename)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as fh:
            np.savez(
                fh,
                format_version=np.int64(FORMAT_VERSION),
                n_features=np.int64(self.n_features),
                nodes=self.nodes,
                tree_offsets=self.tree_offsets,
                source_digest=np.str_(self.source_digest),
            )
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> PackedForest:
        """Read a forest written by :meth:`save`; a malformed file raises ``InputError``."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as npz:
                if set(npz.files) != _NPZ_KEYS:
                    raise InputError(f"{path}: not a packed forest (arrays {sorted(npz.files)})")
                version = int(npz["format_version"])
                if version != FORMAT_VERSION:
                    raise InputError(
                        f"{path}: packed forest format {version}, expected {FORMAT_VERSION}"
                    )
                return cls(
                    nodes=npz["nodes"],
                    tree_offsets=npz["tree_offsets"],
                    n_features=int(npz["n_features"]),
                    source_digest=str(npz["source_digest"]),
                )
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            raise InputError(f"{path}: unreadable packed forest: {err}") from err

    @classmethod
    def load_or_build(
        cls, path: Path, *, load_forest: Callable[[], Any], expected_digest: str | None
    ) -> PackedForest:
        """Load the packed forest cached at ``path``; if missing, malformed or built from another
        forest than ``expected_digest`` (None: do not check), pack ``load_forest()`` and save it.
        """
        path = Path(path)
        if path.exists():
            try:
                packed = cls.load(path)
            except InputError as err:
                logger.warning(
                    "packed_forest_unusable", extra={"path": str(path), "error": str(err)}
                )
            else:
                if expected_digest is None or packed.source_digest == expected_digest:
                    return packed
                logger.warning(
                    "packed_forest_stale",
                    extra={
                        "path": str(path),
                        "digest": packed.source_digest,
                        "expected": expected_digest,
                    },
                )
        start = time.perf_counter()
        packed = cls.from_sklearn(load_forest())
        if expected_digest is not None and packed.source_digest != expected_digest:
            raise InputError(
                f"the forest to pack has digest {packed.source_digest}, expected {expected_digest}"
            )
        packed.save(path)
        logger.info(
            "packed_forest_built",
            extra={
                "path": str(path),
                "nodes": packed.n_nodes,
                "seconds": time.perf_counter() - start,
            },
        )
        return packed

    # ----------------------------------------------------------------------------------------
    @overload
    def predict(
        self, X: ArrayLike, *, with_std: Literal[False] = ..., n_threads: int | None = ...
    ) -> NDArray[np.float32]: ...

    @overload
    def predict(
        self, X: ArrayLike, *, with_std: Literal[True], n_threads: int | None = ...
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]: ...

    def predict(
        self, X: ArrayLike, *, with_std: bool = False, n_threads: int | None = None
    ) -> NDArray[np.float32] | tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Mean over trees for each row of ``X`` (rows x ``n_features``), as float32.

        The same as scikit-learn's ``predict`` to float32 rounding (same tree decisions; sums in
        float64). With ``with_std`` also the population standard deviation (ddof=0) of the trees'
        predictions, the spread of the ensemble used as per-pixel uncertainty; it costs a few per
        cent more. ``n_threads``: numba threads for this call (None: numba's current setting).

        Non-finite inputs are refused with ``InputError`` (after the pass; no partial result):
        scikit-learn refuses +-inf and routes NaN by a per-node rule learned in training, which
        this engine does not reproduce; the pipeline masks NaN pixels before predicting.
        """
        x = _as_rows(X, n_features=self.n_features)
        n_rows = x.shape[0]
        previous = int(numba.get_num_threads())
        threads = previous if n_threads is None else n_threads
        if threads < 1:
            raise ConfigError(f"n_threads={n_threads}: must be at least 1")
        n_blocks = -(-n_rows // MAX_BLOCK_ROWS)
        n_blocks = max(1, -(-n_blocks // threads) * threads)  # whole rounds of blocks per thread
        start = time.perf_counter()
        try:
            numba.set_num_threads(threads)
        except ValueError as err:  # above the size of numba's thread pool
            raise ConfigError(f"n_threads={n_threads}: {err}") from err
        try:
            if n_rows == 0:
                empty = np.empty(0, np.float32)
                return (empty, empty.copy()) if with_std else empty
            # Blocks are handed out one at a time, so a core shared with another process lags less.
            with numba.parallel_chunksize(1):
                mean, std, n_bad = predict_blocks(
                    x, self.nodes, self.tree_offsets, self.tree_depths, with_std, n_blocks
                )
        finally:
            numba.set_num_threads(previous)
        if int(n_bad.sum()):
            raise InputError(_non_finite_message(x, n_bad=int(n_bad.sum())))
        logger.debug(
            "forest_predict",
            extra={
                "rows": n_rows,
                "with_std": with_std,
                "threads": threads,
                "seconds": time.perf_counter() - start,
            },
        )
        return (mean, std) if with_std else mean


# --------------------------------------------------------------------------------------------
def forest_digest(forest: Any) -> str:
    """sha256 over a fitted scikit-learn forest's trees (structure, thresholds, values).

    Identifies the forest a packed file was built from without pickling anything.
    """
    h = hashlib.sha256()
    h.update(f"n_features={int(forest.n_features_in_)};n_trees={len(forest.estimators_)}".encode())
    for est in forest.estimators_:
        tree = est.tree_
        for arr in (
            tree.children_left,
            tree.children_right,
            tree.feature,
            tree.threshold,
            tree.value,
        ):
            a = np.ascontiguousarray(arr)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.data)
    return h.hexdigest()


def _pack_tree(tree: Any, *, n_features: int) -> NDArray[np.uint64]:
    """One scikit-learn tree as node records in breadth-first order, children pairs adjacent.

    scikit-learn numbers nodes depth-first, and a node's children need not be adjacent in its
    arrays; here node ``i``'s children are ``left[i]`` and ``left[i] + 1`` by construction.
    """
    left = np.asarray(tree.children_left, dtype=np.int64)
    right = np.asarray(tree.children_right, dtype=np.int64)
    n = left.size
    if n > MAX_NODES_PER_TREE:
        raise InputError(f"tree has {n} nodes; at most {MAX_NODES_PER_TREE} can be packed")
    threshold = np.asarray(tree.threshold, dtype=np.float64)
    value = np.asarray(tree.value, dtype=np.float64).reshape(n, -1)
    if value.shape[1] != 1:
        raise InputError(f"tree values have shape {tree.value.shape}; expected one output")
    # Breadth-first renumbering, one level at a time.
    order = np.empty(n, np.int64)
    new_id = np.full(n, -1, np.int64)
    order[0], new_id[0] = 0, 0
    placed = 1
    frontier = np.zeros(1, np.int64)
    while frontier.size:
        parents = frontier[left[frontier] != -1]
        children = np.empty(2 * parents.size, np.int64)
        children[0::2] = left[parents]
        children[1::2] = right[parents]
        if placed + children.size > n or (new_id[children] != -1).any():
            raise InputError("tree is not a tree (a node is reached twice)")
        new_id[children] = np.arange(placed, placed + children.size)
        order[placed : placed + children.size] = children
        placed += children.size
        frontier = children
    if placed != n:
        raise InputError(f"tree has {n - placed} unreachable nodes")
    is_leaf = left[order] == -1
    local = np.arange(n, dtype=np.int64)
    left_new = np.where(is_leaf, local, new_id[np.where(is_leaf, 0, left[order])])
    feature = np.where(is_leaf, n_features, np.asarray(tree.feature, dtype=np.int64)[order])
    # Threshold rounded down to float32, as an order-preserving key.
    t64 = threshold[order]
    if np.isnan(t64[~is_leaf]).any():
        raise InputError("tree has a NaN split threshold")
    t32 = t64.astype(np.float32)
    t32 = np.where(t32.astype(np.float64) > t64, np.nextafter(t32, np.float32(-np.inf)), t32)
    high = np.where(
        is_leaf,
        value[order, 0].astype(np.float32).view(np.uint32),
        float32_keys(t32),
    ).astype(np.uint64)
    low = ((left_new << FEATURE_BITS) | feature).astype(np.uint64)
    return (high << np.uint64(32)) | low


def _check_structure(
    *, nodes: NDArray[np.uint64], tree_offsets: NDArray[np.int64], n_features: int
) -> NDArray[np.int64]:
    """Check every record can only lead the kernel to valid nodes; return each tree's depth.

    A leaf (feature field == ``n_features``) must point at itself; an internal node at a left
    child after itself whose right sibling is in the tree. Children after parents also bound the
    number of steps, so the depth computed here is the number of steps every row needs.
    """
    if tree_offsets.size < 2 or tree_offsets[0] != 0 or tree_offsets[-1] != nodes.size:
        raise InputError("packed forest: tree_offsets do not span the nodes")
    sizes = np.diff(tree_offsets)
    if (sizes < 1).any() or (sizes > MAX_NODES_PER_TREE).any():
        raise InputError("packed forest: a tree has no nodes or too many")
    tree_of = np.repeat(np.arange(sizes.size), sizes)
    local = np.arange(nodes.size, dtype=np.int64) - tree_offsets[tree_of]
    low = nodes & _LOW32
    feature = (low & _FEATURE_MASK).astype(np.int64)
    child = (low >> np.uint64(FEATURE_BITS)).astype(np.int64)
    is_leaf = feature == n_features
    if (feature > n_features).any():
        raise InputError("packed forest: a node uses a feature beyond n_features")
    if (child[is_leaf] != local[is_leaf]).any():
        raise InputError("packed forest: a leaf does not point at itself")
    internal = ~is_leaf
    if (
        (child[internal] <= local[internal]) | (child[internal] + 1 >= sizes[tree_of][internal])
    ).any():
        raise InputError("packed forest: a child index is out of range")
    # Depth of each tree: walk all trees level by level from their roots.
    depths = np.zeros(sizes.size, np.int64)
    frontier = tree_offsets[:-1].copy()
    level = 0
    while frontier.size:
        frontier = frontier[~is_leaf[frontier]]
        if frontier.size == 0:
            break
        level += 1
        depths[tree_of[frontier]] = level
        base = tree_offsets[tree_of[frontier]]
        frontier = np.concatenate([base + child[frontier], base + child[frontier] + 1])
    return depths


def _as_rows(X: ArrayLike, *, n_features: int) -> NDArray[np.floating]:
    """``X`` as a C-contiguous float32/float64 matrix with ``n_features`` columns."""
    x = np.asarray(X)
    if x.ndim != 2:
        raise InputError(f"X must be 2-D (rows x {n_features} features), got shape {x.shape}")
    if x.shape[1] != n_features:
        raise InputError(f"X has {x.shape[1]} features; the forest was trained on {n_features}")
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float32)
    return np.ascontiguousarray(x)


def _non_finite_message(x: NDArray[np.floating], *, n_bad: int) -> str:
    with np.errstate(over="ignore"):  # float64 beyond float32 becomes inf: that is the point
        bad = ~np.isfinite(x.astype(np.float32))
    row, col = np.argwhere(bad)[0]
    return (
        f"X holds {n_bad} non-finite values (NaN, +-inf or beyond float32), first at row {row}, "
        f"feature {col} ({x[row, col]!r}); mask such pixels before predicting"
    )
