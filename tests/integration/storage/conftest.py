"""Engines for the storage tests: the same shared tests run on memory, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flame.session_manager.storage import open_storage
from tests.integration.storage import postgres
from tests.integration.storage.samples import Engine


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A url for a schema of this test's own on the test server (see postgres.py)."""
    with postgres.fresh_schema(postgres.server_url()) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def durable_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A storage url for each engine that promises durability."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return f"sqlite://{tmp_path / 'flame.db'}"


@pytest.fixture(params=["sqlite", "memory", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    """A factory of engines over the same store: each call is a "restart" of the session manager.

    SQLite and PostgreSQL get a new object on the same file or schema; memory keeps its data in the
    object, so its restart is stop()/start() of that one object.
    """
    if request.param == "memory":
        return Engine("memory", "memory", open_storage("memory"))
    if request.param == "postgres":
        return Engine("postgres", request.getfixturevalue("postgres_url"))
    return Engine("sqlite", f"sqlite://{tmp_path / 'f.db'}")
