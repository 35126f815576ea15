"""``ilastikbackend headless``: ilastik's ``--headless`` command, computed by the services' block workers.

By default every input is computed by the all-in-one services started privately in this process on
free loopback ports (the same functions ``ilastikbackend serve`` uses: data provider, pixel
classification service, gateway, in-process cache and worker pool); ``--gateway URL`` uses a running
stack instead, where the project stays loaded between calls. The export itself (flags, files, resume)
is :mod:`ilastikbackend.export.headless`.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
import tempfile
import threading

import numpy as np

from ilastikbackend.export.headless import ComputeBackend, GatewayBackend, HeadlessError, parse_args, run
from ilastikbackend.export.inputs import Lane
from ilastikbackend.export.providers import BlockProvider, GatewayProvider

DEFAULT_BLOCK_2D = 256
DEFAULT_BLOCK_3D = 64


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedStack:
    """Data provider, pixel classification service and gateway for one dataset, private on loopback.

    Built with the functions ``ilastikbackend serve`` uses; the cache and the worker pool are shared by
    all stacks of a run.
    """

    def __init__(self, backend: EmbeddedBackend, classifier, source):
        from ilastikbackend.cli.options import make_server
        from ilastikbackend.cli.services import _pixelclassification_app
        from ilastikbackend.services import dataprovider, gateway

        ns = backend.namespace(classifier)
        dp_port, pc_port, gw_port = _free_port(), _free_port(), _free_port()
        dp_url, pc_url = f"http://127.0.0.1:{dp_port}", f"http://127.0.0.1:{pc_port}"
        self.servers = []
        ns.port = dp_port
        self.servers.append(make_server(dataprovider.create_app(source, max_roi_voxels=ns.max_roi_voxels), ns))
        ns.port, ns.dataprovider_ip, ns.advertise_url = pc_port, dp_url, pc_url
        app = _pixelclassification_app(
            ns, backend.project, classifier, backend.cache, backend.tasks, source.info.as_json()
        )
        self.servers.append(make_server(app, ns))
        state = gateway.GatewayState(
            dp_url,
            pc_url,
            backend.cache,
            backend.tasks,
            lease_seconds=ns.lease_seconds,
            timeout_seconds=ns.timeout_seconds,
            export_dir=backend.scratch_dir,
        )
        ns.port = gw_port
        self.servers.append(make_server(gateway.create_app(state, max_roi_voxels=ns.max_roi_voxels), ns))
        self.closing = threading.Event()
        for server in self.servers:
            thread = threading.Thread(target=self._serve, args=(server,), daemon=True, name="headless-http")
            thread.start()
            backend.server_threads.append(thread)
        self.gateway_url = f"http://127.0.0.1:{gw_port}"

    def _serve(self, server) -> None:
        try:
            server.run()
        except (OSError, ValueError):
            if not self.closing.is_set():  # closing pulls the sockets from under the loop: that ends it
                raise

    def close(self) -> None:
        """Stop the servers: finish their requests, then close every socket (which ends their loops; the back
        end waits for them once, at the end of the run)."""
        from waitress import wasyncore

        self.closing.set()
        for server in reversed(self.servers):  # the gateway first: it calls the others
            server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)
            wasyncore.close_all(server._map)


class EmbeddedProvider(BlockProvider):
    """Blocks of one lane from its private stack (one per time point until the services serve ``t``).

    Features are computed here, per block plus halo, by the project's classifier (the worker's code
    path without the cache: feature blocks are large and asked for once).
    """

    def __init__(self, backend: EmbeddedBackend, lane: Lane):
        from ilastikbackend.cli.options import make_classifier

        self.backend, self.lane = backend, lane
        self.classifier = make_classifier(backend.namespace(None), backend.project, lane.spatial_shape)
        backend.registry.add(self.classifier, lane.spatial_shape)
        self.block_shape = backend.block_shape(lane)
        self._gateway: GatewayProvider | None = None

    @contextlib.contextmanager
    def time_point(self, t: int):
        stack = EmbeddedStack(self.backend, self.classifier, self.lane.time_point(t))
        try:
            self._gateway = GatewayProvider(stack.gateway_url)
            yield
        finally:
            if self._gateway is not None:
                self._gateway.close()
            self._gateway = None
            stack.close()

    def fetch(self, kind, t, begin, end):
        if kind == "features":
            return self._features(t, begin, end)
        return self._gateway.fetch(kind, t, begin, end)

    def _features(self, t, begin, end) -> np.ndarray:
        halo, shape = self.classifier.halo, self.lane.spatial_shape
        outer_begin = [max(0, b - h) for b, h in zip(begin, halo)]
        outer_end = [min(n, e + h) for e, h, n in zip(end, halo, shape)]
        raw = self.lane.read(t, outer_begin, outer_end)
        inner_begin = [b - o for b, o in zip(begin, outer_begin)]
        inner_end = [e - o for e, o in zip(end, outer_begin)]
        return self.classifier.features(raw, inner_begin, inner_end)


class EmbeddedBackend(ComputeBackend):
    """The default: services started in this process for every input, one cache and worker pool for all."""

    def __init__(self, args: argparse.Namespace, project):
        from ilastikbackend.cli.options import make_backend
        from ilastikbackend.core.engines import resolve_engine
        from ilastikbackend.services.worker import ClassifierRegistry

        self.args, self.project = args, project
        try:
            self.engine = resolve_engine(project.ilastik_version, args.feature_engine)
        except ValueError as err:
            raise HeadlessError(str(err)) from err
        self.registry = ClassifierRegistry()
        self.cache, self.tasks = make_backend(self.namespace(None), self.registry)
        self._scratch = tempfile.TemporaryDirectory(prefix="ilastikbackend-headless-")
        self.scratch_dir = self._scratch.name
        self.server_threads: list[threading.Thread] = []

    def namespace(self, classifier) -> argparse.Namespace:
        """The settings the services' start-up functions read."""
        a = self.args
        return argparse.Namespace(
            host="127.0.0.1",
            port=0,
            threads=8,
            max_roi_voxels=1 << 26,
            verbose=False,
            blocksize=a.blocksize,
            feature_engine=a.feature_engine,
            clear_cache=False,
            lease_seconds=120.0,
            timeout_seconds=3600.0,
            redis_url=None,
            amqp_url=None,
            queue="ilastik.blocks",
            workers=max(1, a.workers),
            cache_mib=max(1, a.cache_mib),
            project=self.project.path,
            engine_choice=self.engine,
            dataprovider_ip=None,
            advertise_url=None,
        )

    def block_shape(self, lane: Lane) -> tuple[int, ...]:
        ndim = len(lane.spatial_shape)
        size = self.args.blocksize or (DEFAULT_BLOCK_2D if ndim == 2 else DEFAULT_BLOCK_3D)
        if size < 1:
            raise HeadlessError(f"--blocksize must be positive, got {size}")
        return (size,) * ndim

    def open(self, lane: Lane) -> BlockProvider:
        return EmbeddedProvider(self, lane)

    def fingerprint(self) -> dict:
        return {"feature_engine": self.engine.name}

    def close(self) -> None:
        self.tasks.close()
        self.cache.close()
        for thread in self.server_threads:  # no server loop outlives the run
            thread.join(timeout=5)
        self._scratch.cleanup()


def headless_main(argv=None) -> None:
    """ilastik's --headless export (same flags, same files), computed by the block workers."""
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        from ilastikbackend.export.headless import build_parser

        build_parser().print_help()
        raise SystemExit(0)
    from ilastikbackend.cli.options import fail
    from ilastikbackend.core import ProjectError, load_project

    try:
        args = parse_args(argv)
    except HeadlessError as err:
        fail(str(err))
    try:
        project = load_project(args.project)
    except ProjectError as err:
        fail(f"cannot use {args.project}: {err}")
    backend = None
    try:
        backend = GatewayBackend(args.gateway, project) if args.gateway else EmbeddedBackend(args, project)
        run(args, backend, project)
    except HeadlessError as err:
        print(file=sys.stderr)
        fail(str(err))
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to continue where it stopped", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        if backend is not None:
            backend.close()
