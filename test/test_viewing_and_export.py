"""The browser viewer (headless Chromium), the neuroglancer source (read back by tensorstore),
and batch export (command line and gateway job) against the stitched ROI predictions."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import requests
import tensorstore as ts
from PIL import Image
from stack import REPO, Stack
from stack import seed_stack as seed_stack_of
from test_services_e2e import decode

from ilastikbackend.services.encoding import axistags

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def seed_stack(tmp_path_factory, seed_project_path):
    stack = seed_stack_of(tmp_path_factory.mktemp("viewing"), seed_project_path, distributed=True)
    yield stack
    stack.stop()


def screenshot(url: str, path) -> np.ndarray:
    assert CHROMIUM, "chromium is needed for the viewer test (apt-get install chromium)"
    r = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         f"--user-data-dir={path.parent / 'chromium-profile'}", "--window-size=900,700",
         "--virtual-time-budget=20000", f"--screenshot={path}", url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert path.exists(), r.stderr[-2000:]
    # below the control bar (whose label swatches are coloured too): the canvas
    return np.asarray(Image.open(path).convert("RGB")).astype(int)[70:]


def colour_counts(img: np.ndarray) -> dict[str, int]:
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    return {
        "red": int(((r > 150) & (g < 90) & (b < 90)).sum()),
        "green": int(((g > 150) & (r < 90) & (b < 90)).sum()),
        "grey": int(((abs(r - g) < 3) & (abs(g - b) < 3) & (r > 20) & (r < 240)).sum()),
    }


def test_viewer_shows_the_overlay(seed_stack, expected, tmp_path):
    page = requests.get(f"{seed_stack.gateway_url}/viewer")
    assert page.status_code == 200 and "<canvas" in page.text and "http" not in page.text.split("<script>")[1][:50]
    full = colour_counts(screenshot(f"{seed_stack.gateway_url}/viewer?opacity=1", tmp_path / "full.png"))
    n = expected.shape[0] * expected.shape[1]
    mostly_red = int((expected[..., 0] > 0.8).sum())
    mostly_green = int((expected[..., 1] > 0.8).sum())
    # every confidently classified pixel shows in its label colour
    assert full["red"] >= 0.9 * mostly_red and full["green"] >= 0.9 * mostly_green, (full, mostly_red, mostly_green)
    assert full["red"] + full["green"] <= n * 1.05
    hidden = colour_counts(screenshot(f"{seed_stack.gateway_url}/viewer?opacity=1&hide=1", tmp_path / "hide.png"))
    assert hidden["green"] < 0.05 * full["green"] and hidden["red"] >= 0.9 * mostly_red
    raw_only = colour_counts(screenshot(f"{seed_stack.gateway_url}/viewer?opacity=0", tmp_path / "raw.png"))
    assert raw_only["red"] == 0 and raw_only["green"] == 0 and raw_only["grey"] > 0.8 * n


def canvas(img: np.ndarray) -> np.ndarray:
    """The drawn image: the box of pixels that differ from the page background (#222)."""
    mask = np.abs(img - 34).sum(-1) > 0
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return img[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def test_viewer_slices_3d_along_any_axis(stack_3d, tmp_path):
    stack, raw, expected = stack_3d
    colors = np.array([[255, 0, 0], [0, 0, 255], [255, 255, 0]], np.float64)
    planes = {"z": (7, expected[7]), "y": (20, expected[:, 20]), "x": (5, expected[:, :, 5])}
    for axis, (index, probs) in planes.items():
        url = f"{stack.gateway_url}/viewer?axis={axis}&slice={index}&opacity=1&zoom=4"
        drawn = canvas(screenshot(url, tmp_path / f"{axis}.png"))
        assert drawn.shape[:2] == (probs.shape[0] * 4, probs.shape[1] * 4), (axis, drawn.shape)
        want = np.tensordot(probs.astype(np.float64), colors, axes=([-1], [0])) / probs.sum(-1, keepdims=True)
        got = drawn[2::4, 2::4]
        assert np.abs(got - want).max() <= 3, axis  # the slice of the right axis, in the project's colours


def test_neuroglancer_source_read_by_tensorstore(seed_stack, seed_raw, expected):
    g = seed_stack.gateway_url
    sources = requests.get(f"{g}/neuroglancer").json()
    assert sources["public_neuroglancer_link"].startswith("https://neuroglancer-demo.appspot.com/#!")
    for layer, want in (("prediction", expected), ("raw", seed_raw[..., None])):
        url = sources[layer].removeprefix("precomputed://")
        r = requests.get(f"{url}/info")
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        store = ts.open(
            {"driver": "neuroglancer_precomputed", "kvstore": {"driver": "http", "base_url": url + "/"}}
        ).result()
        data = store.read().result()  # (x, y, z, channel)
        assert data.shape == (185, 193, 1, want.shape[-1])
        np.testing.assert_array_equal(np.transpose(data[:, :, 0, :], (1, 0, 2)), want)


def test_neuroglancer_3d_and_url_names_the_project(stack_3d, tmp_path):
    stack, raw, expected = stack_3d
    sources = requests.get(f"{stack.gateway_url}/neuroglancer").json()
    url = sources["prediction"].removeprefix("precomputed://")
    info = requests.get(f"{stack.gateway_url}/prediction/info").json()
    assert info["project_hash"][:16] in url
    store = ts.open(
        {"driver": "neuroglancer_precomputed", "kvstore": {"driver": "http", "base_url": url + "/"}}
    ).result()
    data = store[10:30, 3:40, 2:20].read().result()  # x, y, z, c
    np.testing.assert_array_equal(np.transpose(data, (2, 1, 0, 3)), expected[2:20, 3:40, 10:30])
    stale = url.replace(info["project_hash"][:16], "0" * 16)
    r = requests.get(f"{stale}/info")
    assert r.status_code == 404 and "changed" in r.json()["error"]
    bad = requests.get(f"{url}/s0/0-999_0-5_0-5")
    assert bad.status_code == 400 and "outside" in bad.json()["error"]


@pytest.mark.parametrize("fmt", ["hdf5", "zarr"])
def test_export_command_line(seed_stack, expected, tmp_path, fmt):
    out = tmp_path / ("pred.h5" if fmt == "hdf5" else "pred.zarr")
    r = subprocess.run([sys.executable, "-m", "ilastikbackend", "export", "--gateway", seed_stack.gateway_url,
                        "--output", str(out), "--parallel", "4"], cwd=REPO, capture_output=True, text=True,
                       timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "12/12 blocks" in r.stderr and "Mvoxel/s" in r.stderr  # the progress bar
    if fmt == "hdf5":
        with h5py.File(out) as f:
            got = f["exported_data"][()]
            assert "axistags" in f["exported_data"].attrs
    else:  # single-scale OME-Zarr (NGFF 0.4, ilastik's layout): the array is s0, in t, c, y, x
        spec = {"driver": "zarr", "kvstore": {"driver": "file", "path": f"{out}/s0/"}}
        got = np.transpose(ts.open(spec).result().read().result()[0, :, 0], (1, 2, 0))
    stitched = decode(
        requests.get(f"{seed_stack.gateway_url}/prediction/npy/roi?extents_min=0_0&extents_max=193_185"), "npy"
    )
    np.testing.assert_array_equal(got, stitched)
    np.testing.assert_array_equal(got, expected)


def test_export_command_line_region(seed_stack, expected, tmp_path):
    out = tmp_path / "part.h5"
    r = subprocess.run([sys.executable, "-m", "ilastikbackend", "export", "--gateway", seed_stack.gateway_url,
                        "--output", str(out), "--extents-min", "30_40", "--extents-max", "150_-1", "--quiet"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    with h5py.File(out) as f:
        np.testing.assert_array_equal(f["exported_data"][()], expected[30:150, 40:-1])
    bad = subprocess.run([sys.executable, "-m", "ilastikbackend", "export", "--gateway", seed_stack.gateway_url,
                          "--output", str(tmp_path / "x.h5"), "--extents-min", "0_0", "--extents-max", "999_5"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 2 and "outside the dataset" in bad.stderr


def test_export_command_line_sources_and_formats(seed_stack, expected, tmp_path):
    """Any source, any format of the export library: from --format, or from the output's extension."""
    import tifffile

    from ilastikbackend.core.derived import simple_segmentation, uncertainty

    def run(*args):
        return subprocess.run([sys.executable, "-m", "ilastikbackend", "export", "--gateway", seed_stack.gateway_url,
                               "--quiet", *args], cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip

    r = run("--source", "simple segmentation", "--output", str(tmp_path / "seg.tiff"))  # OME-TIFF, tzcyx
    assert r.returncode == 0 and "Simple Segmentation" in r.stdout, r.stderr
    with tifffile.TiffFile(tmp_path / "seg.tiff") as tif:
        np.testing.assert_array_equal(tif.series[0].asarray(), simple_segmentation(expected)[..., 0])
    r = run("--source", "uncertainty", "--format", "numpy", "--output", str(tmp_path / "u.data"),
            "--extents-min", "30_40", "--extents-max", "150_-1")  # fmt: skip
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "u.data"), uncertainty(expected[30:150, 40:-1]))
    for args, message in [
        (("--output", str(tmp_path / "x.xyz")), "cannot tell the format from --output"),
        (("--source", "Labels", "--output", str(tmp_path / "x.h5")), "unknown export source 'Labels'"),
        (("--format", "png sequence", "--output", str(tmp_path / "p.png")), "put {slice_index} in --output"),
        (("--format", "gif", "--output", str(tmp_path / "p.gif")), "'gif' stores 1 channel(s) per image"),
    ]:
        bad = run(*args)
        assert bad.returncode == 2 and message in bad.stderr, (args, bad.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg.tiff", "u.data"]  # nothing from the refused ones


def wait_job(gateway: str, job_id: str, states=("done", "failed", "cancelled")) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = requests.get(f"{gateway}/export/{job_id}").json()
        if status["state"] in states:
            return status
        time.sleep(0.05)
    raise AssertionError(f"export {job_id} did not finish: {status}")


@pytest.mark.parametrize("fmt", ["hdf5", "zarr"])
def test_export_job(stack_3d, fmt):
    stack, raw, expected = stack_3d
    g = stack.gateway_url
    r = requests.post(f"{g}/export?format={fmt}&extents_min=2_0_4&extents_max=22_40_36")
    assert r.status_code == 202, r.text
    status = wait_job(g, r.json()["id"])
    assert status["state"] == "done" and status["done_blocks"] == status["total_blocks"] > 1 and status["progress"] == 1
    result = requests.get(f"{g}/export/{status['id']}/result")
    assert result.status_code == 200
    if fmt == "hdf5":
        with h5py.File(io.BytesIO(result.content)) as f:
            got = f["exported_data"][()]
    else:
        import tempfile
        import zipfile

        with tempfile.TemporaryDirectory() as tmp:
            zipfile.ZipFile(io.BytesIO(result.content)).extractall(tmp)
            # single-scale OME-Zarr (NGFF 0.4, ilastik's layout): the array is s0, in t, c, z, y, x
            spec = {"driver": "zarr", "kvstore": {"driver": "file", "path": f"{tmp}/{status['id']}.zarr/s0/"}}
            got = np.transpose(ts.open(spec).result().read().result()[0], (1, 2, 3, 0))
    np.testing.assert_array_equal(got, expected[2:22, 0:40, 4:36])
    assert requests.delete(f"{g}/export/{status['id']}").json()["removed"]
    assert requests.get(f"{g}/export/{status['id']}").status_code == 404


def test_export_job_cancel(tmp_path, project_3d):
    """A large export on one slow in-process worker, cancelled while it runs."""
    path, _ = project_3d
    import projects

    raw = projects.blobs((64, 128, 128), seed=51, dtype=np.uint16, n_blobs=10)
    with h5py.File(tmp_path / "big.h5", "w") as f:
        f.create_dataset("data", data=raw).attrs["axistags"] = axistags("zyx")
    stack = Stack(tmp_path, project=path, raw_file=tmp_path / "big.h5", raw_path="data", distributed=False,
                  blocksize=32, extra=["--workers", "1"])  # fmt: skip
    try:
        g = stack.gateway_url
        job = requests.post(f"{g}/export").json()
        deadline = time.monotonic() + 60
        while requests.get(f"{g}/export/{job['id']}").json()["done_blocks"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        requests.delete(f"{g}/export/{job['id']}")
        assert requests.get(f"{g}/export/{job['id']}").status_code == 404
        assert requests.get(f"{g}/export").json() == []
        bad = requests.post(f"{g}/export?format=tif5")
        assert bad.status_code == 400 and "choose one of: zarr (= single-scale OME-Zarr), hdf5" in bad.json()["error"]
        bad = requests.post(f"{g}/export?format=tiff")  # one 2D image
        assert bad.status_code == 400 and "'tiff' holds 2D images" in bad.json()["error"]
        assert requests.get(f"{g}/export").json() == []
    finally:
        stack.stop()


def test_export_command_line_resumes_after_a_kill(tmp_path, project_3d):
    """Killed (SIGKILL) after a few blocks, run again: only the missing blocks are computed."""
    import signal

    import projects

    from ilastikbackend.export.resume import SUFFIX

    path, _ = project_3d
    raw = projects.blobs((64, 128, 128), seed=52, dtype=np.uint16, n_blobs=10)
    with h5py.File(tmp_path / "vol.h5", "w") as f:
        f.create_dataset("data", data=raw).attrs["axistags"] = axistags("zyx")
    stack = Stack(tmp_path, project=path, raw_file=tmp_path / "vol.h5", raw_path="data", distributed=False,
                  blocksize=32, extra=["--workers", "1"])  # fmt: skip
    out = tmp_path / "seg.h5"
    argv = [sys.executable, "-m", "ilastikbackend", "export", "--gateway", stack.gateway_url, "--output", str(out),
            "--source", "Simple Segmentation", "--parallel", "1", "--quiet"]  # fmt: skip
    try:
        first = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        done = Path(f"{out}-exported_data{SUFFIX}") / "done.bin"  # beside the output, named by its dataset
        deadline = time.monotonic() + 120
        while not (done.exists() and done.read_bytes().count(1) >= 3) and time.monotonic() < deadline:
            assert first.poll() is None, first.communicate()
            time.sleep(0.01)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(30)
        written = done.read_bytes().count(1)
        assert 3 <= written < 32, written  # 2 x 4 x 4 blocks of 32
        again = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr
        assert f"computed {32 - written} of 32 blocks, {written} done by an earlier run" in again.stdout
        assert not done.parent.exists()  # the record goes once the output is complete
        r = requests.get(f"{stack.gateway_url}/segmentation/npy/roi?extents_min=0_0_0&extents_max=64_128_128")
        with h5py.File(out) as f:
            np.testing.assert_array_equal(f["exported_data"][()], decode(r, "npy"))
    finally:
        stack.stop()
