"""Modern ilastik against the core, per core, on the same data in one run.

"Modern ilastik" is what ilastik >= 1.3 runs for a block: fastfilters' features (the real library,
``../shared/reference/build_fastfilters.sh``, called as lazyflow calls it, each scale presmoothed
once) and vigra's ``RandomForest.predictProbabilities`` for every forest, both under Debian's
/usr/bin/python3, one thread. The core runs the same project with its fastfilters engine, one
thread. For a 2D image (1024 x 1344) and a 3D volume (30 x 125 x 150), with projects using all six
features at ilastik's scales (0.3 for Gaussian smoothing only, as ilastik's dialog allows; 10.0 in
2D for the thin volume) and 100 trees (4 forests x 25) trained by vigra on noisy labels (deep
trees, like hand-labelled projects), it prints features, forest and total for both, best of
``--runs`` runs each, their ratios, and how far the probabilities differ (they should not).

Usage: ``python bench/modern.py [--runs N] [--quick]`` (``--quick``: a quarter of the data).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "test"))

import fastfilters_oracle  # noqa: E402
import projects  # noqa: E402
import vigra_oracle  # noqa: E402

from ilastikbackend import _core  # noqa: E402
from ilastikbackend.core import PixelClassifier, load_project  # noqa: E402
from ilastikbackend.core.classifier import build_ensemble  # noqa: E402

SCALES = (0.3, 0.7, 1.0, 1.6, 3.5, 5.0, 10.0)
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def selection() -> np.ndarray:
    """All six features at every scale, except that 0.3 is Gaussian smoothing only (ilastik's dialog)."""
    matrix = np.ones((6, len(SCALES)), bool)
    matrix[1:, 0] = False
    return matrix


def make_project(tmp: Path, raw_zyxc: np.ndarray, name: str, in2d) -> Path:
    crop = tuple(slice(max(0, n // 2 - 64), n // 2 + 64) for n in raw_zyxc.shape[:3])
    return projects.write_project(
        tmp / f"{name}.ilp", raw_zyxc[crop], scales=SCALES, matrix=selection(), in2d=in2d,
        axes="yx" if raw_zyxc.shape[0] == 1 else "zyx", version="1.4.1", n_classes=3, forests=4, trees=25,
        samples_per_class=80, label_noise=0.0,
    )  # fmt: skip


def modern_ilastik(project, raw_zyxc: np.ndarray, runs: int) -> tuple[float, float, np.ndarray]:
    fs = project.feature_selection
    args = dict(
        raw=raw_zyxc, feature_ids=np.array(fs.feature_ids), scales=np.array(fs.scales), matrix=fs.matrix,
        ilp=project.path, forests=np.array([f.name for f in project.forests]),
        known_labels=np.array(project.known_labels), num_classes=project.num_classes,
    )  # fmt: skip
    if fs.compute_in_2d is not None:
        args["in2d"] = np.array(fs.compute_in_2d)
    features, forest, probs = [], [], None
    os.environ.update(ONE_THREAD)
    for _ in range(runs):
        r = fastfilters_oracle.run("timed_pipeline", **args)
        features.append(float(r["feature_seconds"]))
        forest.append(float(r["forest_seconds"]))
        probs = r["probabilities"]
    return min(features), min(forest), probs


def best(f, runs: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = f()
        times.append(time.perf_counter() - t0)
    return min(times), result


def run_case(label: str, raw_zyxc: np.ndarray, in2d, tmp: Path, runs: int) -> None:
    project = load_project(make_project(tmp, raw_zyxc, label, in2d))
    z = raw_zyxc.shape[0]
    clf = PixelClassifier(project, z_size=z if project.spatial_ndim == 3 else None)
    assert clf.engine == "fastfilters"
    data = raw_zyxc[0, ..., 0] if project.spatial_ndim == 2 else raw_zyxc[..., 0]
    trees = sum(len(f.trees) for f in project.forests)
    nodes = sum(len(t.topology) for f in project.forests for t in f.trees) // 5  # rough: 5 ints per node
    print(f"{label}: {data.shape} {data.dtype}, {project.column_count} feature channels, {trees} trees "
          f"(~{nodes // trees} nodes each), fastfilters kernels: {_core.fastfilters_kernels()}")  # fmt: skip

    m_feat, m_forest, m_probs = modern_ilastik(project, raw_zyxc, runs)
    plan = clf.plan
    shape = list(raw_zyxc.shape[:3])
    t_feat, feats = best(lambda: _core.compute_features(raw_zyxc, [0, 0, 0], shape, plan), runs)
    ensemble = build_ensemble(project)
    X = feats.reshape(-1, feats.shape[-1])
    t_forest, _ = best(lambda: ensemble.predict(X), runs)
    del feats
    t_total, probs = best(lambda: clf.predict(data, n_threads=1), runs)

    m_probs = m_probs.reshape(probs.shape)
    m_total = m_feat + m_forest
    rows = [("features", m_feat, t_feat), ("forest", m_forest, t_forest), ("total", m_total, t_total)]
    print(f"    {'':<10} {'modern ilastik':>15} {'core':>10} {'ratio':>8}")
    for name, m, c in rows:
        print(f"    {name:<10} {m:13.3f} s {c:8.3f} s {m / c:7.2f}x")
    print(f"    (core features + forest alone: {t_feat + t_forest:.3f} s; total runs them tile by tile)")
    dp = float(np.abs(probs - m_probs).max())
    flips = int((probs.argmax(-1) != m_probs.argmax(-1)).sum())
    print(f"    per core, core vs modern ilastik: {m_total / t_total:.2f}x   (goal >= 3x)")
    print(f"    agreement: max |dP| = {dp:.2e}, argmax differs at {flips} of {probs[..., 0].size} pixels")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement; the best counts")
    parser.add_argument("--quick", action="store_true", help="a quarter of the data, for a smoke run")
    args = parser.parse_args()
    if not vigra_oracle.vigra_available():
        sys.exit("needs Debian's python3-vigra under /usr/bin/python3 (apt-get install python3-vigra python3-h5py)")
    fastfilters_oracle.ensure_built()
    shape2, shape3 = ((512, 672), (30, 64, 75)) if args.quick else ((1024, 1344), (30, 125, 150))
    with tempfile.TemporaryDirectory() as tmp:
        raw2 = projects.blobs(shape2, seed=11, n_blobs=60)[None, ..., None]
        run_case("2D", raw2, [True] * len(SCALES), Path(tmp), args.runs)
        # A thin volume: the largest scale is computed in 2D (ComputeIn2d), as ilastik needs for 30 slices.
        raw3 = projects.blobs(shape3, seed=12, n_blobs=30)[..., None]
        run_case("3D", raw3, [False] * (len(SCALES) - 1) + [True], Path(tmp), args.runs)


if __name__ == "__main__":
    main()
