"""Pytest fixtures over the support helpers; import them in tests/conftest.py to share.

Function-scoped on purpose: each test gets empty receivers and a clean
Pushgateway, so assertions never see another test's telemetry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .otlp_receiver import OtlpGrpcReceiver, OtlpHttpReceiver
from .services import Service, start_alertmanager, start_prometheus, start_pushgateway


@pytest.fixture
def otlp_http_receiver() -> Iterator[OtlpHttpReceiver]:
    with OtlpHttpReceiver() as receiver:
        yield receiver


@pytest.fixture
def otlp_grpc_receiver() -> Iterator[OtlpGrpcReceiver]:
    with OtlpGrpcReceiver() as receiver:
        yield receiver


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[Service]:
    with start_pushgateway(tmp_path) as service:
        yield service


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """``prometheus_factory(["127.0.0.1:PORT"], scrape_interval="1s")``.

    A factory because scrape targets are only known inside the test; every
    instance started is stopped at teardown.
    """
    started: list[Service] = []

    def factory(scrape_targets: list[str], scrape_interval: str = "1s") -> Service:
        service = start_prometheus(tmp_path, scrape_targets, scrape_interval)
        started.append(service)
        return service

    yield factory
    for service in started:
        service.stop()


@pytest.fixture
def alertmanager_factory(tmp_path: Path) -> Iterator[Callable[[str], Service]]:
    """``alertmanager_factory(config_text)``: a factory because each test brings its config
    (usually a rewritten copy of deploy/alertmanager/alertmanager.yml); stopped at teardown."""
    started: list[Service] = []

    def factory(config_text: str) -> Service:
        service = start_alertmanager(tmp_path, config_text)
        started.append(service)
        return service

    yield factory
    for service in started:
        service.stop()
