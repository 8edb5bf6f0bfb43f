"""Legs of one call arriving at the same moment on several workers still converge on one call.

Each leg is stored by its own thread, in its own transaction, through the same function the route
calls, all released together; on PostgreSQL the per-call advisory locks serialize them, on SQLite
``BEGIN IMMEDIATE`` does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, select

from pbx_cdr.db import engine as db
from pbx_cdr.db.queries import accounts as account_queries
from pbx_cdr.db.queries import calls as call_queries
from pbx_cdr.db.tables import calls, cdr_legs
from pbx_cdr.domain.call import api_item
from pbx_cdr.ingest.freeswitch import read_leg
from pbx_cdr.ingest.freeswitch.service import store_leg
from tests.conftest import NOW, Tenant
from tests.fixtures.freeswitch.corpus import CALL_FIELDS, CASES, Case

MULTI_LEG = [c for c in CASES if len(c.legs) > 1 and not c.agents]
ROUNDS = 4


def store_all_at_once(engine: Engine, account_id: int, bodies: list[bytes]) -> list[BaseException]:
    with db.read(engine) as conn:
        account = account_queries.get_account(conn, account_id)
    assert account is not None
    start = threading.Barrier(len(bodies))
    errors: list[BaseException] = []

    def worker(body: bytes) -> None:
        leg, text = read_leg(body)
        start.wait()
        try:
            with db.write(engine) as conn:
                store_leg(conn, account, leg, text, int(NOW))
        except BaseException as exc:  # reported to the test below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(b,)) for b in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


@pytest.mark.parametrize("case", MULTI_LEG, ids=[c.name for c in MULTI_LEG])
def test_simultaneous_legs_converge(engine: Engine, make_tenant: Callable[..., Tenant], case: Case) -> None:
    uuid = case.expected["uuid"]
    for _ in range(ROUNDS):
        tenant = make_tenant()
        bodies = [case.body(p) for p in case.legs] * 2  # and every leg twice: a retry racing the post
        assert store_all_at_once(engine, tenant.id, bodies) == []
        with db.read(engine) as conn:
            row = call_queries.get_call(conn, tenant.id, uuid)
            links = conn.execute(select(cdr_legs.c.call_uuid).where(cdr_legs.c.account_id == tenant.id)).all()
            n_calls = len(conn.execute(select(calls.c.id).where(calls.c.account_id == tenant.id)).all())
        assert n_calls == 1
        assert len(links) == len(case.legs)
        assert {link.call_uuid for link in links} == {uuid}
        item = api_item(row)
        assert {f: item[f] for f in CALL_FIELDS} == {f: case.expected[f] for f in CALL_FIELDS}
