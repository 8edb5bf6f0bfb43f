"""Tokens: Bearer only, hash at rest, scopes, revocation at once, last_used_at, two tenants apart."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from pbx_cdr.cli.context import CliContext
from pbx_cdr.clock import FrozenClock
from pbx_cdr.db import engine as db
from pbx_cdr.db.queries import tokens as token_queries
from pbx_cdr.db.tables import api_tokens
from pbx_cdr.tokens import hash_token
from tests.conftest import Tenant, cdr

U = "65569ce0-0183-4f61-a3b2-0e433cfa4031"
UNAUTHENTICATED = {"message": "Unauthenticated."}
FORBIDDEN = {"message": "This action is unauthorized."}


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer pbx_short",
        "Bearer pbx_" + "A" * 43,
        "Token pbx_" + "A" * 43,
        "Basic dXNlcjpwYXNz",
        "Bearer \u00e9\u00e9\u00e9".encode("latin-1"),
    ],
)
def test_missing_malformed_and_unknown_tokens_are_401(
    client: TestClient, tenant: Tenant, header: str | bytes | None
) -> None:
    headers: dict[str, str | bytes] = {} if header is None else {"Authorization": header}
    for path in ("/api/pbx/cdr", f"/api/pbx/cdr/{U}"):
        r = client.get(path, headers=headers)
        assert r.status_code == 401 and r.json() == UNAUTHENTICATED
    r = client.post("/api/pbx/cdr", json=cdr(U), headers=headers)
    assert r.status_code == 401 and r.json() == UNAUTHENTICATED


def test_scopes(client: TestClient, tenant: Tenant) -> None:
    r = client.post("/api/pbx/cdr", json=cdr(U), headers=tenant.read)
    assert r.status_code == 403 and r.json() == FORBIDDEN
    r = client.get("/api/pbx/cdr", headers=tenant.write)
    assert r.status_code == 403 and r.json() == FORBIDDEN
    assert client.post("/api/pbx/cdr", json=cdr(U), headers=tenant.write).status_code == 201
    assert client.get(f"/api/pbx/cdr/{U}", headers=tenant.read).status_code == 200


def test_the_scheme_is_case_insensitive(client: TestClient, tenant: Tenant) -> None:
    r = client.get("/api/pbx/cdr", headers={"Authorization": f"bearer {tenant.read_token}"})
    assert r.status_code == 200


def test_a_revoked_token_is_refused_at_once(client: TestClient, tenant: Tenant, engine: Engine) -> None:
    assert client.get("/api/pbx/cdr", headers=tenant.read).status_code == 200
    with db.write(engine) as conn:
        row = token_queries.find_active_token(conn, hash_token(tenant.read_token))
        assert row is not None
        token_queries.revoke_token(conn, row.id, 1)
    r = client.get("/api/pbx/cdr", headers=tenant.read)
    assert r.status_code == 401 and r.json() == UNAUTHENTICATED


def test_tokens_are_stored_only_as_hashes(tenant: Tenant, engine: Engine) -> None:
    with db.read(engine) as conn:
        stored = [tuple(r) for r in conn.execute(select(api_tokens))]
    flat = repr(stored)
    assert tenant.read_token not in flat and tenant.write_token not in flat
    assert hash_token(tenant.read_token) in flat


def test_last_used_at_is_kept(client: TestClient, tenant: Tenant, engine: Engine, clock: FrozenClock) -> None:
    def last_used() -> int | None:
        with db.read(engine) as conn:
            row = token_queries.find_active_token(conn, hash_token(tenant.read_token))
        assert row is not None
        return row.last_used_ts

    assert last_used() is None
    client.get("/api/pbx/cdr", headers=tenant.read)
    assert last_used() == int(clock.now())
    clock.advance(10)
    client.get("/api/pbx/cdr", headers=tenant.read)
    assert last_used() == int(clock.now()) - 10  # within the write resolution: not rewritten
    clock.advance(token_queries.LAST_USED_RESOLUTION)
    client.get("/api/pbx/cdr", headers=tenant.read)
    assert last_used() == int(clock.now())


def test_two_accounts_never_see_each_other(client: TestClient, make_tenant: Callable[..., Tenant]) -> None:
    a, b = make_tenant("a"), make_tenant("b")
    assert client.post("/api/pbx/cdr", json=cdr(U, caller_number="1001"), headers=a.write).status_code == 201
    # The same uuid in another account is another call, not a conflict.
    assert client.post("/api/pbx/cdr", json=cdr(U, caller_number="2002"), headers=b.write).status_code == 201
    assert client.get(f"/api/pbx/cdr/{U}", headers=a.read).json()["data"]["caller_number"] == "1001"
    assert client.get(f"/api/pbx/cdr/{U}", headers=b.read).json()["data"]["caller_number"] == "2002"
    other = "75569ce0-0183-4f61-a3b2-0e433cfa4032"
    client.post("/api/pbx/cdr", json=cdr(other), headers=a.write)
    missing = client.get(f"/api/pbx/cdr/{other}", headers=b.read)
    unknown = client.get("/api/pbx/cdr/00000000-0000-0000-0000-000000000000", headers=b.read)
    assert missing.status_code == unknown.status_code == 404
    assert missing.json() == unknown.json()
    assert client.get("/api/pbx/cdr", headers=a.read).json()["total"] == 2
    assert client.get("/api/pbx/cdr", headers=b.read).json()["total"] == 1
    assert client.get("/api/pbx/cdr", params={"phone": "0987654321"}, headers=b.read).json()["total"] == 1


def test_cli_tokens_list_never_shows_token_strings(cli_ctx: CliContext, tenant: Tenant) -> None:
    from click.testing import CliRunner

    from pbx_cdr.cli import cli

    args = ["--database-url", cli_ctx.settings.database_url, "--data-dir", str(cli_ctx.settings.data_dir)]
    result = CliRunner().invoke(cli, [*args, "tokens", "list", str(tenant.id), "--json"])
    assert result.exit_code == 0, result.output
    assert tenant.read_token not in result.output and '"read"' in result.output
