"""Where projections of customer state go: Redis for production, memory for tests."""

from stream.sinks.base import ProfileSink, profile_fields, write_with_retry
from stream.sinks.memory import MemorySink
from stream.sinks.redis import RedisSink, customer_key

__all__ = ["MemorySink", "ProfileSink", "RedisSink", "customer_key", "profile_fields", "write_with_retry"]
