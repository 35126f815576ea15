"""Hostile use of real processes: many large requests at once, export floods, caches too small or
full, broken inputs at start-up, strict parameters, nothing left behind (issue: "hostile input survived")."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import redis as redis_client
import requests
from brokers import ThrowawayRedis
from stack import REPO, Service, Stack, free_port

from ilastikbackend.core import PixelClassifier, load_project

SEED = REPO.parent / "shared" / "seed-data"
MiB = 1 << 20


def serve(tmp: Path, raw: Path, *extra: str, project: Path = SEED / "pc.ilp", env: dict | None = None):
    """``ilastikbackend serve`` as a real process; returns (service, gateway URL, data provider URL)."""
    ports = [free_port() for _ in range(3)]
    argv = ["-m", "ilastikbackend", "serve", "--project", str(project), "--raw-data-file", str(raw),
            "--raw-data-path", "exported_data", "--dataprovider-port", str(ports[0]),
            "--pixelclassification-port", str(ports[1]), "--gateway-port", str(ports[2]), *extra]  # fmt: skip
    gateway = f"http://127.0.0.1:{ports[2]}"
    service = Service("serve", argv, tmp, gateway, env=env)
    service.wait_ready(120)
    return service, gateway, f"http://127.0.0.1:{ports[0]}"


def entries(folder: Path) -> list[str]:
    return sorted(os.listdir(folder)) if folder.exists() else []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_nothing_is_left_in_the_temp_dir(tmp_path, sig):
    temp = tmp_path / "temp"
    temp.mkdir()
    before = entries(temp)
    service, gateway, _ = serve(tmp_path, SEED / "raw.h5", "--temp-dir", str(temp))
    try:
        job = requests.post(f"{gateway}/export?format=zarr", timeout=30).json()
        deadline = time.monotonic() + 60
        while requests.get(f"{gateway}/export/{job['id']}", timeout=10).json()["state"] != "done":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        (scratch,) = entries(temp)
        assert scratch.startswith(f"ilastikbackend-{service.proc.pid}-")
        assert entries(temp / scratch / "exports") == [f"{job['id']}.zarr"]
    finally:
        os.killpg(service.proc.pid, sig)
        service.proc.wait(30)
    assert entries(temp) == before == []


def test_default_temp_dir_is_the_systems_and_is_cleaned_too(tmp_path):
    system_temp = tmp_path / "system-temp"
    system_temp.mkdir()
    service, gateway, _ = serve(tmp_path, SEED / "raw.h5", env={"TMPDIR": str(system_temp)})
    try:
        job = requests.post(f"{gateway}/export", timeout=30).json()
        while requests.get(f"{gateway}/export/{job['id']}", timeout=10).json()["state"] == "running":
            time.sleep(0.1)
        assert len(entries(system_temp)) == 1
    finally:
        service.stop()
    assert entries(system_temp) == []


def test_workers_download_with_the_token_into_their_scratch_folder(tmp_path):
    temp = tmp_path / "temp"
    stack = Stack(tmp_path, project=SEED / "pc.ilp", raw_file=SEED / "raw.h5", distributed=True, workers=0)
    try:
        stack.add_worker(["--temp-dir", str(temp)])
        r = requests.get(f"{stack.gateway_url}/prediction/npy/roi?extents_min=0_0&extents_max=64_64", timeout=120)
        assert r.status_code == 200, r.text
        (scratch,) = entries(temp)
        assert [f for f in entries(temp / scratch / "projects") if f.endswith(".ilp")]
        pc = stack.pixelclassification_url
        assert requests.get(f"{pc}/project/ilp", timeout=10).status_code == 403
        wrong = requests.get(f"{pc}/project/ilp", headers={"Authorization": "Bearer nope"}, timeout=10)
        assert wrong.status_code == 403 and "download token" in wrong.json()["error"]
        right = requests.get(
            f"{pc}/project/ilp", headers={"Authorization": f"Bearer {stack.project_token}"}, timeout=10
        )
        assert right.status_code == 200 and right.content == (SEED / "pc.ilp").read_bytes()
    finally:
        stack.stop()
    assert entries(temp) == []


def test_without_a_token_the_project_is_handed_to_nobody(tmp_path):
    service, gateway, _ = serve(tmp_path, SEED / "raw.h5")
    try:
        pc = requests.get(f"{gateway}/prediction/info", timeout=10).json()["project_url"]
        r = requests.get(pc, headers={"Authorization": "Bearer "}, timeout=10)
        assert r.status_code == 403 and "without --project-download-token" in r.json()["error"]
        doc = requests.get(f"{gateway}/doc", timeout=10).text
        assert "this machine only (the default)" in doc
    finally:
        service.stop()


def test_export_flood_cross_origin_and_disk_bound(tmp_path):
    service, gateway, _ = serve(tmp_path, SEED / "raw.h5", "--export-max-mib", "2", "--export-max-jobs", "2")
    try:
        evil = requests.post(f"{gateway}/export", headers={"Origin": "http://evil.example"}, timeout=10)
        assert evil.status_code == 403 and "cross-origin" in evil.json()["error"]
        answers = [requests.post(f"{gateway}/export", timeout=30) for _ in range(20)]
        codes = [a.status_code for a in answers]
        # Each is estimated at 1.3 MiB until done (then its real size counts); 2 MiB of room.
        assert codes[0] == 202 and set(codes) <= {202, 429, 507} and codes.count(507) >= 10, codes
        refused = next(a for a in answers if a.status_code == 507)
        assert "MiB for exports are in use" in refused.json()["error"]
        jobs = requests.get(f"{gateway}/export", timeout=10).json()
        assert len(jobs) == codes.count(202) <= 3
    finally:
        service.stop()


def big_image(path: Path, shape=(3000, 3000)) -> Path:
    rng = np.random.default_rng(1)
    with h5py.File(path, "w") as f:
        f["exported_data"] = (rng.random(shape) * 60 + np.linspace(0, 180, shape[1])).astype(np.uint8)
    return path


def rss_peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def test_concurrent_maximum_size_requests_stay_within_the_memory_budget(tmp_path):
    """Eight concurrent maximum-size requests (72 MiB of probabilities each, in formats that stream and formats
    that do not) against a 256 MiB budget: every one is answered, correctly, and the process's peak RSS
    stays under what it needed before plus the budget plus a margin."""
    raw = big_image(tmp_path / "big.h5")
    budget = 256
    service, gateway, _ = serve(tmp_path, raw, "--memory-budget-mib", str(budget), "--max-roi-voxels", "9000000",
                                "--cache-mib", "512", "--workers", "2", "--blocksize", "500")  # fmt: skip
    whole = "extents_min=0_0&extents_max=3000_3000"
    try:
        first = requests.get(f"{gateway}/prediction/npy/roi?{whole}", timeout=600)  # computes every block once
        assert first.status_code == 200, first.text
        expected = np.load(__import__("io").BytesIO(first.content))
        del first
        Path(f"/proc/{service.proc.pid}/clear_refs").write_text("5")  # restart the peak-RSS count here
        baseline = rss_peak_mib(service.proc.pid)
        formats = ["npy", "tiff", "raw", "hdf5"] * 2
        results: list = [None] * len(formats)

        def fetch(i, fmt):
            results[i] = requests.get(f"{gateway}/prediction/{fmt}/roi?{whole}", timeout=600)

        threads = [threading.Thread(target=fetch, args=(i, f)) for i, f in enumerate(formats)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        peak = rss_peak_mib(service.proc.pid)
    finally:
        service.stop()
    for fmt, r in zip(formats, results):
        assert r is not None and r.status_code in (200, 503), (fmt, r and r.text[:300])
        if r.status_code == 503:
            assert r.headers["Retry-After"]
            continue
        if fmt == "raw":
            got = np.frombuffer(r.content, np.float32).reshape(3000, 3000, 2)
        elif fmt == "npy":
            got = np.load(__import__("io").BytesIO(r.content))
        elif fmt == "tiff":
            import tifffile

            got = tifffile.imread(__import__("io").BytesIO(r.content))
        else:
            with h5py.File(__import__("io").BytesIO(r.content), "r") as f:
                got = f["exported_data"][()]
        np.testing.assert_array_equal(got, expected)
    answered = sum(r.status_code == 200 for r in results)
    assert answered >= 6, [r.status_code for r in results]
    # Without the budget these eight need ~1.7 GiB at once (72 MiB answer, blocks, encoded copy each).
    print(f"peak RSS {peak:.0f} MiB, before {baseline:.0f} MiB, answers {[r.status_code for r in results]}")
    assert peak - baseline < budget + 160, f"peak {peak:.0f} MiB, before {baseline:.0f} MiB"


def redis_stack(tmp_path, redis: ThrowawayRedis, raw: Path) -> Stack:
    return Stack(tmp_path, project=SEED / "pc.ilp", raw_file=raw, distributed=True, workers=2, blocksize=64,
                 redis_url=redis.url)  # fmt: skip


@pytest.mark.parametrize("policy", ["allkeys-lru", "noeviction"])
def test_a_cache_too_small_or_full_is_reported_within_seconds(tmp_path, policy):
    raw = big_image(tmp_path / "img.h5", (1024, 1024))  # 256 blocks of 32 KiB: far more than 2 MiB
    redis = ThrowawayRedis(tmp_path, ["--maxmemory", "2mb", "--maxmemory-policy", policy])
    stack = redis_stack(tmp_path, redis, raw)
    try:
        started = time.monotonic()
        r = requests.get(f"{stack.gateway_url}/prediction/npy/roi?extents_min=0_0&extents_max=1024_1024", timeout=300)
        seconds = time.monotonic() - started
        evicted = int(redis_client.Redis.from_url(redis.url).info("stats")["evicted_keys"])
    finally:
        stack.stop()
        redis.stop()
    if policy == "allkeys-lru" and r.status_code == 200:
        # The gateway read every block as it landed, before Redis evicted it (it keeps what it received): right
        # too, when the answer is whole and exact. (The in-process test of single flight makes the cache lose
        # every block, so the message below is always checked there.)
        with h5py.File(raw) as f:
            expected = PixelClassifier(load_project(SEED / "pc.ilp")).predict(f["exported_data"][()])
        np.testing.assert_array_equal(np.load(io.BytesIO(r.content)), expected)
        assert evicted > 0 and seconds < 40, (evicted, seconds)  # the working set did not fit
        return
    assert r.status_code == 503, r.text[:300]
    message = r.json()["error"]
    expected = "too small for this request" if policy == "allkeys-lru" else "is full"
    assert expected in message and "NUMPY" not in message, message
    print(f"{policy}: {r.status_code} after {seconds:.1f} s: {message}")
    assert seconds < 40, f"took {seconds:.0f} s: {message}"


def test_empty_dataset_fails_at_start_up_with_one_line(tmp_path):
    raw = tmp_path / "empty.h5"
    with h5py.File(raw, "w") as f:
        f.create_dataset("exported_data", shape=(0, 185), dtype="uint8")
    r = subprocess.run([sys.executable, "dataproviderservice.py", "--raw-data-file", str(raw), "--raw-data-path",
                        "exported_data", "--port", str(free_port())], cwd=REPO, capture_output=True, text=True,
                       timeout=60)  # fmt: skip
    assert r.returncode == 2 and "empty" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_nan_forest_fails_at_start_up_with_one_line(tmp_path):
    bad = tmp_path / "nan.ilp"
    shutil.copy(SEED / "pc.ilp", bad)
    with h5py.File(bad, "a") as f:
        tree = f["PixelClassification/ClassifierForests/Forest0000/Tree_00/parameters"]
        values = tree[()]
        values[1] = np.nan  # the root's threshold
        tree[...] = values
    r = subprocess.run([sys.executable, "pixelclassificationservice.py", "--project", str(bad)], cwd=REPO,
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 2 and "NaN" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.fixture(scope="module")
def seed_service(tmp_path_factory):
    service, gateway, dataprovider = serve(tmp_path_factory.mktemp("seed"), SEED / "raw.h5")
    yield gateway, dataprovider
    service.stop()


@pytest.mark.parametrize("value", ["١٢_0", "０_0", "+1_0", " 1_0", "1 _0"])
def test_non_ascii_or_signed_integers_are_refused(seed_service, value):
    for base in seed_service:
        kind = "raw" if base == seed_service[1] else "prediction"
        r = requests.get(f"{base}/{kind}/npy/roi", params={"extents_min": value, "extents_max": "20_20"}, timeout=30)
        assert r.status_code == 400 and "ASCII" in r.json()["error"], r.text


def test_error_messages_quote_input_cut_short(seed_service):
    gateway, dataprovider = seed_service
    long = "x" * 5000
    for url in (f"{dataprovider}/raw/{long}/roi", f"{gateway}/prediction/{long}/roi", f"{gateway}/{long}",
                f"{gateway}/export/{long}"):  # fmt: skip
        r = requests.get(url, timeout=30)
        assert 400 <= r.status_code < 500 and len(r.json()["error"]) < 300, (url[:60], r.text[:400])
    r = requests.get(f"{gateway}/prediction/png/roi?extents_min=0_0&extents_max=20_20&channel=１", timeout=30)
    assert r.status_code == 400 and "ASCII" in r.json()["error"]


def test_a_worker_has_no_built_in_addresses(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ILASTIKBACKEND_")}
    r = subprocess.run([sys.executable, "worker.py"], cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 2 and "no built-in addresses or credentials" in r.stderr
