"""The packed-forest engine predicts what scikit-learn predicts, fast, and refuses what it cannot."""

from __future__ import annotations

import types
import zipfile
from pathlib import Path
from typing import Any

import numba
import numpy as np
import pytest
from numpy.typing import NDArray
from sklearn.ensemble import RandomForestRegressor

from etl.errors import ConfigError, InputError
from models.forest import PackedForest, forest_digest, predict_reference

N_FEATURES = 6


def covariates(n: int, *, seed: int) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Quantised covariates (repeated values put split thresholds between float32 neighbours)."""
    rng = np.random.default_rng(seed)
    X = np.column_stack(
        [
            rng.random(n).round(3),  # albedo-like, 0.001 steps
            rng.gamma(0.7, 8.0, n).round(1),  # rain-like, 0.1 mm steps
            rng.beta(2, 5, n),  # clay-like, continuous
            rng.lognormal(6.5, 1.0, n).round(),  # elevation-like, whole metres
            np.sin(2 * np.pi * rng.integers(1, 366, n) / 365.25),
            rng.normal(0.0, 1.0, n),
        ]
    ).astype(np.float32)
    y = 0.1 + 0.2 * X[:, 2] + 0.1 * (1 - np.exp(-X[:, 1] / 10)) - 0.05 * X[:, 0] + 0.03 * X[:, 4]
    y = y + rng.normal(0.0, 0.01, n)
    return X, y.astype(np.float32)


def single_tree(forest: Any, i: int) -> Any:
    """A one-tree view of ``forest`` (what ``PackedForest.from_sklearn`` reads), to check trees alone."""
    return types.SimpleNamespace(
        estimators_=[forest.estimators_[i]], n_features_in_=forest.n_features_in_, n_outputs_=1
    )


@pytest.fixture(scope="module")
def forest() -> RandomForestRegressor:
    X, y = covariates(20_000, seed=1)
    return RandomForestRegressor(
        n_estimators=10, max_depth=12, min_samples_leaf=3, n_jobs=2, random_state=0
    ).fit(X, y)


@pytest.fixture(scope="module")
def packed(forest: RandomForestRegressor) -> PackedForest:
    return PackedForest.from_sklearn(forest)


@pytest.fixture(scope="module")
def rows() -> NDArray[np.float32]:
    return covariates(300_000, seed=2)[0]


def test_mean_matches_sklearn_on_300k_rows(
    forest: RandomForestRegressor, packed: PackedForest, rows: NDArray[np.float32]
) -> None:
    mean = packed.predict(rows, n_threads=2)
    assert mean.dtype == np.float32 and mean.shape == (rows.shape[0],)
    assert np.max(np.abs(mean - forest.predict(rows))) <= 1e-6  # float32 rounding, far below 1e-5


def test_std_matches_the_spread_of_sklearns_trees(
    forest: RandomForestRegressor, packed: PackedForest, rows: NDArray[np.float32]
) -> None:
    sub = rows[:50_000]
    mean, std = packed.predict(sub, with_std=True)
    ref_mean, ref_std = predict_reference(forest, sub, with_std=True, n_jobs=2, chunk_rows=7_000)
    assert np.max(np.abs(std - ref_std)) <= 1e-6
    assert np.max(np.abs(mean - ref_mean)) <= 1e-6
    assert np.array_equal(mean, packed.predict(sub))  # the std costs no accuracy of the mean
    assert std.min() >= 0.0 and std.max() > 0.0


def test_reference_std_is_the_population_std_of_the_trees(
    forest: RandomForestRegressor, rows: NDArray[np.float32]
) -> None:
    sub = rows[:2_500]
    per_tree = np.stack([e.predict(sub) for e in forest.estimators_])
    mean, std = predict_reference(forest, sub, with_std=True, n_jobs=2, chunk_rows=1_000)
    np.testing.assert_allclose(std, per_tree.std(axis=0, ddof=0), rtol=0, atol=1e-15)
    np.testing.assert_allclose(mean, forest.predict(sub), rtol=0, atol=1e-15)


def test_rows_exactly_at_split_thresholds_take_sklearns_branch(
    forest: RandomForestRegressor, rows: NDArray[np.float32]
) -> None:
    rounded_up = 0
    for i in range(3):
        tree = forest.estimators_[i].tree_
        internal = np.flatnonzero(tree.children_left != -1)
        t64 = tree.threshold[internal]
        nearest = t64.astype(np.float32)
        down = np.where(nearest.astype(np.float64) > t64, np.nextafter(nearest, -np.inf), nearest)
        rounded_up += int((nearest.astype(np.float64) > t64).sum())
        values = np.concatenate(
            [nearest, down, np.nextafter(down, np.float32(np.inf)), np.nextafter(down, -np.inf)]
        ).astype(np.float32)
        X = rows[: values.size].copy()
        X[np.arange(values.size), np.tile(tree.feature[internal], 4)] = values
        one = PackedForest.from_sklearn(single_tree(forest, i))
        # Leaf values are stored as float32: a wrong branch would differ by a leaf difference.
        np.testing.assert_allclose(
            one.predict(X), forest.estimators_[i].predict(X), rtol=0, atol=1e-7
        )
    # The trap is exercised: thresholds whose nearest float32 lies above them (x == that value
    # goes right in scikit-learn, left with naive rounding).
    assert rounded_up > 100


def test_deep_tree_whose_children_are_not_adjacent_in_sklearns_arrays() -> None:
    X, y = covariates(4_000, seed=3)
    deep = RandomForestRegressor(n_estimators=1, bootstrap=False, random_state=0).fit(X, y)
    tree = deep.estimators_[0].tree_
    internal = tree.children_left != -1
    assert tree.max_depth > 16
    assert (tree.children_right[internal] != tree.children_left[internal] + 1).mean() > 0.3
    Xq = covariates(50_000, seed=4)[0]
    packed = PackedForest.from_sklearn(deep)
    assert int(packed.tree_depths[0]) == tree.max_depth
    np.testing.assert_allclose(packed.predict(Xq), deep.predict(Xq), rtol=0, atol=1e-7)
    np.testing.assert_allclose(packed.predict(X), y, rtol=0, atol=1e-7)  # leaves = training rows


def test_single_leaf_trees_and_stumps() -> None:
    X, y = covariates(3_000, seed=5)
    constant = RandomForestRegressor(n_estimators=4, random_state=0).fit(X, np.full_like(y, 0.25))
    assert all(e.tree_.node_count == 1 for e in constant.estimators_)
    packed = PackedForest.from_sklearn(constant)
    assert packed.tree_depths.tolist() == [0, 0, 0, 0]
    mean, std = packed.predict(X, with_std=True)
    assert np.all(mean == np.float32(0.25)) and np.all(std == 0.0)

    stumps = RandomForestRegressor(n_estimators=5, max_depth=1, random_state=0).fit(X, y)
    np.testing.assert_allclose(
        PackedForest.from_sklearn(stumps).predict(X), stumps.predict(X), rtol=0, atol=1e-7
    )


def test_float64_input_is_converted_like_sklearn(
    forest: RandomForestRegressor, packed: PackedForest, rows: NDArray[np.float32]
) -> None:
    X64 = rows[:20_000].astype(np.float64) * (1.0 + 1e-9)  # not representable in float32
    assert np.max(np.abs(packed.predict(X64) - forest.predict(X64))) <= 1e-6
    Xf = np.asfortranarray(rows[:1_000])
    assert np.array_equal(packed.predict(Xf), packed.predict(rows[:1_000]))


def test_save_load_round_trip_gives_byte_identical_predictions(
    packed: PackedForest, forest: RandomForestRegressor, rows: NDArray[np.float32], tmp_path: Path
) -> None:
    path = tmp_path / "forest.npz"
    packed.save(path)
    assert not list(tmp_path.glob("*.tmp"))
    with zipfile.ZipFile(path) as zf:  # a plain npz, readable without pickle
        assert sorted(zf.namelist()) == sorted(
            f"{k}.npy"
            for k in ("format_version", "n_features", "nodes", "tree_offsets", "source_digest")
        )
    loaded = PackedForest.load(path)
    assert loaded.source_digest == packed.source_digest == forest_digest(forest)
    assert np.array_equal(loaded.nodes, packed.nodes)
    sub = rows[:20_000]
    a_mean, a_std = packed.predict(sub, with_std=True)
    b_mean, b_std = loaded.predict(sub, with_std=True)
    assert a_mean.tobytes() == b_mean.tobytes() and a_std.tobytes() == b_std.tobytes()


def test_a_damaged_file_is_refused_rather_than_read_out_of_bounds(
    packed: PackedForest, tmp_path: Path
) -> None:
    nodes = packed.nodes.copy()
    root = nodes[0]
    nodes[0] = (root & ~np.uint64(0xFFFFFF00)) | (np.uint64(packed.tree_offsets[1] + 5) << 8)
    path = tmp_path / "damaged.npz"
    PackedForest(
        nodes=packed.nodes,
        tree_offsets=packed.tree_offsets,
        n_features=N_FEATURES,
        source_digest="x",
    ).save(path)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["nodes"] = nodes
    np.savez(path, **arrays)
    with pytest.raises(InputError, match="child index is out of range"):
        PackedForest.load(path)
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(InputError, match=r"junk\.npz"):
        PackedForest.load(tmp_path / "junk.npz")


def test_load_or_build_packs_when_missing_and_when_stale(
    forest: RandomForestRegressor, tmp_path: Path
) -> None:
    path = tmp_path / "forest.npz"
    calls: list[int] = []

    def load_forest() -> RandomForestRegressor:
        calls.append(1)
        return forest

    digest = forest_digest(forest)
    built = PackedForest.load_or_build(path, load_forest=load_forest, expected_digest=digest)
    again = PackedForest.load_or_build(path, load_forest=load_forest, expected_digest=digest)
    assert len(calls) == 1 and path.exists()
    assert np.array_equal(built.nodes, again.nodes)
    PackedForest(
        nodes=built.nodes,
        tree_offsets=built.tree_offsets,
        n_features=N_FEATURES,
        source_digest="old",
    ).save(path)
    rebuilt = PackedForest.load_or_build(path, load_forest=load_forest, expected_digest=digest)
    assert len(calls) == 2 and rebuilt.source_digest == digest


def test_wrong_feature_count_is_refused(packed: PackedForest, rows: NDArray[np.float32]) -> None:
    with pytest.raises(InputError, match="5 features; the forest was trained on 6"):
        packed.predict(rows[:10, :5])
    with pytest.raises(InputError, match="2-D"):
        packed.predict(rows[0])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_is_refused(
    packed: PackedForest, rows: NDArray[np.float32], bad: float
) -> None:
    X = rows[:1_000].copy()
    X[123, 4] = bad
    with pytest.raises(InputError, match=r"row 123, feature 4 .*mask such pixels"):
        packed.predict(X, with_std=True)


def test_float64_beyond_float32_is_refused(packed: PackedForest, rows: NDArray[np.float32]) -> None:
    X = rows[:100].astype(np.float64)
    X[7, 3] = 1e300
    with pytest.raises(InputError, match="row 7, feature 3"):
        packed.predict(X)


def test_n_threads_is_respected_and_restored(
    packed: PackedForest, rows: NDArray[np.float32], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = numba.get_num_threads()
    seen: list[int] = []
    real_set = numba.set_num_threads

    def spy(n: int) -> None:
        seen.append(n)
        real_set(n)

    monkeypatch.setattr(numba, "set_num_threads", spy)
    one = packed.predict(rows[:50_000], n_threads=1)
    assert seen == [1, before] and numba.get_num_threads() == before
    assert np.array_equal(one, packed.predict(rows[:50_000], n_threads=2))
    with pytest.raises(ConfigError, match="n_threads=0"):
        packed.predict(rows[:10], n_threads=0)
    with pytest.raises(ConfigError, match="n_threads=100000"):
        packed.predict(rows[:10], n_threads=100_000)
    assert numba.get_num_threads() == before


def test_empty_input_gives_empty_output(packed: PackedForest) -> None:
    mean, std = packed.predict(np.empty((0, N_FEATURES), np.float32), with_std=True)
    assert mean.shape == std.shape == (0,) and mean.dtype == np.float32


def test_multi_output_forests_are_refused() -> None:
    X, y = covariates(500, seed=6)
    two = RandomForestRegressor(n_estimators=2, random_state=0).fit(X, np.column_stack([y, y]))
    with pytest.raises(InputError, match="single-output"):
        PackedForest.from_sklearn(two)
