#!/usr/bin/python3
"""Reference results from real vigra (Debian's python3-vigra), following ILASTIK-SEMANTICS.md.

Runs under ``/usr/bin/python3`` in a subprocess of the tests (vigra is not importable from
the project's Python). Commands, each reading and writing ``.npz`` files:

``features IN OUT``
    IN: ``raw`` (z, y, x, c), ``feature_ids``, ``scales``, ``matrix``, optional ``in2d``.
    OUT: ``features`` (z, y, x, F) float32,
    channels in ilastik's order (feature, scale, input channel, eigenvalue).
``predict IN OUT``
    IN: ``features`` (N, F) float32, ``ilp`` (path), ``forests`` (HDF5 paths inside it),
    ``known_labels``, ``num_classes``. OUT: ``probabilities`` (N, num_classes) float32 as
    ilastik's ParallelVigraRfLazyflowClassifier computes them.
``train IN OUT``
    IN: ``features`` (N, F), ``labels`` (N,) uint32, ``ilp`` (path), ``forests`` (paths),
    ``trees`` (per forest). Trains vigra forests and writes them into the file.
"""

import sys
import time

import numpy as np
import vigra

WINDOW_PRESMOOTH = 3.5
WINDOW_FEATURE = 2.0


def presmoothed(img, s, in_2d):
    """img: (z, y, x) float32 of one channel. Gaussian at t(s), window 3.5."""
    t = np.sqrt(s * s - 1.0) if s > 1.0 else s
    if in_2d:
        return np.stack([gs2(img[z], t, WINDOW_PRESMOOTH) for z in range(img.shape[0])])
    v = vigra.taggedView(np.ascontiguousarray(img)[..., None], "zyxc")
    return np.asarray(vigra.filters.gaussianSmoothing(v, t, window_size=WINDOW_PRESMOOTH))[..., 0]


def gs2(img2, sigma, window):
    v = vigra.taggedView(np.ascontiguousarray(img2)[..., None], "yxc")
    return np.asarray(vigra.filters.gaussianSmoothing(v, sigma, window_size=window))[..., 0]


def feature(fid, p, s, filter_2d):
    """One feature op on a presmoothed (z, y, x) volume: returns (z, y, x, k)."""
    sf = 1.0 if s > 1.0 else s
    if filter_2d:
        return np.stack([feature_nd(fid, p[z], "yxc", sf) for z in range(p.shape[0])])
    return feature_nd(fid, p, "zyxc", sf)


def feature_nd(fid, p, tags, sf):
    v = vigra.taggedView(np.ascontiguousarray(p, dtype=np.float32)[..., None], tags)
    f = vigra.filters
    w = WINDOW_FEATURE
    if fid == "GaussianSmoothing":
        r = f.gaussianSmoothing(v, sf, window_size=w)
    elif fid == "LaplacianOfGaussian":
        r = f.laplacianOfGaussian(v, scale=sf, window_size=w)
    elif fid == "GaussianGradientMagnitude":
        r = f.gaussianGradientMagnitude(v, sf, window_size=w)
    elif fid == "DifferenceOfGaussians":
        r = np.asarray(f.gaussianSmoothing(v, sf, window_size=w)) - np.asarray(
            f.gaussianSmoothing(v, 0.66 * sf, window_size=w)
        )
    elif fid == "StructureTensorEigenvalues":
        r = f.structureTensorEigenvalues(v, sf, 0.5 * sf, window_size=w)
    elif fid == "HessianOfGaussianEigenvalues":
        r = f.hessianOfGaussianEigenvalues(v, scale=sf, window_size=w)
    else:
        raise ValueError(fid)
    return np.asarray(r, dtype=np.float32)


OP_SIGMAS = {"DifferenceOfGaussians": (1.0, 0.66), "StructureTensorEigenvalues": (1.0, 0.5)}


def pipeline_features(args, presmoothed, feature):
    """lazyflow's feature loop (ILASTIK-SEMANTICS.md §3): channel order, per-scale presmoothing shared by the
    features of a scale column, ComputeIn2d and the small-z 2D fallback; the filters are the library's."""
    raw = np.asarray(args["raw"]).astype(np.float32)  # ilastik casts its input to float32
    ids = [str(x) for x in args["feature_ids"]]
    scales = [float(x) for x in args["scales"]]
    matrix = np.asarray(args["matrix"], bool)
    in2d = [bool(x) for x in args["in2d"]] if "in2d" in args else None
    z = raw.shape[0]
    out = []
    smoothed = {}
    for i, fid in enumerate(ids):
        for j, s in enumerate(scales):
            if not matrix[i, j]:
                continue
            col_2d = z == 1 or (in2d is not None and in2d[j])
            sf = 1.0 if s > 1.0 else s
            filt_2d = col_2d or any(int(np.ceil(fac * sf * 2)) + 1 > z for fac in OP_SIGMAS.get(fid, (1.0,)))
            for c in range(raw.shape[-1]):
                # lazyflow presmooths each scale column once per channel and shares it
                key = (s, col_2d, c)
                if key not in smoothed:
                    smoothed[key] = presmoothed(raw[..., c], s, col_2d)
                out.append(feature(fid, smoothed[key], s, filt_2d))
    return {"features": np.concatenate(out, axis=-1).astype(np.float32)}


def features(args):
    return pipeline_features(args, presmoothed, feature)


def predict(args):
    X = np.ascontiguousarray(args["features"], dtype=np.float32)
    known = [int(v) for v in args["known_labels"]]
    total = None
    trees = 0
    for path in args["forests"]:
        rf = vigra.learning.RandomForest(str(args["ilp"]), str(path))
        p = rf.predictProbabilities(X)  # float32 (N, K)
        p *= rf.treeCount()
        total = p if total is None else total + p
        trees += rf.treeCount()
    total /= trees
    out = np.zeros((X.shape[0], int(args["num_classes"])), np.float32)
    for i, label in enumerate(known):
        out[:, label - 1] = total[:, i]
    return {"probabilities": out}


def train(args):
    X = np.ascontiguousarray(args["features"], dtype=np.float32)
    y = np.asarray(args["labels"], np.uint32).reshape(-1, 1)
    for path, n in zip(args["forests"], args["trees"]):
        rf = vigra.learning.RandomForest(treeCount=int(n))
        rf.learnRF(X, y)
        rf.writeHDF5(str(args["ilp"]), str(path))
    return {"ok": np.array(1)}


def timed_pipeline(args):
    """The vigra pipeline as ilastik runs it, timed: features then forests (for bench/)."""
    t0 = time.perf_counter()
    f = features(args)["features"]
    t1 = time.perf_counter()
    pr = predict(dict(args, features=f.reshape(-1, f.shape[-1])))["probabilities"]
    t2 = time.perf_counter()
    return {"feature_seconds": np.array(t1 - t0), "forest_seconds": np.array(t2 - t1), "probabilities": pr}


COMMANDS = {"features": features, "predict": predict, "train": train, "timed_pipeline": timed_pipeline}

if __name__ == "__main__":
    command, src, dst = sys.argv[1:4]
    with np.load(src, allow_pickle=False) as data:
        args = {k: data[k] for k in data.files}
    np.savez(dst, **COMMANDS[command](args))
