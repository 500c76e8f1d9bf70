"""The lookup surfaces: the Redis lookup client and the HTTP API of ``pulse serve``."""
