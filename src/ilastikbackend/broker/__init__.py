"""Block cache and task queue: an in-process implementation and a distributed one
(Redis, RabbitMQ) behind the same interfaces, in the manner of dramatiq's brokers."""

from ilastikbackend.broker.cache import BlockCache, CacheFullError, LocalBlockCache, RedisBlockCache, open_cache
from ilastikbackend.broker.tasks import LocalTaskQueue, RabbitMQConsumer, RabbitMQTaskQueue, TaskQueue

__all__ = [
    "BlockCache", "CacheFullError", "LocalBlockCache", "RedisBlockCache", "open_cache",
    "TaskQueue", "LocalTaskQueue", "RabbitMQTaskQueue", "RabbitMQConsumer",
]  # fmt: skip
