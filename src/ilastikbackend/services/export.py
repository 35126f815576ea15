"""The gateway's export jobs: any export source of the dataset (or of a region), in any export format.

Sources, formats, writers and the block loop are the export library's (:mod:`ilastikbackend.export`), the
same that ``ilastikbackend headless`` writes with; blocks come from the gateway's own predictors (computed by
the worker pool through the cache; segmentation and uncertainty derived from the probability blocks). Each
job runs in a thread; jobs are bounded in number, disk and lifetime, and a failed or cancelled job leaves
nothing behind.
"""

from __future__ import annotations

import io
import mimetypes
import os
import shutil
import threading
import time
import uuid
import zipfile
from collections.abc import Iterable, Iterator

from ilastikbackend.errors import ApiError
from ilastikbackend.export.formats import FORMATS
from ilastikbackend.export.progress import Progress
from ilastikbackend.export.providers import DERIVED, BlockProvider
from ilastikbackend.export.run import export_lane
from ilastikbackend.export.served import (
    ServedDataset,
    estimated_bytes,
    is_sequence,
    plan_region_export,
    served_format,
    served_source,
)
from ilastikbackend.log import log_event
from ilastikbackend.roi import Roi
from ilastikbackend.scratch import scratch_dir
from ilastikbackend.services.blocks import FEATURES

#: Download types the standard library does not know.
_MIMETYPES = {".h5": "application/x-hdf5", ".npy": "application/octet-stream", ".zip": "application/zip"}
ZIP_CHUNK = 1 << 20


def result_mimetype(name: str) -> str:
    """The content type of a downloaded result file."""
    ext = os.path.splitext(name)[1].lower()
    return _MIMETYPES.get(ext) or mimetypes.guess_type(name)[0] or "application/octet-stream"


#: Every content type a result can have (OpenAPI).
RESULT_MIMETYPES = sorted({result_mimetype(f"x.{f.extension}") for f in FORMATS.values()} | {"application/zip"})


class ExportCancelled(Exception):
    """Raised in an export's block loop once its job was cancelled (``DELETE /export/<id>``)."""


class PredictorProvider(BlockProvider):
    """Export blocks from the gateway's predictors; stops the export once ``cancelled`` is set.

    Parameters
    ----------
    predictor : BlockPredictor
        The probabilities' predictor; features come from its :meth:`~BlockPredictor.sibling`.
    time_axis : bool
        Regions carry a leading ``t``.
    """

    def __init__(self, predictor, time_axis: bool, cancelled: threading.Event):
        self.predictor = predictor
        self.time_axis = time_axis
        self.cancelled = cancelled
        self._features = None

    def fetch(self, kind, t, begin, end):
        if self.cancelled.is_set():
            raise ExportCancelled()
        lo, hi = tuple(int(b) for b in begin), tuple(int(e) for e in end)
        roi = Roi((int(t), *lo), (int(t) + 1, *hi)) if self.time_axis else Roi(lo, hi)
        if kind == "features":
            if self._features is None:
                self._features = self.predictor.sibling(FEATURES)
            data = self._features.roi(roi)
        else:
            data = self.predictor.roi(roi)
            if kind in DERIVED:
                data = DERIVED[kind](data)
        return data[0] if self.time_axis else data


class ExportJob:
    """One export in the gateway: planned when created (a bad source, format or region is a 400 before
    anything is computed or written), run by :meth:`run`.

    The result is ``<id>.<extension>`` in the export folder: a file, or a folder (Zarr, N5); sequences
    write ``<id>/<id>_<slice>.<extension>``.
    """

    def __init__(self, directory: str, served: ServedDataset, source: str, fmt: str, roi: Roi):
        try:
            self.source = served_source(source)
        except ValueError as err:
            raise ApiError(400, str(err), parameter="source") from err
        try:
            self.fmt = served_format(fmt)
        except ValueError as err:
            raise ApiError(400, str(err), parameter="format") from err
        self.id = uuid.uuid4().hex[:12]
        self.roi = roi
        ext = FORMATS[self.fmt].extension
        if is_sequence(self.fmt):
            self.path = os.path.join(directory, self.id)
            target = os.path.join(self.path, f"{self.id}_{{slice_index}}.{ext}")
        else:
            self.path = target = os.path.join(directory, f"{self.id}.{ext}")
        try:
            self.plan = plan_region_export(served, self.source, self.fmt, target, roi.begin, roi.end)
        except ValueError as err:  # FormatMismatch too: the format cannot hold this export
            raise ApiError(400, f"cannot export {self.source.name} of region {roi.query()} as '{self.fmt}': {err}",
                           parameter="format") from err  # fmt: skip
        self.progress = Progress(len(self.plan.units), 1, None)
        self.state = "queued"
        self.error = ""
        self.started = time.time()
        self.finished: float | None = None
        self.cancel = threading.Event()
        # Uncompressed: what the job may occupy on disk until it is done (then its real size counts).
        self.estimated_bytes = estimated_bytes(self.plan) + (1 << 20)

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")

    def disk_bytes(self) -> int:
        """What the job holds on disk now (its estimate while it runs)."""
        return self.estimated_bytes if self.active else _size_on_disk(self.path)

    def status(self) -> dict:
        total = len(self.plan.units)
        done = self.progress.done_all
        spec = self.plan.output
        return {
            "id": self.id, "state": self.state, "source": self.source.name, "format": self.fmt,
            "done_blocks": done, "total_blocks": total, "progress": done / total if total else 0.0,
            "extents_min": list(self.roi.begin), "extents_max": list(self.roi.end), "axes": spec.axes,
            "shape": list(spec.shape), "dtype": spec.dtype.name, "error": self.error,
            "seconds": (self.finished or time.time()) - self.started,
        }  # fmt: skip

    def run(self, provider: BlockProvider, parallel: int, ram_bytes: int) -> None:
        self.state = "running"
        state, error = "failed", ""
        try:
            export_lane(self.plan, provider, self.progress, parallel=parallel, ram_bytes=ram_bytes)
            state = "done"
        except ExportCancelled:
            state = "cancelled"
        except Exception as err:  # reported in the job's status
            error = str(getattr(err, "message", err))
        finally:
            if self.cancel.is_set():  # cancelled after its last block: deleted all the same
                state = "cancelled"
            if state != "done":  # nothing half-written stays behind
                self.remove_files()
            # The final state is published last: whoever sees it sees the files already gone.
            self.error, self.finished = error, time.time()
            self.state = state
            log_event("export_finished", job=self.id, state=self.state, source=self.source.name, format=self.fmt,
                      seconds=round(self.finished - self.started, 3))  # fmt: skip

    def remove_files(self) -> None:
        """The result, and the resume record (with its scratch store) while the job had not finished."""
        self.plan.record.close()
        _remove(self.plan.record.dir)
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


class _ZipSink(io.RawIOBase):
    """Collects what :class:`zipfile.ZipFile` writes, handed on chunk by chunk (not seekable: zipfile then
    writes sizes after each member, so nothing is held but the chunk in hand)."""

    def __init__(self):
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def zip_stream(folder: str, root: str) -> Iterator[bytes]:
    """A zip (stored, not compressed) of ``folder`` with its files under ``root/``, produced as it is sent."""
    sink = _ZipSink()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED) as zf:
        for base, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(base, name)
                arcname = os.path.join(root, os.path.relpath(full, folder))
                with (
                    open(full, "rb") as src,
                    zf.open(arcname, "w", force_zip64=os.path.getsize(full) >= 1 << 31) as dst,
                ):
                    while chunk := src.read(ZIP_CHUNK):
                        dst.write(chunk)
                        yield sink.take()
                yield sink.take()
    yield sink.take()


class ExportJobs:
    """The gateway's export jobs: started in threads, bounded in number and disk, and removed (with their
    files) ``ttl_seconds`` after they finish or when deleted.

    Parameters
    ----------
    directory : str, optional
        Where results are written; default a folder in this process's scratch folder (removed on exit).
    parallel : int
        Blocks each job asks for at once.
    max_active : int
        Jobs queued or running at once; more get 429 with ``Retry-After``.
    max_bytes : int
        Disk the results may use together (running jobs count with their uncompressed size); a job that
        would exceed it gets 507.
    ttl_seconds : float
        How long a finished job and its result are kept.
    ram_bytes : int
        Bound for each job's blocks in flight (fewer are asked for at once when they are large).
    """

    def __init__(self, directory: str | None = None, parallel: int = 8, *, max_active: int = 4,
                 max_bytes: int = 8 << 30, ttl_seconds: float = 3600.0, ram_bytes: int = 256 << 20):  # fmt: skip
        self._directory = directory
        self.parallel = parallel
        self.max_active = max_active
        self.max_bytes = max_bytes
        self.ttl_seconds = ttl_seconds
        self.ram_bytes = ram_bytes
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

    def start(self, predictor, served: ServedDataset, source: str, fmt: str, roi: Roi) -> ExportJob:
        """Plan an export of ``source`` (ilastik's or the URL's name) of region ``roi`` as ``fmt`` (a format
        name of the export library, or ``zarr``) and start it; blocks come from ``predictor``.

        Raises
        ------
        ApiError
            400 for a source, format or region that cannot be exported, 429 when ``max_active`` jobs are
            running, 507 when the result would not fit the disk budget or the disk.
        """
        self.expire()
        job = ExportJob(self.directory, served, source, fmt, roi)
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
        provider = PredictorProvider(predictor, served.axes.startswith("t"), job.cancel)
        threading.Thread(target=job.run, args=(provider, self.parallel, self.ram_bytes), daemon=True,
                         name=f"export-{job.id}").start()  # fmt: skip
        log_event("export_started", job=job.id, source=job.source.name, format=job.fmt, region=roi.query(),
                  blocks=len(job.plan.units))  # fmt: skip
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
                job.remove_files()

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
            job.remove_files()
            log_event("export_expired", job=job.id, state=job.state)
        return [job.id for job in old]

    def _expire_forever(self) -> None:
        while True:
            time.sleep(max(0.5, min(60.0, self.ttl_seconds / 4)))
            self.expire()
