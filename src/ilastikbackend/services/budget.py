"""A memory budget for the requests a service has in flight.

Every request that materialises data reserves an estimate of its peak memory before it starts;
requests that do not fit wait in a bounded queue, and are answered 503 with ``Retry-After`` when
the queue is full or they waited too long. A request larger than the whole budget gets 413. So
many large concurrent requests slow down instead of taking the process down.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

from flask import Response, current_app

from ilastikbackend.errors import ApiError
from ilastikbackend.log import log_event

MiB = 1 << 20


class MemoryBudget:
    """Bytes that requests may hold at once.

    Parameters
    ----------
    limit_bytes : int
        The budget.
    max_waiting : int
        Requests that may wait for room; more are refused at once.
    wait_seconds : float
        How long one request waits for room before it is refused.
    """

    def __init__(self, limit_bytes: int, *, max_waiting: int = 16, wait_seconds: float = 30.0):
        if limit_bytes <= 0:
            raise ValueError("the memory budget must be positive")
        self.limit_bytes = limit_bytes
        self.max_waiting = max_waiting
        self.wait_seconds = wait_seconds
        self.in_use = 0
        self.peak = 0
        self._waiting = 0
        self._cond = threading.Condition()

    def acquire(self, nbytes: int, what: str) -> int:
        """Reserve ``nbytes`` (raises ApiError 413/503); returns the amount to release."""
        nbytes = max(int(nbytes), 1)
        if nbytes > self.limit_bytes:
            raise ApiError(413, f"{what} needs about {nbytes / MiB:.0f} MiB, more than this service's memory budget "
                           f"of {self.limit_bytes / MiB:.0f} MiB; ask for a smaller region (or a streamed format: "
                           "raw, npy), or use a batch export", needed_bytes=nbytes)  # fmt: skip
        with self._cond:
            if self.in_use + nbytes > self.limit_bytes:
                if self._waiting >= self.max_waiting:
                    self._busy(what, "the queue of waiting requests is full")
                self._waiting += 1
                try:
                    deadline = time.monotonic() + self.wait_seconds
                    while self.in_use + nbytes > self.limit_bytes:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            self._busy(what, f"no memory became free within {self.wait_seconds:.0f} s")
                        self._cond.wait(left)
                finally:
                    self._waiting -= 1
            self.in_use += nbytes
            self.peak = max(self.peak, self.in_use)
        return nbytes

    def release(self, nbytes: int) -> None:
        with self._cond:
            self.in_use -= nbytes
            self._cond.notify_all()

    def _busy(self, what: str, why: str):
        log_event("request_refused", level=30, what=what, why=why, in_use_mib=self.in_use / MiB)
        raise ApiError(503, f"busy: {why} ({self.in_use / MiB:.0f} of {self.limit_bytes / MiB:.0f} MiB of the memory "
                       f"budget in use); retry shortly", headers={"Retry-After": "5"})  # fmt: skip

    def answer(self, nbytes: int, what: str, make: Callable[[], Response]) -> Response:
        """``make()``'s response with ``nbytes`` reserved until it has been sent (streamed answers included)."""
        held = self.acquire(nbytes, what)
        try:
            response = make()
        except BaseException:
            self.release(held)
            raise
        response.call_on_close(lambda: self.release(held))
        return response

    @contextlib.contextmanager
    def reserve(self, nbytes: int, what: str) -> Iterator[int]:
        held = self.acquire(nbytes, what)
        try:
            yield held
        finally:
            self.release(held)


def app_budget() -> MemoryBudget:
    """The budget of the service handling this request."""
    return current_app.config["MEMORY_BUDGET"]
