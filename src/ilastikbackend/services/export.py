"""Batch export: a whole dataset (or a region) predicted block by block into HDF5 or Zarr.

The same loop serves the command line (blocks fetched from a gateway over HTTP, with a
progress bar) and the gateway's export jobs (blocks from its own predictor, with progress
and cancel). Either way the blocks are computed by the worker pool.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ilastikbackend.errors import ApiError
from ilastikbackend.log import log_event
from ilastikbackend.roi import Roi
from ilastikbackend.scratch import scratch_dir
from ilastikbackend.services.encoding import axistags

EXPORT_FORMATS = ("hdf5", "zarr")


class ExportCancelled(Exception):
    pass


class OutputWriter:
    """A float32 (*roi.shape, classes) array in HDF5 (dataset 'exported_data') or Zarr v2, chunked like the blocks."""

    def __init__(self, path: str, fmt: str, shape: tuple[int, ...], chunks: tuple[int, ...], axes: str):
        if fmt not in EXPORT_FORMATS:
            raise ValueError(f"export format must be one of {EXPORT_FORMATS}, not {fmt!r}")
        self.path, self.fmt = path, fmt
        chunks = tuple(min(c, s) for c, s in zip(chunks, shape))
        if fmt == "hdf5":
            import h5py

            self._file = h5py.File(path, "w")
            self._ds = self._file.create_dataset("exported_data", shape=shape, dtype="float32", chunks=chunks)
            self._ds.attrs["axistags"] = axistags(axes)
            self._lock = threading.Lock()
        else:
            import tensorstore as ts

            if os.path.exists(path):
                shutil.rmtree(path)
            self._store = ts.open({
                "driver": "zarr", "kvstore": {"driver": "file", "path": path.rstrip("/") + "/"},
                "metadata": {"shape": list(shape), "chunks": list(chunks), "dtype": "<f4",
                             "compressor": {"id": "zlib", "level": 1}},
            }, create=True, delete_existing=True).result()  # fmt: skip
            with open(os.path.join(path, ".zattrs"), "w") as fh:
                json.dump({"axes": list(axes)}, fh)

    def write(self, begin: tuple[int, ...], data: np.ndarray) -> None:
        index = tuple(slice(b, b + n) for b, n in zip(begin, data.shape))
        if self.fmt == "hdf5":
            with self._lock:  # h5py is not thread-safe
                self._ds[index] = data
        else:
            self._store[index].write(data).result()

    def close(self) -> None:
        if self.fmt == "hdf5":
            self._file.close()


def plan(blocking, roi: Roi) -> list[tuple[int, tuple[int, ...], tuple[int, ...]]]:
    """Blocks covering ``roi``: (block id, part begin, part end) of the block inside the region."""
    out = []
    for b in blocking.blocks_in_roi(list(roi.begin), list(roi.end)):
        lo, hi = blocking.block_bounds(b)
        out.append((b, tuple(max(x, r) for x, r in zip(lo, roi.begin)), tuple(min(x, r) for x, r in zip(hi, roi.end))))
    return out


def run_export(
    parts: list[tuple[int, tuple[int, ...], tuple[int, ...]]],
    fetch: Callable[[int, tuple[int, ...], tuple[int, ...]], np.ndarray],
    writer: OutputWriter,
    roi: Roi,
    *,
    parallel: int,
    progress: Callable[[int, int], None] | None = None,
    cancelled: threading.Event | None = None,
) -> None:
    """Fetch every part (``parallel`` at a time) and write it; raises ExportCancelled when asked to stop."""
    done = 0
    total = len(parts)

    def one(part):
        if cancelled is not None and cancelled.is_set():
            raise ExportCancelled()
        b, lo, hi = part
        data = fetch(b, lo, hi)
        writer.write(tuple(x - r for x, r in zip(lo, roi.begin)), data)

    with ThreadPoolExecutor(max(1, parallel), thread_name_prefix="export") as pool:
        futures = [pool.submit(one, p) for p in parts]
        try:
            for f in futures:
                f.result()
                done += 1
                if progress is not None:
                    progress(done, total)
        except BaseException:
            for f in futures:
                f.cancel()
            raise


class ProgressBar:
    """A one-line progress bar on stderr: blocks, voxels/s, time left."""

    def __init__(self, total_voxels: int, label: str = "export", stream=sys.stderr):
        self.total_voxels = total_voxels
        self.label = label
        self.stream = stream
        self.start = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        fraction = done / total
        rate = self.total_voxels * fraction / elapsed
        left = elapsed * (1 - fraction) / fraction if fraction > 0 else 0
        bar = "#" * int(30 * fraction)
        self.stream.write(f"\r{self.label} [{bar:<30}] {done}/{total} blocks  {rate / 1e6:6.2f} Mvoxel/s  "
                          f"{left:5.0f} s left")  # fmt: skip
        if done == total:
            self.stream.write("\n")
        self.stream.flush()


class ExportJob:
    """One export running in the gateway."""

    def __init__(self, directory: str, fmt: str, roi: Roi, num_classes: int, spatial_axes: str):
        self.id = uuid.uuid4().hex[:12]
        self.fmt = fmt
        self.roi = roi
        self.path = os.path.join(directory, f"{self.id}.{'h5' if fmt == 'hdf5' else 'zarr'}")
        self.num_classes = num_classes
        self.axes = spatial_axes + "c"
        self.state = "queued"
        self.done = 0
        self.total = 0
        self.error = ""
        self.started = time.time()
        self.finished: float | None = None
        self.cancel = threading.Event()
        # Uncompressed float32 size: what the job may occupy on disk until it is done.
        self.estimated_bytes = roi.size * num_classes * 4 + (1 << 20)

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")

    def disk_bytes(self) -> int:
        """What the job holds on disk now (its estimate while it runs)."""
        return self.estimated_bytes if self.active else _size_on_disk(self.path)

    def status(self) -> dict:
        return {
            "id": self.id, "state": self.state, "format": self.fmt, "done_blocks": self.done,
            "total_blocks": self.total, "progress": self.done / self.total if self.total else 0.0,
            "extents_min": list(self.roi.begin), "extents_max": list(self.roi.end), "error": self.error,
            "seconds": (self.finished or time.time()) - self.started,
        }  # fmt: skip

    def run(self, predictor, parallel: int) -> None:
        parts = plan(predictor.blocking, self.roi)
        self.total = len(parts)
        self.state = "running"
        try:
            writer = OutputWriter(self.path, self.fmt, self.roi.shape + (self.num_classes,),
                                  tuple(predictor.blocking.block_shape) + (self.num_classes,), self.axes)  # fmt: skip
        except (OSError, ValueError) as err:
            self.state, self.error, self.finished = "failed", f"cannot create {self.path}: {err}", time.time()
            _remove(self.path)
            return

        def fetch(b, lo, hi):
            return predictor.roi(Roi(lo, hi))  # the part of block b inside the region

        def progress(done, total):
            self.done = done

        try:
            run_export(parts, fetch, writer, self.roi, parallel=parallel, progress=progress, cancelled=self.cancel)
            self.state = "done"
        except ExportCancelled:
            self.state = "cancelled"
        except Exception as err:  # reported in the job's status
            self.state = "failed"
            self.error = str(getattr(err, "message", err))
        finally:
            try:
                writer.close()
            except OSError as err:  # e.g. the disk filled up while flushing
                if self.state == "done":
                    self.state, self.error = "failed", f"cannot finish {self.path}: {err}"
            self.finished = time.time()
            if self.state != "done":  # nothing half-written stays behind
                _remove(self.path)


def _remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
        os.remove(path)


def _size_on_disk(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


class ExportJobs:
    """The gateway's export jobs: started in threads, bounded in number and disk, and removed (with their
    files) ``ttl_seconds`` after they finish or when deleted.

    Parameters
    ----------
    directory : str, optional
        Where results are written; default a folder in this process's scratch folder (removed on exit).
    max_active : int
        Jobs queued or running at once; more get 429 with ``Retry-After``.
    max_bytes : int
        Disk the results may use together (running jobs count with their uncompressed size); a job that
        would exceed it gets 507.
    ttl_seconds : float
        How long a finished job and its result are kept.
    """

    def __init__(self, directory: str | None = None, parallel: int = 8, *, max_active: int = 4,
                 max_bytes: int = 8 << 30, ttl_seconds: float = 3600.0):  # fmt: skip
        self._directory = directory
        self.parallel = parallel
        self.max_active = max_active
        self.max_bytes = max_bytes
        self.ttl_seconds = ttl_seconds
        self.jobs: dict[str, ExportJob] = {}
        self._lock = threading.Lock()
        self._janitor = threading.Thread(target=self._expire_forever, daemon=True, name="export-janitor")
        self._janitor.start()

    @property
    def directory(self) -> str:
        if self._directory is None:
            self._directory = scratch_dir("exports")
        os.makedirs(self._directory, exist_ok=True)
        return self._directory

    def start(self, predictor, fmt: str, roi: Roi, num_classes: int, spatial_axes: str) -> ExportJob:
        self.expire()
        job = ExportJob(self.directory, fmt, roi, num_classes, spatial_axes)
        mib = 1 << 20
        with self._lock:
            active = sum(j.active for j in self.jobs.values())
            if active >= self.max_active:
                raise ApiError(429, f"{active} exports are queued or running, the limit is {self.max_active}; "
                               "retry when one has finished, or cancel one (DELETE /export/<id>)",
                               headers={"Retry-After": "10"}, limit=self.max_active)  # fmt: skip
            used = sum(j.disk_bytes() for j in self.jobs.values())
            if used + job.estimated_bytes > self.max_bytes:
                raise ApiError(507, f"this export needs up to {job.estimated_bytes / mib:.0f} MiB, but "
                               f"{used / mib:.0f} of the {self.max_bytes / mib:.0f} MiB for exports are in use; "
                               "delete finished exports (DELETE /export/<id>) or export a smaller region",
                               needed_bytes=job.estimated_bytes, used_bytes=used)  # fmt: skip
            free = shutil.disk_usage(self.directory).free
            if job.estimated_bytes > free:
                raise ApiError(507, f"this export needs up to {job.estimated_bytes / mib:.0f} MiB, the disk holding "
                               f"the exports has {free / mib:.0f} MiB free",
                               needed_bytes=job.estimated_bytes)  # fmt: skip
            self.jobs[job.id] = job
        threading.Thread(target=job.run, args=(predictor, self.parallel), daemon=True, name=f"export-{job.id}").start()
        return job

    def get(self, job_id: str) -> ExportJob | None:
        self.expire()
        with self._lock:
            return self.jobs.get(job_id)

    def remove(self, job_id: str) -> None:
        with self._lock:
            job = self.jobs.pop(job_id, None)
        if job is not None:
            job.cancel.set()
            if not job.active:
                _remove(job.path)

    def all(self) -> Iterable[ExportJob]:
        self.expire()
        with self._lock:
            return list(self.jobs.values())

    def expire(self) -> list[str]:
        """Remove finished jobs older than ``ttl_seconds`` and their files; the ids removed."""
        now = time.time()
        with self._lock:
            old = [j for j in self.jobs.values() if j.finished is not None and now - j.finished > self.ttl_seconds]
            for job in old:
                del self.jobs[job.id]
        for job in old:
            _remove(job.path)
            log_event("export_expired", job=job.id, state=job.state)
        return [job.id for job in old]

    def _expire_forever(self) -> None:
        while True:
            time.sleep(max(0.5, min(60.0, self.ttl_seconds / 4)))
            self.expire()
