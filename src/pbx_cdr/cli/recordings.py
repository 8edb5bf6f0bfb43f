"""``pbx-cdr import recordings DIR --account ID``: a folder of FreeSWITCH recordings into storage.

FreeSWITCH names recordings after the call's uuid (``<uuid>.wav``, often in dated folders); any
``.wav`` whose name holds a uuid is taken, recursively. Files already stored with the same content
(SHA-256) are skipped, so a re-run after an interruption only does what is left. Files whose uuid
matches no call are imported (the call may still arrive) unless ``--skip-unmatched``, and listed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from pbx_cdr.audio import NotAWav
from pbx_cdr.cli.accounts import require_account
from pbx_cdr.cli.context import CliContext, CliError, import_group, pass_ctx
from pbx_cdr.db import engine as db
from pbx_cdr.db.queries import recordings as queries
from pbx_cdr.demo.audio import demo_recording
from pbx_cdr.storage import Storage, StorageError, storage_from_settings
from pbx_cdr.storage.recordings import TooLarge, store_chunks

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
FILE_CHUNK = 1024 * 1024
LOOKUP_BATCH = 500
SHOWN = 20


@dataclass
class ImportReport:
    imported: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)  # no call with this uuid (yet)
    skipped_unmatched: list[str] = field(default_factory=list)
    unnamed: list[str] = field(default_factory=list)  # no uuid in the file name
    duplicates: list[str] = field(default_factory=list)  # a second file for the same uuid
    failed: dict[str, str] = field(default_factory=dict)  # file -> reason

    def as_json(self) -> dict[str, object]:
        return {name: value for name, value in self.__dict__.items()}


def open_storage(ctx: CliContext) -> Storage:
    try:
        return storage_from_settings(ctx.settings)
    except ValueError as exc:
        raise CliError(str(exc)) from exc


def find_recordings(folder: Path, report: ImportReport) -> list[tuple[Path, str]]:
    """``(file, uuid)`` for every ``.wav`` under ``folder`` named after a call, in a stable order."""
    found: dict[str, Path] = {}
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() == ".wav" and p.is_file()):
        match = _UUID.search(path.stem)
        if match is None:
            report.unnamed.append(str(path))
            continue
        uuid = match.group(0).lower()
        if uuid in found:
            report.duplicates.append(str(path))
            continue
        found[uuid] = path
    return [(path, uuid) for uuid, path in found.items()]


def file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(FILE_CHUNK):
            yield chunk


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    for chunk in file_chunks(path):
        digest.update(chunk)
    return digest.hexdigest()


def import_folder(
    ctx: CliContext,
    folder: Path,
    account_id: int,
    *,
    skip_unmatched: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    """Import every recording under ``folder`` into the account; what happened to each file."""
    require_account(ctx, account_id)
    storage = open_storage(ctx)
    engine = ctx.engine()
    report = ImportReport()
    files = find_recordings(folder, report)
    total = sum(path.stat().st_size for path, _ in files)
    task = progress.add_task("importing recordings", total=total) if progress else None
    for start in range(0, len(files), LOOKUP_BATCH):
        batch = files[start : start + LOOKUP_BATCH]
        uuids = [uuid for _, uuid in batch]
        with db.read(engine) as conn:
            stored = queries.hashes_for_calls(conn, account_id, uuids)
            calls = queries.existing_calls(conn, account_id, uuids)
        for path, uuid in batch:
            size = path.stat().st_size
            _import_one(ctx, storage, account_id, path, uuid, stored, calls, report, skip_unmatched, dry_run)
            if progress is not None and task is not None:
                progress.advance(task, size)
    return report


def _import_one(
    ctx: CliContext,
    storage: Storage,
    account_id: int,
    path: Path,
    uuid: str,
    stored: dict[str, str],
    calls: set[str],
    report: ImportReport,
    skip_unmatched: bool,
    dry_run: bool,
) -> None:
    name = str(path)
    try:
        if stored.get(uuid) == sha256_of(path):
            report.unchanged.append(name)
            return
        if uuid not in calls and skip_unmatched:
            report.skipped_unmatched.append(name)
            return
        if dry_run:
            (report.replaced if uuid in stored else report.imported).append(name)
            if uuid not in calls:
                report.unmatched.append(name)
            return
        result = store_chunks(
            ctx.engine(),
            storage,
            account_id,
            uuid,
            file_chunks(path),
            max_bytes=ctx.settings.max_recording_bytes,
            recorded_ts=None,
            now=ctx.now(),
        )
    except NotAWav as exc:
        report.failed[name] = str(exc)
        return
    except TooLarge as exc:
        report.failed[name] = str(exc)
        return
    except OSError as exc:
        report.failed[name] = f"cannot read the file: {exc.strerror}"
        return
    except StorageError as exc:
        raise CliError(f"storage failed ({storage.description}): {exc}") from exc
    if result.status == "unchanged":
        report.unchanged.append(name)
    else:
        (report.imported if result.status == "created" else report.replaced).append(name)
    if not result.call_found:
        report.unmatched.append(name)


def _print_list(console: Console, title: str, items: list[str]) -> None:
    if not items:
        return
    console.print(f"{title} ({len(items)}):")
    for item in items[:SHOWN]:
        console.print(f"  {item}", markup=False, highlight=False)
    if len(items) > SHOWN:
        console.print(f"  ... and {len(items) - SHOWN} more (--json lists them all)")


def print_report(report: ImportReport, dry_run: bool) -> None:
    console = Console()
    verb = "would import" if dry_run else "imported"
    console.print(
        f"{verb} {len(report.imported)}, replaced {len(report.replaced)}, "
        f"unchanged {len(report.unchanged)}, failed {len(report.failed)}",
        highlight=False,
    )
    _print_list(console, "files that match no call (kept; attached when the call arrives)", report.unmatched)
    _print_list(console, "files that match no call (skipped)", report.skipped_unmatched)
    _print_list(console, "files with no call uuid in their name (skipped)", report.unnamed)
    _print_list(console, "second files for the same call (skipped)", report.duplicates)
    _print_list(console, "files refused", [f"{name}: {why}" for name, why in report.failed.items()])


def attach_demo_recordings(ctx: CliContext, account_id: int, count: int, seed: int) -> int:
    """Give up to ``count`` of the newest answered demo calls a generated recording; how many were added."""
    storage = open_storage(ctx)
    engine = ctx.engine()
    with db.read(engine) as conn:
        have = queries.count_for_account(conn, account_id)
        todo = queries.answered_without_recording(conn, account_id, max(0, count - have))
    with Progress(transient=True) as progress:
        task = progress.add_task("recording demo calls", total=len(todo))
        for n, call in enumerate(todo):
            encoding = "mulaw" if n % 5 == 3 else "alaw" if n % 7 == 5 else "pcm16"
            seconds = max(2, min(int(call.billsec), 4 + n % 5))
            audio = demo_recording(seed + n, seconds, encoding)
            store_chunks(
                engine,
                storage,
                account_id,
                call.uuid,
                [audio],
                max_bytes=ctx.settings.max_recording_bytes,
                recorded_ts=None,
                now=ctx.now(),
            )
            progress.advance(task)
    return len(todo)


def newest_recorded_call(ctx: CliContext, account_id: int) -> str | None:
    with db.read(ctx.engine()) as conn:
        return queries.newest_call_with_recording(conn, account_id)


def register(cli: click.Group) -> None:
    group = import_group(cli)

    @group.command("recordings")
    @click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
    @click.option("--account", "account_id", type=int, required=True, help="The account the calls belong to")
    @click.option("--skip-unmatched", is_flag=True, help="Leave out files whose uuid matches no call")
    @click.option("--dry-run", is_flag=True, help="Report what would happen; store nothing")
    @click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON")
    @pass_ctx
    def recordings(
        ctx: CliContext, folder: Path, account_id: int, skip_unmatched: bool, dry_run: bool, as_json: bool
    ) -> None:
        """Import <uuid>.wav recordings from FOLDER (recursively); exit status 1 if any file was refused."""
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, transient=True, disable=as_json) as progress:
            report = import_folder(
                ctx, folder, account_id, skip_unmatched=skip_unmatched, dry_run=dry_run, progress=progress
            )
        if as_json:
            click.echo(json.dumps(report.as_json()))
        else:
            print_report(report, dry_run)
        if report.failed:
            raise CliError(f"{len(report.failed)} file(s) refused, the others imported")
