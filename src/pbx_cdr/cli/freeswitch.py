"""``pbx-cdr import freeswitch``, ``pbx-cdr reprocess`` and ``pbx-cdr agents map|list|unmap``.

The import replays the files mod_json_cdr writes (``log-dir``, and ``err-log-dir`` where it keeps
every leg it could not post) through the same code as the HTTP receiver, so importing a file twice,
or a file that was also posted, changes nothing.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from pbx_cdr.cli.accounts import require_account
from pbx_cdr.cli.context import CliContext, CliError, import_group, pass_ctx
from pbx_cdr.db import engine as db
from pbx_cdr.db.migrate import upgrade
from pbx_cdr.db.queries import agents as agent_queries
from pbx_cdr.db.queries import legs as leg_queries
from pbx_cdr.db.queries.accounts import Account
from pbx_cdr.ingest.freeswitch import InvalidLeg, Leg, UndecodableBody, read_leg
from pbx_cdr.ingest.freeswitch.leg import canonical_uuid, is_uuid
from pbx_cdr.ingest.freeswitch.service import PENDING, derive_calls, store_leg

BATCH = 200  # legs or calls per transaction
MAX_FILE_BYTES = 16 * 1024 * 1024
SHOWN_ERRORS = 20
_EXTENSION = re.compile(r"^[0-9A-Za-z+*#._-]{1,32}\Z")
Advance = Callable[[int], None]


@dataclass
class ImportSummary:
    files: int = 0
    legs: Counter[str] = field(default_factory=Counter)
    calls: dict[str, str] = field(default_factory=dict)  # call uuid -> created, updated, unchanged, pending
    errors: list[tuple[str, str]] = field(default_factory=list)

    def call_counts(self) -> dict[str, int]:
        counts = Counter(self.calls.values())
        return {k: counts.get(k, 0) for k in ("created", "updated", "unchanged", PENDING)}

    def as_json(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "legs": {k: self.legs.get(k, 0) for k in ("created", "updated", "unchanged")},
            "calls": self.call_counts(),
            "errors": [{"file": f, "error": e} for f, e in self.errors],
        }


def collect_files(paths: Iterable[Path]) -> list[Path]:
    """Files named, and every ``*.cdr.json`` under folders named, in a stable order, once each."""
    found: dict[Path, None] = {}
    for path in paths:
        if path.is_dir():
            for item in sorted(path.rglob("*.cdr.json")):
                if item.is_file():
                    found.setdefault(item.resolve())
        elif path.is_file():
            found.setdefault(path.resolve())
        else:
            raise CliError(f"no such file or folder: {path}")
    return list(found)


def _read(path: Path) -> tuple[Leg, bytes]:
    if path.stat().st_size > MAX_FILE_BYTES:
        raise UndecodableBody(f"the file is larger than {MAX_FILE_BYTES} bytes")
    # mod_json_cdr names files <uuid>.cdr.json or a_<uuid>.cdr.json; the uuid inside wins.
    named = canonical_uuid(path.name.split(".")[0].removeprefix("a_"))
    return read_leg(path.read_bytes(), url_uuid=named if is_uuid(named) else None)


def import_files(ctx: CliContext, account: Account, files: Sequence[Path], advance: Advance) -> ImportSummary:
    """Store every leg of ``files`` for ``account``, in transactions of :data:`BATCH` legs."""
    summary = ImportSummary(files=len(files))
    waiting: list[str] = []
    # SQLite lets one writer in at a time anyway, so batches cost nothing there and save a sync
    # per leg; on PostgreSQL one leg per transaction keeps the lock order of the live route.
    batch = BATCH if db.is_sqlite(ctx.engine()) else 1
    for start in range(0, len(files), batch):
        chunk = files[start : start + batch]
        parsed: list[tuple[Leg, bytes]] = []
        for path in chunk:
            try:
                parsed.append(_read(path))
            except (UndecodableBody, InvalidLeg, OSError) as exc:
                summary.errors.append((str(path), str(exc)))
        with db.write(ctx.engine()) as conn:
            for leg, text in parsed:
                outcome = store_leg(conn, account, leg, text, ctx.now())
                summary.legs[outcome.leg] += 1
                if outcome.call == PENDING:
                    waiting.append(outcome.leg_uuid)
                else:
                    _record(summary.calls, outcome.call_uuid, outcome.call)
        advance(len(chunk))
    # A leg that waited may have been joined to its call by a later file; count each call still
    # waiting once, under the uuid it waits for now.
    with db.read(ctx.engine()) as conn:
        now_under = set(leg_queries.calls_of_legs(conn, account.id, waiting).values())
        complete = leg_queries.calls_with_a_leg(conn, account.id, sorted(now_under))
    for call_uuid in now_under - complete:
        summary.calls[call_uuid] = PENDING
    return summary


def _record(calls: dict[str, str], call_uuid: str, status: str) -> None:
    """A call touched several times in one run counts once: created if any touch created it, and so on."""
    rank = {PENDING: 0, "unchanged": 1, "updated": 2, "created": 3}
    previous = calls.get(call_uuid)
    if previous is None or rank[status] > rank[previous]:
        calls[call_uuid] = status


def reprocess_account(
    ctx: CliContext, account: Account, since_ts: int | None, advance: Advance
) -> Counter[str]:
    """Derive every call of the account that has a leg received since ``since_ts`` again."""
    tally: Counter[str] = Counter()
    after = ""
    while True:
        with db.write(ctx.engine()) as conn:
            batch = leg_queries.call_uuids_page(conn, account.id, since_ts=since_ts, after=after, limit=BATCH)
            if not batch:
                return tally
            # Only calls whose A-leg is stored: a writer holding such a call's lock waits for
            # nothing more, so holding many of them at once cannot deadlock (see lock_calls).
            ready = sorted(leg_queries.calls_with_a_leg(conn, account.id, batch))
            leg_queries.lock_calls(conn, account.id, ready)
            statuses, _ = derive_calls(conn, account, ready, ctx.now())
        tally.update(statuses.values())
        tally[PENDING] += len(batch) - len(ready)
        after = batch[-1]
        advance(len(batch))


def parse_since(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError as exc:
        raise CliError(f"--since must be a date, YYYY-MM-DD (got {value!r})") from exc
    return int(day.timestamp())


def map_agent(ctx: CliContext, account_id: int, agent_name: str, extension: str) -> str:
    """Map a mod_callcenter agent name to an extension for one account (shared by tests)."""
    if not agent_name.strip() or len(agent_name) > 128 or any(ord(ch) < 32 for ch in agent_name):
        raise CliError("an agent name must have 1 to 128 characters")
    if not _EXTENSION.match(extension):
        raise CliError(f"{extension!r} is not an extension (1 to 32 of 0-9 A-Z a-z + * # . _ -)")
    require_account(ctx, account_id)
    with db.write(ctx.engine()) as conn:
        return agent_queries.map_agent(conn, account_id, agent_name, extension)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def _accounts(ctx: CliContext, account_id: int | None) -> list[Account]:
    if account_id is not None:
        return [require_account(ctx, account_id)]
    upgrade(ctx.engine())
    with db.read(ctx.engine()) as conn:
        ids = leg_queries.accounts_with_legs(conn)
    return [require_account(ctx, i) for i in ids]


def register(cli: click.Group) -> None:
    group = import_group(cli)

    @group.command("freeswitch")
    @click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
    @click.option("--account", "account_id", type=int, required=True, help="The account the calls belong to")
    @click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON")
    @pass_ctx
    def import_freeswitch(ctx: CliContext, paths: tuple[Path, ...], account_id: int, as_json: bool) -> None:
        """Replay mod_json_cdr files (*.cdr.json in folders, or files named): log-dir, err-log-dir.

        Idempotent: a leg already stored changes nothing. Exit status 1 if any file was refused.
        """
        account = require_account(ctx, account_id)
        files = collect_files(paths)
        with _progress() as progress:
            task = progress.add_task("importing legs", total=len(files))
            summary = import_files(ctx, account, files, lambda n: progress.advance(task, n))
        if as_json:
            click.echo(json.dumps(summary.as_json()))
        else:
            legs, calls = summary.legs, summary.call_counts()
            click.echo(
                f"{summary.files} files: {legs['created']} legs new, {legs['updated']} replaced, "
                f"{legs['unchanged']} already there; calls: {calls['created']} created, "
                f"{calls['updated']} updated, {calls['unchanged']} unchanged, "
                f"{calls[PENDING]} waiting for their A-leg"
            )
            for path, error in summary.errors[:SHOWN_ERRORS]:
                click.echo(f"refused {path}: {error}", err=True)
        if summary.errors:
            raise CliError(f"{len(summary.errors)} of {summary.files} files could not be imported")

    @cli.command("reprocess")
    @click.option("--account", "account_id", type=int, help="Only this account (default: every account)")
    @click.option("--since", help="Only calls with a leg received on or after this day (YYYY-MM-DD, UTC)")
    @click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON")
    @pass_ctx
    def reprocess(ctx: CliContext, account_id: int | None, since: str | None, as_json: bool) -> None:
        """Derive FreeSWITCH calls again from their stored legs (after an upgrade or an agent mapping)."""
        since_ts = parse_since(since)
        tally: Counter[str] = Counter()
        for account in _accounts(ctx, account_id):
            with db.read(ctx.engine()) as conn:
                total = leg_queries.count_calls(conn, account.id, since_ts=since_ts)
            with _progress() as progress:
                task = progress.add_task(f"account {account.id}", total=total)

                def advance(n: int, progress: Progress = progress, task: TaskID = task) -> None:
                    progress.advance(task, n)

                tally += reprocess_account(ctx, account, since_ts, advance)
        counts = {k: tally.get(k, 0) for k in ("created", "updated", "unchanged", PENDING)}
        if as_json:
            click.echo(json.dumps(counts))
        else:
            click.echo(
                f"calls: {counts['created']} created, {counts['updated']} updated, "
                f"{counts['unchanged']} unchanged, {counts[PENDING]} waiting for their A-leg"
            )

    @cli.group("agents")
    def agents() -> None:
        """mod_callcenter agent names mapped to extensions, per account."""

    @agents.command("map")
    @click.argument("account_id", type=int)
    @click.argument("agent_name")
    @click.argument("extension")
    @pass_ctx
    def map_(ctx: CliContext, account_id: int, agent_name: str, extension: str) -> None:
        """Map AGENT_NAME (cc_agent, e.g. 'alice@default') to EXTENSION for new calls."""
        status = map_agent(ctx, account_id, agent_name, extension)
        verb = {"created": "mapped", "updated": "re-mapped", "unchanged": "already mapped"}[status]
        click.echo(f"{verb} agent {agent_name!r} to extension {extension}")
        if status != "unchanged":
            click.echo(f"stored calls change when derived again: pbx-cdr reprocess --account {account_id}")

    @agents.command("list")
    @click.argument("account_id", type=int)
    @click.option("--json", "as_json", is_flag=True, help="Print JSON")
    @pass_ctx
    def list_(ctx: CliContext, account_id: int, as_json: bool) -> None:
        """List an account's agent mappings."""
        require_account(ctx, account_id)
        with db.read(ctx.engine()) as conn:
            rows = agent_queries.list_aliases(conn, account_id)
        if as_json:
            click.echo(json.dumps([{"agent_name": n, "extension": e} for n, e in rows], ensure_ascii=False))
            return
        table = Table("agent name", "extension")
        for name, extension in rows:
            table.add_row(name, extension)
        Console().print(table)

    @agents.command("unmap")
    @click.argument("account_id", type=int)
    @click.argument("agent_name")
    @pass_ctx
    def unmap(ctx: CliContext, account_id: int, agent_name: str) -> None:
        """Remove an agent mapping."""
        require_account(ctx, account_id)
        with db.write(ctx.engine()) as conn:
            removed = agent_queries.unmap_agent(conn, account_id, agent_name)
        if not removed:
            raise CliError(f"agent {agent_name!r} is not mapped in account {account_id}")
        click.echo(f"unmapped agent {agent_name!r}")
