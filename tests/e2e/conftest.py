from tests.integration.conftest import Isolated, free_port, infra, isolated  # noqa: F401
