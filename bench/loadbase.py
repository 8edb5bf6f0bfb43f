"""The loader's baselines, measured in the same run on a sample of the same generated calls.

- the plain way: SQLAlchemy ``executemany`` of row dicts into the migrated schema with every index in
  place, 1,000 rows a transaction, the service's own connection settings;
- PostgreSQL's floor: ``COPY`` of the very bytes the loader sends, into a copy of ``calls`` without
  indexes, with nothing else to do (no generation, no encoding).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import psycopg

from bench.copytext import TextCells, encode
from bench.datagen import COLUMNS, TEXT_COLUMNS, Generator
from bench.load import create_accounts
from pbx_cdr.db import engine as db
from pbx_cdr.db.async_pg import libpq_conninfo
from pbx_cdr.db.engine import make_engine
from pbx_cdr.db.tables import calls

BATCH = 1000


def sample(calls_wanted: int, now: int) -> tuple[Generator, dict[str, np.ndarray]]:
    gen = Generator(calls_wanted * 60, now, seed=99)  # one day of a run 60 times the sample
    return gen, next(iter(gen.chunks()))


def plain_inserts(url: str, rows: int, now: int) -> float:
    """Calls per second through SQLAlchemy ``executemany`` with every index in place."""
    gen, chunk = sample(rows, now)
    ids = create_accounts(url, gen, now)
    chunk["account_id"] = np.array(ids)[chunk["account_id"] - 1]
    values = gen.rows(chunk)
    dicts = [dict(zip(COLUMNS, r, strict=True)) for r in zip(*(values[c] for c in COLUMNS), strict=True)]
    for d in dicts:
        del d["id"]
    engine = make_engine(url)
    started = time.perf_counter()
    for lo in range(0, len(dicts), BATCH):
        with db.write(engine) as conn:
            conn.execute(calls.insert(), dicts[lo : lo + BATCH])
    seconds = time.perf_counter() - started
    engine.dispose()
    return len(dicts) / seconds


def raw_copy(url: str, rows: int, now: int) -> float:
    """Calls per second of PostgreSQL's own ``COPY`` of the loader's bytes, prepared beforehand."""
    gen, chunk = sample(rows, now)
    text = TextCells(gen.vocab.encoded())
    payload = encode([chunk[c] for c in COLUMNS], [text if c in TEXT_COLUMNS else None for c in COLUMNS])
    with psycopg.connect(libpq_conninfo(url), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS calls_raw_copy")
        conn.execute("CREATE TABLE calls_raw_copy (LIKE calls)")
        started = time.perf_counter()
        with conn.transaction():
            conn.execute("TRUNCATE calls_raw_copy")
            sql = f"COPY calls_raw_copy ({', '.join(COLUMNS)}) FROM STDIN (FREEZE)"
            with conn.cursor() as cur, cur.copy(sql) as copy:
                copy.write(payload)
        seconds = time.perf_counter() - started
        conn.execute("DROP TABLE calls_raw_copy")
    return len(chunk["id"]) / seconds


def baselines(url: str, scratch_url: str, now: int, *, quick: bool) -> dict[str, Any]:
    """``url``: the loaded database (for the raw COPY); ``scratch_url``: an empty one."""
    out = {"plain_inserts": plain_inserts(scratch_url, 5_000 if quick else 20_000, now)}
    if not url.startswith("sqlite"):
        out["raw_copy"] = raw_copy(url, 50_000 if quick else 200_000, now)
    return out
