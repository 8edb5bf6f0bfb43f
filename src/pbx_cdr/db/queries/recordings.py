"""Recordings: one row per (account, call uuid), pointing at the current bytes in storage.

A row is keyed by the call's uuid, not by a call id, so a recording may arrive before its call. The
row's ``id`` is the public id in signed links; it stays the same when the bytes are replaced.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from pbx_cdr.db.tables import calls, recordings


@dataclass(frozen=True)
class NewVersion:
    """The facts of freshly stored bytes: the recording's columns they set (first upload or replace)."""

    storage_key: str
    file_size: int
    duration: int
    sha256: str
    audio_format: str


@dataclass(frozen=True)
class Saved:
    id: int
    status: str  # created, replaced or unchanged
    stale_key: str | None  # bytes the row no longer points at: delete them after the commit


def get_for_call(conn: Connection, account_id: int, uuid: str) -> Any:
    """The recording of a call with its effective ``recorded_ts`` (explicit, else answer, else start)."""
    return conn.execute(
        select(
            recordings.c.id,
            recordings.c.call_uuid,
            recordings.c.storage_key,
            recordings.c.file_size,
            recordings.c.duration,
            recordings.c.sha256,
            recordings.c.audio_format,
            func.coalesce(recordings.c.recorded_ts, calls.c.answer_ts, calls.c.start_ts).label("recorded_ts"),
            recordings.c.created_ts,
        )
        .select_from(recordings)
        .outerjoin(
            calls,
            (calls.c.account_id == recordings.c.account_id) & (calls.c.uuid == recordings.c.call_uuid),
        )
        .where(recordings.c.account_id == account_id, recordings.c.call_uuid == uuid)
    ).one_or_none()


def get_by_id(conn: Connection, recording_id: int) -> Any:
    """A recording by its public id, whatever the account (the signed link is the authorization)."""
    return conn.execute(
        select(
            recordings.c.id,
            recordings.c.account_id,
            recordings.c.call_uuid,
            recordings.c.storage_key,
            recordings.c.file_size,
            recordings.c.sha256,
            recordings.c.created_ts,
        ).where(recordings.c.id == recording_id)
    ).one_or_none()


def hashes_for_calls(conn: Connection, account_id: int, uuids: Sequence[str]) -> dict[str, str]:
    """uuid -> sha256 of the stored recording, for the given calls that have one."""
    if not uuids:
        return {}
    rows = conn.execute(
        select(recordings.c.call_uuid, recordings.c.sha256).where(
            recordings.c.account_id == account_id, recordings.c.call_uuid.in_(uuids)
        )
    )
    return {r.call_uuid: r.sha256 for r in rows}


def existing_calls(conn: Connection, account_id: int, uuids: Sequence[str]) -> set[str]:
    if not uuids:
        return set()
    rows = conn.execute(select(calls.c.uuid).where(calls.c.account_id == account_id, calls.c.uuid.in_(uuids)))
    return {r.uuid for r in rows}


def _locked(conn: Connection, account_id: int, uuid: str) -> Any:
    return conn.execute(
        select(recordings.c.id, recordings.c.storage_key, recordings.c.sha256)
        .where(recordings.c.account_id == account_id, recordings.c.call_uuid == uuid)
        .with_for_update()
    ).one_or_none()


def save_version(
    conn: Connection,
    account_id: int,
    uuid: str,
    version: NewVersion,
    *,
    recorded_ts: int | None,
    now: int,
) -> Saved:
    """Point the call's recording at ``version``: insert, replace, or keep the identical bytes.

    ``recorded_ts`` None keeps an explicit time given before (or leaves it to the call's times).
    """
    old = _locked(conn, account_id, uuid)
    if old is None:
        dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
        row = conn.execute(
            dialect.insert(recordings)
            .values(
                account_id=account_id,
                call_uuid=uuid,
                **asdict(version),
                recorded_ts=recorded_ts,
                created_ts=now,
            )
            .on_conflict_do_nothing(index_elements=["account_id", "call_uuid"])
            .returning(recordings.c.id)
        ).one_or_none()
        if row is not None:
            return Saved(id=row.id, status="created", stale_key=None)
        old = _locked(conn, account_id, uuid)  # a concurrent upload inserted it first
        assert old is not None
    changes: dict[str, Any] = {}
    if recorded_ts is not None:
        changes["recorded_ts"] = recorded_ts
    if old.sha256 == version.sha256:
        if changes:
            conn.execute(update(recordings).where(recordings.c.id == old.id).values(**changes))
        return Saved(id=old.id, status="unchanged", stale_key=version.storage_key)
    conn.execute(
        update(recordings)
        .where(recordings.c.id == old.id)
        .values(**asdict(version), created_ts=now, **changes)
    )
    return Saved(id=old.id, status="replaced", stale_key=old.storage_key)


def delete_for_call(conn: Connection, account_id: int, uuid: str) -> str | None:
    """Remove a call's recording row; its storage key (delete the bytes after the commit), or None."""
    old = _locked(conn, account_id, uuid)
    if old is None:
        return None
    conn.execute(recordings.delete().where(recordings.c.id == old.id))
    return str(old.storage_key)


def count_for_account(conn: Connection, account_id: int) -> int:
    return int(
        conn.execute(
            select(func.count()).select_from(recordings).where(recordings.c.account_id == account_id)
        ).scalar_one()
    )


def answered_without_recording(conn: Connection, account_id: int, limit: int) -> list[Any]:
    """The newest answered calls that have no recording yet (for the demo)."""
    has_recording = (
        select(recordings.c.id)
        .where(recordings.c.account_id == account_id, recordings.c.call_uuid == calls.c.uuid)
        .exists()
    )
    return list(
        conn.execute(
            select(calls.c.uuid, calls.c.billsec)
            .where(calls.c.account_id == account_id, calls.c.result == "answered", ~has_recording)
            .order_by(calls.c.start_ts.desc(), calls.c.id.desc())
            .limit(limit)
        )
    )


def newest_call_with_recording(conn: Connection, account_id: int) -> str | None:
    row = conn.execute(
        select(calls.c.uuid)
        .join(
            recordings,
            (recordings.c.account_id == calls.c.account_id) & (recordings.c.call_uuid == calls.c.uuid),
        )
        .where(calls.c.account_id == account_id)
        .order_by(calls.c.start_ts.desc(), calls.c.id.desc())
        .limit(1)
    ).one_or_none()
    return str(row.uuid) if row else None
