"""Random-forest evaluation: real vigra vs the core's reference walk vs its fast walk, in one run.

For each case, an ilastik-like image is made, its ilastik features computed by the core, and
4 forests x 25 trees (ilastik's default of 100 trees) are trained by real vigra on ~12 000
labelled pixels with some label noise, so that the trees grow deep (to purity), as they do on
real projects. Then, one thread each, best of ``--repeats`` runs over every pixel:

* ``vigra``: ``RandomForest.predictProbabilities`` of every forest, combined as ilastik's
  ParallelVigraRfLazyflowClassifier does (Debian's python3-vigra, in a subprocess);
* ``reference``: the core's plain walk (``Ensemble.predict_reference``: one row group at a time
  through every tree, the evaluation the core used before the fast one);
* ``fast``: ``Ensemble.predict``, the evaluation the core serves with.

It prints milliseconds, the ratios, and how many probabilities are bit-identical to vigra's.

Usage: ``python bench/forest.py [--quick] [--repeats N]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "test"))

import projects  # noqa: E402
import vigra_forest  # noqa: E402

from ilastikbackend import _core  # noqa: E402
from ilastikbackend.core.project import _read_forest  # noqa: E402

# Feature ids of the core: GS, LoG, GGM, DoG, structure tensor EV, Hessian EV.
GS, LOG, GGM, DOG, STE, HOGE = range(6)
# 2D: 29 columns (eigenvalue features give 2 each).
FEATURES_2D = (
    [(GS, s) for s in (0.7, 1.0, 1.6, 3.5, 5.0)]
    + [(LOG, s) for s in (0.7, 1.0, 1.6, 3.5, 5.0)]
    + [(GGM, s) for s in (0.7, 1.0, 1.6, 3.5, 5.0)]
    + [(DOG, s) for s in (1.0, 1.6, 3.5, 5.0)]
    + [(STE, s) for s in (1.0, 3.5)]
    + [(HOGE, s) for s in (0.7, 1.6, 5.0)]
)
# 3D: 59 columns (eigenvalue features give 3 each).
SCALES_3D = (0.7, 1.0, 1.6, 3.5, 5.0, 10.0)
FEATURES_3D = [(f, s) for f in (GS, LOG, GGM) for s in SCALES_3D] + [(DOG, s) for s in SCALES_3D[1:]]
FEATURES_3D += [(f, s) for f in (STE, HOGE) for s in SCALES_3D]


def image(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Blobs of several sizes plus fine texture, uint8."""
    big = projects.blobs(shape, seed=seed, dtype=np.float32, n_blobs=30)
    rng = np.random.default_rng(seed + 1)
    texture = rng.normal(0, 40, shape).astype(np.float32)
    img = big / 4 + texture * (big > 400) + rng.normal(0, 10, shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def features(raw: np.ndarray, requests) -> np.ndarray:
    zyxc = raw[None, ..., None] if raw.ndim == 2 else raw[..., None]
    is2d = zyxc.shape[0] == 1
    plan = _core.FeaturePlan([(f, s, is2d, is2d) for f, s in requests], "vigra")
    return _core.compute_features(zyxc, [0, 0, 0], list(zyxc.shape[:3]), plan)


def labels(raw: np.ndarray, n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three classes from a smoothed intensity, ~8 % of the labels on the wrong side of a border."""
    rng = np.random.default_rng(seed)
    flat = raw.astype(np.float64).ravel()
    edges = np.quantile(flat, [0.4, 0.75])
    truth = np.digitize(flat + rng.normal(0, 0.08 * flat.std(), flat.shape), edges)
    picks = np.concatenate([rng.choice(np.flatnonzero(truth == c), n_per_class, replace=False) for c in range(3)])
    return picks, (truth[picks] + 1).astype(np.uint32)


def train(path: Path, X: np.ndarray, picks: np.ndarray, y: np.ndarray, forests: int = 4, trees: int = 25) -> list[str]:
    groups = [f"Forest{i:04d}" for i in range(forests)]
    vigra_forest.run("train", features=X[picks], labels=y, path=str(path), forests=np.array(groups),
                     trees=np.full(forests, trees))  # fmt: skip
    return groups


def ensemble(path: Path, groups: list[str]) -> _core.Ensemble:
    forests = []
    with h5py.File(path, "r") as f:
        for g in groups:
            vf = _read_forest(f[g])
            forest = _core.Forest(vf.class_count, vf.column_count, vf.predict_weighted)
            for tree in vf.trees:
                forest.add_tree(tree.topology, tree.parameters)
            forests.append(forest)
    k = forests[0].class_count
    return _core.Ensemble(forests, list(range(k)), k)


def best_of(repeats: int, fn) -> tuple[float, np.ndarray]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def run_case(label: str, raw: np.ndarray, requests, tmp: Path, repeats: int) -> None:
    feats = features(raw, requests)
    X = np.ascontiguousarray(feats.reshape(-1, feats.shape[-1]))
    picks, y = labels(raw, 4000, seed=5)
    path = tmp / f"{label}.h5"
    groups = train(path, X, picks, y)
    ens = ensemble(path, groups)
    ref = vigra_forest.run("predict", features=X, path=str(path), forests=np.array(groups),
                           known_labels=np.arange(1, 4), num_classes=3, repeats=repeats)  # fmt: skip
    t_vigra, p_vigra = float(ref["seconds"]), ref["probabilities"]
    t_ref, p_ref = best_of(repeats, lambda: ens.predict_reference(X))
    t_fast, p_fast = best_of(repeats, lambda: ens.predict(X))
    n = X.shape[0]
    print(f"{label}: {n} pixels x {X.shape[1]} feature columns, {ens.tree_count} trees, {ens.node_count} nodes")
    timings = (("vigra predictProbabilities", t_vigra), ("core reference walk", t_ref), ("core fast walk", t_fast))
    for name, t in timings:
        print(f"    {name:<28} {t * 1e3:9.1f} ms  {n / t / 1e6:7.2f} Mpixel/s")
    print(f"    fast vs vigra:     {t_vigra / t_fast:6.2f}x")
    print(f"    fast vs reference: {t_ref / t_fast:6.2f}x   (reference vs vigra: {t_vigra / t_ref:.2f}x)")
    for name, p in (("reference", p_ref), ("fast", p_fast)):
        same = int(np.sum(np.all(p.view(np.uint32) == p_vigra.view(np.uint32), axis=1)))
        print(f"    {name}: {same} of {n} pixels bit-identical to vigra")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller images, for a smoke run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per evaluation; the best counts")
    args = parser.parse_args()
    if not vigra_forest.available():
        sys.exit("needs Debian's python3-vigra under /usr/bin/python3 (apt-get install python3-vigra python3-h5py)")
    shape2, shape3 = ((256, 336), (16, 64, 80)) if args.quick else ((1024, 1344), (40, 160, 160))
    with tempfile.TemporaryDirectory() as tmp:
        run_case("2D", image(shape2, seed=21), FEATURES_2D, Path(tmp), args.repeats)
        run_case("3D", image(shape3, seed=22), FEATURES_3D, Path(tmp), args.repeats)


if __name__ == "__main__":
    main()
