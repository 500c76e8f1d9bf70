"""Local infrastructure for development, demos and tests: real Kafka (KRaft) and a Redis-protocol server."""
