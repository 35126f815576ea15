"""``ilastikbackend export``: predictions of a dataset (or region) through a gateway into HDF5 or Zarr."""

from __future__ import annotations

import argparse
import time

from ilastikbackend.cli.options import fail
from ilastikbackend.services.web import base_url


def export_main(argv=None) -> None:
    """Predict a whole dataset (or a region) through a gateway into an HDF5 file or a Zarr folder."""
    p = argparse.ArgumentParser(prog="ilastikbackend export", description=export_main.__doc__)
    p.add_argument("--gateway", default="127.0.0.1:8080", help="gateway host:port or URL (default 127.0.0.1:8080)")
    p.add_argument("--output", required=True, help="an .h5 file or a .zarr folder")
    p.add_argument("--format", choices=("hdf5", "zarr"), default=None, help="default: from the output's extension")
    p.add_argument("--extents-min", default=None, help="region start, e.g. 0_0 (default: the whole dataset)")
    p.add_argument("--extents-max", default=None, help="region end (exclusive), e.g. 100_150")
    p.add_argument("--parallel", type=int, default=8, help="blocks requested at once (default 8)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    import io

    import numpy as np
    import requests

    from ilastikbackend.core.blocking import make_blocking
    from ilastikbackend.roi import Roi, parse_roi
    from ilastikbackend.services.blocks import PredictionSetup
    from ilastikbackend.services.export import OutputWriter, ProgressBar, plan, run_export
    from ilastikbackend.services.web import ApiError

    url = base_url(args.gateway)
    fmt = args.format or ("zarr" if args.output.rstrip("/").endswith(".zarr") else "hdf5")
    try:
        info = requests.get(f"{url}/prediction/info", timeout=30)
        info.raise_for_status()
        info = info.json()
    except (requests.RequestException, ValueError) as err:
        fail(f"cannot reach the gateway at {url}: {err}")
    setup = PredictionSetup.from_info(info)
    shape = setup.region_shape
    try:
        if args.extents_min or args.extents_max:
            roi = parse_roi({"extents_min": args.extents_min, "extents_max": args.extents_max}, shape)
        else:
            roi = Roi(tuple(0 for _ in shape), shape)
    except ApiError as err:
        fail(err.message)
    blocking = make_blocking(setup.dataset_shape, setup.block_shape, setup.time_points)
    parts = plan(blocking, roi)
    session = requests.Session()

    def fetch(block_id, lo, hi):
        r = session.get(f"{url}/prediction/npy/roi?{Roi(lo, hi).query()}", timeout=3600)
        if r.status_code != 200:
            raise RuntimeError(f"block {block_id}: gateway answered {r.status_code}: {r.text[:300]}")
        return np.load(io.BytesIO(r.content))

    classes = int(info["num_classes"])
    axes = setup.axes
    writer = OutputWriter(args.output, fmt, roi.shape + (classes,), tuple(blocking.block_shape) + (classes,), axes)
    start = time.monotonic()
    progress = None if args.quiet else ProgressBar(roi.size, f"export {len(parts)} blocks")
    try:
        run_export(parts, fetch, writer, roi, parallel=args.parallel, progress=progress)
    except (RuntimeError, requests.RequestException) as err:
        fail(f"export failed: {err}")
    finally:
        writer.close()
    seconds = time.monotonic() - start
    where = f"{args.output}:exported_data" if fmt == "hdf5" else args.output
    print(f"wrote {where} {roi.shape + (classes,)} float32 ({axes}) in {seconds:.1f} s, "
          f"{roi.size / seconds / 1e6:.2f} Mvoxel/s")  # fmt: skip
