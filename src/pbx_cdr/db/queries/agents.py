"""Agent aliases: a mod_callcenter agent name mapped to its extension, per account."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, delete, insert, select, update

from pbx_cdr.db.tables import agent_aliases


def aliases_for(conn: Connection, account_id: int, names: Iterable[str]) -> dict[str, str]:
    """The extensions of those of ``names`` that are mapped."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    rows = conn.execute(
        select(agent_aliases.c.agent_name, agent_aliases.c.extension).where(
            agent_aliases.c.account_id == account_id, agent_aliases.c.agent_name.in_(wanted)
        )
    )
    return {r.agent_name: r.extension for r in rows}


def map_agent(conn: Connection, account_id: int, agent_name: str, extension: str) -> str:
    """Map (or re-map) an agent name: created, updated or unchanged."""
    current = conn.execute(
        select(agent_aliases.c.extension).where(
            agent_aliases.c.account_id == account_id, agent_aliases.c.agent_name == agent_name
        )
    ).scalar_one_or_none()
    if current is None:
        conn.execute(
            insert(agent_aliases).values(account_id=account_id, agent_name=agent_name, extension=extension)
        )
        return "created"
    if current == extension:
        return "unchanged"
    conn.execute(
        update(agent_aliases)
        .where(agent_aliases.c.account_id == account_id, agent_aliases.c.agent_name == agent_name)
        .values(extension=extension)
    )
    return "updated"


def unmap_agent(conn: Connection, account_id: int, agent_name: str) -> bool:
    result = conn.execute(
        delete(agent_aliases).where(
            agent_aliases.c.account_id == account_id, agent_aliases.c.agent_name == agent_name
        )
    )
    return bool(result.rowcount)


def list_aliases(conn: Connection, account_id: int) -> list[tuple[str, str]]:
    rows = conn.execute(
        select(agent_aliases.c.agent_name, agent_aliases.c.extension)
        .where(agent_aliases.c.account_id == account_id)
        .order_by(agent_aliases.c.agent_name)
    )
    return [(r.agent_name, r.extension) for r in rows]
