"""What the command lines share: argument groups, start-up checks that fail with one clear line,
building the cache/queue back end, and running waitress servers."""

from __future__ import annotations

import argparse
import os
import sys
import threading

from ilastikbackend import scratch
from ilastikbackend.core.engines import ENGINES
from ilastikbackend.log import configure_logging, log_event

MiB = 1 << 20


def server_args(p: argparse.ArgumentParser) -> None:
    """How a service listens, and what bounds it: everything but the port."""
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1, this machine only; another address, e.g. 0.0.0.0, "
        "must be given explicitly and lets other machines in: put it behind a firewall or a proxy)",
    )
    p.add_argument("--threads", type=int, default=48, help="request threads (default 48)")
    p.add_argument(
        "--max-roi-voxels",
        type=int,
        default=1 << 26,
        help="largest region one request may ask for, in voxels (default 67108864)",
    )
    p.add_argument(
        "--memory-budget-mib",
        type=int,
        default=2048,
        help="memory the requests in flight may hold together (default 2048); requests over it wait, "
        "then get 503 with Retry-After",
    )
    p.add_argument(
        "--max-waiting-requests", type=int, default=16, help="requests that may wait for memory (default 16)"
    )
    p.add_argument(
        "--temp-dir",
        default=None,
        help="where this process's scratch folder goes (default $ILASTIKBACKEND_TMPDIR or the system's temp "
        "dir); it is removed on exit",
    )
    p.add_argument("--verbose", action="store_true", help="log every request")


def common_args(p: argparse.ArgumentParser, port: int) -> None:
    p.add_argument("--port", type=int, default=port, help=f"port to listen on (default {port})")
    server_args(p)


def start(args, *, logs: bool = True) -> None:
    """What every command does first: logs, the scratch folder's place, SIGTERM as a clean exit.

    ``logs=False``: a command whose own output is for people (headless's progress and results) logs only
    with ``--verbose``."""
    if logs or getattr(args, "verbose", False):
        configure_logging(getattr(args, "verbose", False))
    scratch.configure(getattr(args, "temp_dir", None))
    scratch.exit_on_sigterm()


def make_budget(args):
    from ilastikbackend.services.budget import MemoryBudget

    if args.memory_budget_mib < 1:
        fail(f"--memory-budget-mib must be positive, got {args.memory_budget_mib}")
    return MemoryBudget(args.memory_budget_mib * MiB, max_waiting=args.max_waiting_requests)


def backend_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cache and workers (default: in-process)")
    g.add_argument(
        "--redis-url",
        default=os.environ.get("ILASTIKBACKEND_REDIS_URL"),
        help="Redis for the block cache, redis://[:PASSWORD@]HOST:6379/0, or $ILASTIKBACKEND_REDIS_URL "
        "(default: in-process LRU cache)",
    )
    g.add_argument(
        "--amqp-url",
        default=os.environ.get("ILASTIKBACKEND_AMQP_URL"),
        help="RabbitMQ for block tasks, amqp://USER:PASSWORD@HOST:5672/%%2F, or $ILASTIKBACKEND_AMQP_URL "
        "(default: in-process worker pool); needs --redis-url",
    )
    g.add_argument("--queue", default="ilastik.blocks", help="RabbitMQ queue name (default ilastik.blocks)")
    project_token_args(g)
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


PROJECT_TOKEN_ENV = "ILASTIKBACKEND_PROJECT_TOKEN"


def project_token_args(p) -> None:
    p.add_argument(
        "--project-download-token",
        default=os.environ.get(PROJECT_TOKEN_ENV),
        help=f"a shared secret (or ${PROJECT_TOKEN_ENV}): the pixel classification service hands its project "
        "only to workers that present it; workers (and a gateway computing in-process) download with it. "
        "Without it the project is never handed out, and workers need --project",
    )


def export_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("export jobs (POST /export)")
    g.add_argument(
        "--export-dir",
        default=None,
        help="where export jobs write their files (default: this process's scratch folder)",
    )
    g.add_argument("--export-max-jobs", type=int, default=4, help="exports queued or running at once (default 4)")
    g.add_argument(
        "--export-max-mib",
        type=int,
        default=8192,
        help="disk the export results may use together, in MiB (default 8192)",
    )
    g.add_argument("--export-ttl-seconds", type=float, default=3600.0,
                   help="how long a finished export is kept before it is deleted (default 3600)")  # fmt: skip


def make_exports(args):
    from ilastikbackend.services.export import ExportJobs

    return ExportJobs(args.export_dir, max_active=args.export_max_jobs, max_bytes=args.export_max_mib * MiB,
                      ttl_seconds=args.export_ttl_seconds)  # fmt: skip


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
    worker = BlockWorker(cache, registry or ClassifierRegistry(download_token=args.project_download_token))
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
    except DataSourceError as err:
        fail(str(err))
    if 0 in reader.info.shape:
        fail(f"{args.raw_data_file}: the dataset is empty (shape {reader.info.shape}, axes {reader.info.axes})")
    return reader


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
        classifier = PixelClassifier(project, z_size=z_size, engine=choice.name)
    except ValueError as err:
        fail(f"cannot serve {args.project}: {err}")
    try:
        classifier.check_image(spatial_shape)  # else every block would fail with this
    except ValueError as err:
        fail(f"cannot serve {args.raw_data_file} of shape {tuple(spatial_shape)} with {args.project}: {err}")
    return classifier


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


def data_root_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-root",
        default=None,
        help="let clients register more files to serve (POST /datasets?path=...), from this folder only "
        "(default: serve the --raw-data-file dataset only)",
    )
    p.add_argument(
        "--max-datasets",
        type=int,
        default=256,
        help="registered datasets kept (the least recently used is forgotten beyond it; default 256)",
    )


def data_root_options(args, project=None) -> dict:
    """The data provider's registering options from ``data_root_args``; a data root must be a folder."""
    root = getattr(args, "data_root", None)
    if root is not None and not os.path.isdir(root):
        fail(f"--data-root {root}: no such folder")
    if getattr(args, "max_datasets", 1) < 1:
        fail(f"--max-datasets must be at least 1, got {args.max_datasets}")
    return {"data_root": root, "project": project, "max_datasets": getattr(args, "max_datasets", 256)}


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


def make_server(app, args, sock=None):
    """A waitress server for ``app`` listening on ``args.host:args.port``, or on ``sock`` (bound already)."""
    from waitress import create_server

    listen = {"host": args.host, "port": args.port} if sock is None else {"sockets": [sock]}
    try:
        server = create_server(app, threads=args.threads, ident=app.name, channel_timeout=600, connection_limit=1000,
                               **listen)  # fmt: skip
    except OSError as err:
        fail(f"{app.name} cannot listen on {args.host}:{args.port}: {err.strerror or err}")
    app.config["LISTENING"] = (args.host, args.port)
    log_event("listening", service=app.name, url=f"http://{args.host}:{args.port}", threads=args.threads)
    return server


def run_servers(servers, stop: threading.Event | None = None) -> None:
    """Serve until Ctrl-C, SIGTERM (see :func:`start`), ``stop`` being set, or a server dying."""
    stop = stop or threading.Event()
    threads = [threading.Thread(target=s.run, daemon=True, name="http") for s in servers]
    for t in threads:
        t.start()
    try:
        while all(t.is_alive() for t in threads) and not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        for s in servers:
            s.close()
