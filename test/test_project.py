"""Reading .ilp files: the seed project, and every way a project can be unservable."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from ilastikbackend.core import ProjectError, load_project


def test_seed_project(seed_project_path):
    p = load_project(seed_project_path)
    assert p.ilastik_version == "1.2.0"
    assert p.classifier_type == "ParallelVigraRfLazyflowClassifier"
    assert p.raw_axes == "yx"
    assert (p.spatial_ndim, p.input_channels, p.num_classes) == (2, 1, 2)
    assert p.label_names == ("Label 1", "Label 2")
    assert p.label_colors == ((255, 0, 0), (0, 255, 0))
    assert p.known_labels == (1, 2)
    assert [f.name.rsplit("/", 1)[-1] for f in p.forests] == ["Forest0000", "Forest0001", "Forest0002", "Forest0003"]
    assert all(len(f.trees) == 25 for f in p.forests)
    assert len(p.feature_names) == p.column_count == 33
    assert p.feature_names[17] == "Structure Tensor Eigenvalues (σ=0.7) [0]"
    fs = p.feature_selection
    assert fs.scales == (0.3, 0.7, 1.0, 1.6, 3.5, 5.0, 10.0)
    assert fs.compute_in_2d is None
    assert int(fs.matrix.sum()) == 5 + 5 * 4
    assert len(p.content_hash) == 64


def test_content_hash_changes_with_the_file(seed_project_path, tmp_path):
    copy = tmp_path / "copy.ilp"
    shutil.copy(seed_project_path, copy)
    assert load_project(copy).content_hash == load_project(seed_project_path).content_hash
    with h5py.File(copy, "a") as f:
        f["PixelClassification/LabelNames"][0] = b"Nucleus"
    edited = load_project(copy)
    assert edited.label_names[0] == "Nucleus"
    assert edited.content_hash != load_project(seed_project_path).content_hash


@pytest.fixture
def broken(seed_project_path, tmp_path):
    """A writable copy of the seed project to damage."""
    path = tmp_path / "broken.ilp"
    shutil.copy(seed_project_path, path)
    return path


def _fails(path, *fragments):
    with pytest.raises(ProjectError) as info:
        load_project(path)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_missing_file(tmp_path):
    _fails(tmp_path / "nope.ilp", "not found")


def test_not_hdf5(tmp_path):
    path = tmp_path / "text.ilp"
    path.write_text("hello")
    _fails(path, "not an HDF5 file")


def test_empty_hdf5(tmp_path):
    path = tmp_path / "empty.ilp"
    h5py.File(path, "w").close()
    _fails(path, "not an ilastik project")


def test_other_workflow(broken):
    with h5py.File(broken, "a") as f:
        del f["workflowName"]
        f["workflowName"] = b"Object Classification"
    _fails(broken, "unsupported workflow 'Object Classification'")


def test_sklearn_classifier(broken):
    with h5py.File(broken, "a") as f:
        cf = f["PixelClassification/ClassifierForests"]
        del cf["pickled_type"]
        cf["pickled_type"] = b"clazyflow.classifiers.sklearnLazyflowClassifier\nSklearnLazyflowClassifier\np1\n."
        cf["pickled_classifier"] = np.void(b"ccopy_reg...")
    _fails(broken, "SklearnLazyflowClassifier", "scikit-learn classifiers cannot be served")


def test_missing_forests(broken):
    with h5py.File(broken, "a") as f:
        del f["PixelClassification/ClassifierForests"]
    _fails(broken, "no trained classifier")


def test_forest_group_without_trees(broken):
    with h5py.File(broken, "a") as f:
        forest = f["PixelClassification/ClassifierForests/Forest0002"]
        for name in [k for k in forest.keys() if k.startswith("Tree_")]:
            del forest[name]
    _fails(broken, "Forest0002 has no trees")


def test_unknown_feature(broken):
    with h5py.File(broken, "a") as f:
        ids = f["FeatureSelections/FeatureIds"]
        ids[2] = b"GaborFilter"
    _fails(broken, "unsupported feature(s) ['GaborFilter']")


def test_selection_that_does_not_fit_the_forests(broken):
    with h5py.File(broken, "a") as f:
        m = f["FeatureSelections/SelectionMatrix"][()]
        m[0, 0] = False
        f["FeatureSelections/SelectionMatrix"][...] = m
    _fails(broken, "do not match the classifier's 33 input columns")


def test_nothing_selected(broken):
    with h5py.File(broken, "a") as f:
        f["FeatureSelections/SelectionMatrix"][...] = np.zeros((6, 7), bool)
    _fails(broken, "no features are selected")


def test_unsupported_tree_node(broken):
    with h5py.File(broken, "a") as f:
        topo = f["PixelClassification/ClassifierForests/Forest0001/Tree_03/topology"]
        t = topo[()]
        t[2] = 2  # a hypersphere node, which ilastik never trains
        topo[...] = t
    _fails(broken, "Forest0001", "unsupported vigra node type 2")


def test_truncated_tree(broken):
    with h5py.File(broken, "a") as f:
        tree = f["PixelClassification/ClassifierForests/Forest0000/Tree_00"]
        t = tree["topology"][()]
        del tree["topology"]
        tree["topology"] = t[:6]
    _fails(broken, "Forest0000")
