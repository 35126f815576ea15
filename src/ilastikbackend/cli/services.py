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
    data_root_args,
    data_root_options,
    export_args,
    fail,
    load_project,
    make_backend,
    make_budget,
    make_classifier,
    make_exports,
    make_server,
    open_source,
    project_args,
    project_token_args,
    raw_args,
    run_servers,
    server_args,
    start,
)
from ilastikbackend.log import log_event
from ilastikbackend.services.web import base_url


def dataprovider_main(argv=None) -> None:
    """Serve one raw dataset by region of interest (port 9000)."""
    p = argparse.ArgumentParser(prog="dataproviderservice.py", description="Serve a raw dataset by region.")
    raw_args(p)
    data_root_args(p)
    p.add_argument("--project", default=None, help="the .ilp: read the data with its training axes, check channels")
    common_args(p, 9000)
    args = p.parse_args(argv)
    start(args)
    from ilastikbackend.services.dataprovider import create_app

    project = load_project(args) if args.project else None
    source = open_source(args, project)
    log_event(
        "dataset",
        file=args.raw_data_file,
        path=args.raw_data_path,
        **{k: v for k, v in source.info.as_json().items() if k in ("shape", "dtype", "axes", "dataset_id")},
    )
    app = create_app(source, max_roi_voxels=args.max_roi_voxels, budget=make_budget(args),
                     **data_root_options(args, project))  # fmt: skip
    run_servers([make_server(app, args)])


def _advertised(args) -> str:
    host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    return args.advertise_url.rstrip("/") if args.advertise_url else f"http://{host}:{args.port}"


def _pixelclassification_app(args, project, classifier, cache, tasks, info, budget):
    from ilastikbackend.services.blocks import BlockPredictor
    from ilastikbackend.services.pixelclassification import SetupError, create_app, make_setup

    try:
        setup = make_setup(
            project, info, dataprovider_url=base_url(args.dataprovider_ip),
            project_url=f"{_advertised(args)}/project/ilp", blocksize=args.blocksize,
            feature_engine=classifier.engine, halo=classifier.halo,
        )  # fmt: skip
    except SetupError as err:
        fail(str(err))
    predictor = BlockPredictor(setup, cache, tasks, lease_seconds=args.lease_seconds,
                               timeout_seconds=args.timeout_seconds)  # fmt: skip
    if args.clear_cache:
        log_event("cache_cleared", blocks=predictor.clear())
    log_event("serving_project", project=project.path, hash=project.content_hash[:12], version=project.ilastik_version,
              classes=project.num_classes, blocks=predictor.blocking.num_blocks,
              block_shape="x".join(map(str, setup.block_shape)), halo=setup.halo[0])  # fmt: skip
    return create_app(classifier, predictor, max_roi_voxels=args.max_roi_voxels,
                      engine_reason=args.engine_choice.reason, budget=budget,
                      project_token=getattr(args, "project_download_token", None))  # fmt: skip


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
    start(args)
    from ilastikbackend.services.pixelclassification import dataset_info
    from ilastikbackend.services.worker import ClassifierRegistry

    project = load_project(args)  # a bad project fails before anything waits for the data provider
    info = dataset_info(base_url(args.dataprovider_ip))
    classifier = make_classifier(args, project, info["spatial_shape"])
    registry = ClassifierRegistry()
    registry.add(classifier, info["spatial_shape"])
    cache, tasks = make_backend(args, registry)
    app = _pixelclassification_app(args, project, classifier, cache, tasks, info, make_budget(args))
    run_servers([make_server(app, args)])


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
    export_args(p)
    args = p.parse_args(argv)
    start(args)
    from ilastikbackend.services.gateway import GatewayState, create_app

    cache, tasks = make_backend(args)
    state = GatewayState(base_url(args.dataprovider_ip), base_url(args.pixelclassification_ip), cache, tasks,
                         lease_seconds=args.lease_seconds, timeout_seconds=args.timeout_seconds,
                         exports=make_exports(args))  # fmt: skip
    app = create_app(state, max_roi_voxels=args.max_roi_voxels, budget=make_budget(args))
    run_servers([make_server(app, args)])


def worker_main(argv=None) -> None:
    """Compute prediction blocks from the RabbitMQ queue into Redis."""
    p = argparse.ArgumentParser(prog="worker.py", description="Compute prediction blocks from the RabbitMQ queue.")
    p.add_argument(
        "--redis-url",
        default=os.environ.get("ILASTIKBACKEND_REDIS_URL"),
        help="Redis of the block cache, redis://[:PASSWORD@]HOST:6379/0 (or $ILASTIKBACKEND_REDIS_URL)",
    )
    p.add_argument(
        "--amqp-url",
        default=os.environ.get("ILASTIKBACKEND_AMQP_URL"),
        help="RabbitMQ with the block tasks, amqp://USER:PASSWORD@HOST:5672/%%2F (or $ILASTIKBACKEND_AMQP_URL)",
    )
    p.add_argument("--queue", default="ilastik.blocks", help="queue name (default ilastik.blocks)")
    p.add_argument(
        "--project",
        action="append",
        default=[],
        help="preload a project (else projects are downloaded from the pixel classification service, "
        "which needs --project-download-token)",
    )
    project_token_args(p)
    p.add_argument("--max-retries", type=int, default=2, help="retries of a failing block before it is dead-lettered")
    p.add_argument("--temp-dir", default=None, help="where this process's scratch folder goes (removed on exit)")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    start(args)
    for flag, value, env in (("--redis-url", args.redis_url, "ILASTIKBACKEND_REDIS_URL"),
                             ("--amqp-url", args.amqp_url, "ILASTIKBACKEND_AMQP_URL")):  # fmt: skip
        if not value:
            fail(f"a worker needs {flag} (or ${env}): there are no built-in addresses or credentials")
    from ilastikbackend.broker import RabbitMQConsumer, RedisBlockCache
    from ilastikbackend.core import ProjectError
    from ilastikbackend.services.worker import BlockWorker, ClassifierRegistry

    try:
        registry = ClassifierRegistry(args.project, download_token=args.project_download_token)
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


def serve_parser(prog: str = "ilastikbackend serve") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=serve_main.__doc__)
    raw_args(p)
    data_root_args(p)
    project_args(p)
    p.add_argument("--dataprovider-port", type=int, default=9000)
    p.add_argument("--pixelclassification-port", type=int, default=8888)
    p.add_argument("--gateway-port", type=int, default=8080)
    server_args(p)
    backend_args(p)
    export_args(p)
    return p


def serve_main(argv=None, *, prog: str = "ilastikbackend serve") -> None:
    """Data provider, pixel classification service and gateway in one process (ports 9000, 8888, 8080)."""
    _serve_all(serve_parser(prog).parse_args(argv))


def _serve_all(args, on_ready=None) -> None:
    """Start the three services in this process (one memory budget for all); ``on_ready(args, stop)``
    runs in a thread once they listen, and may set ``stop`` to end serving."""
    start(args)
    from ilastikbackend.services.worker import ClassifierRegistry

    project = load_project(args)
    source = open_source(args, project)
    classifier = make_classifier(args, project, source.info.spatial_shape)
    registry = ClassifierRegistry()
    registry.add(classifier, source.info.spatial_shape)
    cache, tasks = make_backend(args, registry)
    servers = make_stack_servers(args, project, source, classifier, cache, tasks, make_budget(args))
    stop = threading.Event()
    if on_ready is not None:
        threading.Thread(target=on_ready, args=(args, stop), daemon=True).start()
    run_servers(servers, stop)
    if getattr(args, "exit_code", 0):
        raise SystemExit(args.exit_code)


def make_stack_servers(args, project, source, classifier, cache, tasks, budget, sockets=None) -> list:
    """The data provider, pixel classification service and gateway of ``serve`` for one dataset, created
    (listening, not yet serving) on ``args.host``: what ``serve`` runs, and ``headless`` runs privately.

    Parameters
    ----------
    args : argparse.Namespace
        ``serve``'s options (:func:`serve_parser`); the ports are ``args.dataprovider_port``,
        ``args.pixelclassification_port`` and ``args.gateway_port``.
    project, source, classifier, cache, tasks, budget
        What the services share: the project, the raw data (a :class:`~ilastikbackend.data.Reader`), the
        classifier for it, the block cache and task queue, one memory budget.
    sockets : sequence of 3 sockets, optional
        Already bound listening sockets for the three services (e.g. on port 0); their ports replace those
        in ``args``.

    Returns
    -------
    list
        The three waitress servers, gateway last (:func:`~ilastikbackend.cli.options.run_servers` runs them).
    """
    from ilastikbackend.services import dataprovider, gateway

    sockets = list(sockets) if sockets is not None else [None, None, None]
    if sockets[0] is not None:
        args.dataprovider_port, args.pixelclassification_port, args.gateway_port = (s.getsockname()[1] for s in sockets)
    host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    dp_url = f"http://{host}:{args.dataprovider_port}"
    pc_url = f"http://{host}:{args.pixelclassification_port}"
    servers = []
    args.port = args.dataprovider_port
    app = dataprovider.create_app(source, max_roi_voxels=args.max_roi_voxels, budget=budget,
                                  **data_root_options(args, project))  # fmt: skip
    servers.append(make_server(app, args, sockets[0]))
    args.port, args.dataprovider_ip, args.advertise_url = args.pixelclassification_port, dp_url, None
    info = source.info.as_json()
    app = _pixelclassification_app(args, project, classifier, cache, tasks, info, budget)
    servers.append(make_server(app, args, sockets[1]))
    args.port = args.gateway_port
    state = gateway.GatewayState(dp_url, pc_url, cache, tasks, lease_seconds=args.lease_seconds,
                                 timeout_seconds=args.timeout_seconds, exports=make_exports(args))  # fmt: skip
    servers.append(make_server(gateway.create_app(state, max_roi_voxels=args.max_roi_voxels, budget=budget), args,
                               sockets[2]))  # fmt: skip
    return servers


DEMO_REGION = ((10, 10), (100, 150))


def demo_main(argv=None) -> None:
    """Serve the seed demo project all-in-one, show a prediction, and keep serving."""
    seed = os.path.join(os.getcwd(), "..", "shared", "seed-data")
    p = argparse.ArgumentParser(prog="ilastikbackend demo", description=demo_main.__doc__)
    p.add_argument("--seed-dir", default=seed, help="folder with pc.ilp and raw.h5 (default ../shared/seed-data)")
    p.add_argument("--output", default=None, help="also write the prediction as a PNG in the label colours here")
    p.add_argument("--once", action="store_true", help="exit after showing the prediction")
    p.add_argument("--gateway-port", type=int, default=8080, help="the gateway's port (default 8080)")
    ns = p.parse_args(argv)
    raw, project = os.path.join(ns.seed_dir, "raw.h5"), os.path.join(ns.seed_dir, "pc.ilp")
    for f in (raw, project):
        if not os.path.isfile(f):
            fail(f"demo data missing: {f} (give --seed-dir)")
    args = serve_parser("ilastikbackend demo").parse_args(
        ["--raw-data-file", raw, "--raw-data-path", "exported_data", "--project", project,
         "--gateway-port", str(ns.gateway_port)]
    )  # fmt: skip

    def show(a, stop: threading.Event) -> None:
        try:
            text = _show_demo_prediction(a.gateway_port, ns.output)
            print(text, flush=True)
        except RuntimeError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            a.exit_code = 1
            stop.set()
            return
        if ns.once:
            stop.set()
        else:
            print(f"serving on ports {a.dataprovider_port} (data), {a.pixelclassification_port} (pixel "
                  f"classification), {a.gateway_port} (gateway); Ctrl-C stops", flush=True)  # fmt: skip

    _serve_all(args, on_ready=show)


def _show_demo_prediction(port: int, output: str | None) -> str:
    """Fetch the demo region's prediction from the gateway and describe it (a coloured map in a terminal)."""
    import io

    import numpy as np
    import requests
    from PIL import Image

    (y0, x0), (y1, x1) = DEMO_REGION
    url = f"http://127.0.0.1:{port}/prediction/png/roi?extents_min={y0}_{x0}&extents_max={y1}_{x1}"
    probs_url = url.replace("/png/", "/npy/")
    r = None
    for _ in range(300):  # the servers are starting in other threads
        try:
            r = requests.get(url, timeout=60)
            break
        except requests.ConnectionError:
            time.sleep(0.1)
    if r is None:
        raise RuntimeError(f"the gateway did not come up on port {port} (is the port taken?)")
    if r.status_code != 200:
        raise RuntimeError(f"prediction failed: {r.status_code} {r.text}")
    probs = np.load(io.BytesIO(requests.get(probs_url, timeout=60).content))
    info = requests.get(f"http://127.0.0.1:{port}/prediction/info", timeout=10).json()
    names, colors = info["label_names"], info["label_colors"]
    winner = probs.argmax(axis=-1)
    lines = [f"\nprediction of region ({y0},{x0})-({y1},{x1}), {x1 - x0}x{y1 - y0} pixels:"]
    lines += [
        f"  {(winner == k).mean():.0%} of pixels mostly '{names[k]}' {tuple(colors[k])}" for k in range(len(names))
    ]
    lines.append(_map_of(winner, colors))
    if output:
        with open(output, "wb") as fh:
            fh.write(r.content)
        lines.append(f"  PNG in the label colours written to {output}")
        Image.open(io.BytesIO(r.content)).verify()
    lines += [
        f"  try: curl '{url}' > p.png",
        f"  API: http://127.0.0.1:{port}/doc, viewer: http://127.0.0.1:{port}/viewer",
    ]
    return "\n".join(lines)


def _map_of(winner, colors, width: int = 70) -> str:
    """The winning label per pixel, downsampled to ``width`` columns: coloured blocks on a terminal,
    label digits otherwise."""
    step = max(1, winner.shape[1] // width)
    small = winner[:: step * 2, ::step]  # a character is about twice as tall as wide
    if sys.stdout.isatty():
        rows = ["".join(f"\x1b[48;2;{c[0]};{c[1]};{c[2]}m \x1b[0m" for c in (colors[k] for k in row)) for row in small]
    else:
        rows = ["".join(str(k + 1) for k in row) for row in small]
    return "\n".join("  " + row for row in rows)
