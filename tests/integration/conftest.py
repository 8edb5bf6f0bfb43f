"""Fixtures of the integration tests."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from pbx_cdr.db.engine import make_engine
from tests.servers import PostgresServer

_names = itertools.count()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on an empty database, not migrated: a SQLite file or a new PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'migrate.sqlite3'}"
    else:
        server: PostgresServer = request.getfixturevalue("pg")
        name = f"pbx_migrate_{next(_names)}"
        admin = create_engine(server.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        admin.dispose()
        url = server.url(name)
    engine = make_engine(url)
    yield engine
    engine.dispose()
