"""Resuming: a run killed with SIGKILL mid-way, run again, computes and writes only the missing blocks, and
the file equals an uninterrupted export. Memory: a result larger than the memory the run may use is
written with a small, bounded peak RSS."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import tifffile
from headless_tools import fixtures, headless_process

from ilastikbackend.core import PixelClassifier, load_project

FX = fixtures()["ilastik-tests-2d3c-v122"]
BLOCK = 64


@pytest.fixture(scope="module")
def big_input(tmp_path_factory):
    """The 2d3c image tiled to 640x640 (100 blocks of 64), and its probabilities computed directly."""
    d = tmp_path_factory.mktemp("big")
    with h5py.File(FX.raw) as f:
        raw = np.tile(f["data"][()], (9, 4, 1))[:640, :640]
    with h5py.File(d / "big.h5", "w") as f:
        f["data"] = raw
    expected = PixelClassifier(load_project(FX.project)).predict_image(raw, (BLOCK, BLOCK), n_threads=2)
    return d / "big.h5", expected


def _kill_midway(argv, done_file: str, at_least: int, timeout: float = 120) -> int:
    proc = subprocess.Popen([sys.executable, "-m", "ilastikbackend", "headless", "--quiet", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + timeout
    done = 0
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"the run ended before it could be killed ({done} blocks seen):\n{err.decode()}")
            if os.path.exists(done_file):
                done = int(np.count_nonzero(np.fromfile(done_file, np.uint8)))
                if done >= at_least:
                    break
            time.sleep(0.05)
        else:
            pytest.fail(f"only {done} blocks done after {timeout} s")
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return done


@pytest.mark.parametrize("fmt", ["compressed hdf5", "multipage tiff", "multi-scale OME-Zarr"])
def test_killed_run_resumes_where_it_stopped(big_input, tmp_path, fmt):
    raw, expected = big_input
    ext = {"compressed hdf5": "h5", "multipage tiff": "tiff", "multi-scale OME-Zarr": "zarr"}[fmt]
    out = tmp_path / f"out.{ext}"
    argv = ["--project", str(FX.project), "--output_format", fmt, "--output_filename_format", str(tmp_path / "out"),
            "--blocksize", str(BLOCK), "--workers", "1", "--parallel", "1", f"{raw}/data"]  # fmt: skip
    partial = f"{out}-exported_data.ilastikbackend-partial" if ext == "h5" else f"{out}.ilastikbackend-partial"
    killed_at = _kill_midway(argv, os.path.join(partial, "done.bin"), at_least=15)
    assert os.path.isdir(partial)
    done_before = int(np.count_nonzero(np.fromfile(os.path.join(partial, "done.bin"), np.uint8)))
    assert 15 <= killed_at <= done_before < 100

    r = headless_process(*argv)
    assert r.returncode == 0, r.stderr
    if "starting afresh" in r.stderr:  # the kill landed in the middle of a write that damaged the file: detected
        assert ext == "h5" and "computed 100 of 100 blocks" in r.stdout, (r.stdout, r.stderr)
    else:
        computed = 100 - done_before
        assert f"computed {computed} of 100 blocks, {done_before} done by an earlier run" in r.stdout
    assert not os.path.exists(partial)
    if ext == "h5":
        data = h5py.File(out)["exported_data"][()]
    elif ext == "tiff":
        data = np.moveaxis(tifffile.imread(out), 0, -1)
    else:
        import zarr

        group = zarr.open_group(str(out), mode="r")
        data = np.moveaxis(group["s0"][0, :, 0], 0, -1)
        assert [d["path"] for d in group.attrs["multiscales"][0]["datasets"]] == ["s0", "s1"]
    np.testing.assert_array_equal(data.reshape(expected.shape), expected)


def test_changed_flags_start_afresh(big_input, tmp_path):
    raw, expected = big_input
    argv = ["--project", str(FX.project), "--output_format", "hdf5", "--output_filename_format", str(tmp_path / "o"),
            "--blocksize", str(BLOCK), "--workers", "1", "--parallel", "1", f"{raw}/data"]  # fmt: skip
    _kill_midway(argv, f"{tmp_path / 'o.h5'}-exported_data.ilastikbackend-partial/done.bin", at_least=5)
    # another cutout: the record does not match, nothing is reused
    r = headless_process(*argv, "--cutout_subregion", "[(0,0,0),(128,128,2)]")
    assert r.returncode == 0, r.stderr
    assert "computed 4 of 4 blocks" in r.stdout and "earlier run" not in r.stdout
    np.testing.assert_array_equal(h5py.File(tmp_path / "o.h5")["exported_data"][()], expected[:128, :128])


MEASURE = """
import resource, subprocess, sys
r = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.stderr.write(r.stderr)
"""


def test_peak_memory_stays_far_below_the_result(tmp_path):
    """84 feature channels of a 1024x1024 image: a 352 MiB result, written by a process allowed 32 MiB of blocks
    in flight, whose peak RSS (measured alone, in its own parent) stays a fraction of it."""
    with h5py.File(FX.raw) as f:
        raw = np.tile(f["data"][()], (15, 6, 1))[:1024, :1024]
    with h5py.File(tmp_path / "in.h5", "w") as f:
        f["data"] = raw
    cmd = [sys.executable, "-m", "ilastikbackend", "headless", "--quiet", "--project", str(FX.project),
           "--export_source", "Features", "--output_format", "hdf5", "--blocksize", "128", "--ram-mib", "32",
           "--output_filename_format", str(tmp_path / "f"), f"{tmp_path / 'in.h5'}/data"]  # fmt: skip
    r = subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True, text=True, timeout=600)
    code, peak_kib = map(int, r.stdout.split())
    assert code == 0, r.stderr
    with h5py.File(tmp_path / "f.h5") as f:
        ds = f["exported_data"]
        assert ds.shape == (1024, 1024, 84)
        result_mib = ds.size * 4 / 2**20
        expected = PixelClassifier(load_project(FX.project)).features(raw, (500, 1000), (510, 1024))
        np.testing.assert_array_equal(ds[500:510, 1000:], expected)
    peak_mib = peak_kib / 1024
    print(f"features export: result {result_mib:.0f} MiB, peak RSS {peak_mib:.0f} MiB")
    assert result_mib == 336  # 1024 x 1024 x 84 float32
    assert peak_mib < 160, f"peak RSS {peak_mib:.0f} MiB for a {result_mib:.0f} MiB result"


def test_a_damaged_partial_hdf5_is_detected_and_redone(big_input, tmp_path):
    """A kill in the middle of a compressed chunk's write can leave it undecodable; writing the blocks still missing
    would read it back and fail. The resumed run notices and starts afresh instead of failing or mixing."""
    raw, expected = big_input
    argv = ["--project", str(FX.project), "--output_format", "compressed hdf5", "--output_filename_format",
            str(tmp_path / "d"), "--blocksize", str(BLOCK), "--workers", "1", "--parallel", "1",
            f"{raw}/data"]  # fmt: skip
    out, partial = tmp_path / "d.h5", f"{tmp_path / 'd.h5'}-exported_data.ilastikbackend-partial"
    _kill_midway(argv, os.path.join(partial, "done.bin"), at_least=10)
    done = np.fromfile(os.path.join(partial, "done.bin"), np.uint8)
    assert 0 < np.count_nonzero(done) < len(done)
    with h5py.File(out, "r") as f:  # garble one stored chunk that a missing block touches
        ds = f["exported_data"]
        info = ds.id.get_chunk_info(ds.id.get_num_chunks() - 1)
    with open(out, "r+b") as fh:
        fh.seek(info.byte_offset + info.size // 2)
        fh.write(b"\xff" * 16)
    r = headless_process(*argv)
    assert r.returncode == 0, r.stderr
    assert "starting afresh" in r.stderr and "computed 100 of 100 blocks" in r.stdout
    np.testing.assert_array_equal(h5py.File(out)["exported_data"][()].reshape(expected.shape), expected)
