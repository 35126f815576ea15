"""BlockPredictor's single flight and recovery, in-process against the real Redis."""

from __future__ import annotations

import threading
import time
import uuid

import numpy as np
import pytest
from stack import REDIS_URL, forget_dataset

from ilastikbackend.broker import LocalBlockCache, LocalTaskQueue, RedisBlockCache
from ilastikbackend.roi import Roi
from ilastikbackend.services.blocks import BlockPredictor, PredictionSetup, encode_block
from ilastikbackend.services.web import ApiError


class Forgetful:
    """A cache that loses each block once right after it was stored (an eviction before read)."""

    def __init__(self, inner):
        self.inner = inner
        self.forgotten: set[str] = set()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def get_many(self, keys):
        values = self.inner.get_many(keys)
        out = []
        for k, v in zip(keys, values):
            if v is not None and k not in self.forgotten:
                self.forgotten.add(k)
                self.inner.delete_prefix(k)  # gone, claim included
                v = None
            out.append(v)
        return out


class Evicting(Forgetful):
    """A cache too small for anything: every block is gone before it is read."""

    def get_many(self, keys):
        values = self.inner.get_many(keys)
        for k, v in zip(keys, values):
            if v is not None:
                self.inner.delete_prefix(k)
        return [None] * len(keys)


CREATED: list[BlockPredictor] = []


def make(cache, handler_calls, fail_blocks=()):
    setup = PredictionSetup(
        project_hash=uuid.uuid4().hex * 2, project_url="", dataset_id=uuid.uuid4().hex[:16], dataset_shape=(40, 30),
        dataprovider_url="", block_shape=(16, 16), halo=(0, 0), num_classes=2,
    )  # fmt: skip
    predictor = None

    def handler(task):
        b = task["block_id"]
        handler_calls.append(b)
        if b in fail_blocks:
            raise OSError(f"cannot read block {b}")
        lo, hi = predictor.blocking.block_bounds(b)
        shape = [e - s for s, e in zip(lo, hi)]
        cache.put(task["key"], encode_block(np.full(shape + [2], b, np.float32)))

    queue = LocalTaskQueue(handler, lambda task, msg: cache.put_error(task["key"], f"block {task['block_id']}: {msg}"),
                           workers=3, max_retries=1)  # fmt: skip
    predictor = BlockPredictor(setup, cache, queue, lease_seconds=5, timeout_seconds=30)
    CREATED.append(predictor)
    return predictor


def expected_ids(predictor, roi):
    out = np.empty(predictor.setup.dataset_shape, np.float32)
    for b in range(predictor.blocking.num_blocks):
        lo, hi = predictor.blocking.block_bounds(b)
        out[lo[0] : hi[0], lo[1] : hi[1]] = b
    return out[roi.slices()]


@pytest.fixture(params=["local", "redis"])
def cache(request):
    c = LocalBlockCache() if request.param == "local" else RedisBlockCache(REDIS_URL)
    yield c
    while CREATED:  # leave the shared Redis as it was
        p = CREATED.pop()
        c.delete_prefix(p.setup.key_prefix)
        if isinstance(c, RedisBlockCache):
            forget_dataset(REDIS_URL, p.setup.dataset_id)
    c.close()


def test_stitching_and_cropping(cache):
    calls = []
    p = make(cache, calls)
    roi = Roi((5, 3), (37, 29))
    got = p.roi(roi)
    np.testing.assert_array_equal(got[..., 0], expected_ids(p, roi))
    assert sorted(calls) == sorted(p.blocking.blocks_in_roi([5, 3], [37, 29]))
    p.roi(roi)
    assert len(calls) == len(set(calls))  # the second time everything came from the cache
    assert p.cached_block_ids() == sorted(set(calls))
    assert p.clear() == len(set(calls)) and p.cached_block_ids() == []


def test_concurrent_requests_compute_once(cache):
    calls = []
    p = make(cache, calls)
    roi = Roi((0, 0), (40, 30))
    results = []
    threads = [threading.Thread(target=lambda: results.append(p.roi(roi))) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 20 and sorted(calls) == list(range(p.blocking.num_blocks))
    # no claim outlives its result (an orphan would delay recomputing an evicted block by a whole lease)
    assert not any(cache.claimed([p.key(b) for b in range(p.blocking.num_blocks)]))


def test_blocks_lost_before_read_are_recomputed(cache):
    calls = []
    p = make(Forgetful(cache), calls)
    roi = Roi((0, 0), (40, 30))
    np.testing.assert_array_equal(p.roi(roi)[..., 1], expected_ids(p, roi))
    assert sorted(calls) == sorted(list(range(p.blocking.num_blocks)) * 2)  # each computed again once


def test_a_cache_that_loses_every_block_before_it_is_read_is_named_within_seconds(cache):
    calls = []
    p = make(Evicting(cache), calls)
    started = time.monotonic()
    with pytest.raises(ApiError) as info:
        p.roi(Roi((0, 0), (40, 30)))
    assert info.value.status == 503 and "too small for this request" in info.value.message, info.value.message
    assert time.monotonic() - started < 15
    assert max(calls.count(b) for b in set(calls)) == 2  # computed twice, evicted twice: then it says so


def test_failing_block_is_reported_with_its_id(cache):
    calls = []
    p = make(cache, calls, fail_blocks={4})
    with pytest.raises(ApiError) as info:
        p.roi(Roi((0, 0), (40, 30)))
    assert info.value.status == 502 and "block 4" in info.value.message and info.value.details["blocks"] == [4]
    assert calls.count(4) == 2  # one retry, then given up
