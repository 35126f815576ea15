"""Where computed blocks live, how a block is claimed, and how waiters hear of results.

Keys are opaque strings built by the caller (they name project hash, dataset, block shape
and block id). Next to a value a key may have a *claim* (a lease: someone is computing it)
and an *error* (the computation failed for good; kept briefly so waiters fail fast).
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict, deque

from ilastikbackend.log import log_event, redact_url

DONE_CHANNEL = "ilb:done"
RECENT = 10000  # announcements remembered for announced_since()
# An error announced on DONE_CHANNEL (when Redis is too full to store it): "<marker><key>\n<message>".
ERROR_MARKER = "!error!"


class CacheFullError(ConnectionError):
    """The cache cannot store anything more right now (Redis over maxmemory with nothing evictable)."""


class BlockCache(ABC):
    @abstractmethod
    def get_many(self, keys: list[str]) -> list[bytes | None]: ...

    @abstractmethod
    def put(self, key: str, value: bytes) -> None:
        """Store a result, drop its claim and announce it."""

    @abstractmethod
    def put_error(self, key: str, message: str, ttl_seconds: float = 30.0) -> None: ...

    @abstractmethod
    def get_errors(self, keys: list[str]) -> dict[str, str]: ...

    @abstractmethod
    def claim(self, key: str, lease_seconds: float) -> bool:
        """Atomically take the job of computing ``key``; False if someone holds a live claim."""

    @abstractmethod
    def release(self, key: str) -> None:
        """Give up a claim without a result."""

    @abstractmethod
    def claimed(self, keys: list[str]) -> list[bool]: ...

    @abstractmethod
    def extend_claim(self, key: str, lease_seconds: float, create: bool = False) -> None:
        """Renew a claim's lease; ``create``: also re-create it if it was lost (a worker computing it)."""

    def generation(self) -> int:
        """A counter of announcements heard so far (read it before checking for results)."""
        with self._cond:
            return self._generation

    def wait(self, timeout: float, seen: int) -> None:
        """Return once an announcement arrived after ``seen`` was read, or after ``timeout`` seconds."""
        with self._cond:
            self._cond.wait_for(lambda: self._generation != seen, timeout)

    def announced_keys_since(self, seen: int) -> set[str] | None:
        """The keys announced after generation ``seen``; None when that is no longer known."""
        with self._cond:
            if self._generation - seen > len(self._recent):
                return None
            return {key for gen, key in self._recent if gen > seen}

    def announced_since(self, seen: int, keys: set[str]) -> bool:
        """Whether any of ``keys`` was announced (result or error) after generation ``seen``.

        True also when that is no longer known (more announcements than are remembered), so
        waiters can skip looking into the cache after announcements of other blocks.
        """
        with self._cond:
            if self._generation - seen > len(self._recent):
                return True
            return any(key in keys for gen, key in reversed(self._recent) if gen > seen)

    def _announce(self, key: str) -> None:
        with self._cond:
            self._generation += 1
            self._recent.append((self._generation, key))
            self._cond.notify_all()

    @abstractmethod
    def keys(self, prefix: str) -> list[str]: ...

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int: ...

    @abstractmethod
    def count_computation(self, key: str) -> None: ...

    @abstractmethod
    def computations(self, prefix: str) -> dict[str, int]: ...

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections and threads."""


class LocalBlockCache(BlockCache):
    """In-process LRU cache bounded in bytes, for the embedded default."""

    def __init__(self, max_bytes: int = 1 << 30):
        self.max_bytes = max_bytes
        self._values: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._claims: dict[str, float] = {}
        self._errors: dict[str, tuple[str, float]] = {}
        self._counts: dict[str, int] = {}
        self._cond = threading.Condition()
        self._generation = 0
        self._recent: deque[tuple[int, str]] = deque(maxlen=RECENT)

    def get_many(self, keys):
        with self._cond:
            out = []
            for k in keys:
                v = self._values.get(k)
                if v is not None:
                    self._values.move_to_end(k)
                out.append(v)
            return out

    def put(self, key, value):
        with self._cond:
            old = self._values.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
            self._values[key] = value
            self._bytes += len(value)
            while self._bytes > self.max_bytes and len(self._values) > 1:
                _, evicted = self._values.popitem(last=False)
                self._bytes -= len(evicted)
            self._claims.pop(key, None)
            self._errors.pop(key, None)
        self._announce(key)

    def put_error(self, key, message, ttl_seconds=30.0):
        with self._cond:
            self._errors[key] = (message, time.monotonic() + ttl_seconds)
            self._claims.pop(key, None)
        self._announce(key)

    def get_errors(self, keys):
        now = time.monotonic()
        with self._cond:
            return {k: self._errors[k][0] for k in keys if k in self._errors and self._errors[k][1] > now}

    def claim(self, key, lease_seconds):
        now = time.monotonic()
        with self._cond:
            if self._claims.get(key, 0) > now:
                return False
            self._claims[key] = now + lease_seconds
            self._errors.pop(key, None)
            return True

    def release(self, key):
        with self._cond:
            self._claims.pop(key, None)

    def claimed(self, keys):
        now = time.monotonic()
        with self._cond:
            return [self._claims.get(k, 0) > now for k in keys]

    def extend_claim(self, key, lease_seconds, create=False):
        with self._cond:
            if create or key in self._claims:
                self._claims[key] = time.monotonic() + lease_seconds

    def keys(self, prefix):
        with self._cond:
            return [k for k in self._values if k.startswith(prefix)]

    def delete_prefix(self, prefix):
        with self._cond:
            doomed = [k for k in self._values if k.startswith(prefix)]
            for k in doomed:
                self._bytes -= len(self._values.pop(k))
            return len(doomed)

    def count_computation(self, key):
        with self._cond:
            self._counts[key] = self._counts.get(key, 0) + 1

    def computations(self, prefix):
        with self._cond:
            return {k: n for k, n in self._counts.items() if k.startswith(prefix)}


class RedisBlockCache(BlockCache):
    """Blocks in Redis; results are announced on a pub/sub channel.

    Every call retries with back-off while Redis is unreachable or restarting, so a Redis
    restart delays requests instead of failing them. Run Redis as an LRU cache
    (``maxmemory`` + ``allkeys-lru``): an evicted block is simply computed again.
    """

    def __init__(self, url: str, retry_seconds: float = 60.0, full_seconds: float = 5.0):
        import redis

        self.url = url
        self.retry_seconds = retry_seconds
        # A full Redis (maxmemory with noeviction, or nothing evictable) rarely frees up by itself: after
        # this long, operations fail with CacheFullError instead of waiting for the restart deadline.
        self.full_seconds = full_seconds
        self._heard_errors: dict[str, tuple[str, float]] = {}
        self._redis = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=15)
        self._cond = threading.Condition()
        self._generation = 0
        self._recent: deque[tuple[int, str]] = deque(maxlen=RECENT)
        self._closed = threading.Event()
        self._listener = threading.Thread(target=self._listen, name="redis-listener", daemon=True)
        self._listener.start()

    def _call(self, what: str, fn):
        import redis

        start = time.monotonic()
        delay = 0.05
        while True:
            try:
                return fn(self._redis)
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, redis.OutOfMemoryError) as err:
                # OutOfMemoryError: over maxmemory with nothing evictable right now; it may pass (large replies
                # still buffered for readers drain), but a Redis that stays full is reported within seconds.
                waited = time.monotonic() - start
                if isinstance(err, redis.OutOfMemoryError) and waited > self.full_seconds:
                    reason = str(err).rpartition("caused error: ")[2][:200]  # not the command and its value
                    where = redact_url(self.url)
                    raise CacheFullError(f"the block cache (Redis at {where}) is full: {reason} (give it more "
                                         "memory, or let it evict: maxmemory-policy allkeys-lru)") from err  # fmt: skip
                if waited > self.retry_seconds:
                    raise ConnectionError(f"Redis at {redact_url(self.url)} unavailable during {what}: {err}") from err
                log_event("redis_retry", level=30, operation=what, error=type(err).__name__, delay=delay)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _listen(self) -> None:
        import redis

        delay = 0.1
        while not self._closed.is_set():
            pubsub = None
            try:
                pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(DONE_CHANNEL)
                delay = 0.1
                while not self._closed.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None:
                        data = message["data"]
                        self._heard(data.decode() if isinstance(data, bytes) else str(data))
            except (redis.RedisError, OSError, ValueError):
                # Waiters poll as well, so missing announcements while reconnecting only delays them.
                if self._closed.is_set():
                    return
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except (redis.RedisError, OSError, ValueError):
                        pass

    def _heard(self, message: str) -> None:
        if message.startswith(ERROR_MARKER):  # an error that could not be stored: keep it here for a while
            key, _, text = message[len(ERROR_MARKER) :].partition("\n")
            with self._cond:
                now = time.monotonic()
                self._heard_errors = {k: v for k, v in self._heard_errors.items() if v[1] > now}
                self._heard_errors[key] = (text, now + 30.0)
            message = key
        self._announce(message)

    def get_many(self, keys):
        if not keys:
            return []
        return self._call("get", lambda r: r.mget(keys))

    def put(self, key, value):
        def op(r):
            pipe = r.pipeline()
            pipe.set(key, value)
            pipe.delete(key + ":claim", key + ":error")
            pipe.publish(DONE_CHANNEL, key)
            pipe.execute()

        self._call("put", op)

    def put_error(self, key, message, ttl_seconds=30.0):
        def op(r):
            pipe = r.pipeline()
            pipe.set(key + ":error", message, px=int(ttl_seconds * 1000))
            pipe.delete(key + ":claim")
            pipe.publish(DONE_CHANNEL, key)
            pipe.execute()

        try:
            self._call("put_error", op)
        except CacheFullError:
            # Too full to store even the error: announce it (PUBLISH and DEL work on a full Redis), so
            # waiting requests fail now with the reason instead of waiting for a lease to expire.
            def announce(r):
                r.delete(key + ":claim")
                r.publish(DONE_CHANNEL, f"{ERROR_MARKER}{key}\n{message}")

            self._call("announce_error", announce)

    def get_errors(self, keys):
        if not keys:
            return {}
        values = self._call("get_errors", lambda r: r.mget([k + ":error" for k in keys]))
        found = {k: v.decode() for k, v in zip(keys, values) if v is not None}
        now = time.monotonic()
        with self._cond:
            for k in keys:
                heard = self._heard_errors.get(k)
                if k not in found and heard is not None and heard[1] > now:
                    found[k] = heard[0]
        return found

    def claim(self, key, lease_seconds):
        def op(r):
            if not r.set(key + ":claim", b"1", nx=True, px=int(lease_seconds * 1000)):
                return False
            r.delete(key + ":error")  # a new attempt: an old failure no longer answers for it
            return True

        return bool(self._call("claim", op))

    def release(self, key):
        self._call("release", lambda r: r.delete(key + ":claim"))

    def claimed(self, keys):
        if not keys:
            return []
        return [bool(n) for n in self._call("claimed", lambda r: r.mget([k + ":claim" for k in keys]))]

    def extend_claim(self, key, lease_seconds, create=False):
        # create: after a Redis restart a computing worker's claim must come back too.
        px = int(lease_seconds * 1000)
        self._call("extend_claim", lambda r: r.set(key + ":claim", b"1", px=px, xx=not create))

    def _scan(self, prefix: str) -> list[str]:
        return [k.decode() for k in self._call("scan", lambda r: list(r.scan_iter(match=prefix + "*", count=1000)))]

    def keys(self, prefix):
        return [k for k in self._scan(prefix) if not k.endswith((":claim", ":error"))]

    def delete_prefix(self, prefix):
        doomed = self._scan(prefix)
        if doomed:
            self._call("delete", lambda r: r.delete(*doomed))
        return len([k for k in doomed if not k.endswith((":claim", ":error"))])

    def count_computation(self, key):
        self._call("count", lambda r: r.hincrby("ilb:computations", key, 1))

    def computations(self, prefix):
        counts = self._call("computations", lambda r: r.hgetall("ilb:computations"))
        return {k.decode(): int(v) for k, v in counts.items() if k.decode().startswith(prefix)}

    def close(self):
        self._closed.set()
        self._listener.join(timeout=3)
        self._redis.close()


def open_cache(redis_url: str | None, max_bytes: int = 1 << 30) -> BlockCache:
    return RedisBlockCache(redis_url) if redis_url else LocalBlockCache(max_bytes)
