"""Bounds that keep a service alive under hostile use: the memory budget, export job limits, the
scratch folder, strict input parsing (unit level; test_hostile.py drives real processes)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from ilastikbackend.errors import ApiError, quote_input
from ilastikbackend.export.served import ServedDataset
from ilastikbackend.roi import Roi, parse_int, parse_roi
from ilastikbackend.services.budget import MemoryBudget
from ilastikbackend.services.export import ExportJobs

MiB = 1 << 20


def test_budget_refuses_what_can_never_fit():
    budget = MemoryBudget(10 * MiB)
    with pytest.raises(ApiError) as err:
        budget.acquire(11 * MiB, "a huge region")
    assert err.value.status == 413 and "a huge region needs about 11 MiB" in err.value.message
    assert budget.in_use == 0


def test_budget_queues_then_refuses_with_retry_after():
    budget = MemoryBudget(10 * MiB, max_waiting=1, wait_seconds=0.5)
    held = budget.acquire(8 * MiB, "first")
    started = time.monotonic()
    with pytest.raises(ApiError) as err:
        budget.acquire(4 * MiB, "second")  # waits its 0.5 s, then gives up
    assert err.value.status == 503 and err.value.headers["Retry-After"]
    assert 0.4 < time.monotonic() - started < 5
    # One waiter at a time: while one waits, the next is refused at once.
    waiter = threading.Thread(target=lambda: budget.release(budget.acquire(4 * MiB, "waiter")))
    budget.wait_seconds = 5.0
    waiter.start()
    time.sleep(0.2)
    with pytest.raises(ApiError, match="queue of waiting requests is full"):
        budget.acquire(4 * MiB, "third")
    budget.release(held)  # room: the waiter proceeds
    waiter.join(5)
    assert not waiter.is_alive() and budget.in_use == 0 and budget.peak <= 10 * MiB


def test_budget_never_exceeds_its_limit_under_contention():
    budget = MemoryBudget(100, max_waiting=64, wait_seconds=30)
    seen = []

    def work(n):
        with budget.reserve(n, "w"):
            seen.append(budget.in_use)
            time.sleep(0.001)

    threads = [threading.Thread(target=work, args=(n,)) for n in np.random.default_rng(0).integers(1, 100, 60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert max(seen) <= 100 and budget.peak <= 100 and budget.in_use == 0


class SlowPredictor:
    """Just enough of a BlockPredictor for export jobs: regions answered when released."""

    def __init__(self, classes=2, fail=False):
        self.classes, self.fail = classes, fail
        self.go = threading.Event()
        self.asked = 0

    def roi(self, roi: Roi) -> np.ndarray:
        self.asked += 1
        self.go.wait(10)
        if self.fail:
            raise RuntimeError("disk on fire")
        return np.full(roi.shape + (self.classes,), 0.5, np.float32)


def served(shape=(64, 64), block=(64, 64), classes=2) -> ServedDataset:
    """What a gateway serving a 2D image says about it."""
    return ServedDataset.from_info({"dataset_shape": list(shape), "block_shape": list(block), "num_classes": classes})


WHOLE = Roi((0, 0), (64, 64))  # 32 KiB of float32 pairs, estimated with 1 MiB of slack


def start(jobs, predictor, fmt="hdf5", source="Probabilities", roi=WHOLE, **kwargs):
    return jobs.start(predictor, served(**kwargs), source, fmt, roi)


def wait_state(job, states=("done", "failed", "cancelled")):
    deadline = time.monotonic() + 10
    while job.state not in states and time.monotonic() < deadline:
        time.sleep(0.01)
    return job.state


def test_export_jobs_are_limited_in_number(tmp_path):
    jobs = ExportJobs(str(tmp_path), max_active=1)
    slow = SlowPredictor()
    first = start(jobs, slow)
    with pytest.raises(ApiError) as err:
        start(jobs, SlowPredictor())
    assert err.value.status == 429 and err.value.headers == {"Retry-After": "10"}
    slow.go.set()
    assert wait_state(first) == "done" and os.path.isfile(first.path)
    start(jobs, SlowPredictor()).cancel.set()  # room again


def test_export_jobs_are_limited_in_disk_and_leave_nothing_half_written(tmp_path):
    jobs = ExportJobs(str(tmp_path), max_bytes=3 * MiB)
    a, b = SlowPredictor(), SlowPredictor()
    start(jobs, a, "hdf5")
    start(jobs, b, "zarr")
    with pytest.raises(ApiError) as err:
        start(jobs, SlowPredictor(), "hdf5")
    assert err.value.status == 507 and "MiB for exports are in use" in err.value.message
    broken = SlowPredictor(fail=True)
    a.go.set()
    b.go.set()
    assert all(wait_state(j) == "done" for j in jobs.all())
    failing = start(jobs, broken, "hdf5")
    broken.go.set()
    assert wait_state(failing) == "failed" and "disk on fire" in failing.error
    assert not os.path.exists(failing.path)  # nothing half-written
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(j.path) for j in jobs.all() if j.state == "done")


def test_the_disk_estimate_counts_scratch_stores_and_pyramids(tmp_path):
    jobs = ExportJobs(str(tmp_path), max_bytes=64 * MiB)
    big = {"shape": (1024, 1024), "block": (256, 256), "classes": 2}  # 8 MiB of float32 pairs
    kinds = {"hdf5": 8, "multi-scale OME-Zarr": 8 * 4 / 3, "multipage tiff": 16, "multi-scale OME-Zarr 0.5": 8 * 7 / 3}
    for fmt, mib in kinds.items():
        p = SlowPredictor()
        job = start(jobs, p, fmt, roi=Roi((0, 0), (1024, 1024)), **big)
        assert abs(job.estimated_bytes - 1 * MiB - mib * MiB) < 0.01 * MiB, (fmt, job.estimated_bytes / MiB)
        jobs.remove(job.id)
        p.go.set()
        assert wait_state(job) == "cancelled"
    # a region whose result would not fit the disk budget is refused before anything is created
    with pytest.raises(ApiError) as err:
        start(jobs, SlowPredictor(), "multipage tiff", roi=Roi((0, 0), (4096, 4096)), shape=(4096, 4096),
              block=(256, 256))  # fmt: skip
    assert err.value.status == 507 and os.listdir(tmp_path) == []


@pytest.mark.parametrize("fmt", ["hdf5", "multipage tiff", "png sequence", "single-scale OME-Zarr 0.5"])
def test_cancelled_exports_leave_nothing_behind(tmp_path, fmt):
    """Random-access writers, and those written whole from a scratch store, in a file or a folder."""
    jobs = ExportJobs(str(tmp_path))
    p = SlowPredictor()
    job = start(jobs, p, fmt, shape=(64, 128), block=(64, 32), roi=Roi((0, 0), (64, 128)))
    deadline = time.monotonic() + 10
    while p.asked == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert os.listdir(tmp_path)  # the job has begun writing
    jobs.remove(job.id)
    p.go.set()
    assert wait_state(job) == "cancelled" and jobs.get(job.id) is None
    assert os.listdir(tmp_path) == []


def test_bad_sources_formats_and_regions_are_400s_before_anything_is_written(tmp_path):
    jobs = ExportJobs(str(tmp_path))
    cases = {
        ("Labels", "hdf5"): "unknown export source 'Labels'; choose one of: Probabilities, Simple Segmentation",
        ("probabilities", "HDF6"): "unknown export format 'HDF6'; choose one of: zarr (= single-scale OME-Zarr), hdf5",
        ("features", "hdf5"): "the project lists no feature channels",
        ("Probabilities", "dvid"): "not supported: DVID servers are not supported",
        ("Probabilities", "gif"): "'gif' stores 1 channel(s) per image, the export has 2; choose another format",
        ("Probabilities", "jpg"): "'jpg' stores 1, 3 channel(s) per image, the export has 2; choose another format",
    }
    for (source, fmt), message in cases.items():
        with pytest.raises(ApiError) as err:
            start(jobs, SlowPredictor(), fmt, source)
        assert err.value.status == 400 and message in err.value.message, err.value.message
    with pytest.raises(ApiError) as err:
        jobs.start(
            SlowPredictor(), served((5, 64, 64), (5, 64, 64)), "segmentation", "png", Roi((0, 0, 0), (5, 64, 64))
        )
    assert err.value.status == 400 and "'png' holds 2D images, the export has 3 non-singleton axes" in err.value.message
    assert os.listdir(tmp_path) == [] and jobs.all() == []


def test_finished_exports_expire_with_their_files(tmp_path):
    jobs = ExportJobs(str(tmp_path), ttl_seconds=0.3)
    p = SlowPredictor()
    p.go.set()
    job = start(jobs, p, "zarr")
    assert wait_state(job) == "done" and os.path.isdir(job.path)
    deadline = time.monotonic() + 5  # the janitor removes it without anyone asking
    while os.path.exists(job.path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(job.path) and jobs.get(job.id) is None


@pytest.mark.parametrize("text", ["١٢", "０", "+1", " 1", "1 ", "1_0", "0x10", "1e3", "", "--1", "12" * 20])
def test_integers_are_ascii_digits_only(text):
    with pytest.raises(ApiError) as err:
        parse_int("channel", text)
    assert err.value.status == 400
    with pytest.raises(ApiError):
        parse_roi({"extents_min": f"{text}_0", "extents_max": "10_10"}, (100, 100))


def test_plain_integers_still_parse():
    assert parse_int("n", "-12") == -12 and parse_int("n", "007") == 7
    assert parse_roi({"extents_min": "0_5", "extents_max": "-1_10"}, (100, 100)) == Roi((0, 5), (99, 10))


def test_input_is_quoted_cut_short():
    assert quote_input("abc") == "'abc'"
    long = quote_input("x" * 5000)
    assert len(long) < 100 and "5000 characters" in long


def test_scratch_folder_goes_away_on_sigterm_and_ctrl_c(tmp_path):
    code = (
        "import os, sys, time\n"
        "from ilastikbackend import scratch\n"
        "scratch.configure(sys.argv[1]); scratch.exit_on_sigterm()\n"
        "d = scratch.scratch_dir('exports'); open(os.path.join(d, 'x.h5'), 'w').write('data')\n"
        "print(d, flush=True)\n"
        "time.sleep(60)\n"
    )
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        parent = tmp_path / sig.name
        parent.mkdir()
        proc = subprocess.Popen([sys.executable, "-c", code, str(parent)], stdout=subprocess.PIPE, text=True)
        made = proc.stdout.readline().strip()
        assert os.path.isfile(os.path.join(made, "x.h5")) and len(os.listdir(parent)) == 1
        proc.send_signal(sig)
        proc.wait(20)
        assert os.listdir(parent) == [], f"{sig.name} left {os.listdir(parent)}"
