"""The export loop: blocks of one lane computed in parallel, converted, reordered and written one at a time.

Writer- and source-agnostic. Memory stays bounded: at most ``2 x parallel`` blocks are in flight, fewer
when blocks are large (``ram_bytes``: a block is counted three times, as fetched, converted and
reordered), and each block is written as soon as it (and the ones before it) arrived. Every written block is recorded
(:mod:`ilastikbackend.export.resume`), so a rerun after a kill computes only what is missing.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ilastikbackend.export.axes import reorder_block, reorder_box
from ilastikbackend.export.convert import Conversion
from ilastikbackend.export.formats.base import OutputSpec, Writer
from ilastikbackend.export.inputs import Lane
from ilastikbackend.export.progress import Progress
from ilastikbackend.export.providers import BlockProvider, ProviderError
from ilastikbackend.export.resume import ResumeRecord
from ilastikbackend.export.sources import ExportSource, SourceSetup


@dataclass(frozen=True)
class Unit:
    """One block of work: time point ``t``, spatial region ``[begin, end)`` in the pipeline frame."""

    index: int
    t: int
    begin: tuple[int, ...]
    end: tuple[int, ...]

    @property
    def voxels(self) -> int:
        return int(np.prod([e - b for b, e in zip(self.begin, self.end)]))


def plan_units(lane: Lane, begin: dict[str, int], end: dict[str, int], block_shape: Sequence[int]) -> list[Unit]:
    """The blocks (of the workers' blocking) covering the cutout, clipped to it, time point by time point."""
    from ilastikbackend.core import Blocking

    spatial = lane.spatial_axes
    blocking = Blocking(list(lane.spatial_shape), [int(b) for b in block_shape])
    lo, hi = [begin[a] for a in spatial], [end[a] for a in spatial]
    blocks = blocking.blocks_in_roi(lo, hi)
    units = []
    for t in range(begin.get("t", 0), end.get("t", 1)):
        for b in blocks:
            bb, be = blocking.block_bounds(b)
            units.append(
                Unit(len(units), t, tuple(max(x, r) for x, r in zip(bb, lo)), tuple(min(x, r) for x, r in zip(be, hi)))
            )
    return units


@dataclass
class LaneJob:
    """Everything decided before computing one lane's export.

    ``lane`` is read for its axes and shape only (``pipeline``, ``spatial_axes``, ``spatial_shape``): an input
    file's :class:`~ilastikbackend.export.inputs.Lane`, or a gateway's
    :class:`~ilastikbackend.export.served.ServedDataset`.
    """

    lane: Lane
    source: ExportSource
    setup: SourceSetup
    conversion: Conversion
    cutout_begin: dict[str, int]
    cutout_end: dict[str, int]
    output: OutputSpec
    writer: Writer
    units: list[Unit]
    fingerprint: dict
    record: ResumeRecord
    description: str = ""
    extra: dict = field(default_factory=dict)

    def unit_box(self, unit: Unit) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Where a block lands in the output: (begin, end) in the output's axis order."""
        lo = {a: b - self.cutout_begin[a] for a, b in zip(self.lane.spatial_axes, unit.begin)}
        hi = {a: e - self.cutout_begin[a] for a, e in zip(self.lane.spatial_axes, unit.end)}
        lo["t"], hi["t"] = unit.t - self.cutout_begin.get("t", 0), unit.t - self.cutout_begin.get("t", 0) + 1
        lo["c"], hi["c"] = 0, self.cutout_end["c"] - self.cutout_begin["c"]
        return reorder_box(lo, hi, self.output.axes)

    def block_in_output(self, unit: Unit, data: np.ndarray) -> tuple[tuple[int, ...], np.ndarray]:
        """A fetched block (``(*spatial, channels)``) as exported: channels cut, converted, reordered."""
        expected = tuple(e - b for b, e in zip(unit.begin, unit.end))
        if data.shape[:-1] != expected or data.shape[-1] != self.source.channels(self.setup):
            raise ProviderError(
                f"block at t={unit.t} {unit.begin}..{unit.end}: expected shape "
                f"{expected + (self.source.channels(self.setup),)}, got {data.shape}"
            )
        c0, c1 = self.cutout_begin["c"], self.cutout_end["c"]
        data = np.asarray(data[..., c0:c1], dtype=self.source.dtype)
        data = self.conversion.apply(data, self.source.dtype)
        axes = self.lane.pipeline.axes
        if "t" in axes:
            data = data[np.newaxis]
        begin, _ = self.unit_box(unit)
        return begin, reorder_block(data, axes, self.output.axes)


class Scratch:
    """A chunked Zarr v3 store holding the result of an export that is written whole at the end."""

    def __init__(self, path: str, spec: OutputSpec, block_shape: dict[str, int], resume: bool):
        import zarr

        chunks = tuple(
            min(n, 1 if a in "tz" else n if a == "c" else block_shape.get(a, n)) for a, n in zip(spec.axes, spec.shape)
        )
        self.array = None
        if resume and os.path.isdir(path):
            try:
                array = zarr.open_array(path, mode="r+")
                if tuple(array.shape) == tuple(spec.shape) and array.dtype == spec.dtype:
                    self.array = array
            except (FileNotFoundError, ValueError, KeyError):
                self.array = None
        self.resumed = self.array is not None
        if self.array is None:
            self.array = zarr.create_array(
                path, shape=spec.shape, chunks=chunks, dtype=spec.dtype, fill_value=0, overwrite=True
            )

    def write(self, begin, block) -> None:
        self.array[tuple(slice(b, b + n) for b, n in zip(begin, block.shape))] = block

    def flush(self) -> None:
        """Chunks are complete files once written."""

    def read(self, begin, end) -> np.ndarray:
        return np.asarray(self.array[tuple(slice(b, e) for b, e in zip(begin, end))])


def in_flight(job: LaneJob, parallel: int, ram_bytes: int) -> int:
    """How many blocks may be computed at once: ``2 x parallel``, fewer if their bytes exceed ``ram_bytes``."""
    voxels = int(np.prod(job.extra.get("block_shape", (1,))))
    channels = job.source.channels(job.setup)
    itemsize = max(np.dtype(job.source.dtype).itemsize, job.output.dtype.itemsize, 4)
    block_bytes = 3 * voxels * channels * itemsize
    return int(max(1, min(2 * max(1, parallel), ram_bytes // max(block_bytes, 1))))


def held_bytes(job: LaneJob, parallel: int, ram_bytes: int) -> int:
    """What a compute back end holds at most for this lane at once: the blocks in flight as the workers
    compute them (float32 features, or the probabilities segmentation and uncertainty derive from)."""
    voxels = int(np.prod(job.extra.get("block_shape", (1,))))
    channels = len(job.setup.feature_names) if job.source.kind == "features" else job.setup.num_classes
    return in_flight(job, parallel, ram_bytes) * voxels * channels * 4


def export_lane(
    job: LaneJob, provider: BlockProvider | None, progress: Progress, *, parallel: int, ram_bytes: int = 1 << 30
) -> int:
    """Compute and write one lane; returns how many blocks were computed (the others were done by an earlier,
    interrupted run). Raises on failure, leaving a resumable partial output."""
    writer, record = job.writer, job.record
    resumed = record.start(job.fingerprint, len(job.units))
    scratch = None
    if writer.random_access:
        pending_boxes = (job.unit_box(u) for u in job.units if not record.is_done(u.index))
        if not (resumed and writer.reopen() and writer.intact(pending_boxes)):
            if resumed:  # the partial output is gone, unusable, or damaged by the interruption: start afresh
                progress.note("the interrupted output cannot be continued (missing or damaged): starting afresh")
                record.restart(job.fingerprint, len(job.units))
            writer.create()
    else:
        blocks = dict(zip(job.lane.spatial_axes, job.extra.get("block_shape", ())))
        scratch = Scratch(record.scratch_path, job.output, blocks, resumed)
        if resumed and not scratch.resumed:
            record.restart(job.fingerprint, len(job.units))
            scratch = Scratch(record.scratch_path, job.output, blocks, False)
    sink = writer if writer.random_access else scratch
    pending = [u for u in job.units if not record.is_done(u.index)]
    progress.start_file(job.extra.get("index", 1), job.description, len(job.units), len(job.units) - len(pending))

    def compute(unit: Unit):
        if job.source.kind == "labels":  # a batch lane has no labels: ilastik exports zeros
            data = np.zeros(tuple(e - b for b, e in zip(unit.begin, unit.end)) + (1,), np.uint8)
        else:
            data = provider.fetch(job.source.kind, unit.t, unit.begin, unit.end)
        return job.block_in_output(unit, data)

    window = in_flight(job, parallel, ram_bytes)
    try:
        with ThreadPoolExecutor(min(max(1, parallel), window), thread_name_prefix="export") as pool:
            _run_units(pending, compute, sink, record, progress, pool, window)
        if scratch is not None:
            writer.write_all(scratch.read)
        writer.close()
    except BaseException:
        writer.abort()
        record.close()
        raise
    record.finish()
    return len(pending)


def _run_units(units, compute, sink, record, progress, pool, window: int) -> None:
    queue = iter(units)
    inflight: deque = deque()

    def refill():
        while len(inflight) < window:
            unit = next(queue, None)
            if unit is None:
                return
            inflight.append((unit, pool.submit(compute, unit)))

    refill()
    try:
        while inflight:
            unit, future = inflight.popleft()
            begin, block = future.result()
            sink.write(begin, block)
            sink.flush()
            record.mark(unit.index)
            progress.advance(unit.voxels)
            refill()
    except BaseException:
        for _, f in inflight:
            f.cancel()
        raise
