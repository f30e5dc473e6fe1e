"""The PostgreSQL server the storage tests use: found through FLAME_TEST_POSTGRES_URL.

``scripts/check`` starts a throwaway server with ``scripts/postgres`` and sets the variable. Without
it the postgres tests skip, except in CI (``CI=true``), where they fail: a CI run that silently
skipped them would pass without testing the production engine.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

URL_ENV = "FLAME_TEST_POSTGRES_URL"


def server_url() -> str:
    """The test server's url, or skip (fail in CI) the calling test when there is none."""
    url = os.environ.get(URL_ENV, "").strip()
    if url:
        return url
    if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
        pytest.fail(
            f"{URL_ENV} is not set: the PostgreSQL test server wasn't started. CI must run the postgres "
            "storage tests: run the tests through scripts/check, which starts one with scripts/postgres",
            pytrace=False,
        )
    pytest.skip(f'{URL_ENV} is not set: start a server with `eval "$(scripts/postgres start)"` or use scripts/check')


def with_params(url: str, **params: str) -> str:
    """``url`` with libpq query parameters added (or replaced)."""
    parts = urlsplit(url)
    query = [(name, value) for name, value in parse_qsl(parts.query) if name not in params]
    return urlunsplit(parts._replace(query=urlencode([*query, *params.items()])))


@contextmanager
def admin(url: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """An autocommit connection for a test's own SQL, outside the engine under test."""
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        yield conn


@contextmanager
def fresh_schema(base_url: str) -> Iterator[str]:
    """Create a schema of its own for one test; yield a url whose search_path is that schema; drop it.

    The url also names the schema as application_name, so a test can find the engine's connection.
    """
    schema = f"flame_test_{uuid.uuid4().hex[:12]}"
    with admin(base_url) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield with_params(base_url, options=f"-csearch_path={schema}", application_name=schema)
    finally:
        with admin(base_url) as conn:
            conn.execute("SET lock_timeout = '10s'")
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def password_of(url: str) -> str:
    return urlsplit(url).password or ""


def schema_of(url: str) -> str:
    """The schema a url made by fresh_schema() points at."""
    return dict(parse_qsl(urlsplit(url).query))["application_name"]
