"""Rate-limit counters: hits per token and window, shared by every server process.

A hit is counted by one atomic upsert that only increments while the window has room, so two
processes can never both take the last slot.
"""

from __future__ import annotations

from sqlalchemy import Connection, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from pbx_cdr.db.tables import rate_limit_counters as counters


def window_hits(conn: Connection, token_id: int, previous: int, current: int) -> tuple[int, int]:
    """The hits counted in the previous and the current window (0 for a window never hit)."""
    rows = conn.execute(
        select(counters.c.window_start, counters.c.hits).where(
            counters.c.token_id == token_id, counters.c.window_start.in_((previous, current))
        )
    )
    hits = {r.window_start: r.hits for r in rows}
    return hits.get(previous, 0), hits.get(current, 0)


def take(conn: Connection, token_id: int, window_start: int, room: int) -> int | None:
    """Count one hit if the window holds fewer than ``room`` (at least 1); the new count, else None."""
    if room < 1:
        raise ValueError("room must be at least 1")
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    stmt = (
        dialect.insert(counters)
        .values(token_id=token_id, window_start=window_start, hits=1)
        .on_conflict_do_update(
            index_elements=[counters.c.token_id, counters.c.window_start],
            set_={"hits": counters.c.hits + 1},
            where=counters.c.hits < room,
        )
        .returning(counters.c.hits)
    )
    hits: int | None = conn.execute(stmt).scalar_one_or_none()
    return hits


def prune_token(conn: Connection, token_id: int, before: int) -> int:
    """Drop one token's windows that started before ``before``."""
    result = conn.execute(
        delete(counters).where(counters.c.token_id == token_id, counters.c.window_start < before)
    )
    return int(result.rowcount)


def prune(conn: Connection, before: int) -> int:
    """Drop every window that started before ``before`` (tokens no longer in use)."""
    result = conn.execute(delete(counters).where(counters.c.window_start < before))
    return int(result.rowcount)


def count_rows(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(counters)).scalar_one())
