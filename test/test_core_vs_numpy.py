"""The compiled core against a plain numpy re-implementation of the same maths."""

from __future__ import annotations

import numpy as np
import numpy_reference as ref
import pytest

from ilastikbackend import _core
from ilastikbackend.core import PixelClassifier, load_project
from ilastikbackend.core.classifier import build_ensemble


@pytest.mark.parametrize("sigma", [0.15, 0.3, 0.462, 0.7, 1.0, 1.249, 3.354, 9.95])
@pytest.mark.parametrize("order", [0, 1, 2])
@pytest.mark.parametrize("window", [0.0, 2.0, 3.5])
def test_kernels_match_vigra_formula(sigma, order, window):
    np.testing.assert_allclose(
        _core.gaussian_kernel(sigma, order, window), ref.kernel(sigma, order, window), atol=1e-13
    )


def test_kernel_radius_minimum_is_one():
    assert len(_core.gaussian_kernel(0.1, 0, 2.0)) == 3


def assert_matches_reference(ours, expected, groups=None, rtol=1e-4, eigen_rtol=1e-3):
    """Every channel within ``rtol`` of the reference, relative to the channel's max |value|.

    ``groups`` gives the channel counts of consecutive feature groups; groups of 2-3 are
    eigenvalues. ilastik takes them from vigra's closed forms on float32 tensors (and the
    core reproduces them bit for bit, see test_core_vs_vigra.py); those forms cancel
    catastrophically, so two implementations fed tensors that differ in the last bit
    agree only to ~sqrt(float32 eps) of the tensor's norm. Eigenvalues are therefore held
    to ``eigen_rtol`` of their group's largest |value|.
    """
    groups = groups or [1] * expected.shape[-1]
    assert sum(groups) == expected.shape[-1] == ours.shape[-1]
    start = 0
    for n in groups:
        ref_g = expected[..., start : start + n].astype(np.float64)
        err = float(np.abs(ours[..., start : start + n] - ref_g).max())
        scale = max(float(np.abs(ref_g).max()), 1e-6)
        tol = rtol if n == 1 else eigen_rtol
        assert err <= tol * scale, f"channels {start}..{start + n - 1}: relative error {err / scale:.2e}"
        start += n


def _groups(n_scales, n_channels, ndim):
    """Channel groups in ilastik order for all six features at n_scales (all 3D or all 2D)."""
    sizes = []
    for fid in ref.FEATURE_ORDER:
        k = ndim if "Eigenvalues" in fid else 1
        sizes += [k] * (n_scales * n_channels)
    return sizes


def test_seed_features_match_numpy(seed_project_path, seed_raw):
    project = load_project(seed_project_path)
    fs = project.feature_selection
    expected = ref.features(seed_raw[None, ..., None], fs.feature_ids, fs.scales, fs.matrix)[0]
    ours = PixelClassifier(project).features(seed_raw)
    assert_matches_reference(ours, expected)


def test_all_features_3d_match_numpy():
    rng = np.random.default_rng(1)
    raw = (rng.random((14, 20, 18, 2)) * 200).astype(np.float32)
    ids = ref.FEATURE_ORDER
    scales = (0.3, 0.7, 1.0, 1.6, 3.5)
    matrix = np.ones((6, 5), bool)
    requests = [(i, s, False, False) for i in range(6) for s in scales]
    ours = _core.compute_features(raw, [0, 0, 0], list(raw.shape[:3]), _core.FeaturePlan(requests, "vigra"))
    expected = ref.features(raw, ids, scales, matrix)
    assert ours.shape == expected.shape == (14, 20, 18, (4 + 2 * 3) * 5 * 2)
    assert_matches_reference(ours, expected, _groups(5, 2, 3))


def test_compute_in_2d_matches_numpy():
    rng = np.random.default_rng(2)
    raw = (rng.random((6, 25, 22, 1)) * 1000).astype(np.uint16)
    scales = (0.7, 1.6)
    in2d = (True, False)
    requests = [(i, s, d, d) for i in range(6) for s, d in zip(scales, in2d)]
    ours = _core.compute_features(raw, [0, 0, 0], [6, 25, 22], _core.FeaturePlan(requests, "vigra"))
    expected = ref.features(raw, ref.FEATURE_ORDER, scales, np.ones((6, 2), bool), in2d=in2d)
    assert ours.shape == expected.shape
    groups = [k for fid in ref.FEATURE_ORDER for k in ((2, 3) if "Eigenvalues" in fid else (1, 1))]
    assert_matches_reference(ours, expected, groups)


def test_forest_matches_numpy_traversal(seed_project_path, seed_raw):
    project = load_project(seed_project_path)
    feats = PixelClassifier(project).features(seed_raw).reshape(-1, project.column_count)
    expected = ref.predict_forests(feats, project.forests, project.known_labels, project.num_classes)
    np.testing.assert_allclose(build_ensemble(project).predict(feats), expected, atol=1e-6, rtol=0)


def test_dtypes_give_the_same_features(seed_project_path, seed_raw):
    clf = PixelClassifier(load_project(seed_project_path))
    base = clf.predict(seed_raw)
    for dtype in (np.uint16, np.float32, np.float64, np.int32):
        np.testing.assert_array_equal(clf.predict(seed_raw.astype(dtype)), base, err_msg=str(dtype))


@pytest.mark.parametrize("engine", ["vigra", "fastfilters"])
def test_image_too_small_for_sigma_is_an_error(engine):
    plan = _core.FeaturePlan([(0, 10.0, True, True)], engine)
    with pytest.raises(
        ValueError, match=r"image too small for Gaussian Smoothing at scale 10\.0: .*radius 35.* x axis \(20"
    ):
        _core.compute_features(np.zeros((1, 40, 20, 1), np.float32), [0, 0, 0], [1, 40, 20], plan)


def test_bad_requests_are_rejected():
    with pytest.raises(ValueError, match="feature id"):
        _core.FeaturePlan([(9, 1.0, True, True)], "vigra")
    with pytest.raises(ValueError, match="unknown feature engine 'other'"):
        _core.FeaturePlan([(0, 1.0, True, True)], "other")
    with pytest.raises(ValueError, match="no features"):
        _core.FeaturePlan([], "vigra")
