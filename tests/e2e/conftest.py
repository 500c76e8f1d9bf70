from tests.integration.conftest import Isolated, free_port, infra, isolated, test_redis, test_redis_url  # noqa: F401
