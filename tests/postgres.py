"""A throw-away PostgreSQL schema per test for the warehouse catalogue.

The server is the machine's own (default 127.0.0.1:5432, database `test`, trust auth; override with
TEST_POSTGRES_DSN, a libpq conninfo string). Each test gets a fresh schema, selected through the
connection's search_path, and the schema is dropped afterwards. Not reachable: skipped locally, a
failure in CI (like `need()` for system tools).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from tests.conftest import IN_CI

DSN = os.environ.get("TEST_POSTGRES_DSN", "host=127.0.0.1 port=5432 dbname=test user=postgres")


def need_postgres() -> None:
    """Skip (locally) or fail (in CI) when PostgreSQL or psycopg is not there."""
    try:
        import psycopg
    except ImportError:
        reason = "psycopg is not installed (pip install 'psycopg[binary]')"
    else:
        try:
            with psycopg.connect(DSN, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.Error as err:
            reason = f"PostgreSQL not reachable at {DSN!r}: {str(err).strip()[:200]}"
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


def _url(schema: str) -> str:
    """A SQLAlchemy URL for DSN with `search_path` set to `schema`."""
    parts = dict(item.split("=", 1) for item in DSN.split())
    user = parts.get("user", "postgres")
    auth = user + (f":{quote(parts['password'], safe='')}" if "password" in parts else "")
    options = quote(f"-csearch_path={schema}", safe="")
    host, port, db = parts.get("host", "127.0.0.1"), parts.get("port", "5432"), parts.get("dbname", "test")
    return f"postgresql+psycopg://{auth}@{host}:{port}/{db}?options={options}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A catalogue URL whose tables land in a fresh schema, dropped after the test."""
    need_postgres()
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield _url(schema)
    finally:
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def tables_in(url: str) -> list[str]:
    """The table names in the schema `url` points at (to show the catalogue really went there)."""
    import psycopg

    schema = url.rsplit("search_path%3D", 1)[1]
    with psycopg.connect(DSN) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1", (schema,)
        ).fetchall()
    return [str(r[0]) for r in rows]
