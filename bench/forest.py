"""Random-forest evaluation: real vigra vs the core's previous walk vs its current one, in one run.

For each case an ilastik-like image is made, its ilastik features are computed by the core, and
real vigra trains 4 forests x 25 trees (ilastik's default of 100 trees) on labelled pixels:

* ``deep``: 12 000 labels (4 000 per class), ~8 % of them on the wrong side of a class border,
  so that the trees grow deep to purity (depth ~25, ~2 000 nodes per tree), as on busy projects;
* ``strokes``: 1 500 labels in a few brush-stroke-like patches per class, cleanly labelled:
  shallower trees, as on a quickly labelled project;

and the forests of a real project saved by ilastik 1.4.1 (``../shared/fixtures``,
``ilastik-api-2d-rgb-v141``: 10 forests x 10 trees on 75 feature columns of an RGB image) on
its own image tiled to about a megapixel.

Then every pixel is predicted, one thread each, best of ``--repeats`` runs:

* ``vigra``: ``RandomForest.predictProbabilities`` of every forest, combined as ilastik's
  ParallelVigraRfLazyflowClassifier does (Debian's python3-vigra, in a subprocess);
* ``previous``: ``Ensemble.predict_reference``, the core's evaluation before this one (16 rows
  at a time through every tree, a fixed number of steps per tree);
* ``avx512`` / ``avx2`` / ``portable``: ``Ensemble.predict`` with each implementation this CPU
  runs (``predict`` picks the first).

Times are wall clock and CPU time of the evaluating thread (the latter is what to compare on a
busy machine). The script prints milliseconds, ratios and how many pixels are bit-identical to
vigra's (all of them, or it says which are not).

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
from PIL import Image  # noqa: E402

from ilastikbackend import _core  # noqa: E402
from ilastikbackend.core import PixelClassifier, load_project  # noqa: E402
from ilastikbackend.core.project import _read_forest  # noqa: E402

FIXTURE = HERE.parent.parent / "shared" / "fixtures" / "ilastik-api-2d-rgb-v141" / "PixelClass3Channel.ilp"

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
    """Blobs of several sizes, textured inside, plus noise; uint8."""
    big = projects.blobs(shape, seed=seed, dtype=np.float32, n_blobs=30)
    rng = np.random.default_rng(seed + 1)
    img = big / 4 + rng.normal(0, 40, shape) * (big > 400) + rng.normal(0, 10, shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def features(raw: np.ndarray, requests) -> np.ndarray:
    """ilastik features of the whole image, (pixels, columns) float32."""
    zyxc = raw[None, ..., None] if raw.ndim == 2 else raw[..., None]
    is2d = zyxc.shape[0] == 1
    plan = _core.FeaturePlan([(f, s, is2d, is2d) for f, s in requests], "vigra")
    feats = _core.compute_features(zyxc, [0, 0, 0], list(zyxc.shape[:3]), plan)
    return np.ascontiguousarray(feats.reshape(-1, feats.shape[-1]))


def classes(raw: np.ndarray, noise: float, seed: int) -> np.ndarray:
    """Three classes by intensity; `noise` blurs the borders between them."""
    rng = np.random.default_rng(seed)
    flat = raw.astype(np.float64).ravel()
    edges = np.quantile(flat, [0.4, 0.75])
    return np.digitize(flat + rng.normal(0, noise * flat.std(), flat.shape), edges) + 1


def deep_labels(raw: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    truth = classes(raw, 0.08, seed)
    rng = np.random.default_rng(seed)
    picks = np.concatenate([rng.choice(np.flatnonzero(truth == c), 4000, replace=False) for c in (1, 2, 3)])
    return picks, truth[picks]


def stroke_labels(raw: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """500 pixels per class, from a few compact patches (brush strokes) where the class is clear."""
    truth = classes(raw, 0.0, seed)
    rng = np.random.default_rng(seed)
    coords = np.stack(np.unravel_index(np.arange(raw.size), raw.shape), axis=-1)
    picks = []
    for c in (1, 2, 3):
        chosen: list[int] = []
        candidates = np.flatnonzero(truth == c)
        while len(chosen) < 500:
            center = coords[rng.choice(candidates)]
            near = np.flatnonzero(np.all(np.abs(coords - center) <= 4, axis=1) & (truth == c))
            chosen += [int(i) for i in near if i not in chosen][: 500 - len(chosen)]
        picks += chosen
    picks = np.array(picks)
    return picks, truth[picks]


def train(path: Path, X: np.ndarray, picks: np.ndarray, y: np.ndarray) -> list[str]:
    groups = [f"Forest{i:04d}" for i in range(4)]
    vigra_forest.run("train", features=X[picks], labels=y.astype(np.uint32), path=str(path), forests=np.array(groups),
                     trees=np.full(4, 25))  # fmt: skip
    return groups


def ensemble(path: Path, groups: list[str]) -> tuple[_core.Ensemble, float, float]:
    """The core's ensemble, the deepest leaf and the mean node count per tree."""
    forests, depth, nodes = [], 0, 0
    with h5py.File(path, "r") as f:
        for g in groups:
            vf = _read_forest(f[g])
            forest = _core.Forest(vf.class_count, vf.column_count, vf.predict_weighted)
            for tree in vf.trees:
                forest.add_tree(tree.topology, tree.parameters)
                topo, stack = tree.topology, [(2, 0)]
                while stack:
                    n, d = stack.pop()
                    depth, nodes = max(depth, d), nodes + 1
                    if topo[n] == 0:
                        stack += [(topo[n + 2], d + 1), (topo[n + 3], d + 1)]
            forests.append(forest)
    k = forests[0].class_count
    ens = _core.Ensemble(forests, list(range(k)), k)
    return ens, depth, nodes / ens.tree_count


def best_of(repeats: int, fn) -> tuple[float, float, np.ndarray]:
    """Best wall and best thread CPU seconds of `repeats` calls, and the last result."""
    wall, cpu, out = float("inf"), float("inf"), None
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.thread_time()
        out = fn()
        cpu = min(cpu, time.thread_time() - c0)
        wall = min(wall, time.perf_counter() - w0)
    return wall, cpu, out


def run_case(label: str, X: np.ndarray, path: Path, groups: list[str], labels: str, repeats: int) -> None:
    ens, depth, nodes = ensemble(path, groups)
    n = X.shape[0]
    k = ens.output_channels
    ref = vigra_forest.run("predict", features=X, path=str(path), forests=np.array(groups),
                           known_labels=np.arange(1, k + 1), num_classes=k, repeats=repeats)  # fmt: skip
    p_vigra = ref["probabilities"]
    rows = [("vigra predictProbabilities", float(ref["seconds"]), float(ref["cpu_seconds"]), None)]
    rows.append(("core previous walk", *best_of(repeats, lambda: ens.predict_reference(X))))
    for impl in _core.forest_implementations():
        rows.append((f"core {impl}", *best_of(repeats, lambda impl=impl: ens.predict(X, impl))))
    print(f"{label}: {n} pixels x {X.shape[1]} feature columns; {labels}; {ens.tree_count} trees in "
          f"{len(groups)} forests, {nodes:.0f} nodes per tree, deepest leaf at depth {depth}")  # fmt: skip
    t_vigra, c_vigra = rows[0][1], rows[0][2]
    t_prev, c_prev = rows[1][1], rows[1][2]
    print(f"    {'':<28} {'wall ms':>9} {'cpu ms':>9} {'ns/pixel/tree':>14} {'vs vigra':>9} {'vs previous':>12}  exact")
    for name, wall, cpu, p in rows:
        if p is None:
            exact = "(reference)"
        else:
            same = int(np.sum(np.all(p.view(np.uint32) == p_vigra.view(np.uint32), axis=1)))
            exact = f"{same}/{n} pixels bit-identical" if same < n else "all pixels bit-identical"
        print(f"    {name:<28} {wall * 1e3:9.1f} {cpu * 1e3:9.1f} {cpu / n / 100 * 1e9:14.2f} "
              f"{c_vigra / cpu:8.2f}x {c_prev / cpu:11.2f}x  {exact}")  # fmt: skip
    name, wall, cpu, _ = min(rows[2:], key=lambda r: r[2])
    print(f"    fastest, {name}: {c_vigra / cpu:.1f}x vigra, {c_prev / cpu:.1f}x the previous walk (CPU time); "
          f"wall: {t_vigra / wall:.1f}x vigra, {t_prev / wall:.1f}x previous")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller images, for a smoke run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per evaluation; the best counts")
    args = parser.parse_args()
    if not vigra_forest.available():
        sys.exit("needs Debian's python3-vigra under /usr/bin/python3 (apt-get install python3-vigra python3-h5py)")
    shape2, shape3 = ((256, 336), (40, 48, 48)) if args.quick else ((1024, 1344), (40, 160, 160))
    print(f"forest implementations on this CPU: {', '.join(_core.forest_implementations())}; one thread each")
    with tempfile.TemporaryDirectory() as tmp:
        for dims, shape, requests in (("2D", shape2, FEATURES_2D), ("3D", shape3, FEATURES_3D)):
            raw = image(shape, seed=21 if dims == "2D" else 22)
            X = features(raw, requests)
            name = f"{dims} {'x'.join(map(str, shape))}"
            for kind, (picks, y) in (("deep", deep_labels(raw, seed=5)), ("strokes", stroke_labels(raw, seed=6))):
                path = Path(tmp) / f"{dims}_{kind}.h5"
                groups = train(path, X, picks, y)
                run_case(f"{name}, {kind}", X, path, groups, f"{len(y)} labels", args.repeats)
        project = load_project(FIXTURE)
        rgb = np.asarray(Image.open(FIXTURE.with_name("Data_3channel.png")))
        tiles = (1, 1) if args.quick else (4, 5)
        raw = np.tile(rgb, tiles + (1,))
        X = np.ascontiguousarray(PixelClassifier(project).features(raw).reshape(-1, project.column_count))
        groups = [f.name for f in project.forests]
        run_case(f"real project {FIXTURE.name} on its image tiled {tiles[0]}x{tiles[1]}", X, Path(project.path), groups,
                 f"trained by ilastik {project.ilastik_version}", args.repeats)  # fmt: skip


if __name__ == "__main__":
    main()
