"""Real ilastik >= 1.3 projects: the core against the probabilities ilastik itself exported.

The fixtures (``../shared/fixtures``) were exported by ilastik on the whole image; the core must
give the same numbers for any blocking. 2D: bit for bit. 3D: ilastik's exports were made on a CPU
whose ``rcpps`` differs from this one's, so the bound is what the real fastfilters library leaves
on this machine (at most 4 flipped pixels), and our features equal that library's to the bit.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastfilters_oracle import mismatches
from PIL import Image

from ilastikbackend.core import PixelClassifier, load_project

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
META = json.loads((FIXTURES / "fixtures.json").read_text()) if (FIXTURES / "fixtures.json").is_file() else {}


def load(name: str):
    m = META[name]
    project = load_project(FIXTURES / m["project"])
    path = FIXTURES / m["raw"]
    raw = np.load(path) if path.suffix == ".npy" else np.asarray(Image.open(path))
    if project.spatial_ndim == 3 and raw.ndim == 4 and raw.shape[-1] == 1:
        raw = raw[..., 0]
    reference = np.load(FIXTURES / m["reference"])
    return project, raw, reference


@pytest.mark.parametrize("name", ["ilastik-api-2d-1c-xy-v140", "ilastik-api-2d-rgb-v141"])
def test_2d_projects_equal_ilastiks_export(name):
    project, raw, reference = load(name)
    clf = PixelClassifier(project)
    assert clf.engine == "fastfilters"  # saved by ilastik >= 1.3
    probs = clf.predict(raw).reshape(reference.shape)
    assert float(np.abs(probs - reference).max()) == 0.0
    # The vigra engine, ilastik 1.2's arithmetic, does not reproduce these exports.
    assert float(np.abs(PixelClassifier(project, engine="vigra").predict(raw) - probs).max()) > 0


@pytest.mark.parametrize("block_shape", [(64, 64), (50, 37), (17, 256), (128, 40)])
def test_2d_export_bit_for_bit_whatever_the_blocks(block_shape):
    project, raw, reference = load("ilastik-api-2d-rgb-v141")
    probs = PixelClassifier(project).predict_image(raw, block_shape, n_threads=2)
    assert float(np.abs(probs - reference).max()) == 0.0


def test_3d_project_flips_no_more_than_the_real_library(ff_oracle):
    import vigra_oracle

    project, raw, reference = load("ilastik-api-3d-1c-v141")
    clf = PixelClassifier(project, z_size=raw.shape[0])
    assert clf.engine == "fastfilters"
    fs = project.feature_selection
    args = dict(raw=raw[..., None], feature_ids=np.array(fs.feature_ids), scales=np.array(fs.scales), matrix=fs.matrix)
    if fs.compute_in_2d is not None:
        args["in2d"] = np.array(fs.compute_in_2d)
    library = ff_oracle.run("features", **args)["features"]
    ours = clf.features(raw)
    assert not mismatches(ours, library).any()

    library_probs = vigra_oracle.run(
        "predict", features=library.reshape(-1, library.shape[-1]), ilp=project.path,
        forests=np.array([f.name for f in project.forests]), known_labels=np.array(project.known_labels),
        num_classes=project.num_classes,
    )["probabilities"].reshape(reference.shape)  # fmt: skip
    probs = clf.predict(raw)
    library_flips = int((library_probs.argmax(-1) != reference.argmax(-1)).sum())
    flips = int((probs.argmax(-1) != reference.argmax(-1)).sum())
    print(f"3D fixture: {flips} flipped pixels (real fastfilters + vigra forest: {library_flips}) of {raw.size}")
    assert flips <= library_flips <= 4
    np.testing.assert_allclose(probs, library_probs, atol=1e-6, rtol=0)


@pytest.mark.parametrize("block_shape", [(20, 30, 64), (64, 64, 17), (33, 33, 33)])
def test_3d_blocks_equal_the_whole_volume(block_shape):
    project, raw, _ = load("ilastik-api-3d-1c-v141")
    clf = PixelClassifier(project, z_size=raw.shape[0])
    whole = clf.predict(raw)
    assert np.array_equal(clf.predict_image(raw, block_shape, n_threads=2), whole)
