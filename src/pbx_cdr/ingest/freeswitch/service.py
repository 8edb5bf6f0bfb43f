"""Keep a leg and derive its call again, in the caller's transaction (route, import, reprocess).

The call is always derived from *all* the stored legs of the call, never patched by the newest
one: that is what makes the arrival order irrelevant and a repeated post a no-op. Concurrent
writers of one call are serialized by locks on the leg, its parent and the call (see
``db/queries/legs.py``), taken before anything is read.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection

from pbx_cdr.db.queries import agents as agent_queries
from pbx_cdr.db.queries import calls as call_queries
from pbx_cdr.db.queries import legs as leg_queries
from pbx_cdr.db.queries.accounts import Account
from pbx_cdr.domain.call import Call
from pbx_cdr.ingest.freeswitch.body import UndecodableBody, load_leg_json
from pbx_cdr.ingest.freeswitch.fold import agent_names, fold_call, roles
from pbx_cdr.ingest.freeswitch.leg import InvalidLeg, Leg, parse_leg

log = logging.getLogger(__name__)
PENDING = "pending"  # the call's A-leg has not arrived: no call yet


@dataclass(frozen=True)
class LegOutcome:
    leg_uuid: str
    call_uuid: str
    role: str
    leg: str  # created, updated or unchanged
    call: str  # created, updated, unchanged or pending


def _resolve_call(conn: Connection, account_id: int, leg: Leg, locked: set[str]) -> str:
    """The call a leg folds into, locking each uuid on the way before trusting what was read."""
    parent = leg.parent_uuid
    if parent is None:
        return leg.uuid
    while True:
        root = leg_queries.call_uuid_of(conn, account_id, parent) or parent
        if root == leg.uuid:  # a loop in the links: this leg is as good a root as any
            return leg.uuid
        if root in locked:
            return root
        leg_queries.lock_calls(conn, account_id, [root])
        locked.add(root)  # then read again: the root may have been re-pointed while we waited


def store_leg(conn: Connection, account: Account, leg: Leg, body: bytes, now: int) -> LegOutcome:
    """Keep the leg (idempotent by its uuid) and derive its call again when it has its A-leg."""
    path = [leg.uuid] + ([leg.parent_uuid] if leg.parent_uuid else [])
    leg_queries.lock_calls(conn, account.id, path)  # from the leaf up: see lock_calls
    locked = set(path)
    call_uuid = _resolve_call(conn, account.id, leg, locked)
    status = leg_queries.save_leg(conn, account.id, leg.uuid, call_uuid, leg.kind, body, now)
    if status == "unchanged":
        has_a_leg = leg_queries.calls_with_a_leg(conn, account.id, [call_uuid])
        return LegOutcome(leg.uuid, call_uuid, leg.kind, status, "unchanged" if has_a_leg else PENDING)
    if call_uuid != leg.uuid:
        leg_queries.repoint(conn, account.id, leg.uuid, call_uuid)
    results, leg_roles = derive_calls(conn, account, [call_uuid], now)
    return LegOutcome(leg.uuid, call_uuid, leg_roles.get(leg.uuid, leg.kind), status, results[call_uuid])


def parse_stored(body: bytes, leg_uuid: str) -> Leg | None:
    """A stored leg parsed again (the uuid it was stored under stands in, as the URL's did)."""
    try:
        return parse_leg(load_leg_json(body), url_uuid=leg_uuid)
    except (UndecodableBody, InvalidLeg) as exc:  # kept under older rules; reported, never fatal
        log.warning("stored leg no longer parses: %s", exc)
        return None


def derive_calls(
    conn: Connection, account: Account, call_uuids: Sequence[str], now: int
) -> tuple[dict[str, str], dict[str, str]]:
    """Derive these calls from their stored legs and upsert them.

    Returns each call's status (created, updated, unchanged or pending) and each leg's role.
    """
    stored = leg_queries.legs_of_calls(conn, account.id, call_uuids)
    parsed: dict[str, list[Leg]] = {}
    for call_uuid, rows in stored.items():
        parsed[call_uuid] = [leg for row in rows if (leg := parse_stored(row.body, row.leg_uuid)) is not None]
    names = set().union(*(agent_names(legs) for legs in parsed.values())) if parsed else set()
    aliases = agent_queries.aliases_for(conn, account.id, names)

    statuses = dict.fromkeys(call_uuids, PENDING)
    leg_roles: dict[str, str] = {}
    role_changes: dict[str, str] = {}
    calls: list[Call] = []
    for call_uuid, legs in parsed.items():
        call = fold_call(legs, call_uuid, aliases)
        if call is None:
            continue
        calls.append(call)
        current = {row.leg_uuid: row.role for row in stored[call_uuid]}
        for leg_uuid, role in roles(legs, call_uuid).items():
            leg_roles[leg_uuid] = role
            if current.get(leg_uuid) != role:
                role_changes[leg_uuid] = role
    leg_queries.set_roles(conn, account.id, role_changes)
    if calls:
        results = call_queries.upsert_calls(
            conn, account.id, account.country, calls, origin="freeswitch", now=now
        )
        statuses.update({call.uuid: status for call, status in zip(calls, results, strict=True)})
    return statuses, leg_roles
