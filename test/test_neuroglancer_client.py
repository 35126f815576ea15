"""The real neuroglancer client (shipped by the neuroglancer package, served on loopback) in headless Chromium,
reading the gateway's precomputed sources: screenshots of the raw data, the probabilities in the label colours
and the segmentation, checked pixel by pixel against the prediction; and the gateway's link to the client."""

from __future__ import annotations

import numpy as np
import pytest
import requests
from neuroglancer_support import screenshot, voxel_pixels

from ilastikbackend.core import PixelClassifier, load_project
from ilastikbackend.core.derived import uncertainty

neuroglancer = pytest.importorskip("neuroglancer", reason="a test dependency: pip install -e '.[neuroglancer]'")
ZOOM = 4  # screen pixels per voxel


def shot(viewer, sources: dict, layer: str) -> np.ndarray:
    """Show one layer of the gateway's own state, zoomed so each voxel is ZOOM x ZOOM pixels."""
    state = sources["neuroglancer_state"]
    for item in state["layers"]:
        item["visible"] = item["name"] == layer
        item["opacity"] = 1.0
        item["selectedAlpha"] = 1.0
    state.update(dimensions={a: [1e-9, "m"] for a in "xyz"}, position=[92.5, 96.5, 0.5], layout="xy",
                 crossSectionScale=1 / ZOOM, showAxisLines=False, showScaleBar=False,
                 showDefaultAnnotations=False)  # fmt: skip
    return screenshot(viewer, state)


def voxels(img: np.ndarray, shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels at voxel centres (away from voxel edges) and their voxel's (y, x): precomputed voxel (0, 0) spans
    [0, 1) x [0, 1)."""
    return voxel_pixels(img, (96.5, 92.5), ZOOM, (0.0, 0.0), 1.0, shape)


def test_client_shows_raw_probabilities_and_segmentation(embedded_seed_stack, expected, seed_raw, client_viewer):
    sources = requests.get(f"{embedded_seed_stack.gateway_url}/neuroglancer").json()
    colors = np.array([(255, 0, 0), (0, 255, 0)], float)
    wants = {
        "segmentation": colors[np.argmax(expected, -1)],
        "prediction": np.tensordot(expected.astype(float), colors, axes=([-1], [0])),
        "raw": np.repeat(seed_raw[..., None], 3, -1).astype(float),
        "uncertainty": np.repeat(np.clip(uncertainty(expected), 0, 1) * 255, 3, -1).astype(float),
    }
    for layer, want in wants.items():
        img = shot(client_viewer, sources, layer)
        shown, y, x = voxels(img, seed_raw.shape)
        close = np.abs(shown - want[y, x]).max(-1) <= 3
        assert len(shown) > 50000 and close.mean() > 0.99, (layer, len(shown), close.mean())


def test_gateway_links_to_the_packaged_client(embedded_seed_stack):
    g = embedded_seed_stack.gateway_url
    sources = requests.get(f"{g}/neuroglancer").json()
    assert sources["neuroglancer_link"] == f"{g}/neuroglancer/app/"
    assert sources["public_neuroglancer_link"].startswith("https://neuroglancer-demo.appspot.com/#!")
    r = requests.get(sources["neuroglancer_link"], allow_redirects=False)
    assert r.status_code == 302 and "/v/" in r.headers["Location"]
    page = requests.get(r.headers["Location"])  # the client itself, from this machine
    assert page.status_code == 200 and "<script" in page.text and "neuroglancer" in page.text
    script = page.text.split('src="')[-1].split('"')[0]
    assert requests.get(r.headers["Location"] + script).status_code == 200


def test_uncertainty_and_features_sources(embedded_seed_stack, expected, seed_project_path, seed_raw):
    sources = requests.get(f"{embedded_seed_stack.gateway_url}/neuroglancer").json()
    feats = PixelClassifier(load_project(seed_project_path)).features(seed_raw)
    info = requests.get(sources["features"].removeprefix("precomputed://") + "/info").json()
    assert info["num_channels"] == feats.shape[-1] == 33 and info["data_type"] == "float32"
    body = requests.get(sources["features"].removeprefix("precomputed://") + "/s0/0-64_64-128_0-1").content
    got = np.frombuffer(body, "<f4").reshape(33, 64, 64)  # channel, y, x (x fastest)
    np.testing.assert_array_equal(np.moveaxis(got, 0, -1), feats[64:128, 0:64])
    body = requests.get(sources["uncertainty"].removeprefix("precomputed://") + "/s0/0-64_0-64_0-1").content
    np.testing.assert_array_equal(np.frombuffer(body, "<f4").reshape(64, 64), uncertainty(expected[:64, :64])[..., 0])


def test_precomputed_scales_and_segmentation_info(embedded_seed_stack, expected, seed_raw):
    sources = requests.get(f"{embedded_seed_stack.gateway_url}/neuroglancer").json()
    seg = requests.get(sources["segmentation"].removeprefix("precomputed://") + "/info").json()
    assert seg["type"] == "segmentation" and seg["data_type"] == "uint8" and seg["num_channels"] == 1
    assert [s["size"] for s in seg["scales"]] == [[185, 193, 1], [93, 97, 1], [47, 49, 1]]
    assert [s["resolution"] for s in seg["scales"]] == [[1, 1, 1], [2, 2, 1], [4, 4, 1]]
    url = sources["raw"].removeprefix("precomputed://")
    body = requests.get(f"{url}/s1/0-64_64-97_0-1").content  # a chunk of s1: every 2nd pixel
    got = np.frombuffer(body, np.uint8).reshape(33, 64)
    np.testing.assert_array_equal(got, seed_raw[128:193:2, 0:128:2])
    assert requests.get(f"{url}/s3/0-1_0-1_0-1").status_code == 404
