"""Shared fixtures: the databases (SQLite and a real PostgreSQL), apps, clients, accounts and tokens.

Accounts and tokens are made through the same functions the CLI uses.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text

from pbx_cdr.app import create_app
from pbx_cdr.cli.accounts import create_account
from pbx_cdr.cli.context import CliContext
from pbx_cdr.cli.tokens import issue_token
from pbx_cdr.clock import FrozenClock
from pbx_cdr.config import Settings, load_settings
from pbx_cdr.db.engine import make_engine
from pbx_cdr.db.migrate import upgrade
from tests.servers import PostgresServer, S3Server, postgres_server, s3_server

# 2026-06-27 12:00:00 UTC: the seed's example day.
NOW = datetime(2026, 6, 27, 12, 0, 0, tzinfo=UTC).timestamp()
SECRET = "test-secret-key-0123456789abcdef"
_db_counter = itertools.count()


@pytest.fixture(scope="session")
def pg() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        engine = create_engine(server.url(), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("CREATE DATABASE pbx_template"))
        engine.dispose()
        template = make_engine(server.url("pbx_template"))
        upgrade(template)
        template.dispose()
        yield server


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Test credentials for the S3 server the session starts; nothing from the machine leaks in."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


def new_pg_database(server: PostgresServer) -> str:
    name = f"pbx_test_{next(_db_counter)}"
    admin = create_engine(server.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name} TEMPLATE pbx_template"))
    admin.dispose()
    return server.url(name)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """A migrated, empty database: a SQLite file, or a fresh PostgreSQL database from a template."""
    if request.param == "sqlite":
        path = tmp_path / "pbx-cdr.sqlite3"
        shutil.copyfile(sqlite_template, path)
        return f"sqlite:///{path}"
    server: PostgresServer = request.getfixturevalue("pg")
    return new_pg_database(server)


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """For tests that are about logic, not the database: SQLite only."""
    path = tmp_path / "pbx-cdr.sqlite3"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return load_settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret_key=SECRET,
        public_url="http://testserver",
        sqlite_synchronous="NORMAL",
    )


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings.database_url, sqlite_synchronous="NORMAL")
    yield engine
    engine.dispose()


@pytest.fixture
def app(settings: Settings, clock: FrozenClock, engine: Engine) -> Any:
    return create_app(settings, clock=clock, engine=engine)


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=True) as test_client:
        yield test_client


@pytest.fixture
def cli_ctx(settings: Settings) -> CliContext:
    return CliContext(
        overrides={
            "data_dir": settings.data_dir,
            "database_url": settings.database_url,
            "secret_key": SECRET,
            "public_url": settings.public_url,
        }
    )


@dataclass
class Tenant:
    """An account with a read token and a write token."""

    id: int
    name: str
    read_token: str
    write_token: str

    @property
    def read(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.read_token}"}

    @property
    def write(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.write_token}"}


@pytest.fixture
def make_tenant(cli_ctx: CliContext) -> Callable[..., Tenant]:
    names = itertools.count(1)

    def make(name: str | None = None, **options: Any) -> Tenant:
        account = create_account(cli_ctx, name or f"tenant-{next(names)}", **options)
        _, read_token = issue_token(cli_ctx, account.id, "read", ["cdr:read"])
        _, write_token = issue_token(cli_ctx, account.id, "write", ["cdr:write"])
        return Tenant(account.id, account.name, read_token, write_token)

    return make


@pytest.fixture
def tenant(make_tenant: Callable[..., Tenant]) -> Tenant:
    return make_tenant("acme", timezone="UTC", country="VN")


def cdr(uuid: str, **fields: Any) -> dict[str, Any]:
    """A valid JSON CDR; override any field."""
    base: dict[str, Any] = {
        "uuid": uuid,
        "direction": "outbound",
        "caller_number": "1001",
        "destination_number": "0987654321",
        "start_time": "2026-06-27T08:15:42+00:00",
        "answer_time": "2026-06-27T08:15:50+00:00",
        "end_time": "2026-06-27T08:16:56+00:00",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}
