"""Fault injection with real processes: killed workers, restarted Redis and RabbitMQ, evicted
blocks, stampedes of identical requests, and tasks that always fail. Every test runs against
its own Redis and RabbitMQ on spare ports (brokers.py), never the shared ones."""

from __future__ import annotations

import re
import threading
import time

import h5py
import numpy as np
import projects
import pytest
import requests
from brokers import ThrowawayRabbitMQ, ThrowawayRedis
from conftest import FAULT_REPORT
from stack import Stack
from test_services_e2e import decode

from ilastikbackend.core import PixelClassifier, load_project
from ilastikbackend.services.blocks import PredictionSetup
from ilastikbackend.services.encoding import axistags

VOLUME = (64, 128, 128)  # four 64^3 blocks of about half a second each
WHOLE = "extents_min=0_0_0&extents_max=64_128_128"


@pytest.fixture(scope="module")
def brokers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("brokers")
    redis_server = ThrowawayRedis(tmp)
    rabbit = ThrowawayRabbitMQ(tmp)
    yield redis_server, rabbit
    redis_server.stop()
    rabbit.cleanup()


@pytest.fixture(scope="module")
def volume(tmp_path_factory, project_3d):
    path, _ = project_3d
    tmp = tmp_path_factory.mktemp("volume")
    raw = projects.blobs(VOLUME, seed=31, dtype=np.uint16, n_blobs=25)
    with h5py.File(tmp / "vol.h5", "w") as f:
        f.create_dataset("data", data=raw).attrs["axistags"] = axistags("zyx")
    expected = PixelClassifier(load_project(path), z_size=VOLUME[0]).predict(raw, n_threads=2)
    return path, tmp / "vol.h5", expected


@pytest.fixture(scope="module")
def fault_stack(tmp_path_factory, brokers, volume):
    redis_server, rabbit = brokers
    path, raw_file, _ = volume
    stack = Stack(tmp_path_factory.mktemp("faultstack"), project=path, raw_file=raw_file, raw_path="data",
                  distributed=True, workers=2, blocksize=64, redis_url=redis_server.url, amqp_url=rabbit.url,
                  extra=["--lease-seconds", "4"])  # fmt: skip
    yield stack
    stack.stop()


class LogWatch:
    """Reads only what services logged after it was created."""

    def __init__(self, services):
        self.services = list(services)
        self.offsets = {s.log_path: s.log_path.stat().st_size for s in self.services}

    def text(self, service) -> str:
        with open(service.log_path, "rb") as fh:
            fh.seek(self.offsets.get(service.log_path, 0))
            return fh.read().decode(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for s in self.services:
                if re.search(pattern, self.text(s)):
                    return s
            time.sleep(0.005)
        raise AssertionError(f"nobody logged {pattern!r} within {timeout} s")

    def count(self, pattern: str) -> int:
        return sum(len(re.findall(pattern, self.text(s))) for s in self.services)


def fresh(stack: Stack, redis_server: ThrowawayRedis, workers: int = 2) -> None:
    """Empty cache and task queue, dead workers replaced."""
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(stack.amqp_url))
    conn.channel().queue_purge(stack.queue)
    conn.close()
    redis_server.client().flushall()
    stack.workers = [w for w in stack.workers if w.proc.poll() is None]
    while len(stack.workers) < workers:
        stack.add_worker()


def computations(redis_server) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in redis_server.client().hgetall("ilb:computations").items()}


def in_background(url: str) -> tuple[threading.Thread, dict]:
    box: dict = {}

    def run():
        try:
            box["response"] = requests.get(url, timeout=300)
        except requests.RequestException as err:
            box["error"] = err

    t = threading.Thread(target=run)
    t.start()
    return t, box


def setup_of(stack: Stack) -> PredictionSetup:
    return PredictionSetup.from_info(requests.get(f"{stack.pixelclassification_url}/prediction/info").json())


def report(test: str, *, faults: int, requests: int, lost: int, counts: dict[str, int], note: str = "") -> None:
    FAULT_REPORT.append({"test": test, "faults": faults, "requests": requests, "lost": lost,
                         "duplicates": sum(n - 1 for n in counts.values()), "note": note})  # fmt: skip


def test_worker_killed_mid_block(fault_stack, brokers, volume):
    redis_server, _ = brokers
    fresh(fault_stack, redis_server)
    watch = LogWatch(fault_stack.workers)
    thread, box = in_background(f"{fault_stack.gateway_url}/prediction/npy/roi?extents_min=0_0_0&extents_max=64_64_64")
    victim = watch.wait_for(r"block_started block=0\b")
    victim.kill()  # SIGKILL in the middle of block 0
    thread.join(300)
    assert box["response"].status_code == 200, box["response"].text
    np.testing.assert_array_equal(decode(box["response"], "npy"), volume[2][:64, :64, :64])
    counts = computations(redis_server)
    assert list(counts.values()) == [1], counts  # stored once, by the survivor
    key = setup_of(fault_stack).key_prefix + "0"
    assert not redis_server.client().exists(key + ":claim")
    report("worker SIGKILL mid-block", faults=1, requests=1, lost=0, counts=counts, note="task redelivered")


def test_expired_claim_is_issued_again(fault_stack, brokers, volume):
    """A claim whose owner vanished before queueing anything expires, and the block is queued anew."""
    redis_server, _ = brokers
    fresh(fault_stack, redis_server)
    key = setup_of(fault_stack).key_prefix + "1"
    redis_server.client().set(key + ":claim", b"1", px=3000)
    watch = LogWatch(fault_stack.services)
    start = time.monotonic()
    r = requests.get(f"{fault_stack.gateway_url}/prediction/npy/roi?extents_min=0_0_64&extents_max=64_64_128",
                     timeout=120)  # fmt: skip
    assert r.status_code == 200, r.text
    assert time.monotonic() - start > 2.0  # it waited for the orphaned lease
    np.testing.assert_array_equal(decode(r, "npy"), volume[2][:64, :64, 64:])
    assert watch.count("blocks_reissued") >= 1
    report("orphaned claim (lease expiry)", faults=1, requests=1, lost=0, counts=computations(redis_server))


def test_redis_restart_while_requests_are_in_flight(fault_stack, brokers, volume):
    redis_server, _ = brokers
    fresh(fault_stack, redis_server)
    watch = LogWatch(fault_stack.workers)
    threads = [in_background(f"{fault_stack.gateway_url}/prediction/npy/roi?{WHOLE}") for _ in range(3)]
    watch.wait_for(r"block_done block=")
    redis_server.restart()  # every value, claim and counter is gone
    for thread, box in threads:
        thread.join(300)
        assert box["response"].status_code == 200, box["response"].text
        np.testing.assert_array_equal(decode(box["response"], "npy"), volume[2])
    report("Redis restarted mid-flight", faults=1, requests=3, lost=0, counts={},
           note=f"{watch.count('block_done')} block computations for 4 blocks")  # fmt: skip


def test_blocks_evicted_before_they_are_read(fault_stack, brokers, volume):
    """Values deleted right after they land (as an LRU eviction would) are computed again."""
    redis_server, _ = brokers
    fresh(fault_stack, redis_server)
    prefix = setup_of(fault_stack).key_prefix
    client = redis_server.client()
    evicted = []
    stop = threading.Event()

    def evict():
        while not stop.is_set() and len(evicted) < 3:
            for k in client.scan_iter(match=prefix + "*"):
                k = k.decode()
                if k[len(prefix) :].isdigit() and k not in evicted:
                    client.delete(k)
                    evicted.append(k)
            time.sleep(0.001)

    watch = LogWatch(fault_stack.workers)
    evictor = threading.Thread(target=evict)
    evictor.start()
    r = requests.get(f"{fault_stack.gateway_url}/prediction/npy/roi?{WHOLE}", timeout=300)
    stop.set()
    evictor.join()
    assert r.status_code == 200, r.text
    np.testing.assert_array_equal(decode(r, "npy"), volume[2])
    assert evicted
    done = watch.count("block_done")
    report("blocks deleted as they land", faults=len(evicted), requests=1, lost=0, counts={},
           note=f"{done} computations for 4 blocks")  # fmt: skip


def test_lru_bound_evicts_and_blocks_are_recomputed(fault_stack, brokers, volume):
    redis_server, _ = brokers
    fresh(fault_stack, redis_server)
    client = redis_server.client()
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory-policy", "allkeys-lru")
    client.config_set("maxmemory", used + 8 * (1 << 20))  # room for two of the four 3 MB blocks
    watch = LogWatch(fault_stack.workers)
    try:
        results = [requests.get(f"{fault_stack.gateway_url}/prediction/npy/roi?{WHOLE}", timeout=300) for _ in range(3)]
        for r in results:
            assert r.status_code == 200, r.text
            np.testing.assert_array_equal(decode(r, "npy"), volume[2])
        done = watch.count("block_done")
        assert done > 4  # blocks evicted by the bound were computed again (counted in the logs:
        # the counters live in Redis and are evictable too)
        assert int(client.info("stats")["evicted_keys"]) > 0
    finally:
        client.config_set("maxmemory", 0)
    report("Redis LRU bound (maxmemory)", faults=1, requests=3, lost=0, counts={},
           note=f"{done} computations for 4 blocks x 3 requests")  # fmt: skip


def test_rabbitmq_restart_while_services_run(fault_stack, brokers, volume):
    redis_server, rabbit = brokers
    fresh(fault_stack, redis_server)
    r = requests.get(
        f"{fault_stack.gateway_url}/prediction/npy/roi?extents_min=0_0_0&extents_max=64_64_64", timeout=120
    )
    assert r.status_code == 200
    watch = LogWatch(fault_stack.services)
    rabbit.stop()
    thread, box = in_background(f"{fault_stack.gateway_url}/prediction/npy/roi?{WHOLE}")
    time.sleep(2.0)
    rabbit.start()
    thread.join(300)
    assert box["response"].status_code == 200, box["response"].text
    np.testing.assert_array_equal(decode(box["response"], "npy"), volume[2])
    assert watch.count("amqp_unavailable") >= 2  # gateway and workers noticed, backed off, carried on
    deadline = time.monotonic() + 30  # back-off is capped at 5 s: every worker is back soon
    while watch.count("consuming queue=") < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert watch.count("consuming queue=") >= 2  # both workers consume again
    assert all(w.proc.poll() is None for w in fault_stack.workers)
    report("RabbitMQ restarted", faults=1, requests=2, lost=0, counts=computations(redis_server),
           note="no service restarted")  # fmt: skip


@pytest.mark.parametrize("mode", ["distributed", "embedded"])
def test_fifty_identical_requests_compute_each_block_once(mode, fault_stack, brokers, volume, tmp_path):
    redis_server, _ = brokers
    if mode == "distributed":
        fresh(fault_stack, redis_server)
        stack = fault_stack
    else:
        path, raw_file, _ = volume
        stack = Stack(tmp_path, project=path, raw_file=raw_file, raw_path="data", distributed=False, blocksize=64)
    watch = LogWatch(stack.services)
    barrier = threading.Barrier(50)
    results = [None] * 50

    def run(i):
        barrier.wait()
        results[i] = requests.get(f"{stack.gateway_url}/prediction/npy/roi?{WHOLE}", timeout=300)

    try:
        threads = [threading.Thread(target=run, args=(i,)) for i in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        for r in results:
            assert r is not None and r.status_code == 200, r.text[:500]
            np.testing.assert_array_equal(decode(r, "npy"), volume[2])
        done = [int(b) for b in re.findall(r"block_done block=(\d+)", "".join(watch.text(s) for s in stack.services))]
        assert sorted(done) == [0, 1, 2, 3], done  # each block computed exactly once
        counts = computations(redis_server) if mode == "distributed" else {str(b): done.count(b) for b in set(done)}
        assert set(counts.values()) == {1}
    finally:
        if stack is not fault_stack:
            stack.stop()
    report(f"50 identical concurrent requests ({mode})", faults=0, requests=50, lost=0, counts=counts)


def test_always_failing_block_is_dead_lettered_and_reported(tmp_path, brokers, seed_project_path, seed_raw):
    """Block 3 of a damaged file cannot be read: bounded retries, dead letter, a 502 naming it."""
    redis_server, rabbit = brokers
    raw_file = tmp_path / "damaged.h5"
    with h5py.File(raw_file, "w") as f:
        ds = f.create_dataset("data", data=seed_raw, chunks=(32, 32), compression="gzip")
        info = ds.id.get_chunk_info_by_coord((64, 0))  # inside block 3 (rows 64..127, cols 0..63)
        offset, size = info.byte_offset, info.size
    with open(raw_file, "r+b") as fh:
        fh.seek(offset + 2)
        fh.write(b"\xff" * max(1, size - 4))
    stack = Stack(tmp_path, project=seed_project_path, raw_file=raw_file, raw_path="data", distributed=True,
                  workers=1, blocksize=64, redis_url=redis_server.url, amqp_url=rabbit.url)  # fmt: skip
    try:
        watch = LogWatch(stack.services)
        r = requests.get(f"{stack.gateway_url}/prediction/npy/roi?extents_min=70_10&extents_max=80_20", timeout=120)
        assert r.status_code == 502, r.text
        body = r.json()
        assert "block 3" in body["error"] and body["blocks"] == [3]
        assert "reading region" in body["error"]
        assert watch.count(r"task_failed block=3") == 3  # the first try and two retries
        assert rabbit.message_count(stack.queue + ".dead") == 1
        # far from the damaged chunk, halo included
        good = requests.get(
            f"{stack.gateway_url}/prediction/npy/roi?extents_min=150_150&extents_max=190_180", timeout=120
        )
        assert good.status_code == 200
        expected = PixelClassifier(load_project(seed_project_path)).predict(seed_raw)
        np.testing.assert_array_equal(decode(good, "npy"), expected[150:190, 150:180])
    finally:
        stack.stop()
    report("always-failing block (damaged chunk)", faults=1, requests=2, lost=0, counts={},
           note="3 attempts, dead-lettered, 502 names block 3")  # fmt: skip
