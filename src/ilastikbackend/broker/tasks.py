"""Block tasks: published once per claimed block, consumed by workers.

A task is a JSON object (see :class:`ilastikbackend.services.blocks.BlockPredictor.task`).
A handler that raises is retried up to ``max_retries`` times; then the task is dead-lettered
and ``on_failure(task, message)`` records the error so waiting requests fail fast.
"""

from __future__ import annotations

import json
import os
import queue as queue_module
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from ilastikbackend.broker.cache import CacheFullError
from ilastikbackend.log import log_event

Handler = Callable[[dict], None]
FailureHandler = Callable[[dict, str], None]
DEFAULT_QUEUE = "ilastik.blocks"


def describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def retryable(err: BaseException) -> bool:
    """Whether another attempt can help: not when the cache is full (it stays full for a while)."""
    return not isinstance(err, CacheFullError)


class TaskQueue(ABC):
    @abstractmethod
    def publish(self, task: dict) -> None:
        """Hand a task to the workers; returns once it is safely queued."""

    def publish_many(self, tasks: list[dict]) -> None:
        for task in tasks:
            self.publish(task)

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Stop publishing."""


class LocalTaskQueue(TaskQueue):
    """An in-process worker pool: the embedded default."""

    def __init__(self, handler: Handler, on_failure: FailureHandler, workers: int | None = None, max_retries: int = 2):
        self.handler = handler
        self.on_failure = on_failure
        self.max_retries = max_retries
        self.workers = workers or os.cpu_count() or 1
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="block-worker")

    def publish(self, task):
        self._pool.submit(self._run, task)

    def _run(self, task: dict) -> None:
        for attempt in range(1, self.max_retries + 2):
            try:
                self.handler(task)
                return
            except Exception as err:  # every failure is retried, then reported
                message = describe(err)
                log_event("task_failed", level=30, block=task.get("block_id"), attempt=attempt, error=message)
                if not retryable(err):
                    break
        log_event("task_dead", level=40, block=task.get("block_id"), error=message)
        self.on_failure(task, message)

    def close(self):
        self._pool.shutdown(wait=False, cancel_futures=True)


def _parameters(url: str):
    import pika

    params = pika.URLParameters(url)
    params.heartbeat = 30
    params.blocked_connection_timeout = 60
    params.connection_attempts = 1
    return params


def declare(channel, queue: str) -> None:
    """The durable task queue and its dead-letter queue ``<queue>.dead``."""
    channel.exchange_declare(exchange=queue + ".dlx", exchange_type="fanout", durable=True)
    channel.queue_declare(queue=queue + ".dead", durable=True)
    channel.queue_bind(queue=queue + ".dead", exchange=queue + ".dlx")
    channel.queue_declare(queue=queue, durable=True, arguments={"x-dead-letter-exchange": queue + ".dlx"})


_AMQP_ERRORS: tuple[type[BaseException], ...] = ()


def _amqp_errors() -> tuple[type[BaseException], ...]:
    global _AMQP_ERRORS
    if not _AMQP_ERRORS:
        import pika.exceptions as px

        _AMQP_ERRORS = (px.AMQPError, ConnectionError, OSError)
    return _AMQP_ERRORS


class RabbitMQTaskQueue(TaskQueue):
    """Publishes persistent task messages with publisher confirms from one connection thread,
    reconnecting with back-off whenever RabbitMQ goes away."""

    def __init__(self, url: str, queue: str = DEFAULT_QUEUE, publish_timeout: float = 60.0):
        self.url = url
        self.queue = queue
        self.publish_timeout = publish_timeout
        self._outbox: queue_module.Queue = queue_module.Queue()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="amqp-publisher", daemon=True)
        self._thread.start()

    def publish(self, task):
        self.publish_many([task])

    def publish_many(self, tasks):
        """Queue all, then wait for all confirms: one round trip's wait, not one per task."""
        futures = []
        for task in tasks:
            done: Future = Future()
            self._outbox.put((task, done))
            futures.append(done)
        for done in futures:
            done.result(timeout=self.publish_timeout)

    def _run(self) -> None:
        import pika

        delay = 0.1
        pending = None
        while not self._closed.is_set():
            try:
                conn = pika.BlockingConnection(_parameters(self.url))
                channel = conn.channel()
                declare(channel, self.queue)
                channel.confirm_delivery()
                if delay > 0.1:
                    log_event("amqp_reconnected", role="publisher", queue=self.queue)
                delay = 0.1
                while not self._closed.is_set():
                    if pending is None:
                        try:
                            pending = self._outbox.get(timeout=0.5)
                        except queue_module.Empty:
                            conn.process_data_events(time_limit=0)
                            continue
                    task, done = pending
                    channel.basic_publish(
                        exchange="", routing_key=self.queue, body=json.dumps(task).encode(),
                        properties=pika.BasicProperties(delivery_mode=2, content_type="application/json"),
                        mandatory=True,
                    )  # fmt: skip
                    pending = None
                    if not done.done():
                        done.set_result(True)
                conn.close()
            except _amqp_errors() as err:
                log_event("amqp_unavailable", level=30, role="publisher", error=describe(err), retry_in=delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def close(self):
        self._closed.set()


class RabbitMQConsumer:
    """A worker's side of the queue: prefetch 1, the handler runs off the connection's I/O
    thread (so heartbeats keep flowing during long blocks), ack only after it returned."""

    def __init__(self, url: str, handler: Handler, on_failure: FailureHandler, queue: str = DEFAULT_QUEUE,
                 max_retries: int = 2):  # fmt: skip
        self.url = url
        self.queue = queue
        self.handler = handler
        self.on_failure = on_failure
        self.max_retries = max_retries
        self.stop = threading.Event()

    def run(self) -> None:
        import pika

        delay = 0.1
        while not self.stop.is_set():
            try:
                conn = pika.BlockingConnection(_parameters(self.url))
                channel = conn.channel()
                declare(channel, self.queue)
                channel.basic_qos(prefetch_count=1)
                log_event("consuming", queue=self.queue)
                delay = 0.1
                for method, props, body in channel.consume(self.queue, inactivity_timeout=0.5):
                    if self.stop.is_set():
                        break
                    if method is None:
                        continue
                    self._process(conn, channel, method, props, body)
                try:
                    channel.cancel()
                    conn.close()
                except _amqp_errors():
                    pass
            except _amqp_errors() as err:
                log_event("amqp_unavailable", level=30, role="worker", error=describe(err), retry_in=delay)
                self.stop.wait(delay)
                delay = min(delay * 2, 5.0)

    def _process(self, conn, channel, method, props, body: bytes) -> None:
        import pika

        try:
            task = json.loads(body)
        except ValueError:
            log_event("task_unreadable", level=40, body=body[:200])
            channel.basic_nack(method.delivery_tag, requeue=False)
            return
        attempt = int((props.headers or {}).get("x-ilb-attempt", 1))
        outcome: dict = {}
        finished = threading.Event()

        def work():
            try:
                self.handler(task)
            except Exception as err:  # reported below, then retried or dead-lettered
                outcome["error"] = describe(err)
                outcome["retry"] = retryable(err)
            finally:
                finished.set()
                conn.add_callback_threadsafe(lambda: None)  # wake the I/O loop at once

        threading.Thread(target=work, name="block-compute", daemon=True).start()
        while not finished.is_set():
            conn.process_data_events(time_limit=1.0)  # heartbeats while the block computes
        if "error" not in outcome:
            channel.basic_ack(method.delivery_tag)
            return
        log_event("task_failed", level=30, block=task.get("block_id"), attempt=attempt, error=outcome["error"])
        if attempt <= self.max_retries and outcome["retry"]:
            channel.basic_publish(
                exchange="", routing_key=self.queue, body=body,
                properties=pika.BasicProperties(delivery_mode=2, content_type="application/json",
                                                headers={"x-ilb-attempt": attempt + 1}),
            )  # fmt: skip
            channel.basic_ack(method.delivery_tag)
        else:
            log_event("task_dead", level=40, block=task.get("block_id"), queue=self.queue + ".dead")
            self.on_failure(task, outcome["error"])
            channel.basic_nack(method.delivery_tag, requeue=False)
