"""ilastik's feature selection: ids, display names, channel order and the per-scale 2D flags."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Feature ids as stored in ``FeatureSelections/FeatureIds``, with the core's numeric id and
#: the display name ilastik puts into ``feature_names``.
FEATURES: dict[str, tuple[int, str]] = {
    "GaussianSmoothing": (0, "Gaussian Smoothing"),
    "LaplacianOfGaussian": (1, "Laplacian of Gaussian"),
    "GaussianGradientMagnitude": (2, "Gaussian Gradient Magnitude"),
    "DifferenceOfGaussians": (3, "Difference of Gaussians"),
    "StructureTensorEigenvalues": (4, "Structure Tensor Eigenvalues"),
    "HessianOfGaussianEigenvalues": (5, "Hessian of Gaussian Eigenvalues"),
}
EIGENVALUE_FEATURES = {"StructureTensorEigenvalues", "HessianOfGaussianEigenvalues"}
#: Filter sigmas each feature op uses, relative to the feature scale s' (for the 2D fallback).
_OP_SIGMA_FACTORS = {
    "GaussianSmoothing": (1.0,),
    "LaplacianOfGaussian": (1.0,),
    "GaussianGradientMagnitude": (1.0,),
    "DifferenceOfGaussians": (1.0, 0.66),
    "StructureTensorEigenvalues": (1.0, 0.5),
    "HessianOfGaussianEigenvalues": (1.0,),
}


@dataclass(frozen=True)
class FeatureSelection:
    """What ``FeatureSelections`` in an ``.ilp`` asks for.

    Attributes
    ----------
    feature_ids : tuple of str
        Rows of the selection matrix, in stored order.
    scales : tuple of float
        Columns of the selection matrix.
    matrix : numpy.ndarray
        Boolean ``(len(feature_ids), len(scales))``.
    compute_in_2d : tuple of bool or None
        One flag per scale (ilastik >= 1.3); ``None`` for projects that predate it.
    """

    feature_ids: tuple[str, ...]
    scales: tuple[float, ...]
    matrix: np.ndarray
    compute_in_2d: tuple[bool, ...] | None = None

    def selected(self) -> list[tuple[str, int]]:
        """(feature id, scale column) pairs in ilastik's channel order."""
        return [
            (fid, j) for i, fid in enumerate(self.feature_ids) for j in range(len(self.scales)) if self.matrix[i, j]
        ]

    def column_in_2d(self, j: int, z_size: int) -> bool:
        """Whether scale column ``j`` is presmoothed in 2D (ComputeIn2d or a 2D volume)."""
        if z_size <= 1:
            return True
        if self.compute_in_2d is None:
            return False
        return bool(self.compute_in_2d[j])

    def filter_in_2d(self, fid: str, j: int, z_size: int) -> bool:
        """Whether the feature op works per z-slice: ComputeIn2d, or z too short for its kernels."""
        if self.column_in_2d(j, z_size):
            return True
        s = self.scales[j]
        s_feat = 1.0 if s > 1.0 else s
        return any(int(np.ceil(f * s_feat * 2.0)) + 1 > z_size for f in _OP_SIGMA_FACTORS[fid])

    def requests(self, z_size: int) -> list[tuple[int, float, bool, bool]]:
        """The core's feature requests ``(feature_id, scale, presmooth_2d, filter_2d)``."""
        return [
            (FEATURES[fid][0], float(self.scales[j]), self.column_in_2d(j, z_size), self.filter_in_2d(fid, j, z_size))
            for fid, j in self.selected()
        ]

    def feature_names(self, input_channels: int, z_size: int) -> list[str]:
        """Channel names as ilastik writes them into ``ClassifierForests/feature_names``."""
        names = []
        for fid, j in self.selected():
            n_eig = (2 if self.filter_in_2d(fid, j, z_size) else 3) if fid in EIGENVALUE_FEATURES else 1
            n = n_eig * input_channels
            base = f"{FEATURES[fid][1]} (σ={float(self.scales[j])})"
            if self.compute_in_2d is not None and self.compute_in_2d[j]:
                base += " in 2D"
            names.extend([base] if n == 1 else [f"{base} [{i}]" for i in range(n)])
        return names

    def max_scale(self) -> float:
        return max(float(self.scales[j]) for _, j in self.selected())
