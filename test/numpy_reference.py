"""A pure numpy (float64) re-implementation of ilastik's features and vigra forest prediction.

It shares no code with the C++ core: kernels, mirrored separable convolution, the two-stage
filtering and tree traversal are written out from ILASTIK-SEMANTICS.md. Slow, but plain.
"""

from __future__ import annotations

import numpy as np

FEATURE_ORDER = [
    "GaussianSmoothing",
    "LaplacianOfGaussian",
    "GaussianGradientMagnitude",
    "DifferenceOfGaussians",
    "StructureTensorEigenvalues",
    "HessianOfGaussianEigenvalues",
]


def kernel(sigma: float, order: int, window: float) -> np.ndarray:
    """vigra's Kernel1D taps k[-r..r] for a Gaussian or its derivative (float64)."""
    r = int(window * sigma + 0.5) if window > 0 else int((3 + 0.5 * order) * sigma + 0.5)
    r = max(r, 1)
    x = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-(x**2) / (2 * sigma**2)) / (np.sqrt(2 * np.pi) * sigma)
    k = {0: g, 1: -x / sigma**2 * g, 2: (x**2 / sigma**4 - 1 / sigma**2) * g}[order]
    if order > 0:
        k = k - k.mean()
        return k / np.sum(k * (-x) ** order / (2 if order == 2 else 1))
    return k / k.sum()


def convolve(a: np.ndarray, k: np.ndarray, axis: int) -> np.ndarray:
    """out[i] = sum_x k[x] a[i - x], mirrored at the borders without repeating the edge."""
    r = len(k) // 2
    pad = [(0, 0)] * a.ndim
    pad[axis] = (r, r)
    p = np.pad(a, pad, mode="reflect")
    n = a.shape[axis]
    out = np.zeros_like(a, dtype=np.float64)
    for j in range(2 * r + 1):  # tap k[r - j] meets a[i - r + j]
        out += k[2 * r - j] * np.take(p, np.arange(j, j + n), axis=axis)
    return out


def separable(a: np.ndarray, kernels: list[np.ndarray | None]) -> np.ndarray:
    for axis, k in enumerate(kernels):
        if k is not None:
            a = convolve(a, k, axis)
    return a


def _filter(p: np.ndarray, s: float, deriv_axes: dict[int, int]) -> np.ndarray:
    return separable(p, [kernel(s, deriv_axes.get(ax, 0), 2.0) for ax in range(p.ndim)])


def _eig_desc(tensor: np.ndarray, n: int) -> np.ndarray:
    """Descending eigenvalues of symmetric tensors given as upper triangles (x, y[, z] order).

    ilastik gets them from vigra's closed forms evaluated on float32 tensors
    (``symmetric2x2Eigenvalues`` / ``symmetric3x3Eigenvalues``); the closed form is not
    exact for nearly equal eigenvalues, so the reference evaluates the same formula, with the
    same float32/float64 mix, rather than an exact solver.
    """
    t = [tensor[..., i].astype(np.float32) for i in range(tensor.shape[-1])]
    f64 = np.float64
    if n == 2:
        a00, a01, a11 = t
        d = np.hypot((a00 - a11).astype(f64), 2.0 * a01.astype(f64))
        s = (a00 + a11).astype(f64)
        r = np.stack([(0.5 * (s + d)).astype(np.float32), (0.5 * (s - d)).astype(np.float32)], -1)
        return -np.sort(-r, axis=-1)
    a00, a01, a02, a11, a12, a22 = t
    A = [x.astype(f64) for x in t]
    c0 = (
        (a00 * a11 * a22).astype(f64)
        + 2.0 * A[1] * A[2] * A[4]
        - (a00 * a12 * a12).astype(f64)
        - (a11 * a02 * a02).astype(f64)
        - (a22 * a01 * a01).astype(f64)
    )
    c1 = (a00 * a11 - a01 * a01 + a00 * a22 - a02 * a02 + a11 * a22 - a12 * a12).astype(f64)
    c2 = (a00 + a11 + a22).astype(f64)
    c2d3 = c2 * (1.0 / 3.0)
    ad3 = np.minimum((c1 - c2 * c2d3) * (1.0 / 3.0), 0.0)
    mbd2 = 0.5 * (c0 + c2d3 * (2.0 * c2d3 * c2d3 - c1))
    q = np.minimum(mbd2 * mbd2 + ad3 * ad3 * ad3, 0.0)
    mag = np.sqrt(-ad3)
    ang = np.arctan2(np.sqrt(-q), mbd2) * (1.0 / 3.0)
    cs, sn = np.cos(ang), np.sin(ang)
    r = np.stack(
        [c2d3 + 2.0 * mag * cs, c2d3 - mag * (cs + np.sqrt(3.0) * sn), c2d3 - mag * (cs - np.sqrt(3.0) * sn)], -1
    )
    return -np.sort(-r.astype(np.float32), axis=-1)


def exact_eigenvalues(tensor: np.ndarray, n: int) -> np.ndarray:
    """Descending eigenvalues by LAPACK, to bound the closed form's error."""
    m = np.zeros(tensor.shape[:-1] + (n, n))
    b = 0
    for i in range(n):
        for j in range(i, n):
            m[..., i, j] = m[..., j, i] = tensor[..., b]
            b += 1
    return np.linalg.eigvalsh(m)[..., ::-1]


def feature(fid: str, p: np.ndarray, s: float) -> np.ndarray:
    """One feature on a presmoothed 2D or 3D array; returns (..., k)."""
    sf = 1.0 if s > 1.0 else s
    nd = p.ndim
    if fid == "GaussianSmoothing":
        return _filter(p, sf, {})[..., None]
    if fid == "LaplacianOfGaussian":
        return sum(_filter(p, sf, {a: 2}) for a in range(nd))[..., None]
    if fid == "GaussianGradientMagnitude":
        return np.sqrt(sum(_filter(p, sf, {a: 1}) ** 2 for a in range(nd)))[..., None]
    if fid == "DifferenceOfGaussians":
        return (_filter(p, sf, {}) - _filter(p, 0.66 * sf, {}))[..., None]
    if fid == "HessianOfGaussianEigenvalues":
        comps = [_filter(p, sf, {i: 2} if i == j else {i: 1, j: 1}) for i in range(nd) for j in range(i, nd)]
        return _eig_desc(np.stack(comps, -1), nd)
    if fid == "StructureTensorEigenvalues":
        inner, outer = sf, 0.5 * sf  # vigra: gradient at s', tensor smoothed at 0.5 s'
        grads = [_filter(p, inner, {a: 1}) for a in range(nd)]
        comps = [separable(grads[i] * grads[j], [kernel(outer, 0, 2.0)] * nd) for i in range(nd) for j in range(i, nd)]
        return _eig_desc(np.stack(comps, -1), nd)
    raise ValueError(fid)


def features(
    raw: np.ndarray,
    feature_ids,
    scales,
    matrix,
    in2d=None,
) -> np.ndarray:
    """ilastik's feature stack of a (z, y, x, c) volume, (z, y, x, F) float64."""
    raw = np.asarray(raw, dtype=np.float32).astype(np.float64)
    z = raw.shape[0]
    out = []
    for i, fid in enumerate(feature_ids):
        for j, s in enumerate(scales):
            if not matrix[i, j]:
                continue
            col_2d = z == 1 or (in2d is not None and bool(in2d[j]))
            sf = 1.0 if s > 1.0 else s
            factors = {"DifferenceOfGaussians": (1.0, 0.66), "StructureTensorEigenvalues": (1.0, 0.5)}.get(fid, (1.0,))
            filt_2d = col_2d or any(int(np.ceil(f * sf * 2)) + 1 > z for f in factors)
            t = np.sqrt(s * s - 1) if s > 1 else s
            for c in range(raw.shape[-1]):
                vol = raw[..., c]
                g = kernel(t, 0, 3.5)
                p = separable(vol, [None if col_2d else g, g, g])
                if filt_2d:
                    out.append(np.stack([feature(fid, p[k], s) for k in range(z)]))
                else:
                    out.append(feature(fid, p, s))
    return np.concatenate(out, axis=-1)


def predict_forests(X: np.ndarray, forests, known_labels, num_classes: int) -> np.ndarray:
    """vigra predictProbabilities per forest, combined as ilastik: tree-count-weighted mean."""
    X = np.asarray(X, np.float32)
    total = np.zeros((len(X), forests[0].class_count), np.float32)
    trees = 0
    for forest in forests:
        prob = np.zeros((len(X), forest.class_count), np.float32)
        weight_sum = np.zeros(len(X))
        for tree in forest.trees:
            topo, par = tree.topology, tree.parameters
            node = np.full(len(X), 2, dtype=np.int64)
            while True:
                internal = topo[node] == 0
                if not internal.any():
                    break
                n = node[internal]
                col = topo[n + 4]
                thr = par[topo[n + 1] + 1]
                go_left = X[np.flatnonzero(internal), col].astype(np.float64) < thr
                node[internal] = np.where(go_left, topo[n + 2], topo[n + 3])
            a = topo[node + 1]
            w = par[a] if forest.predict_weighted else np.ones(len(X))
            for label in range(forest.class_count):
                v = par[a + 1 + label] * w
                prob[:, label] += v.astype(np.float32)
                weight_sum += v
        prob /= weight_sum.astype(np.float32)[:, None]
        prob[np.isnan(X).any(axis=1)] = 0
        total += prob * np.float32(len(forest.trees))
        trees += len(forest.trees)
    total /= np.float32(trees)
    out = np.zeros((len(X), num_classes), np.float32)
    for i, label in enumerate(known_labels):
        out[:, label - 1] = total[:, i]
    return out
