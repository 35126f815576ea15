"""``ilastikbackend headless``: ilastik's ``--headless`` command, computed by the services' block workers.

By default each input is computed by the services ``ilastikbackend serve`` runs (data provider, pixel
classification service and gateway, built by the same function), started privately in this process on free
loopback ports, one stack per input, with one in-process cache and worker pool for the whole run.
``--gateway URL`` uses a running stack instead, where the project stays loaded between calls. Either way the
blocks come from a gateway: probabilities, segmentation, uncertainty and features, time series with a leading
``t``. The export itself (flags, files, resume) is :mod:`ilastikbackend.export.headless`.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading

from ilastikbackend.export.headless import ComputeBackend, GatewayBackend, HeadlessError, parse_args, run
from ilastikbackend.export.inputs import Lane
from ilastikbackend.export.providers import BlockProvider, GatewayProvider, ProviderError

#: glibc's ``mallopt`` parameter number of the mmap threshold (``malloc.h``)
M_MMAP_THRESHOLD = -3


def _freed_blocks_back_to_the_system() -> None:
    """Make the C library unmap freed block-sized buffers at once (glibc; elsewhere nothing changes).

    Every block passes through a few buffers of megabytes (computed, encoded, cached, sent, decoded), on many
    threads. glibc's adaptive mmap threshold soon serves such sizes from per-thread heaps, which keep the memory
    once it is freed, so the process would grow far past what is in flight (``--ram-mib``). A fixed 1 MiB
    threshold keeps every larger buffer in its own mapping, returned to the system when freed.
    """
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c")).mallopt(M_MMAP_THRESHOLD, 1 << 20)
    except (OSError, AttributeError, TypeError):  # not glibc (no mallopt), or no C library found
        pass


def _listening_socket() -> socket.socket:
    """A socket bound to a free loopback port: the port is ours from now on, no other process can take it
    before the server listens."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


class EmbeddedStack:
    """``serve``'s three services for one input, on free loopback ports, served by threads of this process.

    Built by :func:`ilastikbackend.cli.services.make_stack_servers`, exactly as ``serve`` builds them; the
    cache and the worker pool are the run's.
    """

    def __init__(self, args: argparse.Namespace, project, lane: Lane, classifier, cache, tasks):
        from ilastikbackend.cli.options import make_budget
        from ilastikbackend.cli.services import make_stack_servers

        sockets = [_listening_socket() for _ in range(3)]
        try:
            self.servers = make_stack_servers(args, project, lane.reader, classifier, cache, tasks,
                                              make_budget(args), sockets)  # fmt: skip
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        self.gateway_url = f"http://127.0.0.1:{args.gateway_port}"
        self.closing = threading.Event()
        self.threads = [threading.Thread(target=self._serve, args=(s,), daemon=True, name="headless-http")
                        for s in self.servers]  # fmt: skip
        for thread in self.threads:
            thread.start()

    def _serve(self, server) -> None:
        try:
            server.run()
        except (OSError, ValueError):
            if not self.closing.is_set():  # closing pulls the sockets from under the loop: that ends it
                raise

    def close(self) -> None:
        """Stop the servers: drop queued requests, let running ones finish, close every connection. The loops
        end within a second; the back end waits for them once, at the end of the run.

        waitress has no public way to stop a server that runs in another thread: ``server.close()`` closes
        the listening socket only, and the connections still open (the workers' and the gateway's keep-alive
        sessions) keep its loop polling. So, as waitress's own ``MultiSocketServer.close`` does, the task
        dispatcher is shut down and every socket of the server's map closed; an empty map ends the loop.
        """
        from waitress import wasyncore

        self.closing.set()
        for server in reversed(self.servers):  # the gateway first: it calls the others
            server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)
            wasyncore.close_all(server._map)


class EmbeddedProvider(GatewayProvider):
    """The blocks of one input from its private stack's gateway; closing it stops the stack."""

    def __init__(self, stack: EmbeddedStack):
        self.stack = stack
        try:
            super().__init__(stack.gateway_url)
        except ProviderError:
            stack.close()
            raise

    def close(self) -> None:
        super().close()
        self.stack.close()


class EmbeddedBackend(ComputeBackend):
    """The default: ``serve``'s services started in this process for every input, one cache and worker pool
    for all of them."""

    def __init__(self, args: argparse.Namespace, project):
        from ilastikbackend.cli.options import make_backend
        from ilastikbackend.core.engines import resolve_engine
        from ilastikbackend.services.worker import ClassifierRegistry

        self.args, self.project = args, project
        try:
            self.engine = resolve_engine(project.ilastik_version, args.feature_engine)
        except ValueError as err:
            raise HeadlessError(str(err)) from err
        self.service_args = self._service_args()
        self.registry = ClassifierRegistry()
        self.cache, self.tasks = make_backend(self.service_args, self.registry)
        self.server_threads: list[threading.Thread] = []

    def _service_args(self) -> argparse.Namespace:
        """``serve``'s options with its defaults, set for a private stack: loopback, in-process cache and
        workers, the project handed to nobody, and the run's flags."""
        from ilastikbackend.cli.services import serve_parser

        a = self.args
        ns = serve_parser().parse_args(["--raw-data-file", a.inputs[0], "--project", self.project.path])
        ns.host = "127.0.0.1"
        ns.redis_url = ns.amqp_url = ns.project_download_token = None
        ns.workers, ns.cache_mib = max(1, a.workers), max(1, min(a.cache_mib, a.ram_mib // 2))
        ns.blocksize, ns.feature_engine, ns.verbose = a.blocksize, a.feature_engine, a.verbose
        ns.threads = max(8, a.parallel + 2, ns.workers + 2)  # every request in flight, every worker's read
        ns.timeout_seconds = 3600.0  # a request waits behind the blocks the run queued before it
        return ns

    def block_shape(self, lane: Lane) -> tuple[int, ...]:
        from ilastikbackend.services.pixelclassification import DEFAULT_BLOCK_2D, DEFAULT_BLOCK_3D

        ndim = len(lane.spatial_shape)
        size = self.args.blocksize or (DEFAULT_BLOCK_2D if ndim == 2 else DEFAULT_BLOCK_3D)
        if size < 1:
            raise HeadlessError(f"--blocksize must be positive, got {size}")
        return (size,) * ndim

    def open(self, lane: Lane, held_bytes: int = 0) -> BlockProvider:
        from ilastikbackend.cli.options import make_classifier

        # The cache only hands blocks from the workers to the export, which asks for each once: it must hold
        # the blocks in flight (else they are evicted before they are read), and needs little more.
        self.cache.max_bytes = max(self.service_args.cache_mib << 20, held_bytes + held_bytes // 4)
        ns = self.service_args
        ns.raw_data_file = lane.given
        classifier = make_classifier(ns, self.project, lane.spatial_shape)
        self.registry.add(classifier, lane.spatial_shape)
        stack = EmbeddedStack(ns, self.project, lane, classifier, self.cache, self.tasks)
        self.server_threads.extend(stack.threads)
        return EmbeddedProvider(stack)

    def fingerprint(self) -> dict:
        return {"feature_engine": self.engine.name}

    def close(self) -> None:
        self.tasks.close()
        self.cache.close()
        for thread in self.server_threads:  # no server loop outlives the run
            thread.join(timeout=5)


def headless_main(argv=None) -> None:
    """ilastik's --headless export (same flags, same files), computed by the block workers."""
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        from ilastikbackend.export.headless import build_parser

        build_parser().print_help()
        raise SystemExit(0)
    from ilastikbackend.cli.options import fail, start
    from ilastikbackend.core import ProjectError, load_project

    try:
        args = parse_args(argv)
    except HeadlessError as err:
        fail(str(err))
    start(args, logs=False)
    _freed_blocks_back_to_the_system()
    try:
        project = load_project(args.project)
    except ProjectError as err:
        fail(f"cannot use {args.project}: {err}")
    backend = None
    again = "run the same command again to continue where it stopped"
    try:
        if args.gateway:
            backend = GatewayBackend(args.gateway, project, stack_along=args.stack_along.lower())
        else:
            backend = EmbeddedBackend(args, project)
        run(args, backend, project)
    except HeadlessError as err:
        print(file=sys.stderr)
        fail(str(err))
    except KeyboardInterrupt:
        print(f"\ninterrupted: {again}", file=sys.stderr)
        raise SystemExit(130) from None
    except SystemExit as exit_:
        if exit_.code == 128 + signal.SIGTERM:  # see scratch.exit_on_sigterm
            print(f"\nterminated: {again}", file=sys.stderr)
        raise
    finally:
        if backend is not None:
            backend.close()
