"""What the command lines share: argument groups, start-up checks that fail with one clear line,
building the cache/queue back end, and running waitress servers."""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

from ilastikbackend.core.engines import ENGINES
from ilastikbackend.log import log_event

MiB = 1 << 20


def common_args(p: argparse.ArgumentParser, port: int) -> None:
    p.add_argument("--port", type=int, default=port, help=f"port to listen on (default {port})")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; use 0.0.0.0 to accept other machines)",
    )
    p.add_argument("--threads", type=int, default=48, help="request threads (default 48)")
    p.add_argument(
        "--max-roi-voxels",
        type=int,
        default=1 << 26,
        help="largest region one request may ask for, in voxels (default 67108864)",
    )
    p.add_argument("--verbose", action="store_true", help="log every request")


def backend_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cache and workers (default: in-process)")
    g.add_argument(
        "--redis-url",
        default=os.environ.get("ILASTIKBACKEND_REDIS_URL"),
        help="Redis for the block cache, e.g. redis://127.0.0.1:6379/0 (default: in-process LRU cache)",
    )
    g.add_argument(
        "--amqp-url",
        default=os.environ.get("ILASTIKBACKEND_AMQP_URL"),
        help="RabbitMQ for block tasks, e.g. amqp://guest:guest@127.0.0.1:5672/%%2F "
        "(default: in-process worker pool); needs --redis-url",
    )
    g.add_argument("--queue", default="ilastik.blocks", help="RabbitMQ queue name (default ilastik.blocks)")
    g.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="in-process workers when no --amqp-url is given (default: one per core)",
    )
    g.add_argument("--cache-mib", type=int, default=1024, help="in-process cache bound in MiB (default 1024)")
    g.add_argument(
        "--lease-seconds",
        type=float,
        default=120.0,
        help="how long a block claim lives without a result before it is issued again (default 120)",
    )
    g.add_argument(
        "--timeout-seconds", type=float, default=600.0, help="how long a request waits for its blocks (default 600)"
    )


def export_dir_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--export-dir", default=None, help="where export jobs write their files (default: a new temporary folder)"
    )


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def make_backend(args, registry=None):
    """(cache, task queue): Redis/RabbitMQ when configured, else the in-process default."""
    from ilastikbackend.broker import LocalTaskQueue, RabbitMQTaskQueue, open_cache
    from ilastikbackend.services.worker import BlockWorker, ClassifierRegistry

    if args.amqp_url and not args.redis_url:
        fail("--amqp-url needs --redis-url: remote workers store their results in Redis")
    cache = open_cache(args.redis_url, args.cache_mib * MiB)
    if args.amqp_url:
        return cache, RabbitMQTaskQueue(args.amqp_url, args.queue)
    worker = BlockWorker(cache, registry or ClassifierRegistry())
    return cache, LocalTaskQueue(worker.handle, worker.fail, workers=args.workers)


def open_source(args, project=None):
    """The raw data of ``args``; with a project, read with its training axes and scale and checked against
    its channel count (a start-up error naming both numbers)."""
    from ilastikbackend.data import DataSourceError, check_channels, open_dataset

    try:
        reader = open_dataset(
            args.raw_data_file, internal_path=args.raw_data_path, axes=args.raw_data_axes,
            training_axes=project.training_axes if project is not None else None,
            stack_along=getattr(args, "stack_along", None) or "z", scale=getattr(args, "raw_data_scale", None),
            working_scale=project.working_scale if project is not None else None,
            format=getattr(args, "raw_data_format", None),
        )  # fmt: skip
        if project is not None:
            check_channels(reader.info, project.input_channels, project=project.path)
        return reader
    except DataSourceError as err:
        fail(str(err))


def load_project(args):
    from ilastikbackend.core import ProjectError, load_project

    try:
        return load_project(args.project)
    except ProjectError as err:
        fail(f"cannot serve {args.project}: {err}")


def make_classifier(args, project, spatial_shape):
    """The project's classifier for a dataset of this spatial shape, or a start-up error."""
    from ilastikbackend.core import PixelClassifier
    from ilastikbackend.core.engines import resolve_engine

    choice = args.engine_choice = resolve_engine(project.ilastik_version, args.feature_engine)
    log_event("feature_engine", engine=choice.name, reason=choice.reason)
    if len(spatial_shape) != project.spatial_ndim:
        fail(f"the project was trained on {project.spatial_ndim}D data ({project.raw_axes or '?'}), "
              f"the dataset is {len(spatial_shape)}D")  # fmt: skip
    try:
        z_size = int(spatial_shape[0]) if len(spatial_shape) == 3 else None
        return PixelClassifier(project, z_size=z_size, engine=choice.name)
    except ValueError as err:
        fail(f"cannot serve {args.project}: {err}")


def raw_args(p: argparse.ArgumentParser) -> None:
    from ilastikbackend.data import format_names

    p.add_argument(
        "--raw-data-file",
        required=True,
        help="the raw data: HDF5 (file.h5/dataset), TIFF/OME-TIFF, PNG, JPEG, BMP, GIF, .npy, .npz, Zarr, N5, "
        "OME-Zarr, an .ilp holding its raw data, or an image sequence (a folder or a quoted glob)",
    )
    p.add_argument(
        "--raw-data-path",
        default=None,
        help="dataset inside an HDF5, Zarr, N5 or npz container, e.g. exported_data (or append it: file.h5/data)",
    )
    p.add_argument(
        "--raw-data-axes",
        default=None,
        help="axes of the data in the file's order, e.g. yx, zyx, yxc, tzyxc; overrides everything (default: "
        "the project's training axes, else the file's metadata, else ilastik's guess by dimension)",
    )
    p.add_argument(
        "--raw-data-format",
        choices=format_names(),
        default=None,
        help="read the data as this format instead of detecting it from the file",
    )
    p.add_argument(
        "--stack-along",
        choices=("z", "t", "c"),
        default="z",
        help="how an image sequence is stacked (ilastik's --stack_along; default z)",
    )
    p.add_argument(
        "--raw-data-scale",
        default=None,
        help="OME-Zarr scale to serve, a dataset path (e.g. s1) or index (default: the project's working "
        "scale, else full resolution)",
    )


def project_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--project", required=True, help="ilastik Pixel Classification project (.ilp)")
    p.add_argument(
        "--blocksize", type=int, default=None, help="block edge length in pixels (default 256 for 2D, 64 for 3D)"
    )
    p.add_argument(
        "--feature-engine",
        choices=tuple(ENGINES),
        default=None,
        help="whose arithmetic computes the features: vigra (ilastik < 1.3) or fastfilters (ilastik >= 1.3); "
        "default: from the ilastik version saved in the project",
    )
    p.add_argument("--clear-cache", action="store_true", help="drop this project's cached blocks at start-up")


def make_server(app, args):
    from waitress import create_server

    try:
        server = create_server(app, host=args.host, port=args.port, threads=args.threads, ident=app.name,
                               channel_timeout=600, connection_limit=1000)  # fmt: skip
    except OSError as err:
        fail(f"{app.name} cannot listen on {args.host}:{args.port}: {err.strerror or err}")
    log_event("listening", service=app.name, url=f"http://{args.host}:{args.port}", threads=args.threads)
    return server


def run_servers(servers) -> None:
    threads = [threading.Thread(target=s.run, daemon=True, name="http") for s in servers]
    for t in threads:
        t.start()
    try:
        while all(t.is_alive() for t in threads):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for s in servers:
            s.close()
