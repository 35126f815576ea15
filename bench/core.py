"""Throughput of the compute core against the vigra pipeline, on the same data in one run.

For a 2D 2048x2048 uint8 image and a 3D 128^3 uint8 volume, with all six ilastik features
at scales 0.7, 1.0, 1.6, 3.5, 5.0, 10.0 and a 100-tree forest (4 x 25 trees, as ilastik
trains them) learned by vigra on a labelled crop, this prints:

* the vigra pipeline (Debian's python3-vigra: presmoothing once per scale + vigra filters + vigra
  forest predictProbabilities, the way ilastik 1.2 runs them), one thread, best of ``--runs``;
* the core (its vigra engine: these projects are saved as ilastik 1.2), one thread and all threads,
  and its features and forest apart;
* the ratios core / vigra (per core: one thread each) and the largest |dP| between them.

Usage: ``python bench/core.py [--quick]`` (``--quick``: 1024^2 and 64^3, for a smoke run).
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

import projects  # noqa: E402
import vigra_oracle  # noqa: E402

from ilastikbackend import _core  # noqa: E402
from ilastikbackend.core import PixelClassifier, load_project  # noqa: E402
from ilastikbackend.core.classifier import build_ensemble  # noqa: E402

SCALES = (0.7, 1.0, 1.6, 3.5, 5.0, 10.0)


def make_project(tmp: Path, raw: np.ndarray, name: str) -> Path:
    """A project with every feature at SCALES and 100 trees, trained on a central crop."""
    zyxc = raw[None, ..., None] if raw.ndim == 2 else raw[..., None]
    crop = tuple(slice(max(0, n // 2 - 48), n // 2 + 48) if n > 1 else slice(None) for n in zyxc.shape[:3])
    return projects.write_project(
        tmp / f"{name}.ilp", zyxc[crop], scales=SCALES, in2d=None, axes="yx" if raw.ndim == 2 else "zyx",
        n_classes=3, forests=4, trees=25, version="1.2.0",
    )  # fmt: skip


def vigra_pipeline(project, raw: np.ndarray, runs: int) -> tuple[float, np.ndarray]:
    """vigra features (each scale presmoothed once, as lazyflow does) + forests; best of ``runs`` per stage."""
    fs = project.feature_selection
    zyxc = raw[None, ..., None] if raw.ndim == 2 else raw[..., None]
    features, forest = [], []
    for _ in range(runs):
        r = vigra_oracle.run(
            "timed_pipeline", raw=zyxc, feature_ids=np.array(fs.feature_ids), scales=np.array(fs.scales),
            matrix=fs.matrix, ilp=project.path, forests=np.array([f.name for f in project.forests]),
            known_labels=np.array(project.known_labels), num_classes=project.num_classes,
        )  # fmt: skip
        features.append(float(r["feature_seconds"]))
        forest.append(float(r["forest_seconds"]))
    print(f"    vigra: features {min(features):.2f} s + forest {min(forest):.2f} s")
    return min(features) + min(forest), r["probabilities"].reshape(raw.shape + (project.num_classes,))


def best(f, runs: int):
    times, result = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = f()
        times.append(time.perf_counter() - t0)
    return min(times), result


def core(clf: PixelClassifier, raw: np.ndarray, threads: int, runs: int) -> tuple[float, np.ndarray]:
    return best(lambda: clf.predict(raw, n_threads=threads), runs)


def core_split(clf: PixelClassifier, project, raw: np.ndarray, runs: int) -> None:
    zyxc = raw[None, ..., None] if raw.ndim == 2 else raw[..., None]
    t_feat, feats = best(lambda: _core.compute_features(zyxc, [0, 0, 0], list(zyxc.shape[:3]), clf.plan), runs)
    ensemble, X = build_ensemble(project), feats.reshape(-1, feats.shape[-1])
    t_forest, _ = best(lambda: ensemble.predict(X), runs)
    print(f"    core:  features {t_feat:.2f} s + forest {t_forest:.2f} s (1 thread, whole image at once)")


def run_case(label: str, raw: np.ndarray, tmp: Path, runs: int) -> None:
    n = raw.size
    project = load_project(make_project(tmp, raw, label.replace(" ", "_")))
    clf = PixelClassifier(project, z_size=raw.shape[0] if raw.ndim == 3 else None)
    print(f"{label}: {raw.shape}, {project.column_count} feature channels, "
          f"{sum(len(f.trees) for f in project.forests)} trees")  # fmt: skip
    t_vigra, p_vigra = vigra_pipeline(project, raw, runs)
    core_split(clf, project, raw, runs)
    t_one, p_one = core(clf, raw, 1, runs)
    threads = os.cpu_count() or 1
    t_all, p_all = core(clf, raw, threads, runs)
    assert np.array_equal(p_one, p_all)
    dp = float(np.abs(p_one - p_vigra).max())
    flips = int((p_one.argmax(-1) != p_vigra.argmax(-1)).sum())
    rows = [("vigra pipeline, 1 thread", t_vigra), ("core, 1 thread", t_one), (f"core, {threads} threads", t_all)]
    for name, t in rows:
        print(f"    {name:<26} {t:8.2f} s  {n / t / 1e6:8.3f} Mvoxel/s")
    print(f"    ratio core/vigra per core (1 thread each): {t_vigra / t_one:.2f}x   (goal >= 5x)")
    print(f"    ratio core all threads / vigra 1 thread:   {t_vigra / t_all:.2f}x")
    print(f"    agreement: max |dP| = {dp:.2e}, argmax differs at {flips} of {n} pixels")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller data, for a smoke run")
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement; the best counts")
    args = parser.parse_args()
    if not vigra_oracle.vigra_available():
        sys.exit("needs Debian's python3-vigra under /usr/bin/python3 (apt-get install python3-vigra python3-h5py)")
    side2, side3 = (1024, 64) if args.quick else (2048, 128)
    with tempfile.TemporaryDirectory() as tmp:
        run_case("2D", projects.blobs((side2, side2), seed=11, n_blobs=40), Path(tmp), args.runs)
        run_case("3D", projects.blobs((side3,) * 3, seed=12, n_blobs=20), Path(tmp), args.runs)


if __name__ == "__main__":
    main()
