"""Every shipped ilastik project served as shipped (raw file exactly as it is in the folder, no conversion)
through ``python -m ilastikbackend serve``, its whole-image prediction over HTTP compared with the
probabilities ilastik itself exported."""

from __future__ import annotations

import io
import json

import h5py
import numpy as np
import pytest
import requests
from stack import REPO, Service, free_port

FIXTURES = REPO.parent / "shared" / "fixtures"
CATALOGUE = json.loads((FIXTURES / "fixtures.json").read_text())
NAMES = sorted(k for k in CATALOGUE if not k.startswith("_"))

# What each engine must reach against ilastik's own export: (max |dp|, argmax flips allowed).
# ilastik < 1.3 exported vigra features: equal up to float summation order.
VIGRA_BOUND = (1e-6, 0)
# ilastik >= 1.3 exported fastfilters features: the fastfilters engine reproduces them bit for bit in 2D. In 3D
# ilastik's export was made on a CPU whose rcpps differs from this one (its 3D eigenvalue solver uses it); the
# real library leaves 4 flipped pixels of 262144 here, and so may we (ISSUE 10).
FASTFILTERS_BOUND = {2: (0.0, 0), 3: (0.1, 4)}


def reference(entry: dict) -> np.ndarray:
    path = FIXTURES / entry["reference"]
    if path.suffix == ".npy":
        return np.load(path)
    with h5py.File(path, "r") as f:
        return f[entry["reference_dataset"]][()]


@pytest.fixture(scope="module", params=NAMES)
def served(request, tmp_path_factory):
    entry = CATALOGUE[request.param]
    ports = [free_port() for _ in range(3)]
    argv = ["-m", "ilastikbackend", "serve", "--project", str(FIXTURES / entry["project"]),
            "--raw-data-file", str(FIXTURES / entry["raw"]), "--dataprovider-port", str(ports[0]),
            "--pixelclassification-port", str(ports[1]), "--gateway-port", str(ports[2]), "--workers", "2"]  # fmt: skip
    if "raw_dataset" in entry:
        argv += ["--raw-data-path", entry["raw_dataset"]]
    service = Service(request.param, argv, tmp_path_factory.mktemp(request.param), f"http://127.0.0.1:{ports[2]}")
    service.wait_ready(120)
    yield request.param, entry, service
    service.stop()


def test_served_as_shipped_equals_ilastiks_export(served):
    name, entry, service = served
    info = requests.get(f"{service.url}/prediction/info", timeout=30).json()
    expected = reference(entry)
    region = ([0] * (expected.ndim - 1), list(expected.shape[:-1]))
    query = f"extents_min={'_'.join(map(str, region[0]))}&extents_max={'_'.join(map(str, region[1]))}"
    r = requests.get(f"{service.url}/prediction/npy/roi?{query}", timeout=600)
    assert r.status_code == 200, (name, r.text[:500], service.log())
    got = np.load(io.BytesIO(r.content))
    assert r.headers["X-Axes"] == entry["reference_axes"], name
    assert got.shape == expected.shape and got.dtype == np.float32, (got.shape, expected.shape)
    diff = float(np.abs(got - expected).max())
    flips = int((got.argmax(-1) != expected.argmax(-1)).sum())
    engine = info["feature_engine"]
    assert engine == entry["feature_backend"], (name, engine, info["feature_engine_reason"])
    bound, allowed = VIGRA_BOUND if engine == "vigra" else FASTFILTERS_BOUND[len(info["dataset_shape"])]
    print(f"{name}: engine {engine}, max |dp| {diff:.2g}, {flips} argmax flips of {got[..., 0].size}")
    assert diff <= bound and flips <= allowed, (name, diff, flips)


def test_raw_data_is_read_with_the_projects_axes(served):
    name, entry, service = served
    dp = requests.get(f"{service.url}/prediction/info", timeout=10).json()["dataprovider_url"]
    meta = requests.get(f"{dp}/info", timeout=10).json()
    assert (meta["axes"], meta["dtype"]) == (entry["raw_axes"], entry["raw_dtype"]), (name, meta)
    assert meta["axes_source"], meta
