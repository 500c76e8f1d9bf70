from __future__ import annotations

import pytest

from stream.sinks import write_with_retry


async def test_retries_with_growing_backoff_until_the_write_succeeds() -> None:
    attempts = []
    sleeps: list[float] = []

    async def flaky() -> int:
        attempts.append(1)
        if len(attempts) < 4:
            raise ConnectionError("redis down")
        return 7

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    result = await write_with_retry(flaky, retry_on=(ConnectionError,), initial_backoff=0.1,
                                    max_backoff=0.3, sleep=fake_sleep)
    assert result == 7
    assert sleeps == [0.1, 0.2, 0.3]


async def test_other_errors_are_not_swallowed() -> None:
    async def broken() -> int:
        raise ValueError("bad data")

    with pytest.raises(ValueError):
        await write_with_retry(broken, retry_on=(ConnectionError,))
