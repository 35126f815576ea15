"""README's main job: `python -m ilastikbackend demo` serves the seed project and shows a prediction."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
from PIL import Image
from stack import REPO
from test_services_e2e import colour_blend

from ilastikbackend.core import PixelClassifier, load_project


def test_demo_writes_the_coloured_prediction(tmp_path, seed_project_path, seed_raw):
    out = tmp_path / "p.png"
    r = subprocess.run(
        [sys.executable, "-m", "ilastikbackend", "demo", "--once", "--output", str(out),
         "--seed-dir", str(seed_project_path.parent)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Label 1" in r.stdout and "/prediction/png/roi?extents_min=10_10&extents_max=100_150" in r.stdout
    expected = PixelClassifier(load_project(seed_project_path)).predict(seed_raw)[10:100, 10:150]
    got = np.asarray(Image.open(io.BytesIO(out.read_bytes())))
    np.testing.assert_array_equal(got, colour_blend(expected, [(255, 0, 0), (0, 255, 0)]))


def test_cli_without_command_explains_itself():
    r = subprocess.run([sys.executable, "-m", "ilastikbackend"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and "usage: ilastikbackend" in r.stderr
    h = subprocess.run([sys.executable, "-m", "ilastikbackend", "--help"], cwd=REPO, capture_output=True, text=True)
    assert h.returncode == 0 and "export" in h.stdout and "Predict a whole dataset" in h.stdout


def test_bad_project_fails_at_start_up(tmp_path):
    bad = tmp_path / "bad.ilp"
    bad.write_text("not a project")
    r = subprocess.run([sys.executable, "pixelclassificationservice.py", "--project", str(bad)], cwd=REPO,
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 2 and "not an HDF5 file" in r.stderr and "Traceback" not in r.stderr


def test_missing_dataset_fails_at_start_up(seed_project_path):
    raw = seed_project_path.parent / "raw.h5"
    r = subprocess.run([sys.executable, "dataproviderservice.py", "--raw-data-file", str(raw), "--raw-data-path",
                        "nope"], cwd=REPO, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 2 and "no dataset 'nope'" in r.stderr and "exported_data" in r.stderr


def test_taken_port_is_a_clear_start_up_error(seed_project_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        raw = seed_project_path.parent / "raw.h5"
        r = subprocess.run([sys.executable, "dataproviderservice.py", "--raw-data-file", str(raw), "--raw-data-path",
                            "exported_data", "--port", str(port)], cwd=REPO, capture_output=True, text=True,
                           timeout=60)  # fmt: skip
    assert r.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in r.stderr and "Traceback" not in r.stderr


def test_3d_project_on_2d_data_fails_at_start_up(tmp_path, project_3d, seed_project_path):
    from stack import Service, free_port

    port = free_port()
    dp = Service("dataprovider", ["dataproviderservice.py", "--raw-data-file", str(seed_project_path.parent / "raw.h5"),
                                  "--raw-data-path", "exported_data", "--port", str(port)], tmp_path,
                 f"http://127.0.0.1:{port}")  # fmt: skip
    try:
        dp.wait_ready()
        r = subprocess.run([sys.executable, "pixelclassificationservice.py", "--project", str(project_3d[0]),
                            "--dataprovider-ip", f"127.0.0.1:{port}", "--port", str(free_port())], cwd=REPO,
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    finally:
        dp.stop()
    assert r.returncode == 2 and "trained on 3D data" in r.stderr and "the dataset is 2D" in r.stderr
