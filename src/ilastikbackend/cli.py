"""Command lines of the services. The top-level scripts (dataproviderservice.py, ...) call these,
so the 2017 prototype's commands keep working; ``ilastikbackend serve`` runs all in one process."""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

from ilastikbackend.core.engines import ENGINES
from ilastikbackend.log import configure_logging, log_event
from ilastikbackend.services.web import base_url

MiB = 1 << 20


def _common(p: argparse.ArgumentParser, port: int) -> None:
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


def _backend(p: argparse.ArgumentParser) -> None:
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


def _export_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--export-dir", default=None, help="where export jobs write their files (default: a new temporary folder)"
    )


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _make_backend(args, registry=None):
    """(cache, task queue): Redis/RabbitMQ when configured, else the in-process default."""
    from ilastikbackend.broker import LocalTaskQueue, RabbitMQTaskQueue, open_cache
    from ilastikbackend.services.worker import BlockWorker, ClassifierRegistry

    if args.amqp_url and not args.redis_url:
        _fail("--amqp-url needs --redis-url: remote workers store their results in Redis")
    cache = open_cache(args.redis_url, args.cache_mib * MiB)
    if args.amqp_url:
        return cache, RabbitMQTaskQueue(args.amqp_url, args.queue)
    worker = BlockWorker(cache, registry or ClassifierRegistry())
    return cache, LocalTaskQueue(worker.handle, worker.fail, workers=args.workers)


def _open_source(args):
    from ilastikbackend.data import DataSourceError, open_source

    try:
        return open_source(args.raw_data_file, args.raw_data_path, args.raw_data_axes)
    except DataSourceError as err:
        _fail(str(err))


def _load_project(args):
    from ilastikbackend.core import ProjectError, load_project

    try:
        return load_project(args.project)
    except ProjectError as err:
        _fail(f"cannot serve {args.project}: {err}")


def _classifier(args, project, spatial_shape):
    """The project's classifier for a dataset of this spatial shape, or a start-up error."""
    from ilastikbackend.core import PixelClassifier
    from ilastikbackend.core.engines import resolve_engine

    choice = args.engine_choice = resolve_engine(project.ilastik_version, args.feature_engine)
    log_event("feature_engine", engine=choice.name, reason=choice.reason)
    if len(spatial_shape) != project.spatial_ndim:
        _fail(f"the project was trained on {project.spatial_ndim}D data ({project.raw_axes or '?'}), "
              f"the dataset is {len(spatial_shape)}D")  # fmt: skip
    try:
        z_size = int(spatial_shape[0]) if len(spatial_shape) == 3 else None
        return PixelClassifier(project, z_size=z_size, engine=choice.name)
    except ValueError as err:
        _fail(f"cannot serve {args.project}: {err}")


def _raw_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--raw-data-file",
        required=True,
        help="the raw data: an HDF5 file, a TIFF file, a folder of TIFF slices, a .zarr or .n5 folder",
    )
    p.add_argument(
        "--raw-data-path", default=None, help="dataset inside an HDF5, Zarr or N5 container, e.g. exported_data"
    )
    p.add_argument(
        "--raw-data-axes",
        default=None,
        help="axis order of the dataset, e.g. yx, zyx, yxc (default: from ilastik's axistags, "
        "else yx/zyx/zyxc by dimension)",
    )


def _project_args(p: argparse.ArgumentParser) -> None:
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


def _make_server(app, args):
    from waitress import create_server

    try:
        server = create_server(app, host=args.host, port=args.port, threads=args.threads, ident=app.name,
                               channel_timeout=600, connection_limit=1000)  # fmt: skip
    except OSError as err:
        _fail(f"{app.name} cannot listen on {args.host}:{args.port}: {err.strerror or err}")
    log_event("listening", service=app.name, url=f"http://{args.host}:{args.port}", threads=args.threads)
    return server


def _run(servers) -> None:
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


def dataprovider_main(argv=None) -> None:
    """Serve one raw dataset by region of interest (port 9000)."""
    p = argparse.ArgumentParser(prog="dataproviderservice.py", description="Serve a raw dataset by region.")
    _raw_args(p)
    _common(p, 9000)
    args = p.parse_args(argv)
    configure_logging(args.verbose)
    from ilastikbackend.services.dataprovider import create_app

    source = _open_source(args)
    log_event(
        "dataset",
        file=args.raw_data_file,
        path=args.raw_data_path,
        **{k: v for k, v in source.info.as_json().items() if k in ("shape", "dtype", "axes", "dataset_id")},
    )
    _run([_make_server(create_app(source, max_roi_voxels=args.max_roi_voxels), args)])


def _advertised(args) -> str:
    host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    return args.advertise_url.rstrip("/") if args.advertise_url else f"http://{host}:{args.port}"


def _pixelclassification_app(args, project, classifier, cache, tasks, info):
    from ilastikbackend.services.blocks import BlockPredictor
    from ilastikbackend.services.pixelclassification import create_app, make_setup

    try:
        setup = make_setup(
            project, info, dataprovider_url=base_url(args.dataprovider_ip),
            project_url=f"{_advertised(args)}/project/ilp", blocksize=args.blocksize,
            feature_engine=classifier.engine, halo=classifier.halo,
        )  # fmt: skip
    except SystemExit as err:
        _fail(str(err))
    predictor = BlockPredictor(setup, cache, tasks, lease_seconds=args.lease_seconds,
                               timeout_seconds=args.timeout_seconds)  # fmt: skip
    if args.clear_cache:
        log_event("cache_cleared", blocks=predictor.clear())
    log_event("serving_project", project=project.path, hash=project.content_hash[:12], version=project.ilastik_version,
              classes=project.num_classes, blocks=predictor.blocking.num_blocks,
              block_shape="x".join(map(str, setup.block_shape)), halo=setup.halo[0])  # fmt: skip
    return create_app(classifier, predictor, max_roi_voxels=args.max_roi_voxels,
                      engine_reason=args.engine_choice.reason)  # fmt: skip


def pixelclassification_main(argv=None) -> None:
    """Serve an ilastik project's predictions per block and region (port 8888)."""
    p = argparse.ArgumentParser(
        prog="pixelclassificationservice.py", description="Serve ilastik pixel classification predictions of a dataset."
    )
    _project_args(p)
    p.add_argument(
        "--dataprovider-ip", default="127.0.0.1:9000", help="data provider host:port (default 127.0.0.1:9000)"
    )
    p.add_argument(
        "--advertise-url",
        default=None,
        help="URL under which workers reach this service (default http://<host>:<port>)",
    )
    _common(p, 8888)
    _backend(p)
    args = p.parse_args(argv)
    configure_logging(args.verbose)
    from ilastikbackend.services.pixelclassification import dataset_info
    from ilastikbackend.services.worker import ClassifierRegistry

    project = _load_project(args)  # a bad project fails before anything waits for the data provider
    info = dataset_info(base_url(args.dataprovider_ip))
    classifier = _classifier(args, project, info["spatial_shape"])
    registry = ClassifierRegistry()
    registry.add(classifier, info["spatial_shape"])
    cache, tasks = _make_backend(args, registry)
    _run([_make_server(_pixelclassification_app(args, project, classifier, cache, tasks, info), args)])


def gateway_main(argv=None) -> None:
    """What clients talk to: raw data, predictions, viewer, neuroglancer, exports (port 8080)."""
    p = argparse.ArgumentParser(prog="ilastikgateway.py", description="The ilastik gateway: raw data and predictions.")
    p.add_argument(
        "--dataprovider-ip", default="127.0.0.1:9000", help="data provider host:port (default 127.0.0.1:9000)"
    )
    p.add_argument(
        "--pixelclassification-ip",
        default="127.0.0.1:8888",
        help="pixel classification service host:port (default 127.0.0.1:8888)",
    )
    _common(p, 8080)
    _backend(p)
    _export_dir(p)
    args = p.parse_args(argv)
    configure_logging(args.verbose)
    from ilastikbackend.services.gateway import GatewayState, create_app

    cache, tasks = _make_backend(args)
    state = GatewayState(base_url(args.dataprovider_ip), base_url(args.pixelclassification_ip), cache, tasks,
                         lease_seconds=args.lease_seconds, timeout_seconds=args.timeout_seconds,
                         export_dir=args.export_dir)  # fmt: skip
    _run([_make_server(create_app(state, max_roi_voxels=args.max_roi_voxels), args)])


def worker_main(argv=None) -> None:
    """Compute prediction blocks from the RabbitMQ queue into Redis."""
    p = argparse.ArgumentParser(prog="worker.py", description="Compute prediction blocks from the RabbitMQ queue.")
    p.add_argument(
        "--redis-url",
        default=os.environ.get("ILASTIKBACKEND_REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="Redis of the block cache (default redis://127.0.0.1:6379/0)",
    )
    p.add_argument(
        "--amqp-url",
        default=os.environ.get("ILASTIKBACKEND_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"),
        help="RabbitMQ with the block tasks (default amqp://guest:guest@127.0.0.1:5672/%%2F)",
    )
    p.add_argument("--queue", default="ilastik.blocks", help="queue name (default ilastik.blocks)")
    p.add_argument(
        "--project",
        action="append",
        default=[],
        help="preload a project (else projects are downloaded from the pixel classification service)",
    )
    p.add_argument("--max-retries", type=int, default=2, help="retries of a failing block before it is dead-lettered")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    configure_logging(args.verbose)
    from ilastikbackend.broker import RabbitMQConsumer, RedisBlockCache
    from ilastikbackend.core import ProjectError
    from ilastikbackend.services.worker import BlockWorker, ClassifierRegistry

    try:
        registry = ClassifierRegistry(args.project)
    except ProjectError as err:
        _fail(str(err))
    worker = BlockWorker(RedisBlockCache(args.redis_url), registry)
    consumer = RabbitMQConsumer(args.amqp_url, worker.handle, worker.fail, queue=args.queue,
                                max_retries=args.max_retries)  # fmt: skip
    log_event("worker_started", worker=worker.name, queue=args.queue)
    try:
        consumer.run()
    except KeyboardInterrupt:
        consumer.stop.set()


def serve_main(argv=None, *, prog: str = "ilastikbackend serve") -> None:
    """Data provider, pixel classification service and gateway in one process (ports 9000, 8888, 8080)."""
    p = argparse.ArgumentParser(prog=prog, description=serve_main.__doc__)
    _raw_args(p)
    _project_args(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--dataprovider-port", type=int, default=9000)
    p.add_argument("--pixelclassification-port", type=int, default=8888)
    p.add_argument("--gateway-port", type=int, default=8080)
    p.add_argument("--threads", type=int, default=48)
    p.add_argument("--max-roi-voxels", type=int, default=1 << 26)
    p.add_argument("--verbose", action="store_true")
    _backend(p)
    _export_dir(p)
    args = p.parse_args(argv)
    return _serve_all(args)


def _serve_all(args, on_ready=None):
    configure_logging(args.verbose)
    from ilastikbackend.services import dataprovider, gateway
    from ilastikbackend.services.worker import ClassifierRegistry

    source = _open_source(args)
    project = _load_project(args)
    classifier = _classifier(args, project, source.info.spatial_shape)
    registry = ClassifierRegistry()
    registry.add(classifier, source.info.spatial_shape)
    cache, tasks = _make_backend(args, registry)
    dp_url = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{args.dataprovider_port}"
    pc_url = dp_url.rsplit(":", 1)[0] + f":{args.pixelclassification_port}"
    servers = []
    args.port = args.dataprovider_port
    servers.append(_make_server(dataprovider.create_app(source, max_roi_voxels=args.max_roi_voxels), args))
    args.port, args.dataprovider_ip, args.advertise_url = args.pixelclassification_port, dp_url, None
    info = source.info.as_json()
    servers.append(_make_server(_pixelclassification_app(args, project, classifier, cache, tasks, info), args))
    args.port = args.gateway_port
    state = gateway.GatewayState(dp_url, pc_url, cache, tasks, lease_seconds=args.lease_seconds,
                                 timeout_seconds=args.timeout_seconds,
                                 export_dir=getattr(args, "export_dir", None))  # fmt: skip
    servers.append(_make_server(gateway.create_app(state, max_roi_voxels=args.max_roi_voxels), args))
    if on_ready is not None:
        threading.Thread(target=on_ready, args=(args,), daemon=True).start()
    _run(servers)


def demo_main(argv=None) -> None:
    """Serve the seed demo project all-in-one, fetch a coloured prediction PNG, and keep serving."""
    seed = os.path.join(os.getcwd(), "..", "shared", "seed-data")
    p = argparse.ArgumentParser(prog="ilastikbackend demo", description=demo_main.__doc__)
    p.add_argument("--seed-dir", default=seed, help="folder with pc.ilp and raw.h5 (default ../shared/seed-data)")
    p.add_argument("--output", default="demo-prediction.png", help="where to write the prediction PNG")
    p.add_argument("--once", action="store_true", help="exit after showing the prediction")
    ns = p.parse_args(argv)
    args = argparse.Namespace(
        raw_data_file=os.path.join(ns.seed_dir, "raw.h5"), raw_data_path="exported_data", raw_data_axes=None,
        project=os.path.join(ns.seed_dir, "pc.ilp"), blocksize=None, feature_engine=None, clear_cache=False,
        host="127.0.0.1", dataprovider_port=9000, pixelclassification_port=8888, gateway_port=8080, threads=48,
        max_roi_voxels=1 << 26, verbose=False, redis_url=None, amqp_url=None, queue="ilastik.blocks",
        workers=os.cpu_count() or 1, cache_mib=1024, lease_seconds=120.0, timeout_seconds=600.0,
    )  # fmt: skip
    for f in (args.raw_data_file, args.project):
        if not os.path.isfile(f):
            _fail(f"demo data missing: {f} (give --seed-dir)")

    def show(a):
        import io

        import numpy as np
        import requests
        from PIL import Image

        url = "http://127.0.0.1:8080/prediction/png/roi?extents_min=10_10&extents_max=100_150"
        r = None
        for _ in range(300):  # the servers are starting in other threads
            try:
                r = requests.get(url, timeout=60)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        if r is None:
            print("the gateway did not come up on port 8080 (is the port taken?)", file=sys.stderr)
            os._exit(1)
        if r.status_code != 200:
            print(f"prediction failed: {r.status_code} {r.text}", file=sys.stderr)
            os._exit(1)
        with open(ns.output, "wb") as fh:
            fh.write(r.content)
        img = np.asarray(Image.open(io.BytesIO(r.content)))
        red, green = (img[..., 0] > img[..., 1]).mean(), (img[..., 1] > img[..., 0]).mean()
        print(f"\nprediction of region (10,10)-(100,150): {img.shape[1]}x{img.shape[0]} PNG written to {ns.output}\n"
              f"  {red:.0%} of pixels mostly 'Label 1' (red), {green:.0%} mostly 'Label 2' (green)\n"
              f"  try: curl '{url}' > p.png\n  API: http://127.0.0.1:8080/doc", flush=True)  # fmt: skip
        if ns.once:
            os._exit(0)
        print("serving on ports 9000 (data), 8888 (pixel classification), 8080 (gateway); Ctrl-C stops", flush=True)

    _serve_all(args, on_ready=show)


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

    from ilastikbackend.core import Blocking
    from ilastikbackend.roi import Roi, parse_roi
    from ilastikbackend.services.export import OutputWriter, ProgressBar, plan, run_export
    from ilastikbackend.services.web import ApiError

    url = base_url(args.gateway)
    fmt = args.format or ("zarr" if args.output.rstrip("/").endswith(".zarr") else "hdf5")
    try:
        info = requests.get(f"{url}/prediction/info", timeout=30)
        info.raise_for_status()
        info = info.json()
    except (requests.RequestException, ValueError) as err:
        _fail(f"cannot reach the gateway at {url}: {err}")
    shape = tuple(info["dataset_shape"])
    try:
        if args.extents_min or args.extents_max:
            roi = parse_roi({"extents_min": args.extents_min, "extents_max": args.extents_max}, shape)
        else:
            roi = Roi(tuple(0 for _ in shape), shape)
    except ApiError as err:
        _fail(err.message)
    blocking = Blocking(list(shape), list(info["block_shape"]))
    parts = plan(blocking, roi)
    session = requests.Session()

    def fetch(block_id, lo, hi):
        r = session.get(f"{url}/prediction/npy/roi?{Roi(lo, hi).query()}", timeout=3600)
        if r.status_code != 200:
            raise RuntimeError(f"block {block_id}: gateway answered {r.status_code}: {r.text[:300]}")
        return np.load(io.BytesIO(r.content))

    classes = int(info["num_classes"])
    axes = ("zyx" if len(shape) == 3 else "yx") + "c"
    writer = OutputWriter(args.output, fmt, roi.shape + (classes,), tuple(info["block_shape"]) + (classes,), axes)
    start = time.monotonic()
    progress = None if args.quiet else ProgressBar(roi.size, f"export {len(parts)} blocks")
    try:
        run_export(parts, fetch, writer, roi, parallel=args.parallel, progress=progress)
    except (RuntimeError, requests.RequestException) as err:
        _fail(f"export failed: {err}")
    finally:
        writer.close()
    seconds = time.monotonic() - start
    where = f"{args.output}:exported_data" if fmt == "hdf5" else args.output
    print(f"wrote {where} {roi.shape + (classes,)} float32 ({axes}) in {seconds:.1f} s, "
          f"{roi.size / seconds / 1e6:.2f} Mvoxel/s")  # fmt: skip


COMMANDS = {
    "serve": serve_main,
    "export": export_main, "demo": demo_main, "dataprovider": dataprovider_main,
    "pixelclassification": pixelclassification_main, "gateway": gateway_main, "worker": worker_main,
}  # fmt: skip


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        usage = (
            "usage: ilastikbackend {"
            + ",".join(COMMANDS)
            + "} [options]  (each takes --help)\n\n"
            + "\n".join(f"  {name:<20} {(fn.__doc__ or '').strip().splitlines()[0]}" for name, fn in COMMANDS.items())
        )
        asked = bool(argv) and argv[0] in ("-h", "--help")
        print(usage, file=sys.stdout if asked else sys.stderr)
        raise SystemExit(0 if asked else 2)
    COMMANDS[argv[0]](argv[1:])
