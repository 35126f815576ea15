"""Throwaway Redis and RabbitMQ servers on spare ports, for fault injection.

The shared servers on the default ports are never touched: these are separate processes with
their own data directories, started, restarted and killed by the tests.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from stack import free_port


def _wait(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up within {timeout} s")


class ThrowawayRedis:
    def __init__(self, workdir: Path, extra: list[str] | None = None):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = workdir
        self.extra = extra or []
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        _wait(self.ping, 20, "redis")

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def client(self):
        import redis

        return redis.Redis.from_url(self.url)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def restart(self, down_seconds: float = 0.5) -> None:
        """Kill and start again on the same port: everything it held is gone."""
        self.stop()
        time.sleep(down_seconds)
        self.start()
        self.restarts += 1


class ThrowawayRabbitMQ:
    """A second RabbitMQ node (own node name, port, data directory; no plugins)."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.dist_port = free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"
        self.node = f"ilbtest{self.port}@localhost"
        # Its own folder outside pytest's and $TMPDIR (which only root may enter): the node runs as user
        # rabbitmq, which must reach it.
        self.dir = Path(tempfile.mkdtemp(prefix="ilb-rabbitmq-", dir="/tmp"))
        logging.getLogger("pika").setLevel(logging.CRITICAL)
        (self.dir / "enabled_plugins").write_text("[].")
        (self.dir / "rabbitmq.conf").write_text(f"listeners.tcp.default = 127.0.0.1:{self.port}\n")
        try:  # rabbitmq-server drops root privileges to the rabbitmq user, which must own the directory
            user = pwd.getpwnam("rabbitmq")
            for root, dirs, files in os.walk(self.dir):
                for name in [root, *[os.path.join(root, n) for n in dirs + files]]:
                    os.chown(name, user.pw_uid, user.pw_gid)
        except KeyError:
            pass
        self.env = dict(
            os.environ, RABBITMQ_NODENAME=self.node, RABBITMQ_CONFIG_FILE=str(self.dir / "rabbitmq.conf"),
            RABBITMQ_DIST_PORT=str(self.dist_port), RABBITMQ_MNESIA_BASE=str(self.dir / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.dir / "log"), RABBITMQ_ENABLED_PLUGINS_FILE=str(self.dir / "enabled_plugins"),
            RABBITMQ_PID_FILE=str(self.dir / "pid"),
        )  # fmt: skip
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(["rabbitmq-server"], env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        _wait(self.ping, 90, "rabbitmq")

    def ping(self) -> bool:
        import pika

        try:
            pika.BlockingConnection(pika.URLParameters(self.url + "?connection_attempts=1&socket_timeout=1")).close()
            return True
        except Exception:
            return False

    def stop(self) -> None:
        subprocess.run(["rabbitmqctl", "-n", self.node, "stop"], env=self.env, capture_output=True, timeout=60)
        if self.proc:
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def restart(self, down_seconds: float = 1.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()
        self.restarts += 1

    def message_count(self, queue: str) -> int:
        import pika

        conn = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            return conn.channel().queue_declare(queue=queue, passive=True).method.message_count
        finally:
            conn.close()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
