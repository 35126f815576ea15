"""Start the services as real processes on loopback, the way a user would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
REDIS_URL = os.environ.get("ILASTIKBACKEND_TEST_REDIS", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("ILASTIKBACKEND_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/%2F")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def forget_dataset(redis_url: str, dataset_id: str) -> None:
    """Leave a shared Redis as it was: drop the blocks and counters of one test dataset."""
    import redis

    try:
        r = redis.Redis.from_url(redis_url)
        keys = list(r.scan_iter(match=f"ilb:v1:*:{dataset_id}:*", count=1000))
        if keys:
            r.delete(*keys)
        counted = [k for k in r.hkeys("ilb:computations") if f":{dataset_id}:".encode() in k]
        if counted:
            r.hdel("ilb:computations", *counted)
    except redis.RedisError:  # a throwaway Redis may already be gone
        pass


def forget_queue(amqp_url: str, queue: str) -> None:
    """Delete a test's task queue, its dead-letter queue and exchange from a shared RabbitMQ."""
    try:
        import pika

        conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
        ch = conn.channel()
        for q in (queue, queue + ".dead"):
            ch.queue_delete(q)
        ch.exchange_delete(queue + ".dlx")
        conn.close()
    except Exception:  # best effort: the queues of a throwaway broker vanish with it
        pass


class Service:
    """One service process; its output goes to a log file that failures print."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, url: str | None = None,
                 env: dict[str, str] | None = None):  # fmt: skip
        self.name = name
        self.url = url
        self.log_path = log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self._log = open(self.log_path, "wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        self.proc = subprocess.Popen([sys.executable, *argv], cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True)  # fmt: skip

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            if self.url is None:
                return
            try:
                if requests.get(f"{self.url}/openapi.json", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not come up within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-5000:]

    def kill(self, sig=signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


class Stack:
    """data provider + pixel classification + gateway (+ workers), distributed or embedded."""

    def __init__(self, tmp: Path, *, project: Path, raw_file: Path, raw_path: str = "exported_data",
                 distributed: bool, workers: int = 2, blocksize: int = 64,
                 redis_url: str = REDIS_URL, amqp_url: str = AMQP_URL, extra: list[str] | None = None,
                 dataprovider_extra: list[str] | None = None):  # fmt: skip
        self.tmp = tmp
        self.services: list[Service] = []
        self.workers: list[Service] = []
        self.queue = f"ilastik.test.{uuid.uuid4().hex[:8]}"
        self.distributed = distributed
        self.dataset_id: str | None = None
        self.redis_url, self.amqp_url = redis_url, amqp_url
        ports = [free_port() for _ in range(3)]
        self.dataprovider_url, self.pixelclassification_url, self.gateway_url = (f"http://127.0.0.1:{p}" for p in ports)
        self.project_token = uuid.uuid4().hex  # workers download the project with it
        backend = ["--redis-url", redis_url, "--amqp-url", amqp_url, "--queue", self.queue] if distributed else []
        extra = extra or []
        try:
            self._start(
                "dataprovider",
                [
                    "dataproviderservice.py",
                    "--raw-data-file",
                    str(raw_file),
                    "--raw-data-path",
                    raw_path,
                    "--port",
                    str(ports[0]),
                    *(dataprovider_extra or []),
                ],
                self.dataprovider_url,
            )
            self._start(
                "pixelclassification",
                [
                    "pixelclassificationservice.py",
                    "--project",
                    str(project),
                    "--dataprovider-ip",
                    f"127.0.0.1:{ports[0]}",
                    "--port",
                    str(ports[1]),
                    "--blocksize",
                    str(blocksize),
                    "--clear-cache",
                    "--project-download-token",
                    self.project_token,
                    *backend,
                    *extra,
                ],
                self.pixelclassification_url,
            )
            self._start("gateway", ["ilastikgateway.py", "--dataprovider-ip", f"127.0.0.1:{ports[0]}",
                                    "--pixelclassification-ip", f"127.0.0.1:{ports[1]}", "--port", str(ports[2]),
                                    "--project-download-token", self.project_token, *backend, *extra],
                        self.gateway_url)  # fmt: skip
            if distributed:
                for _ in range(workers):
                    self.add_worker()
        except Exception:
            self.stop()
            raise

    def _start(self, name: str, argv: list[str], url: str | None) -> Service:
        service = Service(name, argv, self.tmp, url)
        self.services.append(service)
        service.wait_ready()
        return service

    def add_worker(self, extra: list[str] | None = None) -> Service:
        w = self._start(
            f"worker{len(self.workers)}",
            [
                "worker.py",
                "--redis-url",
                self.redis_url,
                "--amqp-url",
                self.amqp_url,
                "--queue",
                self.queue,
                "--project-download-token",
                self.project_token,
                *(extra or []),
            ],
            None,
        )
        self.workers.append(w)
        return w

    def _forget_blocks(self) -> None:
        forget_dataset(self.redis_url, self.dataset_id)

    def logs(self) -> str:
        return "\n".join(f"==== {s.name}\n{s.log()}" for s in self.services)

    def stop(self) -> None:
        if self.distributed and self.dataset_id is None:
            try:
                self.dataset_id = requests.get(f"{self.dataprovider_url}/info", timeout=5).json()["dataset_id"]
            except (requests.RequestException, ValueError, KeyError):
                pass
        for s in reversed(self.services):
            s.stop()
        if self.distributed and self.dataset_id:
            self._forget_blocks()
        forget_queue(self.amqp_url, self.queue)


def seed_stack(tmp: Path, project: Path, *, distributed: bool = False, blocksize: int = 64) -> Stack:
    """The seed project on a fresh copy of its raw data (a new dataset id: nothing cached yet)."""
    import shutil

    shutil.copy(project.parent / "raw.h5", tmp / "raw.h5")
    return Stack(tmp, project=project, raw_file=tmp / "raw.h5", distributed=distributed, blocksize=blocksize)


def volume_stack(tmp: Path, project: Path, volume, *, distributed: bool = False, blocksize: int = 16) -> Stack:
    """A 3D project on its (z, y, x) volume, written to HDF5 with ilastik's axistags."""
    import h5py

    from ilastikbackend.services.encoding import axistags

    with h5py.File(tmp / "vol.h5", "w") as f:
        f.create_dataset("volume/data", data=volume).attrs["axistags"] = axistags("zyx")
    return Stack(tmp, project=project, raw_file=tmp / "vol.h5", raw_path="volume/data", distributed=distributed,
                 blocksize=blocksize)  # fmt: skip
