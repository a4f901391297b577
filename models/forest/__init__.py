"""Exact fast inference for the frozen random forest: packed arrays traversed by a numba kernel.

scikit-learn's ``RandomForestRegressor.predict`` is the reference (``predict_reference``); the
daily product predicts ~10 M pixels through 100 trees of ~30-45 k nodes, and a 4.5 M-node forest
does not fit in cache, so the speed is decided by memory layout, not arithmetic:

* **Compact records.** A node is one ``uint64``: threshold (32 bits), left child (24), feature (8);
  the right child is ``left + 1`` (breadth-first numbering, children pairs adjacent). A depth-16
  tree of ~30 k nodes is ~240 kB and fits in one core's L2 (512 kB here); the top levels stay in L1.
* **Tree-major over big blocks.** Each thread takes a block of up to 256 k rows and runs it through
  one tree after another, so each tree is fetched into cache once per block and then reused for
  256 k rows (row-major blocks of 4-16 k rows, as in a first prototype, spend most of the time
  re-fetching trees).
* **Branch-free, interleaved steps.** Leaves are self-loops (they test a virtual feature whose key
  is the smallest possible), so every row takes exactly ``depth`` identical steps
  ``node = left + (x > t)``: no mispredicted branches, and 8 rows advance together, giving the
  core 8 independent chains of loads to overlap.
* **Integer compares.** Inputs and thresholds become order-preserving ``uint32`` keys, so a record
  is read with one load and compared without bit-casting; thresholds are rounded *down* to float32
  first, which makes ``x > t32`` decide exactly as scikit-learn's ``float64(x) > t`` does.
* **Uncertainty for free.** The kernel accumulates the sum and sum of squares of the trees'
  outputs in float64, so the standard deviation across trees costs a few per cent.

Measured with ``scripts/bench_model.py`` on the 2-core development machine (100 trees, depth 16,
27.7 k nodes per tree, 10 M rows, 2 threads): scikit-learn 0.10 M rows/s, packed 1.27 M rows/s
(12x; 11-12x in CPU time on a loaded machine), with std 1.0-1.3x the time of the mean alone; max
difference to scikit-learn 1.7e-8 (mean) and 3.6e-9 (std), float32 rounding. Numerically the std
is ``sqrt(E[v^2] - E[v]^2)`` in float64, exact enough for values of order 0.1-0.5 (error < 1e-8).

The packed forest is built once at freeze time and saved as a plain ``.npz`` (no pickle) beside
the model (``PackedForest.load_or_build``); the kernel compiles on first use in each process (a few
seconds per input dtype; no on-disk numba cache).
"""

from models.forest.packed import FORMAT_VERSION, PackedForest, forest_digest
from models.forest.reference import predict_reference

__all__ = ["FORMAT_VERSION", "PackedForest", "forest_digest", "predict_reference"]
