"""Several datasets per running stack: files registered under the data provider's ``--data-root`` are served
under their own dataset id by every service (real service processes, real Redis and RabbitMQ workers), and
``headless --gateway`` exports any number of files through one stack."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import urllib.parse

import h5py
import numpy as np
import pytest
import requests
from headless_tools import headless, read_h5
from PIL import Image
from stack import Stack, forget_dataset

from ilastikbackend.core import PixelClassifier, load_project
from ilastikbackend.core.derived import simple_segmentation

CROP = (slice(20, 150), slice(30, 170))  # another shape than the seed image, so no block is shared by accident


@pytest.fixture(scope="module")
def data_root(tmp_path_factory, seed_project_path, seed_raw):
    root = tmp_path_factory.mktemp("data-root")
    shutil.copy(seed_project_path.parent / "raw.h5", root / "raw.h5")
    with h5py.File(root / "crop.h5", "w") as f:
        f["volume/data"] = seed_raw[CROP]
    Image.fromarray(np.ascontiguousarray(seed_raw[CROP].T)).save(root / "turned.png")  # 140x130, yx
    Image.fromarray(np.stack([seed_raw] * 3, axis=-1)).save(root / "rgb.png")  # 3 channels: not for this project
    outside = tmp_path_factory.mktemp("outside")
    shutil.copy(seed_project_path.parent / "raw.h5", outside / "secret.h5")
    os.symlink(outside / "secret.h5", root / "link.h5")
    return root


@pytest.fixture(scope="module")
def stack(tmp_path_factory, seed_project_path, data_root):
    """Distributed: workers take tasks from RabbitMQ and fetch raw data (with the dataset id) over HTTP."""
    s = Stack(tmp_path_factory.mktemp("stack"), project=seed_project_path, raw_file=data_root / "raw.h5",
              distributed=True, blocksize=64, dataprovider_extra=["--data-root", str(data_root)])  # fmt: skip
    registered: list[str] = []
    s.registered = registered
    yield s
    s.stop()
    for dataset in registered:
        forget_dataset(s.redis_url, dataset)


@pytest.fixture(scope="module")
def classifier(seed_project_path):
    return PixelClassifier(load_project(seed_project_path))


def register(stack, path: str, **params) -> requests.Response:
    r = requests.post(f"{stack.gateway_url}/datasets", params={"path": path, **params}, timeout=60)
    if r.status_code == 200:
        stack.registered.append(r.json()["dataset_id"])
    return r


def npy(r: requests.Response) -> np.ndarray:
    assert r.status_code == 200, r.text
    return np.load(io.BytesIO(r.content))


def test_a_registered_file_is_served_by_every_service(stack, data_root, seed_raw, classifier):
    default = requests.get(f"{stack.gateway_url}/prediction/info", timeout=30).json()
    r = register(stack, "crop.h5/volume/data")
    assert r.status_code == 200, r.text + stack.logs()
    info = r.json()
    dataset = info["dataset_id"]
    assert dataset != default["dataset_id"] and info["shape"] == [130, 140] and info["axes"] == "yx"
    assert register(stack, str(data_root / "crop.h5/volume/data")).json()["dataset_id"] == dataset  # idempotent

    crop = seed_raw[CROP]
    whole = f"extents_min=0_0&extents_max=130_140&dataset={dataset}"
    raw = requests.get(f"{stack.gateway_url}/raw/raw/roi?{whole}", timeout=60)
    assert raw.status_code == 200 and raw.headers["X-Dataset-Id"] == dataset
    np.testing.assert_array_equal(np.frombuffer(raw.content, np.uint8).reshape(130, 140), crop)
    assert requests.get(f"{stack.gateway_url}/raw/info/shape?dataset={dataset}", timeout=30).text == "130_140"

    expected = classifier.predict(crop)  # the crop as an image of its own: its own borders
    ours = npy(requests.get(f"{stack.gateway_url}/prediction/npy/roi?{whole}", timeout=300))
    np.testing.assert_array_equal(ours, expected)
    part = npy(requests.get(f"{stack.pixelclassification_url}/prediction/npy/roi?extents_min=70_5&"
                            f"extents_max=130_100&dataset={dataset}", timeout=300))  # fmt: skip
    np.testing.assert_array_equal(part, expected[70:130, 5:100])
    seg = npy(requests.get(f"{stack.gateway_url}/segmentation/npy/roi?{whole}", timeout=300))
    np.testing.assert_array_equal(seg, simple_segmentation(expected))

    setup = requests.get(f"{stack.gateway_url}/prediction/info?dataset={dataset}", timeout=30).json()
    assert setup["dataset_id"] == dataset and setup["dataset_shape"] == [130, 140]
    assert setup["project_hash"] == default["project_hash"] and setup["block_shape"] == default["block_shape"]
    cached = requests.get(f"{stack.pixelclassification_url}/prediction/cachedblockids?dataset={dataset}", timeout=30)
    assert cached.json() == list(range(9))  # 130x140 in blocks of 64: the crop's own 3 x 3 blocks, in Redis
    assert any("block_done" in w.log() for w in stack.workers)  # computed by the RabbitMQ workers

    # the default dataset is served as before, unchanged by the registration
    seed = npy(requests.get(f"{stack.gateway_url}/prediction/npy/roi?extents_min=0_0&extents_max=193_185",
                            timeout=300))  # fmt: skip
    np.testing.assert_array_equal(seed, classifier.predict(seed_raw))
    listed = requests.get(f"{stack.gateway_url}/datasets", timeout=30).json()
    assert [d["default"] for d in listed][:1] == [True] and dataset in [d["dataset_id"] for d in listed]


def test_other_formats_and_explicit_axes(stack, seed_raw, classifier):
    """A PNG, and axes given explicitly (the headless client passes the axes it decided)."""
    r = register(stack, "turned.png", axes="xyc")  # a grey PNG has a channel axis of one
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["spatial_shape"] == [130, 140] and info["native_axes"] == "xyc" and info["channels"] == 1
    got = npy(requests.get(f"{stack.gateway_url}/prediction/npy/roi?extents_min=0_0&extents_max=130_140"
                           f"&dataset={info['dataset_id']}", timeout=300))  # fmt: skip
    np.testing.assert_array_equal(got, classifier.predict(seed_raw[CROP]))


@pytest.mark.parametrize(
    "path, status, words",
    [
        ("/etc/hostname", 403, "not under the data root"),
        ("../outside/secret.h5", 403, "not under the data root"),
        ("link.h5", 403, "not under the data root"),  # a symbolic link out of the root
        ("/*/hostname", 403, "not under the data root"),
        ("missing.h5", 422, "cannot read"),
        ("rgb.png", 422, "channel"),
        ("", 400, "give the file"),
        ("raw\x00.h5", 400, "not a file name"),
        ("a" * 5000, 400, "not a file name"),
    ],
)
def test_registering_what_may_not_or_cannot_be_served(stack, path, status, words):
    r = register(stack, path)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]


@pytest.mark.parametrize(
    "endpoint",
    ["/raw/raw/roi?extents_min=0_0&extents_max=2_2", "/prediction/npy/roi?extents_min=0_0&extents_max=2_2",
     "/segmentation/png/roi?extents_min=0_0&extents_max=2_2", "/prediction/info?", "/raw/info/shape?",
     "/features/npy/roi?extents_min=0_0&extents_max=2_2"],
)  # fmt: skip
def test_unknown_and_malformed_dataset_ids(stack, endpoint):
    sep = "&" if "?" in endpoint and not endpoint.endswith("?") else ""
    r = requests.get(f"{stack.gateway_url}{endpoint}{sep}dataset=0123456789abcdef", timeout=30)
    assert r.status_code == 404 and "register" in r.json()["error"], r.text
    r = requests.get(f"{stack.gateway_url}{endpoint}{sep}dataset=../../etc", timeout=30)
    assert r.status_code == 400 and "16 hex digits" in r.json()["error"], r.text


def test_cross_origin_registration_is_refused(stack):
    r = requests.post(f"{stack.gateway_url}/datasets", params={"path": "crop.h5/volume/data"},
                      headers={"Origin": "http://evil.example"}, timeout=30)  # fmt: skip
    assert r.status_code == 403 and "cross-origin" in r.json()["error"]
    r = requests.post(f"{stack.dataprovider_url}/datasets", params={"path": "crop.h5/volume/data"},
                      headers={"Origin": "http://evil.example"}, timeout=30)  # fmt: skip
    assert r.status_code == 403


def _registry(root, default_file, **options):
    from ilastikbackend.data import open_dataset
    from ilastikbackend.services.datasets import DatasetRegistry

    return DatasetRegistry(open_dataset(str(default_file)), str(root), **options)


def test_a_changed_file_is_not_served_under_its_old_id(data_root, tmp_path, seed_raw):
    from ilastikbackend.errors import ApiError

    root = tmp_path / "root"
    root.mkdir()
    for name in ("a.h5", "b.h5"):
        with h5py.File(root / name, "w") as f:
            f["data"] = seed_raw[:100, :90]
    registry = _registry(root, data_root / "crop.h5/volume/data", max_open=1)
    a = registry.register("a.h5/data").info.dataset_id
    registry.register("b.h5/data")  # a is closed now (one open file at a time), and opened again when asked for
    assert registry.get(a).info.dataset_id == a
    registry.register("b.h5/data")
    st = os.stat(root / "a.h5")
    os.utime(root / "a.h5", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # rewritten since it was registered
    with pytest.raises(ApiError) as err:
        registry.get(a)
    assert err.value.status == 409 and "changed since it was registered" in err.value.message


def test_registrations_beyond_the_bound_are_forgotten(data_root, tmp_path, seed_raw):
    from ilastikbackend.errors import ApiError

    root = tmp_path / "root"
    root.mkdir()
    ids = []
    for i in range(3):
        with h5py.File(root / f"{i}.h5", "w") as f:
            f["data"] = seed_raw[: 50 + i, :60]
    registry = _registry(root, data_root / "crop.h5/volume/data", max_datasets=2)
    for i in range(3):
        ids.append(registry.register(f"{i}.h5/data").info.dataset_id)
    with pytest.raises(ApiError) as err:
        registry.get(ids[0])
    assert err.value.status == 404 and "register its file" in err.value.message
    assert registry.get(ids[2]).info.shape == (52, 60)
    assert registry.get(None) is registry.default


def test_without_a_data_root_nothing_can_be_registered(tmp_path, seed_project_path):
    s = Stack(tmp_path, project=seed_project_path, raw_file=seed_project_path.parent / "raw.h5", distributed=False)
    try:
        r = requests.post(f"{s.gateway_url}/datasets", params={"path": "raw.h5"}, timeout=30)
        assert r.status_code == 403 and "--data-root" in r.json()["error"]
    finally:
        s.stop()


def test_headless_exports_many_files_through_one_stack(stack, data_root, tmp_path, seed_project_path):
    """Every file through the running stack equals the embedded run's file; the served one and others alike."""
    inputs = [f"{data_root / 'raw.h5'}/exported_data", f"{data_root / 'crop.h5'}/volume/data"]
    flags = ["--project", str(seed_project_path), "--output_format", "hdf5"]
    (tmp_path / "embedded").mkdir()
    (tmp_path / "gateway").mkdir()
    r = headless(*flags, "--blocksize", "64", "--output_filename_format", str(tmp_path / "embedded/{nickname}"),
                 *inputs)  # fmt: skip
    assert r.code == 0, r.err
    r = headless(*flags, "--gateway", stack.gateway_url, "--output_filename_format",
                 str(tmp_path / "gateway/{nickname}"), *inputs)  # fmt: skip
    assert r.code == 0, r.err + stack.logs()
    names = sorted(p.name for p in (tmp_path / "gateway").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "embedded").iterdir()) and len(names) == 2
    for name in names:
        ours, attrs = read_h5(tmp_path / "gateway" / name)
        theirs, _ = read_h5(tmp_path / "embedded" / name)
        assert ours.shape == theirs.shape and ours.shape[:2] in ((193, 185), (130, 140))
        np.testing.assert_array_equal(ours, theirs)


def test_headless_outside_the_data_root_says_why(stack, tmp_path, seed_project_path, seed_raw):
    with h5py.File(tmp_path / "elsewhere.h5", "w") as f:
        f["data"] = seed_raw[:50, :60]
    r = headless("--project", str(seed_project_path), "--gateway", stack.gateway_url,
                 "--output_filename_format", str(tmp_path / "o"), f"{tmp_path / 'elsewhere.h5'}/data")  # fmt: skip
    assert r.code == 2 and "not under the data root" in r.err and "--data-root" in r.err, r.err


def test_viewer_and_neuroglancer_show_a_registered_dataset(stack, seed_raw, classifier, tmp_path):
    from test_viewing_and_export import canvas, screenshot

    dataset = register(stack, "crop.h5/volume/data").json()["dataset_id"]
    expected = classifier.predict(seed_raw[CROP])
    labels = simple_segmentation(expected)[..., 0]
    drawn = canvas(screenshot(f"{stack.gateway_url}/viewer?dataset={dataset}&show=segmentation&opacity=1",
                              tmp_path / "viewer.png"))  # fmt: skip
    assert drawn.shape[:2] == (130, 140)  # the crop, not the started dataset (193 x 185)
    assert np.abs(drawn - np.array([[255, 0, 0], [0, 255, 0]])[labels - 1]).max() <= 1

    sources = requests.get(f"{stack.gateway_url}/neuroglancer?dataset={dataset}", timeout=30).json()
    assert dataset in urllib.parse.unquote(sources["neuroglancer_link"])
    base = sources["prediction"].removeprefix("precomputed://")
    assert dataset in base and dataset in sources["raw"]
    info = requests.get(f"{base}/info", timeout=30).json()
    assert info["scales"][0]["size"] == [140, 130, 1] and info["num_channels"] == 2
    body = requests.get(f"{base}/s0/0-64_64-128_0-1", timeout=120).content
    chunk = np.frombuffer(body, np.float32).reshape(2, 1, 64, 64)  # channel, z, y, x (x fastest)
    np.testing.assert_array_equal(np.moveaxis(chunk[:, 0], 0, -1), expected[64:128, 0:64])
    raw = sources["raw"].removeprefix("precomputed://")
    body = requests.get(f"{raw}/s0/64-128_0-64_0-1", timeout=120).content
    np.testing.assert_array_equal(np.frombuffer(body, np.uint8).reshape(64, 64), seed_raw[CROP][0:64, 64:128])


def test_napari_opens_a_registered_dataset_by_its_url(stack, seed_raw, classifier):
    """``napari http://host:8080/?dataset=<id>``: the client keeps the dataset of the URL for every request."""
    pytest.importorskip("napari")
    import npe2
    from napari.components import ViewerModel

    npe2.PluginManager.instance().discover()  # what napari does when it starts: finds our entry point

    dataset = register(stack, "crop.h5/volume/data").json()["dataset_id"]
    viewer = ViewerModel()
    layers = {layer.name: layer for layer in viewer.open(f"{stack.gateway_url}/?dataset={dataset}",
                                                         plugin="ilastikbackend")}  # fmt: skip
    np.testing.assert_array_equal(np.asarray(layers["raw"].data[0]), seed_raw[CROP])
    expected = classifier.predict(seed_raw[CROP])
    np.testing.assert_array_equal(np.asarray(layers["Prediction for Label 2"].data[0]), expected[..., 1])
    np.testing.assert_array_equal(np.asarray(layers["Simple Segmentation"].data[1]),
                                  simple_segmentation(expected)[::2, ::2, 0])  # fmt: skip


def test_export_jobs_of_a_registered_dataset(stack, seed_raw, classifier):
    from test_export_jobs import export, result

    dataset = register(stack, "crop.h5/volume/data").json()["dataset_id"]
    status = export(stack.gateway_url, source="Simple Segmentation", dataset=dataset)
    assert status["shape"][:2] == [130, 140], status
    with h5py.File(io.BytesIO(result(stack.gateway_url, status).content)) as f:
        got = f["exported_data"][()]
    np.testing.assert_array_equal(got, simple_segmentation(classifier.predict(seed_raw[CROP])))
    r = requests.post(f"{stack.gateway_url}/export", params={"dataset": "0123456789abcdef"}, timeout=30)
    assert r.status_code == 404 and "register" in r.json()["error"]


def test_3d_volumes_of_other_depths(tmp_path, project_3d):
    """A registered volume of another depth is computed (by the RabbitMQ workers) with the classifier of its own
    depth; one too thin for the project's kernels is refused when it is registered, naming the kernel and axis."""
    from ilastikbackend.services.encoding import axistags

    path, raw = project_3d
    volume = raw[..., 0]
    with h5py.File(tmp_path / "vol.h5", "w") as f:
        f.create_dataset("volume/data", data=volume).attrs["axistags"] = axistags("zyx")
        f.create_dataset("slab/data", data=volume[4:20, :30]).attrs["axistags"] = axistags("zyx")
        f.create_dataset("thin/data", data=volume[8:14]).attrs["axistags"] = axistags("zyx")
    s = Stack(tmp_path, project=path, raw_file=tmp_path / "vol.h5", raw_path="volume/data", distributed=True,
              blocksize=16, dataprovider_extra=["--data-root", str(tmp_path)])  # fmt: skip
    dataset = None
    try:
        r = requests.post(f"{s.gateway_url}/datasets", params={"path": "vol.h5/thin/data"}, timeout=60)
        assert r.status_code == 422, r.text
        assert "too small for Gaussian Smoothing at scale 3.5" in r.json()["error"] and "z axis (6 pixels)" in r.text
        r = requests.post(f"{s.gateway_url}/datasets", params={"path": "vol.h5/slab/data"}, timeout=60)
        assert r.status_code == 200, r.text + s.logs()
        dataset = r.json()["dataset_id"]
        got = npy(requests.get(f"{s.gateway_url}/prediction/npy/roi?extents_min=0_0_0&extents_max=16_30_36"
                               f"&dataset={dataset}", timeout=300))  # fmt: skip
    finally:
        s.stop()
        if dataset:
            forget_dataset(s.redis_url, dataset)
    expected = PixelClassifier(load_project(path), z_size=16).predict(volume[4:20, :30])
    np.testing.assert_array_equal(got, expected)


def test_a_dataset_too_small_for_the_project_fails_at_start_up(tmp_path, seed_project_path, seed_raw):
    with h5py.File(tmp_path / "small.h5", "w") as f:
        f["data"] = seed_raw[:10, :50]
    r = subprocess.run([sys.executable, "-m", "ilastikbackend", "serve", "--project", str(seed_project_path),
                        "--raw-data-file", f"{tmp_path / 'small.h5'}/data", "--gateway-port", "0",
                        "--dataprovider-port", "0", "--pixelclassification-port", "0"],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "too small for Gaussian Smoothing at scale 3.5" in r.stderr and "y axis (10 pixels)" in r.stderr
