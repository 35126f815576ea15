"""The compiled core against real vigra (python3-vigra), following ILASTIK-SEMANTICS.md."""

from __future__ import annotations

import numpy as np
import pytest

from ilastikbackend.core import PixelClassifier, load_project
from ilastikbackend.core.classifier import build_ensemble

FEATURE_RTOL = 1e-4  # per channel, relative to the channel's largest |value|
PROB_ATOL = 1e-5


def assert_features_close(ours: np.ndarray, ref: np.ndarray, names=None):
    assert ours.shape == ref.shape
    for c in range(ref.shape[-1]):
        scale = max(float(np.abs(ref[..., c]).max()), 1e-6)
        err = float(np.abs(ours[..., c].astype(np.float64) - ref[..., c]).max()) / scale
        label = names[c] if names is not None else c
        assert err <= FEATURE_RTOL, f"channel {label}: relative error {err:.2e}"


def assert_probabilities_equal(ours: np.ndarray, ref: np.ndarray):
    assert ours.shape == ref.shape
    err = float(np.abs(ours - ref).max())
    assert err <= PROB_ATOL, f"max |dP| = {err}"
    assert np.array_equal(ours.argmax(-1), ref.argmax(-1))


def vigra_features(oracle, project, raw_zyxc):
    fs = project.feature_selection
    args = dict(raw=raw_zyxc, feature_ids=np.array(fs.feature_ids), scales=np.array(fs.scales), matrix=fs.matrix)
    if fs.compute_in_2d is not None:
        args["in2d"] = np.array(fs.compute_in_2d)
    return oracle.run("features", **args)["features"]


def vigra_probabilities(oracle, project, feats):
    X = feats.reshape(-1, feats.shape[-1])
    p = oracle.run(
        "predict",
        features=X,
        ilp=project.path,
        forests=np.array([f.name for f in project.forests]),
        known_labels=np.array(project.known_labels),
        num_classes=project.num_classes,
    )["probabilities"]
    return p.reshape(feats.shape[:-1] + (project.num_classes,))


@pytest.fixture(scope="module")
def seed(seed_project_path, seed_raw, oracle):
    project = load_project(seed_project_path)
    raw = seed_raw[None, ..., None]
    feats = vigra_features(oracle, project, raw)[0]
    return project, seed_raw, feats, vigra_probabilities(oracle, project, feats)


def test_seed_features_match_vigra(seed):
    project, raw, ref, _ = seed
    ours = PixelClassifier(project).features(raw)
    assert ours.shape == (193, 185, 33)
    assert_features_close(ours, ref, project.feature_names)


def test_seed_probabilities_match_vigra(seed):
    project, raw, _, ref = seed
    assert_probabilities_equal(PixelClassifier(project).predict(raw), ref)


def test_seed_forest_alone_matches_vigra_on_vigra_features(seed):
    project, _, feats, ref = seed
    ours = build_ensemble(project).predict(feats.reshape(-1, 33)).reshape(ref.shape)
    assert_probabilities_equal(ours, ref)


def test_seed_engines_follow_their_library(seed):
    """The vigra engine is vigra to the bit; the fastfilters engine is not (its structure tensor
    takes the gradient at 0.5 s' and smooths at s'): a project gets the library it was trained on."""
    project, raw, ref, _ = seed
    vigra_engine = PixelClassifier(project, engine="vigra").features(raw)
    ff_engine = PixelClassifier(project, engine="fastfilters").features(raw)
    np.testing.assert_array_equal(vigra_engine, ref)
    st = [i for i, n in enumerate(project.feature_names) if n.startswith("Structure Tensor")]
    assert np.abs(vigra_engine[..., st] - ff_engine[..., st]).max() > 1.0
    others = [i for i in range(len(project.feature_names)) if i not in st]
    assert_features_close(ff_engine[..., others], ref[..., others])


@pytest.mark.parametrize("fixture", ["project_3d", "project_3d_mixed", "project_multichannel"])
def test_synthetic_projects_match_vigra(fixture, request, oracle):
    path, raw = request.getfixturevalue(fixture)
    project = load_project(path)
    clf = PixelClassifier(project, z_size=raw.shape[0])
    feats_ref = vigra_features(oracle, project, raw)
    data = raw[0] if project.spatial_ndim == 2 else raw
    feats = clf.features(data)
    if project.spatial_ndim == 2:
        feats_ref = feats_ref[0]
    assert feats.shape[-1] == len(project.feature_names)
    assert_features_close(feats, feats_ref, project.feature_names)
    assert_probabilities_equal(clf.predict(data), vigra_probabilities(oracle, project, feats_ref))


def test_project_3d_reads_as_3d(project_3d):
    project = load_project(project_3d[0])
    assert (project.spatial_ndim, project.input_channels, project.num_classes) == (3, 1, 3)
    assert len(project.feature_names) == 6 * 4 + 4 * 2 * 2  # 4 single + 2 eigen (3 each) features x 4 scales


def test_mixed_2d_columns_have_two_eigenvalues(project_3d_mixed):
    project = load_project(project_3d_mixed[0])
    names = [n for n in project.feature_names if n.startswith("Hessian")]
    assert names == [
        "Hessian of Gaussian Eigenvalues (σ=0.7) in 2D [0]",
        "Hessian of Gaussian Eigenvalues (σ=0.7) in 2D [1]",
        "Hessian of Gaussian Eigenvalues (σ=1.6) [0]",
        "Hessian of Gaussian Eigenvalues (σ=1.6) [1]",
        "Hessian of Gaussian Eigenvalues (σ=1.6) [2]",
        "Hessian of Gaussian Eigenvalues (σ=3.5) in 2D [0]",
        "Hessian of Gaussian Eigenvalues (σ=3.5) in 2D [1]",
    ]


def test_forest_threshold_ties_match_vigra(seed_project_path, oracle):
    """Features exactly at, just below and just above every threshold route like vigra."""
    project = load_project(seed_project_path)
    rows = []
    for tree in project.forests[0].trees + project.forests[1].trees:
        topo, par = tree.topology, tree.parameters
        n = 2
        stack = [2]
        while stack:
            n = stack.pop()
            if topo[n] != 0:
                continue
            col, thr = topo[n + 4], par[topo[n + 1] + 1]
            f = np.float32(thr)
            for v in (f, np.nextafter(f, np.float32(-np.inf)), np.nextafter(f, np.float32(np.inf))):
                row = np.full(project.column_count, 50.0, np.float32)
                row[col] = v
                rows.append(row)
            stack += [topo[n + 2], topo[n + 3]]
    X = np.stack(rows)
    ref = vigra_probabilities(oracle, project, X)
    np.testing.assert_allclose(build_ensemble(project).predict(X), ref, atol=PROB_ATOL, rtol=0)
    assert len(X) > 300


def test_nan_rows_predict_zero_like_vigra(seed_project_path, oracle):
    project = load_project(seed_project_path)
    X = np.full((3, project.column_count), 40.0, np.float32)
    X[1, 5] = np.nan
    ours = build_ensemble(project).predict(X)
    ref = vigra_probabilities(oracle, project, X)
    np.testing.assert_array_equal(ours[1], [0, 0])
    np.testing.assert_allclose(ours, ref, atol=PROB_ATOL)
