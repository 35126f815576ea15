"""Synthetic ilastik projects written by the tests, with forests trained by real vigra."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import vigra_oracle

FEATURE_NAMES = {
    "GaussianSmoothing": "Gaussian Smoothing",
    "LaplacianOfGaussian": "Laplacian of Gaussian",
    "GaussianGradientMagnitude": "Gaussian Gradient Magnitude",
    "DifferenceOfGaussians": "Difference of Gaussians",
    "StructureTensorEigenvalues": "Structure Tensor Eigenvalues",
    "HessianOfGaussianEigenvalues": "Hessian of Gaussian Eigenvalues",
}
ALL_FEATURES = list(FEATURE_NAMES)


def blobs(shape: tuple[int, ...], seed: int, dtype=np.uint8, n_blobs: int = 12) -> np.ndarray:
    """Smooth random blobs plus noise, scaled to the dtype's range (floats: 0..1000)."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    img = np.zeros(shape)
    for _ in range(n_blobs):
        center = [rng.uniform(0, n) for n in shape]
        radius = rng.uniform(2, max(3, min(shape) / 4))
        d2 = sum((g - c) ** 2 for g, c in zip(grids, center))
        img += rng.uniform(0.5, 1.0) * np.exp(-d2 / (2 * radius**2))
    img += rng.normal(0, 0.05, shape)
    img = (img - img.min()) / (img.max() - img.min())
    top = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1000.0
    return (img * top).astype(dtype)


def feature_names(feature_ids, scales, matrix, n_channels, z_size, in2d=None) -> list[str]:
    """Names as ilastik writes them (written here independently of the package)."""
    names = []
    for i, fid in enumerate(feature_ids):
        for j, s in enumerate(scales):
            if not matrix[i, j]:
                continue
            two_d = z_size == 1 or (in2d is not None and in2d[j])
            k = (2 if two_d else 3) if "Eigenvalues" in fid else 1
            base = f"{FEATURE_NAMES[fid]} (σ={float(s)})" + (" in 2D" if in2d is not None and in2d[j] else "")
            n = k * n_channels
            names += [base] if n == 1 else [f"{base} [{c}]" for c in range(n)]
    return names


def write_project(
    path: Path,
    raw_zyxc: np.ndarray,
    *,
    feature_ids=ALL_FEATURES,
    scales=(0.7, 1.0, 1.6, 3.5),
    matrix=None,
    in2d=None,
    axes: str = "zyx",
    version: str = "1.2.2",  # forests trained on vigra features: what ilastik < 1.3 saved
    n_classes: int = 2,
    forests: int = 2,
    trees: int = 8,
    seed: int = 0,
    samples_per_class: int = 150,
    label_noise: float = 0.0,
) -> Path:
    """Train vigra forests on vigra features of ``raw_zyxc`` and write a Pixel Classification .ilp.

    Labels follow intensity quantiles; ``label_noise`` of them are reassigned at random, which
    grows the deep trees of real projects (hand-drawn labels are never separable by intensity).
    """
    path = Path(path)
    matrix = np.ones((len(feature_ids), len(scales)), bool) if matrix is None else np.asarray(matrix, bool)
    args = dict(
        raw=raw_zyxc,
        feature_ids=np.array(feature_ids),
        scales=np.array(scales, float),
        matrix=matrix,
    )
    if in2d is not None:
        args["in2d"] = np.array(in2d, bool)
    feats = vigra_oracle.run("features", **args)["features"]
    rng = np.random.default_rng(seed)
    intensity = raw_zyxc[..., 0].astype(np.float64).ravel()
    edges = np.quantile(intensity, np.linspace(0, 1, n_classes + 1)[1:-1])
    classes = np.digitize(intensity, edges) + 1
    picks = np.concatenate(
        [rng.choice(np.flatnonzero(classes == c), samples_per_class, replace=False) for c in range(1, n_classes + 1)]
    )
    X = feats.reshape(-1, feats.shape[-1])[picks]
    y = classes[picks].astype(np.uint32)
    noisy = rng.random(len(y)) < label_noise
    y[noisy] = rng.integers(1, n_classes + 1, int(noisy.sum()))
    groups = [f"PixelClassification/ClassifierForests/Forest{i:04d}" for i in range(forests)]
    if path.exists():
        path.unlink()
    vigra_oracle.run(
        "train", features=X, labels=y, ilp=str(path), forests=np.array(groups), trees=np.full(forests, trees)
    )
    with h5py.File(path, "a") as f:
        f["workflowName"] = b"Pixel Classification"
        f["ilastikVersion"] = version.encode()
        fs = f.create_group("FeatureSelections")
        fs["FeatureIds"] = np.array([x.encode() for x in feature_ids])
        fs["Scales"] = np.array(scales, float)
        fs["SelectionMatrix"] = matrix
        if in2d is not None:
            fs["ComputeIn2d"] = np.array(in2d, bool)
        cf = f["PixelClassification/ClassifierForests"]
        cf["known_labels"] = np.arange(1, n_classes + 1, dtype=np.uint32)
        names = feature_names(feature_ids, scales, matrix, raw_zyxc.shape[-1], raw_zyxc.shape[0], in2d)
        cf["feature_names"] = np.array([n.encode() for n in names])
        cf["pickled_type"] = (
            b"clazyflow.classifiers.parallelVigraRfLazyflowClassifier\nParallelVigraRfLazyflowClassifier\np1\n."
        )
        pc = f["PixelClassification"]
        pc["LabelNames"] = np.array([f"class {i + 1}".encode() for i in range(n_classes)])
        pc["LabelColors"] = np.array([[255, 0, 0], [0, 0, 255], [255, 255, 0], [0, 255, 0]][:n_classes], np.int64)
        f["Input Data/infos/lane0000/Raw Data/axisorder"] = axes.encode()
    return path
