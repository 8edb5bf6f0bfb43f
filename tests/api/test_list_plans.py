"""On PostgreSQL a list statement runs prepared, and after its fifth run PostgreSQL may plan it once for
all values (a generic plan). Every shape must read the same rows under such a plan, and the extension
page must still come straight from its index in the list's order: a generic plan expects one row, and
when the index lacked ``id`` it sorted the extension's whole window instead (migration 0005).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from sqlalchemy import Connection, Engine

from pbx_cdr.db import engine as db
from pbx_cdr.db.driver import driver_statement
from pbx_cdr.db.queries import call_list
from pbx_cdr.db.queries import calls as call_queries
from pbx_cdr.domain.listing import AccountView, parse_list_query
from tests.api.calls_support import make_call
from tests.conftest import Tenant

NOW = datetime(2026, 6, 27, 12, tzinfo=UTC).timestamp()
SHAPES = (
    {},
    {"direction": "inbound"},
    {"extension": "1001"},
    {"extension": "1001", "page": "4", "per_page": "7"},
    {"phone": "4321"},
    {"phone": "0987654321"},
    {"page": "30", "per_page": "3"},
    {"direction": "outbound", "page": "12", "per_page": "5"},
    {"page": "999"},
)


def busy_account(engine: Engine, make_tenant: Callable[..., Tenant]) -> int:
    account_id = make_tenant(timezone="Asia/Ho_Chi_Minh", country="VN").id
    base = int(NOW) - 3 * 86400
    batch = [
        make_call(
            base + i * 97 // 2 * 2,  # pairs of calls in the same second: ties by id
            ("inbound", "outbound", "internal")[i % 3],
            ("1001", "1002", None)[i % 3],
            ("1001", None, "1001")[i % 3],
            ("0987654321", "0912344321", "1001")[i % 3],
            ("1001", "0281234321", "1002")[i % 3],
        )
        for i in range(600)
    ]
    with db.write(engine) as conn:
        call_queries.upsert_calls(conn, account_id, "VN", batch, origin="api", now=1)
        # Statistics, as autovacuum keeps them: without them the planner's costs on so small a table
        # tie, and which of two indexes it takes follows their creation order.
        conn.exec_driver_sql("ANALYZE calls")
    return account_id


# Plans of prepared statements are PostgreSQL's: these tests run on it alone.
pytestmark = pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)


def run(conn: Connection, account_id: int, params: dict[str, str]) -> tuple[list[str], int]:
    q = parse_list_query(params, AccountView("Asia/Ho_Chi_Minh", "VN", 31), NOW)
    page = call_list.list_calls(conn, account_id, q)
    return page.uuids(), page.total


def test_generic_plans_read_what_custom_plans_read(
    engine: Engine, make_tenant: Callable[..., Tenant]
) -> None:
    account_id = busy_account(engine, make_tenant)
    for params in SHAPES:
        results = []
        for mode in ("force_custom_plan", "force_generic_plan"):
            with db.read_one(engine) as conn:
                conn.exec_driver_sql(f"SET plan_cache_mode = {mode}")
                try:
                    # Past psycopg's prepare threshold: the last runs are prepared statements.
                    found = [run(conn, account_id, params) for _ in range(7)]
                finally:
                    conn.exec_driver_sql("RESET plan_cache_mode")
            assert all(f == found[0] for f in found), params
            results.append(found[0])
        assert results[0] == results[1], params
        assert results[0][1] > 0, params


def generic_plan(conn: Connection, statement: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """EXPLAIN of ``statement`` prepared and planned without its values."""
    names: list[str] = []

    def positional(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
    conn.exec_driver_sql("PREPARE list_page AS " + re.sub(r"%\((\w+)\)s", positional, statement))
    try:
        args = ", ".join(
            conn.exec_driver_sql("SELECT quote_nullable(%(v)s::text)", {"v": parameters[n]}).scalar_one()
            for n in names
        )
        plan = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) EXECUTE list_page({args})").scalar_one()
    finally:
        conn.exec_driver_sql("DEALLOCATE list_page")
        conn.exec_driver_sql("RESET plan_cache_mode")
    tree = plan if isinstance(plan, list) else orjson.loads(plan)
    return dict(tree[0]["Plan"])


def parents_of(node: dict[str, Any], index: str, parent: str = "") -> list[str]:
    """The node type above every scan of ``index``."""
    found = [parent] if node.get("Index Name") == index else []
    for child in node.get("Plans", []):
        found += parents_of(child, index, node["Node Type"])
    return found


def test_extension_page_reads_its_index_in_order_under_a_generic_plan(
    engine: Engine, make_tenant: Callable[..., Tenant]
) -> None:
    account_id = busy_account(engine, make_tenant)
    with db.read_one(engine) as conn:
        run(conn, account_id, {"extension": "1001"})  # the statement runs, as the route runs it
    # ... and this is the SQL and the parameters it ran with (straight through the driver).
    q = parse_list_query({"extension": "1001"}, AccountView("Asia/Ho_Chi_Minh", "VN", 31), NOW)
    statements, params, _ = call_list._prepare(account_id, q, call_list.DEEP_OFFSET)
    compiled = driver_statement(statements.combined, engine.dialect)
    statement, parameters = compiled.sql, compiled.bind(params)
    with db.read_one(engine) as conn:
        conn.exec_driver_sql("SET enable_seqscan = off")
        conn.exec_driver_sql("SET enable_bitmapscan = off")
        plan = generic_plan(conn, statement, parameters)
    # The page's arm: a LIMIT straight over the index, no sort in between (the count is the other
    # scan of the same index, under its aggregate).
    assert sorted(parents_of(plan, "ix_calls_extension")) == ["Aggregate", "Limit"], plan


def scans(node: dict[str, Any]) -> list[tuple[str, str]]:
    """Every index scan of the plan: (node type, index)."""
    found = [(node["Node Type"], node["Index Name"])] if "Index Name" in node else []
    for child in node.get("Plans", []):
        found += scans(child)
    return found


@pytest.mark.parametrize(("params", "index"), [({}, "ix_calls_window"), ({"direction": "inbound"}, None)])
def test_a_first_page_reads_its_rows_straight_from_its_index_under_a_generic_plan(
    engine: Engine, make_tenant: Callable[..., Tenant], params: dict[str, str], index: str | None
) -> None:
    """Page 1 takes its rows from the index it walks (no ids, then primary-key lookups); the pages
    after it keep the ids, whose OFFSET skips index entries instead of table rows."""
    account_id = busy_account(engine, make_tenant)
    found = {}
    for page in ("1", "2"):
        q = parse_list_query({**params, "page": page}, AccountView("Asia/Ho_Chi_Minh", "VN", 31), NOW)
        statements, values, _ = call_list._prepare(account_id, q, call_list.DEEP_OFFSET)
        compiled = driver_statement(statements.combined, engine.dialect)
        with db.read_one(engine) as conn:
            conn.exec_driver_sql("SET enable_seqscan = off")
            conn.exec_driver_sql("SET enable_bitmapscan = off")
            found[page] = scans(generic_plan(conn, compiled.sql, compiled.bind(values)))
    rows_from = [name for kind, name in found["1"] if kind == "Index Scan"]
    assert rows_from and "calls_pkey" not in rows_from, found["1"]
    if index is not None:
        assert rows_from == [index], found["1"]
    assert ("Index Scan", "calls_pkey") in found["2"], found["2"]


def test_every_shape_keeps_its_pages_order_with_no_sort_over_the_join(
    engine: Engine, make_tenant: Callable[..., Tenant]
) -> None:
    """The combined statement has no ORDER BY of its own: its rows come out in the page's order
    because the statement is a nested loop over the total's one row (``call_list._compose``)."""
    account_id = busy_account(engine, make_tenant)
    for params in SHAPES:
        q = parse_list_query(params, AccountView("Asia/Ho_Chi_Minh", "VN", 31), NOW)
        statements, values, _ = call_list._prepare(account_id, q, call_list.DEEP_OFFSET)
        compiled = driver_statement(statements.combined, engine.dialect)
        with db.read_one(engine) as conn:
            plan = generic_plan(conn, compiled.sql, compiled.bind(values))
        assert (plan["Node Type"], plan["Join Type"]) == ("Nested Loop", "Left"), (params, plan)
        outer = [child for child in plan["Plans"] if child["Parent Relationship"] == "Outer"]
        assert len(outer) == 1 and outer[0]["Plan Rows"] == 1, (params, plan)


def nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node of the plan."""
    return [node, *(n for child in node.get("Plans", []) for n in nodes(child))]


def test_a_phone_list_reads_only_its_number_keys_under_a_generic_plan(
    engine: Engine, make_tenant: Callable[..., Tenant]
) -> None:
    """An account with many numbers of its own (a hotline and campaign numbers): the phone list
    reads the hour counts and the calls of the keys its suffix matches, key by key. A generic plan
    had joined every number's counts to the keys (25 ms a list at 10M calls with 200 numbers)."""
    account_id = make_tenant(timezone="Asia/Ho_Chi_Minh", country="VN").id
    base = int(NOW) - 3 * 86400
    numbers = ["19006868", *(f"0287{3000000 + i}" for i in range(60))]
    batch = [
        make_call(base + i * 37, "inbound", None, None, "0987654321", numbers[i % 7 and 1 + i % 60])
        for i in range(3000)
    ]
    with db.write(engine) as conn:
        call_queries.upsert_calls(conn, account_id, "VN", batch, origin="api", now=1)
        conn.exec_driver_sql("ANALYZE")
    for params in ({"phone": "19006868"}, {"phone": "6868", "page": "9", "per_page": "7"}):
        q = parse_list_query(params, AccountView("Asia/Ho_Chi_Minh", "VN", 31), NOW)
        with db.read_one(engine) as conn:
            assert run(conn, account_id, params)[1] == sum(1 for i in range(3000) if not i % 7)
        statements, values, _ = call_list._prepare(account_id, q, call_list.DEEP_OFFSET)
        compiled = driver_statement(statements.combined, engine.dialect)
        with db.read_one(engine) as conn:
            plan = generic_plan(conn, compiled.sql, compiled.bind(values))
        counts_read = [n for n in nodes(plan) if n.get("Relation Name") == "call_number_counts"]
        assert counts_read and all("number_key" in n.get("Index Cond", "") for n in counts_read), plan
        # The page: each key's newest calls, straight from the destination index in its order.
        keyed = [n for n in nodes(plan) if n.get("Index Name") == "ix_calls_destination_key"]
        assert any("Backward" in n["Node Type"] or n.get("Scan Direction") == "Backward" for n in keyed), plan
