"""The four export sources over HTTP: probabilities, Simple Segmentation, Uncertainty, Features, in
every format, from the gateway and the pixel classification service, equal to the core's."""

from __future__ import annotations

import numpy as np
import pytest
import requests
from test_services_e2e import FORMATS, decode

from ilastikbackend.core import PixelClassifier, load_project
from ilastikbackend.core.derived import simple_segmentation, uncertainty

REGION = "extents_min=10_10&extents_max=100_150"


@pytest.fixture(scope="module")
def core(seed_project_path, seed_raw):
    clf = PixelClassifier(load_project(seed_project_path))
    return clf.predict(seed_raw), clf.features(seed_raw), clf.project


def test_derived_outputs_follow_ilastik():
    p = np.array([[0.2, 0.8, 0.0], [0.4, 0.4, 0.2], [1 / 3, 1 / 3, 1 / 3], [0.0, 0.0, 1.0]], np.float32)
    assert simple_segmentation(p)[:, 0].tolist() == [2, 1, 1, 3]  # ties go to the lowest label
    np.testing.assert_array_equal(uncertainty(p)[:, 0], np.float32(1) - np.array([0.6, 0.0, 0.0, 1.0], np.float32))
    assert simple_segmentation(p).dtype == np.uint8 and uncertainty(p).dtype == np.float32
    np.testing.assert_array_equal(uncertainty(p[:, :1]), np.zeros((4, 1), np.float32))


@pytest.mark.parametrize("service", ["gateway", "pixelclassification"])
@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "png"])
def test_every_output_in_every_format(embedded_seed_stack, core, service, fmt):
    probs, feats, _ = core
    base = embedded_seed_stack.gateway_url if service == "gateway" else embedded_seed_stack.pixelclassification_url
    expected = {
        "prediction": probs[10:100, 10:150],
        "segmentation": simple_segmentation(probs[10:100, 10:150]),
        "uncertainty": uncertainty(probs[10:100, 10:150]),
        "features": feats[10:100, 10:150],
    }
    for output, want in expected.items():
        r = requests.get(f"{base}/{output}/{fmt}/roi?{REGION}", timeout=120)
        got = decode(r, fmt)
        assert got.dtype == want.dtype, output
        np.testing.assert_array_equal(got.reshape(want.shape), want, err_msg=output)
        assert r.headers["X-Shape"] == "_".join(map(str, want.shape))


def test_outputs_as_png(embedded_seed_stack, core):
    probs, feats, project = core
    seg = simple_segmentation(probs[10:100, 10:150])[..., 0]
    png = decode(requests.get(f"{embedded_seed_stack.gateway_url}/segmentation/png/roi?{REGION}", timeout=60), "png")
    np.testing.assert_array_equal(png, np.asarray(project.label_colors, np.uint8)[seg - 1])
    unc = decode(requests.get(f"{embedded_seed_stack.gateway_url}/uncertainty/png/roi?{REGION}", timeout=60), "png")
    want = np.clip(np.rint(uncertainty(probs[10:100, 10:150])[..., 0] * 255.0), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(unc, want)
    r = requests.get(f"{embedded_seed_stack.gateway_url}/features/png/roi?{REGION}", timeout=60)
    assert r.status_code == 400 and "channel=k" in r.json()["error"]
    f3 = decode(
        requests.get(f"{embedded_seed_stack.gateway_url}/features/png/roi?{REGION}&channel=3", timeout=60), "png"
    )
    plane = feats[10:100, 10:150, 3]
    assert f3.shape == plane.shape and np.corrcoef(f3.ravel(), plane.ravel())[0, 1] > 0.99


def test_features_are_computed_once_and_cached_apart(embedded_seed_stack, core):
    _, feats, project = core
    r = requests.get(
        f"{embedded_seed_stack.gateway_url}/features/npy/roi?extents_min=0_0&extents_max=-1_-1", timeout=120
    )
    np.testing.assert_array_equal(decode(r, "npy"), feats[:-1, :-1])
    assert r.headers["X-Shape"].endswith(f"_{project.column_count}")
    ids = requests.get(f"{embedded_seed_stack.pixelclassification_url}/prediction/cachedblockids", timeout=10).json()
    assert all(isinstance(i, int) for i in ids)  # feature blocks are not listed as prediction blocks
    bad = requests.get(f"{embedded_seed_stack.gateway_url}/features/npy/roi?{REGION}&channel=99", timeout=10)
    assert bad.status_code == 400 and f"there are {project.column_count} channel(s)" in bad.json()["error"]
