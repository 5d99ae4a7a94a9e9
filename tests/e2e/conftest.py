"""Fixtures for the end-to-end tests: a fake PagerDuty in a background thread and a daemon
factory that stops every daemon it started and checks none of them logged the routing key."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DaemonProcess, start_daemon
from tests.e2e.harness import ROUTING_KEY, PhasedPagerDuty, fake_pagerduty, stop, write_config


@dataclass
class Env:
    tmp: Path
    fake: PhasedPagerDuty
    pd_url: str
    daemons: list[DaemonProcess] = field(default_factory=list)

    def config(self, **extra: Any) -> Path:
        return write_config(self.tmp, self.pd_url, **extra)

    def start(self, config: Path | None = None, env: dict[str, str] | None = None) -> DaemonProcess:
        d = start_daemon(self.tmp, config=config or self.config(), env=env)
        self.daemons.append(d)
        return d


@pytest.fixture
def e2e(tmp_path: Path) -> Iterator[Env]:
    with fake_pagerduty() as (fake, url):
        env = Env(tmp_path, fake, url)
        try:
            yield env
        finally:
            for d in env.daemons:
                with contextlib.suppress(Exception):
                    stop(d)
    for d in env.daemons:
        assert ROUTING_KEY not in d.log(), f"routing key in the log of daemon :{d.port}"
