#!/usr/bin/python3
"""Reference results from the real fastfilters library, called the way lazyflow (ilastik >= 1.3) calls it.

Runs under ``/usr/bin/python3`` (which has python3-vigra) in a subprocess of the tests, with
``PYTHONPATH`` pointing at a build of ``../shared/reference/build_fastfilters.sh`` (the GCC -Ofast
build that ilastik's packages shipped). ILASTIK-SEMANTICS.md §3.10 describes the calls. Commands,
each reading and writing ``.npz`` files:

``features IN OUT``
    IN: ``raw`` (z, y, x, c), ``feature_ids``, ``scales``, ``matrix``, optional ``in2d``.
    OUT: ``features`` (z, y, x, F) float32 in ilastik's channel order.
``filter IN OUT``
    IN: ``image_<i>`` (2D or 3D float32) with ``orders_<i>``, ``sigmas_<i>``, ``windows_<i>``.
    OUT: ``result_<i>_<j>`` = ``fastfilters.gaussianDerivative(image_i, sigma_j, order_j, window_j)``.
``timed_pipeline IN OUT``
    ``features`` plus vigra's forests (``vigra_reference.predict``): modern ilastik, timed.
"""

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fastfilters as ff  # noqa: E402
import vigra_reference  # noqa: E402

WINDOW_PRESMOOTH = 3.5
WINDOW_FEATURE = 2.0


def per_slice(fn, vol):
    """fn on every z-slice of a (z, y, x) volume, stacked along z."""
    return np.stack([fn(np.ascontiguousarray(vol[z])) for z in range(vol.shape[0])])


def presmoothed(img, s, in_2d):
    """img: (z, y, x) float32 of one channel; Gaussian at t(s), window 3.5 (per slice if in_2d)."""
    t = np.sqrt(s * s - 1.0) if s > 1.0 else s
    if in_2d or img.shape[0] == 1:
        return per_slice(lambda a: ff.gaussianSmoothing(a, t, window_size=WINDOW_PRESMOOTH), img)
    return ff.gaussianSmoothing(np.ascontiguousarray(img), t, window_size=WINDOW_PRESMOOTH)


def feature_nd(fid, p, sf):
    """One fastfilters call on a 2D or 3D float32 array; returns (..., k)."""
    w = WINDOW_FEATURE
    p = np.ascontiguousarray(p, dtype=np.float32)
    if fid == "GaussianSmoothing":
        r = ff.gaussianSmoothing(p, sf, window_size=w)
    elif fid == "LaplacianOfGaussian":
        r = ff.laplacianOfGaussian(p, sf, window_size=w)
    elif fid == "GaussianGradientMagnitude":
        r = ff.gaussianGradientMagnitude(p, sf, window_size=w)
    elif fid == "DifferenceOfGaussians":
        r = ff.gaussianSmoothing(p, sf, window_size=w) - ff.gaussianSmoothing(p, 0.66 * sf, window_size=w)
    elif fid == "StructureTensorEigenvalues":
        r = ff.structureTensorEigenvalues(p, sf, 0.5 * sf, window_size=w)
    elif fid == "HessianOfGaussianEigenvalues":
        r = ff.hessianOfGaussianEigenvalues(p, sf, window_size=w)
    else:
        raise ValueError(fid)
    r = np.asarray(r, dtype=np.float32)
    return r if r.ndim > p.ndim else r[..., None]


def feature(fid, p, s, filter_2d):
    sf = 1.0 if s > 1.0 else s
    if filter_2d or p.shape[0] == 1:
        return per_slice(lambda a: feature_nd(fid, a, sf), p)
    return feature_nd(fid, p, sf)


def features(args):
    return vigra_reference.pipeline_features(args, presmoothed, feature)


def filters(args):
    out = {}
    for key in args:
        if not key.startswith("image_"):
            continue
        i = key[len("image_") :]
        image = np.ascontiguousarray(args[key], dtype=np.float32)
        filters = zip(args[f"orders_{i}"], args[f"sigmas_{i}"], args[f"windows_{i}"])
        for j, (order, sigma, window) in enumerate(filters):
            result = ff.gaussianDerivative(image, float(sigma), int(order), float(window))
            out[f"result_{i}_{j}"] = np.asarray(result, np.float32)
    return out


def timed_pipeline(args):
    """Modern ilastik, timed: fastfilters features, then vigra's forests."""
    t0 = time.perf_counter()
    f = features(args)["features"]
    t1 = time.perf_counter()
    pr = vigra_reference.predict(dict(args, features=f.reshape(-1, f.shape[-1])))["probabilities"]
    t2 = time.perf_counter()
    return {"feature_seconds": np.array(t1 - t0), "forest_seconds": np.array(t2 - t1), "probabilities": pr}


COMMANDS = {"features": features, "filter": filters, "timed_pipeline": timed_pipeline}

if __name__ == "__main__":
    command, src, dst = sys.argv[1:4]
    with np.load(src, allow_pickle=False) as data:
        args = {k: data[k] for k in data.files}
    np.savez(dst, **COMMANDS[command](args))
