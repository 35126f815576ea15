"""Service overhead and scaling, measured in one run against the core's direct compute.

Starts the distributed stack (data provider, pixel classification service, gateway, workers) as
real processes on loopback against the local Redis and RabbitMQ, then prints:

* cold and warm latency of a 512x512 ROI (2D, the seed project pc.ilp on a 2048x2048 image,
  256-blocks) and of a 64^3 block (3D project, 128^3 volume) through the gateway, against the
  core computing the same region in-process (overhead ratio; target <= 1.3 cold);
* blocks/s with 1 and 2 workers on 16 cold 2D blocks (scaling efficiency).

Usage: ``python bench/service.py`` (needs Redis on 127.0.0.1:6379, RabbitMQ on 5672, python3-vigra).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import redis
import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "test"))

import projects  # noqa: E402
from stack import REDIS_URL, Stack  # noqa: E402

from ilastikbackend.core import PixelClassifier, load_project  # noqa: E402
from ilastikbackend.services.encoding import axistags  # noqa: E402

SEED = HERE.parent.parent / "shared" / "seed-data"
REPEATS = 3


def clear(stack: Stack) -> None:
    info = requests.get(f"{stack.pixelclassification_url}/prediction/info").json()
    prefix = f"ilb:v1:{info['project_hash'][:24]}:"
    r = redis.Redis.from_url(REDIS_URL)
    keys = list(r.scan_iter(match=prefix + "*", count=1000))
    if keys:
        r.delete(*keys)


def warm_up(stack: Stack, begin, end) -> None:
    """Let every worker load its classifier (a first block includes the project download)."""
    clear(stack)
    fetch(stack, begin, end)
    clear(stack)


def fetch(stack: Stack, begin, end) -> float:
    q = f"extents_min={'_'.join(map(str, begin))}&extents_max={'_'.join(map(str, end))}"
    t0 = time.perf_counter()
    r = requests.get(f"{stack.gateway_url}/prediction/npy/roi?{q}", timeout=600)
    dt = time.perf_counter() - t0
    assert r.status_code == 200, r.text
    return dt


def direct(clf: PixelClassifier, raw: np.ndarray, begin, end, threads: int) -> float:
    """The core on the same region in-process, read with its halo as a worker would.

    One thread: the region as one tile. Two threads: the region cut into two or more tiles, each
    computed with its own halo, on both cores (what the two workers have too).
    """
    halo = clf.halo
    ob = [max(0, b - h) for b, h in zip(begin, halo)]
    oe = [min(n, e + h) for e, h, n in zip(end, halo, raw.shape)]
    piece = np.ascontiguousarray(raw[tuple(slice(b, e) for b, e in zip(ob, oe))])
    shape = [e - b for b, e in zip(begin, end)]
    tile = None if threads == 1 else [max(1, shape[0] // 2)] + shape[1:]
    if tile is not None and len(tile) == 2:
        tile = [1] + tile
    t0 = time.perf_counter()
    clf.predict(piece, [b - o for b, o in zip(begin, ob)], [e - o for e, o in zip(end, ob)], n_threads=threads,
                tile=tile)  # fmt: skip
    return time.perf_counter() - t0


def latency(label: str, stack: Stack, clf: PixelClassifier, raw: np.ndarray, regions) -> None:
    cold, warm, one, two = [], [], [], []
    for begin, end in regions:
        clear(stack)
        cold.append(fetch(stack, begin, end))
        warm.append(fetch(stack, begin, end))
        one.append(direct(clf, raw, begin, end, 1))
        two.append(direct(clf, raw, begin, end, 2))
    c, w = statistics.median(cold), statistics.median(warm)
    d1, d2 = statistics.median(one), statistics.median(two)
    print(f"{label} (median of {len(regions)}):")
    print(f"  core direct, in-process: 1 thread {d1 * 1e3:7.1f} ms, 2 threads {d2 * 1e3:7.1f} ms")
    print(
        f"  gateway cold {c * 1e3:7.1f} ms: overhead ratio {c / d1:.2f} vs 1 thread (target <= 1.3), "
        f"{c / d2:.2f} vs 2 threads"
    )
    print(f"  gateway warm {w * 1e3:7.1f} ms: ratio {w / d1:.3f} vs 1 thread")


def scaling(stack: Stack, raw_shape) -> None:
    rates = []
    for n_workers, begin in ((1, (0, 0)), (2, (1024, 1024))):
        while len(stack.workers) < n_workers:
            stack.add_worker()
        warm_up(stack, (0, 1024), (256, 2048))
        end = (begin[0] + 1024, begin[1] + 1024)
        dt = fetch(stack, begin, end)
        rates.append(16 / dt)
        print(f"  {n_workers} worker(s): 16 blocks of 256x256 in {dt:.2f} s = {16 / dt:.2f} blocks/s")
    print(
        f"  scaling 1 -> 2 workers: {rates[1] / rates[0]:.2f}x, efficiency {rates[1] / rates[0] / 2:.0%} "
        "(2 cores here, shared with the services)"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        raw2 = projects.blobs((2048, 2048), seed=21, n_blobs=60)
        with h5py.File(tmp / "raw2.h5", "w") as f:
            f.create_dataset("data", data=raw2).attrs["axistags"] = axistags("yx")
        clf2 = PixelClassifier(load_project(SEED / "pc.ilp"))
        stack = Stack(tmp, project=SEED / "pc.ilp", raw_file=tmp / "raw2.h5", raw_path="data", distributed=True,
                      workers=1, blocksize=256)  # fmt: skip
        try:
            print("2D, pc.ilp (33 features, 100 trees), 2048x2048 uint8, 256-blocks, distributed stack:")
            print("blocks/s:")
            scaling(stack, raw2.shape)
            regions = [((512 * i, 512), (512 * i + 512, 1024)) for i in range(REPEATS)]
            latency("512x512 ROI, 2 workers", stack, clf2, raw2, regions)
        finally:
            stack.stop()

        raw3 = projects.blobs((128, 128, 128), seed=22, n_blobs=30)
        p3 = projects.write_project(tmp / "p3.ilp", raw3[32:96, 32:96, 32:96, None], scales=(0.7, 1.0, 1.6, 3.5),
                                    axes="zyx", n_classes=3, forests=4, trees=25)  # fmt: skip
        with h5py.File(tmp / "raw3.h5", "w") as f:
            f.create_dataset("data", data=raw3).attrs["axistags"] = axistags("zyx")
        clf3 = PixelClassifier(load_project(p3), z_size=128)
        stack = Stack(tmp, project=p3, raw_file=tmp / "raw3.h5", raw_path="data", distributed=True, workers=2,
                      blocksize=64)  # fmt: skip
        try:
            print("3D, 4 scales x 6 features (40 channels), 100 trees, 128^3 uint8, 64-blocks, distributed stack:")
            regions = [((64 * (i // 2), 64 * (i % 2), 0), (64 * (i // 2) + 64, 64 * (i % 2) + 64, 64))
                       for i in range(REPEATS)]  # fmt: skip
            warm_up(stack, (64, 64, 64), (128, 128, 128))
            latency("64^3 block", stack, clf3, raw3, regions)
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
