"""End to end: every service a real process on loopback, against the real Redis and RabbitMQ
with two workers, and the same suite in the embedded mode (in-process cache and pool)."""

from __future__ import annotations

import io
import shutil

import h5py
import numpy as np
import pytest
import requests
import tifffile
from PIL import Image
from stack import Stack

FORMATS = ["raw", "npy", "tiff", "hdf5", "png"]


def decode(response: requests.Response, fmt: str) -> np.ndarray:
    assert response.status_code == 200, response.text
    body = response.content
    if fmt == "raw":
        shape = tuple(int(s) for s in response.headers["X-Shape"].split("_"))
        return np.frombuffer(body, dtype=np.dtype(response.headers["X-Dtype"])).reshape(shape)
    if fmt == "npy":
        return np.load(io.BytesIO(body))
    if fmt == "tiff":
        return tifffile.imread(io.BytesIO(body))
    if fmt == "hdf5":
        with h5py.File(io.BytesIO(body), "r") as f:
            return f["exported_data"][()]
    return np.asarray(Image.open(io.BytesIO(body)))


@pytest.fixture(scope="module", params=["distributed", "embedded"])
def seed_stack(request, tmp_path_factory, seed_project_path):
    tmp = tmp_path_factory.mktemp(f"stack-{request.param}")
    raw = tmp / "raw.h5"
    shutil.copy(seed_project_path.parent / "raw.h5", raw)  # a fresh dataset id: nothing cached yet
    stack = Stack(tmp, project=seed_project_path, raw_file=raw, distributed=request.param == "distributed")
    yield stack
    stack.stop()


def colour_blend(probs: np.ndarray, colors) -> np.ndarray:
    rgb = np.tensordot(probs.astype(np.float32), np.asarray(colors, np.float32), axes=([-1], [0]))
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("fmt", FORMATS)
def test_prediction_roi_every_format(seed_stack, expected, fmt):
    url = f"{seed_stack.gateway_url}/prediction/{fmt}/roi?extents_min=10_10&extents_max=100_150"
    got = decode(requests.get(url, timeout=120), fmt)
    want = expected[10:100, 10:150]
    if fmt == "png":
        np.testing.assert_array_equal(got, colour_blend(want, [(255, 0, 0), (0, 255, 0)]))
    else:
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)


def test_whole_image_through_gateway_equals_core(seed_stack, expected):
    r = requests.get(f"{seed_stack.gateway_url}/prediction/npy/roi?extents_min=0_0&extents_max=193_185", timeout=120)
    np.testing.assert_array_equal(decode(r, "npy"), expected)


def test_png_one_class_in_grey(seed_stack, expected):
    r = requests.get(f"{seed_stack.gateway_url}/prediction/png/roi?extents_min=0_0&extents_max=50_60&channel=1",
                     timeout=120)  # fmt: skip
    got = decode(r, "png")
    assert got.ndim == 2
    np.testing.assert_array_equal(got, np.clip(np.rint(expected[:50, :60, 1] * 255), 0, 255).astype(np.uint8))


def test_negative_maxima_count_from_the_end(seed_stack, expected):
    r = requests.get(f"{seed_stack.gateway_url}/prediction/npy/roi?extents_min=150_100&extents_max=-1_-5", timeout=120)
    np.testing.assert_array_equal(decode(r, "npy"), expected[150:-1, 100:-5])


@pytest.mark.parametrize("fmt", FORMATS)
def test_raw_roi_every_format(seed_stack, seed_raw, fmt):
    for base in (seed_stack.gateway_url, seed_stack.dataprovider_url):
        got = decode(requests.get(f"{base}/raw/{fmt}/roi?extents_min=5_7&extents_max=60_90", timeout=60), fmt)
        np.testing.assert_array_equal(got, seed_raw[5:60, 7:90])


def test_info_endpoints(seed_stack):
    g, d, p = seed_stack.gateway_url, seed_stack.dataprovider_url, seed_stack.pixelclassification_url
    assert requests.get(f"{g}/raw/info/dtype").text == "uint8"
    assert requests.get(f"{g}/raw/info/shape").text == "193_185"
    assert requests.get(f"{g}/raw/info/dim").text == "2"
    assert requests.get(f"{g}/prediction/info/numclasses").text == "2"
    assert requests.get(f"{p}/prediction/numclasses").text == "2"
    info = requests.get(f"{d}/info").json()
    assert info["shape"] == [193, 185] and info["axes"] == "yx" and info["channels"] == 1 and info["dtype"] == "uint8"
    setup = requests.get(f"{p}/prediction/info").json()
    assert setup["block_shape"] == [64, 64] and setup["num_blocks"] == 12
    assert setup["label_colors"] == [[255, 0, 0], [0, 255, 0]]


def test_blocks_from_the_pixelclassification_service(seed_stack, expected):
    p = seed_stack.pixelclassification_url
    # 193 x 185 in 64-blocks: a 4 x 3 grid, ids in C order
    block = decode(requests.get(f"{p}/prediction/npy/4", timeout=120), "npy")
    np.testing.assert_array_equal(block, expected[64:128, 64:128])
    last = decode(requests.get(f"{p}/prediction/npy/11", timeout=120), "npy")
    np.testing.assert_array_equal(last, expected[192:193, 128:185])
    roi = decode(requests.get(f"{p}/prediction/tiff/roi?extents_min=3_4&extents_max=70_80", timeout=120), "tiff")
    np.testing.assert_array_equal(roi, expected[3:70, 4:80])
    cached = requests.get(f"{p}/prediction/cachedblockids").json()
    assert {0, 1, 3, 4, 11} <= set(cached) and set(cached) <= set(range(12))


def test_every_service_documents_itself(seed_stack):
    for base in (seed_stack.gateway_url, seed_stack.dataprovider_url, seed_stack.pixelclassification_url):
        spec = requests.get(f"{base}/openapi.json").json()
        assert spec["openapi"].startswith("3.") and spec["paths"]
        page = requests.get(f"{base}/doc")
        assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
        assert "roi" in page.text and "http://" not in page.text.replace("http://www", "")  # no external assets


def test_bare_address_leads_to_the_docs(seed_stack):
    for base in (seed_stack.gateway_url, seed_stack.dataprovider_url, seed_stack.pixelclassification_url):
        r = requests.get(base + "/")
        assert r.status_code == 200 and r.url == base + "/doc" and "openapi.json" in r.text
    assert "href='viewer'" in requests.get(seed_stack.gateway_url + "/doc").text


def test_waitress_not_the_development_server(seed_stack):
    for base in (seed_stack.gateway_url, seed_stack.dataprovider_url, seed_stack.pixelclassification_url):
        assert "Werkzeug" not in requests.get(f"{base}/info" if base == seed_stack.dataprovider_url
                                              else f"{base}/openapi.json").headers.get("Server", "")  # fmt: skip


@pytest.mark.parametrize(
    "query,fragment",
    [
        ("extents_min=10_10", "missing query parameter 'extents_max'"),
        ("extents_min=a_10&extents_max=20_20", "must hold integers"),
        ("extents_min=10_10_3&extents_max=20_20_5", "2 spatial axes"),
        ("extents_min=-1_0&extents_max=20_20", "negative"),
        ("extents_min=30_0&extents_max=20_20", "empty or reversed"),
        ("extents_min=0_0&extents_max=500_20", "outside the dataset"),
    ],
)
def test_bad_regions_are_4xx_json(seed_stack, query, fragment):
    for base in (seed_stack.gateway_url, seed_stack.dataprovider_url, seed_stack.pixelclassification_url):
        kind = "raw" if base == seed_stack.dataprovider_url else "prediction"
        r = requests.get(f"{base}/{kind}/npy/roi?{query}", timeout=60)
        assert r.status_code == 400, r.text
        assert fragment in r.json()["error"]


def test_unknown_format_and_block(seed_stack):
    r = requests.get(f"{seed_stack.gateway_url}/prediction/jpeg/roi?extents_min=0_0&extents_max=5_5")
    assert r.status_code == 400 and "unknown format 'jpeg'" in r.json()["error"]
    r = requests.get(f"{seed_stack.pixelclassification_url}/prediction/npy/99")
    assert r.status_code == 404 and "block 99 does not exist" in r.json()["error"]
    r = requests.get(f"{seed_stack.pixelclassification_url}/prediction/npy/abc")
    assert r.status_code == 400 and "integer" in r.json()["error"]
    r = requests.get(f"{seed_stack.gateway_url}/nothing/here")
    assert r.status_code == 404 and r.json()["status"] == 404


def test_gateway_follows_a_restarted_pixelclassification_service(tmp_path, seed_project_path, seed_raw):
    """Restart the pixel classification service with an edited project: the gateway serves the new one
    (new cache keys, new neuroglancer URL) without being restarted itself."""
    import time

    import h5py
    from stack import Service

    project = tmp_path / "p.ilp"
    shutil.copy(seed_project_path, project)
    shutil.copy(seed_project_path.parent / "raw.h5", tmp_path / "raw.h5")
    stack = Stack(tmp_path, project=project, raw_file=tmp_path / "raw.h5", distributed=True, blocksize=64)
    try:
        g = stack.gateway_url
        before = decode(requests.get(f"{g}/prediction/npy/roi?extents_min=0_0&extents_max=50_50", timeout=60), "npy")
        source_before = requests.get(f"{g}/neuroglancer").json()["prediction"]
        with h5py.File(project, "a") as f:  # swap the two classes' probability channels
            f["PixelClassification/ClassifierForests/known_labels"][...] = [2, 1]
        pc = next(s for s in stack.services if s.name == "pixelclassification")
        argv = pc.proc.args[1:]
        pc.stop()
        stack.services.remove(pc)
        fresh = Service("pixelclassification", argv, tmp_path, stack.pixelclassification_url)
        stack.services.append(fresh)
        fresh.wait_ready()
        time.sleep(5.5)  # the gateway asks for the setup again every 5 s
        after = decode(requests.get(f"{g}/prediction/npy/roi?extents_min=0_0&extents_max=50_50", timeout=60), "npy")
        np.testing.assert_array_equal(after, before[..., ::-1])
        assert requests.get(f"{g}/neuroglancer").json()["prediction"] != source_before
    finally:
        stack.stop()
