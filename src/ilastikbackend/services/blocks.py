"""Single-flight block prediction: what the gateway and the pixel classification service share.

For every block of a region: take it from the cache; if absent, atomically claim it and
publish one task; if someone else holds the claim, wait for their result. Claims are leases:
when one expires without a result (its worker died and the task got lost), the next waiter
claims the block again, so no request waits forever.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ilastikbackend.broker import BlockCache, CacheFullError, TaskQueue
from ilastikbackend.core.blocking import make_blocking
from ilastikbackend.core.engines import ENGINE_VERSIONS
from ilastikbackend.errors import ApiError
from ilastikbackend.log import log_event
from ilastikbackend.roi import Roi

KEY_VERSION = "v1"
PROBABILITIES, FEATURES = "probabilities", "features"
BLOCK_KINDS = (PROBABILITIES, FEATURES)  # what workers compute per block; everything else derives from these


def encode_block(probs: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(probs, np.float32), allow_pickle=False)
    return buf.getvalue()


def decode_block(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


@dataclass(frozen=True)
class PredictionSetup:
    """Everything a block's value depends on, and where workers find their inputs."""

    project_hash: str
    project_url: str  # where workers without the project download the .ilp
    dataset_id: str
    dataset_shape: tuple[int, ...]  # spatial, canonical order
    dataprovider_url: str
    block_shape: tuple[int, ...]
    halo: tuple[int, ...]
    num_classes: int
    feature_engine: str = "vigra"  # see ilastikbackend.core.engines
    num_features: int = 0  # feature channels (the forests' columns), for feature blocks
    time_points: int | None = None  # a time series: blocks and regions carry t first

    @property
    def region_shape(self) -> tuple[int, ...]:
        """What regions are given in: ``(t, *spatial)`` for a time series, else the spatial shape."""
        return self.dataset_shape if self.time_points is None else (self.time_points, *self.dataset_shape)

    @property
    def axes(self) -> str:
        """Axes of the answers, channels last: e.g. ``yxc``, ``zyxc``, ``tyxc``."""
        return ("t" if self.time_points is not None else "") + ("zyx" if len(self.dataset_shape) == 3 else "yx") + "c"

    @classmethod
    def from_info(cls, info: dict) -> PredictionSetup:
        """From the pixel classification service's ``/prediction/info`` JSON."""
        fields = cls.__dataclass_fields__
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in info.items() if k in fields})

    @property
    def key_prefix(self) -> str:
        shape = "x".join(map(str, self.block_shape))
        engine = f"{self.feature_engine}{ENGINE_VERSIONS[self.feature_engine]}"
        return f"ilb:{KEY_VERSION}:{self.project_hash[:24]}:{engine}:{self.dataset_id}:{shape}:"


class BlockPredictor:
    def __init__(self, setup: PredictionSetup, cache: BlockCache, tasks: TaskQueue, *, kind: str = PROBABILITIES,
                 lease_seconds: float = 120.0, timeout_seconds: float = 600.0):  # fmt: skip
        if kind not in BLOCK_KINDS:
            raise ValueError(f"block kind must be one of {BLOCK_KINDS}, not {kind!r}")
        self.setup = setup
        self.kind = kind
        self.channels = setup.num_classes if kind == PROBABILITIES else setup.num_features
        self.prefix = setup.key_prefix if kind == PROBABILITIES else f"{setup.key_prefix}{kind}:"
        self.cache = cache
        self.tasks = tasks
        self.lease_seconds = lease_seconds
        self.timeout_seconds = timeout_seconds
        self.blocking = make_blocking(setup.dataset_shape, setup.block_shape, setup.time_points)

    def sibling(self, kind: str) -> BlockPredictor:
        """A predictor of another block kind for the same setup, cache and workers."""
        if kind == self.kind:
            return self
        return BlockPredictor(self.setup, self.cache, self.tasks, kind=kind, lease_seconds=self.lease_seconds,
                              timeout_seconds=self.timeout_seconds)  # fmt: skip

    def key(self, block_id: int) -> str:
        return f"{self.prefix}{block_id}"

    def task(self, block_id: int) -> dict:
        s = self.setup
        ob, oe, ib, ie = self.blocking.block_with_halo(block_id, list(s.halo))
        return {
            "key": self.key(block_id), "block_id": block_id, "kind": self.kind, "project_hash": s.project_hash,
            "project_url": s.project_url, "feature_engine": s.feature_engine, "dataset_id": s.dataset_id,
            "dataset_shape": list(s.dataset_shape), "dataprovider_url": s.dataprovider_url,
            "outer_begin": ob, "outer_end": oe, "inner_begin": ib, "inner_end": ie, "lease_seconds": self.lease_seconds,
        }  # fmt: skip

    def check_block_id(self, block_id: int) -> None:
        if not 0 <= block_id < self.blocking.num_blocks:
            last = self.blocking.num_blocks - 1
            raise ApiError(404, f"block {block_id} does not exist: block ids run from 0 to {last}",
                           num_blocks=self.blocking.num_blocks)  # fmt: skip

    def _without_results(self, claimed: list[int]) -> list[int]:
        """Of blocks we hold claims on, those still without a result; claims on the others are dropped,
        so that no claim outlives its result."""
        landed = self.cache.get_many([self.key(b) for b in claimed])
        for b, value in zip(claimed, landed):
            if value is not None:
                self.cache.release(self.key(b))
        return [b for b, value in zip(claimed, landed) if value is None]

    def _dispatch(self, block_ids: list[int]) -> None:
        """Claim what nobody computes yet and queue one task per claimed block."""
        claimed = [b for b in block_ids if self.cache.claim(self.key(b), self.lease_seconds)]
        # A result may have landed (and its claim gone) since the caller looked: look again under the claim.
        claimed = self._without_results(claimed) if claimed else []
        if not claimed:
            return
        try:
            self.tasks.publish_many([self.task(b) for b in claimed])
        except Exception as err:
            log_event("publish_failed", level=30, blocks=claimed[:10], error=str(err))
            raise ApiError(503, f"could not queue blocks {claimed[:10]}: task queue unavailable ({err})") from err
        # Publishing waits while the broker is away; the lease counts from when the task is queued. The
        # claim is set again (it may have expired meanwhile), then dropped where the result already landed.
        for b in claimed:
            self.cache.extend_claim(self.key(b), self.lease_seconds, create=True)
        self._without_results(claimed)
        log_event("blocks_queued", level=10, blocks=len(claimed))

    def blocks(self, block_ids: list[int]) -> dict[int, np.ndarray]:
        """The probabilities of the given blocks, computing each missing block exactly once."""
        return {b: decode_block(v) for b, v in self.encoded_blocks(block_ids).items()}

    def encoded_blocks(self, block_ids: list[int]) -> dict[int, bytes]:
        """The blocks as stored (.npy bytes of float32 (*block, classes)), computing each missing one once."""
        start = time.monotonic()
        keys = {b: self.key(b) for b in block_ids}
        try:
            seen = self.cache.generation()
            checked = time.monotonic()
            found = dict(zip(block_ids, self.cache.get_many([keys[b] for b in block_ids])))
            result = {b: v for b, v in found.items() if v is not None}
            pending = [b for b in block_ids if b not in result]
            self._dispatch(pending)
            reported = start
            landed: set[str] = set()  # our keys announced as computed, not yet read
            evictions: dict[int, int] = {}
            while pending:
                now = time.monotonic()
                if now - reported > 5.0:  # long requests show progress in the log
                    reported = now
                    log_event("waiting_for_blocks", done=len(result), total=len(block_ids), seconds=now - start)
                if now - start > self.timeout_seconds:
                    raise ApiError(504, f"blocks {pending[:10]} not computed within {self.timeout_seconds:.0f} s; "
                                   "are workers running?", blocks=pending[:100])  # fmt: skip
                self.cache.wait(0.25, seen)
                now_seen = self.cache.generation()
                pending_keys = [keys[b] for b in pending]
                # Look into the cache when one of our blocks was announced, or every second regardless
                # (evictions and lost workers announce nothing); not after every other block's news.
                announced = self.cache.announced_keys_since(seen)
                ours = announced is None or not announced.isdisjoint(pending_keys)
                if announced:
                    landed |= announced.intersection(pending_keys)
                seen = now_seen
                if not ours and time.monotonic() - checked < 1.0:
                    continue
                checked = time.monotonic()
                # Claims first, then values: a result lands atomically with its claim's removal, so a
                # block found unclaimed and then still without a value has lost its worker (or was evicted).
                live = self.cache.claimed(pending_keys)
                values = self.cache.get_many(pending_keys)
                for b, v in zip(pending, values):
                    if v is not None:
                        result[b] = v
                errors = self.cache.get_errors([keys[b] for b in pending if b not in result])
                if errors:
                    failed = [b for b in pending if keys[b] in errors]
                    message = errors[keys[failed[0]]]
                    status = 503 if CacheFullError.__name__ in message else 502  # the cache, not the block, failed
                    raise ApiError(status, f"computing block {failed[0]} failed: {message}", blocks=failed)
                lost = [b for b, alive in zip(pending, live) if not alive and b not in result]
                pending = [b for b in pending if b not in result]
                self._check_evictions([b for b in lost if keys[b] in landed], evictions)
                landed.difference_update(keys[b] for b in lost)
                if lost:
                    log_event("blocks_reissued", level=30, blocks=lost[:10])
                    self._dispatch(lost)
        except ConnectionError as err:
            raise ApiError(503, f"block cache unavailable: {err}") from err
        return result

    def _check_evictions(self, evicted: list[int], evictions: dict[int, int]) -> None:
        """Blocks computed and announced, then gone before this request read them: the cache is too small
        for the request's working set. Once is bad luck under load; twice for one block is the cache's size."""
        for b in evicted:
            evictions[b] = evictions.get(b, 0) + 1
            log_event("block_evicted_before_read", level=30, block=b, times=evictions[b])
            if evictions[b] >= 2:
                raise ApiError(503, f"the block cache is too small for this request: block {b} was computed "
                               f"{evictions[b]} times and evicted each time before it could be read; give the "
                               "cache more memory (Redis maxmemory, or --cache-mib) or ask for a smaller region",
                               block=b)  # fmt: skip

    def whole_block(self, roi: Roi) -> int | None:
        """The id of the block that ``roi`` is exactly, if it is one."""
        b = self.blocking.block_of_coordinate(list(roi.begin))
        lo, hi = self.blocking.block_bounds(b)
        return b if tuple(lo) == roi.begin and tuple(hi) == roi.end else None

    def covered_bytes(self, roi: Roi) -> int:
        """Bytes of the stored blocks that cover ``roi`` (what stitching it holds at most)."""
        ids = self.blocking.blocks_in_roi(list(roi.begin), list(roi.end))
        first, _ = self.blocking.block_bounds(ids[0])
        _, last = self.blocking.block_bounds(ids[-1])
        voxels = 1
        for lo, hi in zip(first, last):
            voxels *= hi - lo
        return voxels * self.channels * 4

    def _paste(self, block_id: int, data: np.ndarray, roi: Roi, out: np.ndarray) -> None:
        """Copy the part of a block inside ``roi`` into ``out`` (which covers ``roi``)."""
        bb, be = self.blocking.block_bounds(block_id)
        lo = [max(x, r) for x, r in zip(bb, roi.begin)]
        hi = [min(x, r) for x, r in zip(be, roi.end)]
        src = tuple(slice(a - o, c - o) for a, c, o in zip(lo, hi, bb))
        dst = tuple(slice(a - o, c - o) for a, c, o in zip(lo, hi, roi.begin))
        out[dst] = data[src]

    def roi(self, roi: Roi) -> np.ndarray:
        """Stitch and crop the blocks' values of a region, shape ``(*roi.shape, channels)``."""
        ids = self.blocking.blocks_in_roi(list(roi.begin), list(roi.end))
        encoded = self.encoded_blocks(ids)
        out = np.empty(roi.shape + (self.channels,), np.float32)
        for b in ids:  # decode one block at a time, dropping its bytes once pasted
            self._paste(b, decode_block(encoded.pop(b)), roi, out)
        return out

    def strips(self, roi: Roi, encoded: dict[int, bytes]) -> Iterator[np.ndarray]:
        """The probabilities of ``roi`` as consecutive slabs along the first axis (one row of blocks
        each), so a region can be answered without holding it whole; consumes ``encoded``."""
        first_axis = self.blocking.block_shape[0]
        start = roi.begin[0]
        while start < roi.end[0]:
            stop = min(roi.end[0], (start // first_axis + 1) * first_axis)
            strip = Roi((start, *roi.begin[1:]), (stop, *roi.end[1:]))
            out = np.empty(strip.shape + (self.channels,), np.float32)
            for b in self.blocking.blocks_in_roi(list(strip.begin), list(strip.end)):
                self._paste(b, decode_block(encoded.pop(b)), strip, out)
            yield out
            start = stop

    def cached_block_ids(self) -> list[int]:
        prefix = self.prefix
        ids = []
        for k in self.cache.keys(prefix):
            tail = k[len(prefix) :]
            if tail.isdigit():
                ids.append(int(tail))
        return sorted(ids)

    def clear(self) -> int:
        return self.cache.delete_prefix(self.prefix)
