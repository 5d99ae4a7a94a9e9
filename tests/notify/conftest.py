from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.notify.fakes import FakeClock, FakeHTTP, FakeOpsgenie, FakePagerDuty
from tests.notify.helpers import OG_KEY, PD_KEY


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def pd(clock: FakeClock) -> AsyncIterator[FakePagerDuty]:
    fake = FakePagerDuty(PD_KEY, clock)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def og(clock: FakeClock) -> AsyncIterator[FakeOpsgenie]:
    fake = FakeOpsgenie(OG_KEY, clock)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def hook(clock: FakeClock) -> AsyncIterator[FakeHTTP]:
    fake = FakeHTTP(clock=clock)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def url(fake: FakePagerDuty | FakeOpsgenie | FakeHTTP) -> str:
    assert fake.server is not None
    return str(fake.server.make_url("")).rstrip("/")
