"""The services' command lines (the 2017 launchers call these) and the all-in-one ``serve``/``demo``."""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

from ilastikbackend.cli.options import (
    backend_args,
    common_args,
    export_dir_args,
    fail,
    load_project,
    make_backend,
    make_classifier,
    make_server,
    open_source,
    project_args,
    raw_args,
    run_servers,
)
from ilastikbackend.log import configure_logging, log_event
from ilastikbackend.services.web import base_url


def dataprovider_main(argv=None) -> None:
    """Serve one raw dataset by region of interest (port 9000)."""
    p = argparse.ArgumentParser(prog="dataproviderservice.py", description="Serve a raw dataset by region.")
    raw_args(p)
    p.add_argument("--project", default=None, help="the .ilp: read the data with its training axes, check channels")
    common_args(p, 9000)
    args = p.parse_args(argv)
    configure_logging(args.verbose)
    from ilastikbackend.services.dataprovider import create_app

    source = open_source(args, load_project(args) if args.project else None)
    log_event(
        "dataset",
        file=args.raw_data_file,
        path=args.raw_data_path,
        **{k: v for k, v in source.info.as_json().items() if k in ("shape", "dtype", "axes", "dataset_id")},
    )
    run_servers([make_server(create_app(source, max_roi_voxels=args.max_roi_voxels), args)])


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
        fail(str(err))
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
    project_args(p)
    p.add_argument(
        "--dataprovider-ip", default="127.0.0.1:9000", help="data provider host:port (default 127.0.0.1:9000)"
    )
    p.add_argument(
        "--advertise-url",
        default=None,
        help="URL under which workers reach this service (default http://<host>:<port>)",
    )
    common_args(p, 8888)
    backend_args(p)
    args = p.parse_args(argv)
    configure_logging(args.verbose)
    from ilastikbackend.services.pixelclassification import dataset_info
    from ilastikbackend.services.worker import ClassifierRegistry

    project = load_project(args)  # a bad project fails before anything waits for the data provider
    info = dataset_info(base_url(args.dataprovider_ip))
    classifier = make_classifier(args, project, info["spatial_shape"])
    registry = ClassifierRegistry()
    registry.add(classifier, info["spatial_shape"])
    cache, tasks = make_backend(args, registry)
    run_servers([make_server(_pixelclassification_app(args, project, classifier, cache, tasks, info), args)])


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
    common_args(p, 8080)
    backend_args(p)
    export_dir_args(p)
    args = p.parse_args(argv)
    configure_logging(args.verbose)
    from ilastikbackend.services.gateway import GatewayState, create_app

    cache, tasks = make_backend(args)
    state = GatewayState(base_url(args.dataprovider_ip), base_url(args.pixelclassification_ip), cache, tasks,
                         lease_seconds=args.lease_seconds, timeout_seconds=args.timeout_seconds,
                         export_dir=args.export_dir)  # fmt: skip
    run_servers([make_server(create_app(state, max_roi_voxels=args.max_roi_voxels), args)])


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
        fail(str(err))
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
    raw_args(p)
    project_args(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--dataprovider-port", type=int, default=9000)
    p.add_argument("--pixelclassification-port", type=int, default=8888)
    p.add_argument("--gateway-port", type=int, default=8080)
    p.add_argument("--threads", type=int, default=48)
    p.add_argument("--max-roi-voxels", type=int, default=1 << 26)
    p.add_argument("--verbose", action="store_true")
    backend_args(p)
    export_dir_args(p)
    args = p.parse_args(argv)
    return _serve_all(args)


def _serve_all(args, on_ready=None):
    configure_logging(args.verbose)
    from ilastikbackend.services import dataprovider, gateway
    from ilastikbackend.services.worker import ClassifierRegistry

    project = load_project(args)
    source = open_source(args, project)
    classifier = make_classifier(args, project, source.info.spatial_shape)
    registry = ClassifierRegistry()
    registry.add(classifier, source.info.spatial_shape)
    cache, tasks = make_backend(args, registry)
    dp_url = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{args.dataprovider_port}"
    pc_url = dp_url.rsplit(":", 1)[0] + f":{args.pixelclassification_port}"
    servers = []
    args.port = args.dataprovider_port
    servers.append(make_server(dataprovider.create_app(source, max_roi_voxels=args.max_roi_voxels), args))
    args.port, args.dataprovider_ip, args.advertise_url = args.pixelclassification_port, dp_url, None
    info = source.info.as_json()
    servers.append(make_server(_pixelclassification_app(args, project, classifier, cache, tasks, info), args))
    args.port = args.gateway_port
    state = gateway.GatewayState(dp_url, pc_url, cache, tasks, lease_seconds=args.lease_seconds,
                                 timeout_seconds=args.timeout_seconds,
                                 export_dir=getattr(args, "export_dir", None))  # fmt: skip
    servers.append(make_server(gateway.create_app(state, max_roi_voxels=args.max_roi_voxels), args))
    if on_ready is not None:
        threading.Thread(target=on_ready, args=(args,), daemon=True).start()
    run_servers(servers)


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
        raw_data_format=None, stack_along="z", raw_data_scale=None,
        project=os.path.join(ns.seed_dir, "pc.ilp"), blocksize=None, feature_engine=None, clear_cache=False,
        host="127.0.0.1", dataprovider_port=9000, pixelclassification_port=8888, gateway_port=8080, threads=48,
        max_roi_voxels=1 << 26, verbose=False, redis_url=None, amqp_url=None, queue="ilastik.blocks",
        workers=os.cpu_count() or 1, cache_mib=1024, lease_seconds=120.0, timeout_seconds=600.0,
    )  # fmt: skip
    for f in (args.raw_data_file, args.project):
        if not os.path.isfile(f):
            fail(f"demo data missing: {f} (give --seed-dir)")

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
