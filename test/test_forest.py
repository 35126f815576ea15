"""The core's forest evaluation against real vigra (python3-vigra), bit for bit.

vigra's ``RandomForest.predictProbabilities`` per forest, combined as ilastik's
ParallelVigraRfLazyflowClassifier combines forests (ILASTIK-SEMANTICS.md §5), is the reference:
every probability the core returns must have the same 32 bits, for every implementation this
CPU can run (``_core.forest_implementations()``) and for the previous evaluation
(``Ensemble.predict_reference``).
"""

from __future__ import annotations

import h5py
import numpy as np
import projects
import pytest
import vigra_forest

from ilastikbackend import _core
from ilastikbackend.core.project import _read_forest

IMPLEMENTATIONS = _core.forest_implementations()
# Feature ids of the core: GS, LoG, GGM, DoG, structure tensor EV, Hessian EV; 2D, 29 columns.
IMAGE_FEATURES = (
    [(0, s) for s in (0.7, 1.0, 1.6, 3.5, 5.0)]
    + [(1, s) for s in (0.7, 1.0, 1.6, 3.5, 5.0)]
    + [(2, s) for s in (0.7, 1.0, 1.6, 3.5, 5.0)]
    + [(3, s) for s in (1.0, 1.6, 3.5, 5.0)]
    + [(4, s) for s in (1.0, 3.5)]
    + [(5, s) for s in (0.7, 1.6, 5.0)]
)


@pytest.fixture(scope="module")
def vigra_rf():
    if not vigra_forest.available():
        pytest.fail(
            "real vigra is needed for the forest tests: apt-get install python3-vigra python3-h5py "
            f"(looked for it under {vigra_forest.SYSTEM_PYTHON})"
        )
    return vigra_forest


class Trained:
    """Forests trained by vigra into an HDF5 file, and the core's ensemble of them."""

    def __init__(self, path, groups, known_labels, num_classes):
        self.path, self.groups = str(path), [str(g) for g in groups]
        self.known_labels, self.num_classes = list(known_labels), num_classes
        forests = []
        with h5py.File(self.path, "r") as f:
            for g in self.groups:
                # Straight from the HDF5 layout, not through load_project: some tests craft trees (NaN
                # thresholds) that a project is refused for, to check the core routes them as vigra does.
                group = f[g]
                forest = _core.Forest(int(group["_ext_param/class_count_"][0]),
                                      int(group["_ext_param/column_count_"][0]),
                                      bool(group["_options/predict_weighted_"][0]))  # fmt: skip
                for name in sorted(k for k in group if not k.startswith("_")):
                    forest.add_tree(group[name]["topology"][()], group[name]["parameters"][()])
                forests.append(forest)
        self.forests = forests
        self.ensemble = _core.Ensemble(forests, [label - 1 for label in self.known_labels], num_classes)

    def vigra(self, X: np.ndarray) -> np.ndarray:
        return vigra_forest.run(
            "predict", features=np.ascontiguousarray(X, np.float32), path=self.path, forests=np.array(self.groups),
            known_labels=np.array(self.known_labels), num_classes=self.num_classes,
        )["probabilities"]  # fmt: skip

    def ours(self, X: np.ndarray) -> dict[str, np.ndarray]:
        out = {name: self.ensemble.predict(X, name) for name in IMPLEMENTATIONS}
        out["auto"] = self.ensemble.predict(X)
        out["reference"] = self.ensemble.predict_reference(X)
        return out


def train(tmp_path, name, X, y, trees, *, weighted=False, known_labels=None, num_classes=None) -> Trained:
    path = tmp_path / f"{name}.h5"
    groups = [f"Forest{i:04d}" for i in range(len(trees))]
    vigra_forest.run(
        "train", features=np.ascontiguousarray(X, np.float32), labels=np.asarray(y, np.uint32), path=str(path),
        forests=np.array(groups), trees=np.array(trees), predict_weighted=int(weighted),
    )  # fmt: skip
    labels = sorted(set(int(v) for v in y)) if known_labels is None else known_labels
    return Trained(path, groups, labels, num_classes or max(labels))


def assert_bit_identical(ours: dict[str, np.ndarray], ref: np.ndarray) -> None:
    for name, p in ours.items():
        assert p.shape == ref.shape and p.dtype == np.float32, name
        same = np.all(p.view(np.uint32) == ref.view(np.uint32), axis=1)
        if not same.all():
            i = int(np.flatnonzero(~same)[0])
            n_bad = int((~same).sum())
            pytest.fail(f"{name}: {n_bad} of {len(ref)} rows differ from vigra, first row {i}: {p[i]} vs {ref[i]}")


def depth_and_nodes(forest: Trained) -> tuple[int, float]:
    deepest, nodes, trees = 0, 0, 0
    with h5py.File(forest.path, "r") as f:
        for g in forest.groups:
            for t in _read_forest(f[g]).trees:
                topo, stack = t.topology, [(2, 0)]
                while stack:
                    n, d = stack.pop()
                    nodes += 1
                    deepest = max(deepest, d)
                    if topo[n] == 0:
                        stack += [(topo[n + 2], d + 1), (topo[n + 3], d + 1)]
                trees += 1
    return deepest, nodes / trees


def image_features(shape, seed) -> np.ndarray:
    raw = projects.blobs(shape, seed=seed, dtype=np.float32, n_blobs=20)
    rng = np.random.default_rng(seed)
    raw = np.clip(raw / 4 + rng.normal(0, 12, shape), 0, 255).astype(np.uint8)
    plan = _core.FeaturePlan([(f, s, True, True) for f, s in IMAGE_FEATURES], "vigra")
    feats = _core.compute_features(raw[None, ..., None], [0, 0, 0], [1, *shape], plan)
    return raw, np.ascontiguousarray(feats.reshape(-1, feats.shape[-1]))


def noisy_labels(raw: np.ndarray, n_classes: int, seed: int, noise: float = 0.1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    flat = raw.astype(np.float64).ravel()
    edges = np.quantile(flat, np.linspace(0, 1, n_classes + 1)[1:-1])
    return np.digitize(flat + rng.normal(0, noise * flat.std(), flat.shape), edges) + 1


def clusters(n, n_features, n_classes, seed, spread=1.5, coarse=False) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping Gaussian classes, so that trees need many splits. coarse: features rounded to
    a few values, so that rows of different classes coincide and leaves keep several classes
    (vigra grows every tree to purity where it can: min_split_node_size does not stop it)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(1, n_classes + 1, n)
    centers = rng.normal(0, 1, (n_classes + 1, n_features))
    X = centers[y] + rng.normal(0, spread, (n, n_features))
    if coarse:
        X = np.clip(np.round(X), -2, 2)
    return X.astype(np.float32), y.astype(np.uint32)


# ------------------------------------------------------------------------------------------
# A deep ilastik-like forest: 4 x 25 trees grown to purity on 12 000 labelled pixels


@pytest.fixture(scope="module")
def deep(tmp_path_factory, vigra_rf):
    raw, X = image_features((150, 200), seed=31)
    truth = noisy_labels(raw, 3, seed=32)
    rng = np.random.default_rng(33)
    picks = np.concatenate([rng.choice(np.flatnonzero(truth == c), 4000, replace=False) for c in (1, 2, 3)])
    forest = train(tmp_path_factory.mktemp("deep"), "deep", X[picks], truth[picks], [25, 25, 25, 25])
    return forest, X, forest.vigra(X)


def test_deep_forest_is_deep_and_exact(deep):
    forest, _, _ = deep
    depth, nodes = depth_and_nodes(forest)
    assert depth >= 18 and nodes >= 1000, (depth, nodes)
    assert forest.ensemble.tree_count == 100
    assert all(f.sums_are_exact for f in forest.forests)  # pure leaves: vote counts


def test_deep_forest_every_pixel_bit_identical(deep):
    forest, X, ref = deep
    assert_bit_identical(forest.ours(X), ref)
    assert len(np.unique(ref[:, 0])) > 50  # many different vote counts, not a trivial map


@pytest.mark.parametrize("n", [1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 1000, 4095, 4097, 8191, 8193, 20001])
def test_row_counts(deep, n):
    """Any number of rows, any block tail: rows are predicted independently of their neighbours."""
    forest, X, ref = deep
    start = (n * 7919) % (len(X) - n)
    assert_bit_identical(forest.ours(X[start : start + n]), ref[start : start + n])


def test_rows_in_any_order(deep):
    forest, X, ref = deep
    order = np.random.default_rng(5).permutation(len(X))[:12345]
    assert_bit_identical(forest.ours(X[order]), ref[order])


def split_rows(forest: Trained, base: np.ndarray) -> np.ndarray:
    """For every split of the first forest: the feature at its threshold (as float32, as vigra's
    double threshold rounds and as the smallest float above it) and one float either side."""
    rows = []
    with h5py.File(forest.path, "r") as f:
        trees = _read_forest(f[forest.groups[0]]).trees
    for k, tree in enumerate(trees):
        topo, par = tree.topology, tree.parameters
        stack = [2]
        while stack:
            n = stack.pop()
            if topo[n] != 0:
                continue
            col, thr = topo[n + 4], par[topo[n + 1] + 1]
            f32 = np.float32(thr)
            above = f32 if float(f32) >= thr else np.nextafter(f32, np.float32(np.inf))
            row = base[(n + 31 * k) % len(base)].copy()
            for v in {f32, above, np.nextafter(f32, np.float32(-np.inf)), np.nextafter(above, np.float32(np.inf))}:
                row[col] = v
                rows.append(row.copy())
            stack += [topo[n + 2], topo[n + 3]]
    return np.array(rows, np.float32)


def test_features_at_thresholds(deep):
    forest, X, _ = deep
    rows = split_rows(forest, X[::97])
    assert len(rows) > 20000
    assert_bit_identical(forest.ours(rows), forest.vigra(rows))


def test_nan_and_infinite_features(deep):
    forest, X, _ = deep
    rng = np.random.default_rng(9)
    F = X.shape[1]
    rows = X[rng.choice(len(X), 3000, replace=False)].copy()
    for i in range(len(rows)):
        kind = i % 6
        cols = rng.choice(F, 1 + i % 4, replace=False)
        if kind == 0:
            rows[i, cols] = np.nan
        elif kind == 1:
            rows[i, cols] = np.inf
        elif kind == 2:
            rows[i, cols] = -np.inf
        elif kind == 3:
            rows[i, cols[0]] = np.nan
            rows[i, cols[1:]] = np.inf
        elif kind == 4:
            rows[i, :] = np.inf if i % 2 else -np.inf
        # kind 5: unchanged
    rows[0, :] = np.nan
    ref = forest.vigra(rows)
    nan_rows = np.isnan(rows).any(axis=1)
    assert nan_rows.sum() > 800 and np.all(ref[nan_rows] == 0)  # vigra: a row holding NaN gets 0
    assert_bit_identical(forest.ours(rows), ref)


# ------------------------------------------------------------------------------------------
# Other forests: shallow and impure, weighted, several sizes, 1 to 6 classes, label subsets


def test_shallow_impure_forests_take_vigra_order_of_sums(tmp_path, vigra_rf):
    """Leaves holding several classes (1/3, 2/3, ...): the sums are not exact, so each row must
    add its trees and classes in vigra's order."""
    X, y = clusters(6000, 4, 4, seed=1, coarse=True)
    forest = train(tmp_path, "shallow", X, y, [13, 30, 7])
    assert not any(f.sums_are_exact for f in forest.forests)
    depth, _ = depth_and_nodes(forest)
    assert depth <= 16
    test_X, _ = clusters(30000, 4, 4, seed=2)
    test_X[::2] = np.round(test_X[::2])  # half of them on the training values
    assert_bit_identical(forest.ours(test_X), forest.vigra(test_X))


@pytest.mark.parametrize("coarse", [False, True])
def test_weighted_prediction(tmp_path, vigra_rf, coarse):
    """predict_weighted_: leaf values times the leaf's sample count, so per-row totals (coarse:
    leaves keep several classes, (c / n) * n)."""
    X, y = clusters(4000, 10 if not coarse else 5, 3, seed=3, coarse=coarse)
    forest = train(tmp_path, "weighted", X, y, [10, 10], weighted=True)
    test_X, _ = clusters(20000, X.shape[1], 3, seed=4)
    assert_bit_identical(forest.ours(test_X), forest.vigra(test_X))


@pytest.mark.parametrize("n_classes", [1, 2, 3, 4, 5, 6])
def test_class_counts(tmp_path, vigra_rf, n_classes):
    X, y = clusters(3000, 12, n_classes, seed=10 + n_classes)
    Xc, yc = clusters(3000, 4, n_classes, seed=10 + n_classes, coarse=True)
    pure = train(tmp_path, f"k{n_classes}", X, y, [9, 4])
    impure = train(tmp_path, f"k{n_classes}i", Xc, yc, [5])
    assert all(f.sums_are_exact for f in impure.forests) == (n_classes == 1)
    for forest, n_features in ((pure, 12), (impure, 4)):
        test_X, _ = clusters(9000, n_features, n_classes, seed=20 + n_classes)
        assert forest.ensemble.output_channels == n_classes
        assert_bit_identical(forest.ours(test_X), forest.vigra(test_X))


def test_forests_of_different_tree_counts(tmp_path, vigra_rf):
    X, y = clusters(5000, 20, 3, seed=40)
    forest = train(tmp_path, "mixed", X, y, [1, 7, 25, 3, 64])
    test_X, _ = clusters(15000, 20, 3, seed=41)
    assert_bit_identical(forest.ours(test_X), forest.vigra(test_X))


def test_many_feature_columns(tmp_path, vigra_rf):
    """600 columns: wider node packing (10 feature bits) and blocks of fewer rows."""
    X, y = clusters(3000, 600, 3, seed=60, spread=3.0)
    forest = train(tmp_path, "wide", X, y, [4, 3])
    test_X, _ = clusters(12000, 600, 3, seed=61, spread=3.0)
    test_X[::7, 599] = np.nan
    assert_bit_identical(forest.ours(test_X), forest.vigra(test_X))


def test_known_labels_subset(tmp_path, vigra_rf):
    """Classes 2 and 5 of 5 have no labels: the forests know 3 classes, ilastik's output has 5
    channels and channels 1 and 4 are 0."""
    X, y = clusters(4000, 14, 3, seed=50)
    labels = np.array([1, 3, 4], np.uint32)[y - 1]
    forest = train(tmp_path, "subset", X, labels, [6, 6], known_labels=[1, 3, 4], num_classes=5)
    test_X, _ = clusters(8000, 14, 3, seed=51)
    ref = forest.vigra(test_X)
    assert ref.shape == (8000, 5) and np.all(ref[:, [1, 4]] == 0)
    assert_bit_identical(forest.ours(test_X), ref)


def crafted(tmp_path, name, forests: list[list[tuple[np.ndarray, np.ndarray]]], K: int) -> Trained:
    """Forests of hand-made trees (topology, parameters) written in vigra's layout: a forest
    trained by vigra on one feature column, its trees replaced."""
    X = np.arange(8 * K, dtype=np.float32).reshape(-1, 1)
    trained = train(tmp_path, name, X, np.arange(len(X)) % K + 1, [1] * len(forests))
    with h5py.File(trained.path, "a") as f:
        for group, trees in zip(trained.groups, forests):
            g = f[group]
            for t in [k for k in g if not k.startswith("_")]:
                del g[t]
            for i, (topology, parameters) in enumerate(trees):
                g[f"Tree_{i:03d}/topology"] = topology.astype(np.int32)
                g[f"Tree_{i:03d}/parameters"] = parameters.astype(np.float64)
            g["_options/tree_count_"][0] = len(trees)
    return Trained(trained.path, trained.groups, trained.known_labels, trained.num_classes)


def leaf_tree(p: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A tree that is one leaf with probabilities p."""
    return np.array([1, len(p), 0x40000000, 0]), np.array([1.0, *p])


def stump(threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """A split on column 0 at `threshold`: left leaf (1, 0), right leaf (0, 1)."""
    topology = np.array([1, 2, 0, 0, 7, 9, 0, 0x40000000, 2, 0x40000000, 5])
    return topology, np.array([1.0, threshold, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0])


def test_summation_order_is_vigras(tmp_path, vigra_rf):
    """Per row, vigra adds float(v) into float probabilities tree by tree and every v into a
    double total class by class. Leaf values chosen so that any other order changes the last bit:
    forest 0: total (0.5 + 0.5 + a) + b = 1 in float, 1 + 2^-23 if a leaf's a + b were added at
    once; forest 1: class 0 sums (1 + 2^-24) + 2^-24 = 1 in float, not 1 + 2^-23."""
    a, b = 2.0**-54 + 2.0**-60, 2.0**-24 + 2.0**-54
    forests = [[(0.5, 0.5), (a, b)], [(1.0, 0.0), (2.0**-24, 0.0), (2.0**-24, 0.0)]]
    forest = crafted(tmp_path, "order", [[leaf_tree(p) for p in leaves] for leaves in forests], K=2)
    assert not any(f.sums_are_exact for f in forest.forests)
    X = np.array([[0.0], [1.0], [np.nan], [np.inf]], np.float32)
    ref = forest.vigra(X)
    per_forest = vigra_forest.run(
        "predict", features=X, path=forest.path, forests=np.array(forest.groups), known_labels=np.array([1, 2]),
        num_classes=2,
    )["per_forest"]  # fmt: skip
    assert per_forest[0, 0, 0] == np.float32(0.5) and per_forest[1, 0, 0] == np.float32(1) / np.float32(1 + 2.0**-23)
    assert_bit_identical(forest.ours(X), ref)


def test_extreme_thresholds(tmp_path, vigra_rf):
    """Thresholds beyond float range, infinite, NaN, tiny, or between two floats, against
    features at and around them: each tree votes left iff x < threshold as vigra compares
    (float promoted to double), so any tree routed otherwise changes the vote count."""
    f32 = np.finfo(np.float32)
    thresholds = [
        1e39,
        -1e39,
        np.inf,
        -np.inf,
        np.nan,
        0.0,
        -0.0,
        0.1,
        -0.1,
        1e-45,
        -1e-45,
        2e-45,
        1e-40,
        float(f32.max),
        -float(f32.max),
        float(f32.tiny),
        3.4028235677973366e38,
        16777217.0,
        0.5 + 2.0**-30,
    ]
    values = [
        -np.inf,
        -f32.max,
        -1e38,
        -0.1,
        -f32.tiny,
        -1e-45,
        -0.0,
        0.0,
        1e-45,
        2e-45,
        f32.tiny,
        0.1,
        1e38,
        f32.max,
        np.inf,
        16777216.0,
        16777218.0,
        0.5,
        np.nextafter(np.float32(0.5), np.float32(1)),
    ]
    with np.errstate(over="ignore"):
        values += [np.nextafter(np.float32(t), np.float32(d)) for t in thresholds if np.isfinite(np.float32(t))
                   for d in (-np.inf, np.inf)]  # fmt: skip
    X = np.array(values, np.float32).reshape(-1, 1)
    forest = crafted(tmp_path, "extreme", [[stump(t) for t in thresholds]], K=2)
    ref = forest.vigra(X)
    assert len(np.unique(ref[:, 0])) > 5  # rows see different numbers of left votes
    assert_bit_identical(forest.ours(X), ref)


# ------------------------------------------------------------------------------------------
# Interface


def test_bad_input_is_refused(deep):
    forest, X, _ = deep
    with pytest.raises(ValueError, match="features must be"):
        forest.ensemble.predict(X[:, :5])
    with pytest.raises(ValueError, match="forest implementation must be"):
        forest.ensemble.predict(X[:10], "gpu")
    assert IMPLEMENTATIONS[-1] == "portable"
