"""Fixtures: the loopback services once per session, a fresh database and bucket per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .services import Place, Services, services


@pytest.fixture(scope="session")
def svc() -> Services:
    """The MongoDB and S3 servers (started for the session, or given by environment)."""
    return services()


@pytest.fixture
def place(svc: Services) -> Iterator[Place]:
    here = Place(svc)
    yield here
    here.close()
