"""The numba kernel of :class:`models.forest.PackedForest`: tree-major traversal over blocks of rows.

Node record (one ``uint64``, trees concatenated, node indices local to their tree)::

    bits 63..32  internal node: order-preserving key of the float32 threshold (see ``float32_keys``)
                 leaf:          IEEE bits of the leaf value as float32
    bits 31..8   internal node: index of the left child (the right child is the next record)
                 leaf:          the leaf's own index (a leaf is a self-loop)
    bits  7..0   internal node: feature index;  leaf: ``n_features``, a virtual feature whose key
                 is 0 in every row, smaller than every key, so a leaf always "goes left" to itself

One step is therefore branch-free and the same for every node: ``next = left + (x_key > t_key)``;
after ``depth`` steps every row sits on its leaf. The kernel never reads outside the arrays as long
as the records are well formed, which ``PackedForest`` checks when it is built or loaded.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange
from numpy.typing import NDArray

ROWS_PER_GROUP = 8
"""Rows traversed together through one tree: 8 independent dependency chains keep the core busy
while each waits for its node to arrive from L1/L2 (measured: 6 rows slower, 10-16 no faster)."""

MAX_BLOCK_ROWS = 262_144
"""Rows per block: one block runs through all trees, so each tree is fetched into cache once per
block and reused for this many rows (256 k rows x 11 keys x 4 B = 11.5 MB per thread)."""

FEATURE_BITS = 8
"""Bits of the feature field; ``n_features`` (the virtual feature of leaves) must fit."""

_U = np.uint64


def float32_keys(values: NDArray[np.float32]) -> NDArray[np.uint32]:
    """Order-preserving ``uint32`` keys of float32 values: ``a > b`` iff ``key(a) > key(b)``.

    Negative floats have their bits inverted, positive ones their sign bit set; ``-0.0`` is first
    turned into ``+0.0`` (they compare equal as floats). Valid for every non-NaN value, +-inf
    included. The kernel applies the same mapping to the rows it predicts.
    """
    bits = (np.asarray(values, dtype=np.float32) + np.float32(0.0)).view(np.uint32)
    negative = (bits >> np.uint32(31)).astype(bool)
    return np.where(negative, ~bits, bits | np.uint32(0x80000000)).astype(np.uint32)


def _predict_blocks(
    X: NDArray[np.floating],
    nodes: NDArray[np.uint64],
    tree_offsets: NDArray[np.int64],
    tree_depths: NDArray[np.int64],
    with_std: bool,
    n_blocks: int,
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.int64]]:
    """Mean (and population std) over trees for each row of ``X``; count of non-finite inputs.

    ``X`` is C-contiguous float32 or float64; values are converted to float32 as scikit-learn does.
    Rows are split into ``n_blocks`` blocks distributed over the threads. Returns ``(mean, std,
    n_bad)`` where ``std`` is empty unless ``with_std`` and ``n_bad[b]`` counts non-finite values
    (after conversion to float32) in block ``b``; the caller refuses the result if any.
    """
    n_rows, n_features = X.shape
    stride = n_features + 1  # the extra column is the leaves' virtual feature, key 0
    n_trees = tree_depths.shape[0]
    mean = np.empty(n_rows, np.float32)
    std = np.empty(n_rows if with_std else 0, np.float32)
    block = (n_rows + n_blocks - 1) // n_blocks
    block = (block + ROWS_PER_GROUP - 1) // ROWS_PER_GROUP * ROWS_PER_GROUP
    n_blocks = (n_rows + block - 1) // block
    n_bad = np.zeros(n_blocks, np.int64)
    for b in prange(n_blocks):
        lo = b * block
        m = min(n_rows, lo + block) - lo
        m_pad = (m + ROWS_PER_GROUP - 1) // ROWS_PER_GROUP * ROWS_PER_GROUP
        # The block's rows as float32, then in place as order-preserving uint32 keys.
        xf = np.zeros(m_pad * stride, np.float32)
        bad = 0
        for i in range(m):
            for f in range(n_features):
                v = np.float32(X[lo + i, f])
                if not np.isfinite(v):
                    bad += 1
                xf[i * stride + f] = v + np.float32(0.0)
        n_bad[b] = bad
        keys = xf.view(np.uint32)
        for i in range(m):
            for f in range(n_features):
                k = keys[i * stride + f]
                if k >> np.uint32(31):
                    keys[i * stride + f] = ~k
                else:
                    keys[i * stride + f] = k | np.uint32(0x80000000)
        # Padding rows and the virtual column keep key 0 from np.zeros.
        idx = np.empty(ROWS_PER_GROUP, np.uint64)
        acc = np.zeros(m_pad, np.float64)
        acc2 = np.zeros(m_pad if with_std else 0, np.float64)
        for t in range(n_trees):
            tree = nodes[tree_offsets[t] : tree_offsets[t + 1]]
            depth = tree_depths[t]
            for s in range(0, m_pad, ROWS_PER_GROUP):
                xs = keys[s * stride : (s + ROWS_PER_GROUP) * stride]
                for r in range(ROWS_PER_GROUP):
                    idx[r] = _U(0)
                for _ in range(depth):
                    for r in range(ROWS_PER_GROUP):  # unrolled: independent chains
                        rec = tree[idx[r]]
                        x = xs[_U(r * stride) + (rec & _U(0xFF))]
                        idx[r] = ((rec & _U(0xFFFFFFFF)) >> _U(FEATURE_BITS)) + _U(
                            x > (rec >> _U(32))
                        )
                if with_std:
                    for r in range(ROWS_PER_GROUP):
                        v64 = np.float64(np.uint32(tree[idx[r]] >> _U(32)).view(np.float32))
                        acc[s + r] += v64
                        acc2[s + r] += v64 * v64
                else:
                    for r in range(ROWS_PER_GROUP):
                        acc[s + r] += np.float64(np.uint32(tree[idx[r]] >> _U(32)).view(np.float32))
        for i in range(m):
            mu = acc[i] / n_trees
            mean[lo + i] = mu
            if with_std:
                var = acc2[i] / n_trees - mu * mu
                std[lo + i] = np.sqrt(max(var, 0.0))
    return mean, std, n_bad


predict_blocks = njit(parallel=True, boundscheck=False, nogil=True, cache=False)(_predict_blocks)
"""Compiled :func:`_predict_blocks` (compiled on first call for each input dtype, a few seconds)."""
