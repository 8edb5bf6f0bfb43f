"""A tiny run of the benchmark code, so it cannot rot: the bulk loader must leave exactly the schema the
migrations make, hour and day counts equal to a fresh count, the service's own search keys; and the list
benchmark's totals must equal the naive query's."""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, NoReturn

import bench.load as bench_load
import pytest
from bench.copytext import TextCells, encode
from bench.datagen import COLUMNS, TEXT_COLUMNS, Generator, check_keys
from bench.inprocess import bench_lists, naive_list, shapes_for
from bench.pg import new_database
from sqlalchemy import Engine, func, inspect, select

from pbx_cdr.db import engine as db
from pbx_cdr.db.engine import make_engine
from pbx_cdr.db.migrate import upgrade
from pbx_cdr.db.queries import counts
from pbx_cdr.db.queries.accounts import get_account
from pbx_cdr.db.queries.call_list import list_calls
from pbx_cdr.db.tables import NUMBER_COUNTED, call_day_counts, call_hour_counts, call_number_counts, calls
from pbx_cdr.demo.generator import LANDLINE_PREFIXES, MOBILE_PREFIXES
from pbx_cdr.domain.listing import AccountView, parse_list_query
from pbx_cdr.domain.phone import search_key
from tests.servers import PostgresServer

CALLS = 4000


def schema(engine: Engine) -> dict[str, Any]:
    inspector = inspect(engine)
    return {
        table: (
            sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in inspector.get_indexes(table)
            ),
            sorted(tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)),
            sorted(tuple(f["constrained_columns"]) for f in inspector.get_foreign_keys(table)),
        )
        for table in ("calls", "call_hour_counts", "call_day_counts", "call_number_counts")
    }


def check_load(url: str, fresh_url: str) -> None:
    now = int(time.time())
    report = bench_load.load(url, CALLS, now=now)
    fresh = make_engine(fresh_url)
    upgrade(fresh)
    engine = make_engine(url)
    try:
        assert schema(engine) == schema(fresh)
        with db.read(engine) as conn:
            assert conn.execute(select(func.count()).select_from(calls)).scalar_one() == CALLS
            hours = {(r.account_id, r.hour, r.direction): r.n for r in conn.execute(select(call_hour_counts))}
            days = {(r.account_id, r.day, r.direction): r.n for r in conn.execute(select(call_day_counts))}
            nc = call_number_counts
            numbers = {
                (r.account_id, r.direction, r.number_key, r.hour): r.n for r in conn.execute(select(nc))
            }
            rows = conn.execute(
                select(calls.c.account_id, calls.c.start_ts, calls.c.direction, calls.c.destination_key)
            ).all()
        fresh_hours: dict[tuple[int, int, str], int] = {}
        fresh_days: dict[tuple[int, int, str], int] = {}
        fresh_numbers: dict[tuple[int, str, str, int], int] = {}
        for r in rows:
            key = (r.account_id, r.start_ts // counts.HOUR, r.direction)
            fresh_hours[key] = fresh_hours.get(key, 0) + 1
            key = (r.account_id, r.start_ts // counts.DAY, r.direction)
            fresh_days[key] = fresh_days.get(key, 0) + 1
            if r.direction in NUMBER_COUNTED:
                number = (r.account_id, r.direction, r.destination_key, r.start_ts // counts.HOUR)
                fresh_numbers[number] = fresh_numbers.get(number, 0) + 1
        assert hours == fresh_hours
        assert numbers == fresh_numbers and len(numbers) > 1
        # An account's inbound calls go to its hotline and to its campaign numbers (two or more).
        dialled: dict[int, set[str]] = {}
        for account_id, direction, number_key, _ in numbers:
            if direction == "inbound":
                dialled.setdefault(account_id, set()).add(number_key)
        assert len(dialled[report.account_ids[0]]) >= 3
        assert days == fresh_days
        assert len({d for _, d, _ in days}) > 1  # the calls span several UTC days
        biggest = report.account_ids[0]
        with db.read(engine) as conn:
            account = get_account(conn, biggest)
        assert account is not None
        view = AccountView(account.timezone, account.country, account.max_window_days)
        start = parse_list_query({}, view, now).start_ts
        for shape in shapes_for(engine, biggest, start):
            q = parse_list_query(shape.params, view, now)
            with db.read(engine) as conn:
                ours = list_calls(conn, biggest, q)
                naive = naive_list(conn, biggest, q, shape.params.get("phone"))
            assert ours.uuids() == [r.uuid for r in naive[0]], shape
            assert ours.total == naive[1], shape
        figures = bench_lists(engine, view, biggest, now, repeat=2, base_repeat=1)
        assert len(figures) == 14  # 7 shapes, page 1 and page 10,000
        assert figures[0].total > 0
    finally:
        engine.dispose()
        fresh.dispose()


def test_generated_keys_are_the_services() -> None:
    gen = Generator(3000, int(time.time()), accounts=20)
    chunk = gen.rows(next(iter(gen.chunks())))
    check_keys(chunk, sample=len(chunk["uuid"]))
    assert len(set(chunk["uuid"])) == len(chunk["uuid"])
    assert all(uuid.UUID(u).version == 4 and str(uuid.UUID(u)) == u for u in chunk["uuid"])
    assert {"inbound", "outbound", "internal", "local"} >= set(chunk["direction"])


def test_customer_numbers_are_vietnamese() -> None:
    """The pool built as byte matrices: mobiles and landlines, national or E.164, keys reversed."""
    gen = Generator(60_000, int(time.time()), accounts=20)
    numbers = [b.decode() for b in gen.vocab.encoded()[gen.customers].tolist()]
    keys = [b.decode() for b in gen.vocab.encoded()[gen.customer_keys].tolist()]
    mobile = re.compile(r"(?:0|\+84)(?:" + "|".join(MOBILE_PREFIXES) + r")\d{7}")
    two = "|".join(p for p in LANDLINE_PREFIXES if len(p) == 2)
    three = "|".join(p for p in LANDLINE_PREFIXES if len(p) == 3)
    landline = re.compile(rf"(?:0|\+84)(?:(?:{two})\d{{7}}|(?:{three})\d{{6,7}})")
    for number, key in zip(numbers, keys, strict=True):
        assert mobile.fullmatch(number) or landline.fullmatch(number), number
        assert key == search_key(number, "VN") == number.removeprefix("+84").removeprefix("0")[::-1]
    assert any(n.startswith("+84") for n in numbers) and any(n.startswith("0") for n in numbers)
    assert any(landline.fullmatch(n) for n in numbers) and any(len(k) == 10 for k in keys)


def test_copy_text_is_what_postgresql_reads() -> None:
    """The numpy COPY encoder writes exactly the cells of the rows (NULL as \\N, booleans as t/f)."""
    gen = Generator(3000, int(time.time()), accounts=20)
    raw = next(iter(gen.chunks()))
    rows = gen.rows(raw)
    text = TextCells(gen.vocab.encoded())
    encoded = encode([raw[c] for c in COLUMNS], [text if c in TEXT_COLUMNS else None for c in COLUMNS])
    lines = encoded.decode().split("\n")
    assert lines.pop() == ""
    assert len(lines) == len(rows["id"])
    for i, line in enumerate(lines):
        cells = [rows[c][i] for c in COLUMNS]
        expected = [
            "\\N" if v is None else "t" if v is True else "f" if v is False else str(v) for v in cells
        ]
        assert line.split("\t") == expected
    assert any(r is None for r in rows["answer_ts"]) and any(r is not None for r in rows["answer_ts"])


def test_sqlite_bulk_load(tmp_path: Path) -> None:
    check_load(f"sqlite:///{tmp_path / 'bench.sqlite3'}", f"sqlite:///{tmp_path / 'fresh.sqlite3'}")


@pytest.mark.postgres
def test_postgresql_bulk_load(pg: PostgresServer) -> None:
    check_load(new_database(pg, "bench_smoke"), new_database(pg, "bench_smoke_fresh"))


def _failed_load(tmp_path: Path, message: str) -> None:
    """The load fails with ``message``, leaves no staged file and no process behind."""
    with pytest.raises(RuntimeError, match=message):
        bench_load.load(f"sqlite:///{tmp_path / 'bench.sqlite3'}", CALLS)
    assert not list(tmp_path.glob("pbx-cdr-load-*"))
    assert not multiprocessing.active_children()


def test_sqlite_load_fails_loudly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stagers that fail fail the load, with their reason, instead of hanging it."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    real = bench_load._Stage

    def broken(folder: str, table_sql: str, insert_sql: str, bound: tuple[str, ...]) -> Any:
        return real(folder, table_sql, "INSERT INTO nowhere VALUES (1)", bound)

    monkeypatch.setattr(bench_load, "_Stage", broken)
    _failed_load(tmp_path, r"a stager failed: OperationalError.*nowhere")


def test_a_stagers_reason_outlives_the_wait_for_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second stager fails on its first chunk while the loader still waits, longer than it polls,
    for the first stager's: the load fails with the second's reason, not as a process that died."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    connect = sqlite3.connect

    def staging(path: str, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        if str(path).endswith(f"{os.sep}0.sqlite3"):  # chunk 0: the first stager's
            time.sleep(bench_load._POLL_S * 1.5)
        if str(path).endswith(f"{os.sep}1.sqlite3"):  # chunk 1: the second stager's
            raise sqlite3.OperationalError("chunk 1 refused")
        return connect(path, *args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", staging)
    _failed_load(tmp_path, r"a stager failed: OperationalError\('chunk 1 refused'\)")


def _exit(*args: Any) -> NoReturn:
    os._exit(3)


@pytest.mark.parametrize("where", ["generator", "stager"])
def test_sqlite_load_notices_a_dead_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A load process that dies without a word (killed, out of memory) fails the load, not hangs it."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    if where == "generator":
        monkeypatch.setattr(Generator, "chunks", _exit)
    else:
        monkeypatch.setattr(bench_load, "_stager", _exit)
    _failed_load(tmp_path, r"a load process died \(exit code 3\)")


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has ended; its new parent may never reap it


def test_load_processes_end_when_the_loader_is_killed(tmp_path: Path) -> None:
    """A loader killed mid-load (SIGKILL: no cleanup of its own) takes its generator and stagers
    with it, and the staging folder goes too, instead of three processes blocked for ever."""

    def loader() -> None:
        tempfile.tempdir = str(tmp_path)
        bench_load.load(f"sqlite:///{tmp_path / 'bench.sqlite3'}", 300_000)

    process = multiprocessing.get_context("fork").Process(target=loader)
    process.start()
    assert process.pid is not None
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    deadline = time.monotonic() + 60
    kids: list[int] = []
    while time.monotonic() < deadline:
        kids = [int(k) for k in children.read_text().split()] if process.is_alive() else []
        if len(kids) == 1 + bench_load.STAGERS and list(tmp_path.glob("pbx-cdr-load-*/*.sqlite3")):
            break
        time.sleep(0.02)
    assert len(kids) == 1 + bench_load.STAGERS, "the load never got going"
    os.kill(process.pid, signal.SIGKILL)
    process.join()
    try:
        deadline = time.monotonic() + 10 * bench_load._POLL_S
        while time.monotonic() < deadline and any(_running(k) for k in kids):
            time.sleep(0.05)
        assert not any(_running(k) for k in kids)
        assert not list(tmp_path.glob("pbx-cdr-load-*"))
    finally:  # a failure must not leave them holding the test run's output open
        for kid in kids:
            if _running(kid):
                os.kill(kid, signal.SIGKILL)
