"""``python -m bench.run --calls N [--quick]``: load, then every benchmark, each next to its baseline.

Runs on SQLite and on a PostgreSQL started for the run (as the test suite starts one). Prints one
table per database and writes the figures as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from tests.servers import PbxServer

from bench import http, ingest
from bench.datagen import Generator
from bench.download import bench_download
from bench.inprocess import bench_lists, bench_serialization
from bench.load import load
from bench.loadbase import baselines
from bench.pg import bench_postgres, new_database
from pbx_cdr.db import engine as db
from pbx_cdr.db.engine import make_engine
from pbx_cdr.db.queries.accounts import get_account
from pbx_cdr.domain.call import Call, iso
from pbx_cdr.domain.listing import AccountView, parse_list_query


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def json_calls(count: int, now: int, seed: int) -> list[dict[str, Any]]:
    """Generated calls as the JSON CDRs clients post (a seed of their own: fresh uuids)."""
    gen = Generator(count, now, seed=seed, accounts=1)
    # Every field a JSON CDR carries as it is stored; the three times are rendered below.
    fields = tuple(name for name in Call.__dataclass_fields__ if not name.endswith("_ts"))
    out: list[dict[str, Any]] = []
    for raw in gen.chunks():
        chunk = gen.rows(raw)
        for i in range(len(chunk["uuid"])):
            item = {k: chunk[k][i] for k in fields}
            item.update(
                start_time=iso(chunk["start_ts"][i]),
                answer_time=iso(chunk["answer_ts"][i]),
                end_time=iso(chunk["end_ts"][i]),
            )
            out.append({k: v for k, v in item.items() if v is not None})
    return out


class Report:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, db_name: str, label: str, value: str, baseline: str, note: str = "") -> None:
        row = {"db": db_name, "figure": label, "value": value, "baseline": baseline, "note": note}
        self.rows.append(row)
        print(f"  {label:46} {value:>24}   vs {baseline:<28} {note}", flush=True)


def ms(p50: float, p99: float) -> str:
    return f"p50 {p50:.3f} / p99 {p99:.3f} ms"


def run_database(
    name: str,
    url: str,
    scratch: str,
    db_pid: int | None,
    args: argparse.Namespace,
    report: Report,
    work: Path,
) -> None:
    print(f"\n== {name}: loading {args.calls:,} calls", flush=True)
    loaded = load(url, args.calls)
    phases = ", ".join(f"{k} {v:.1f}s" for k, v in loaded.phases.items())
    base = baselines(url, scratch, int(time.time()), quick=args.quick)
    plain = base["plain_inserts"]
    report.add(
        name,
        "bulk load, ready to query",
        f"{loaded.rate:,.0f} calls/s",
        f"plain INSERTs {plain:,.0f} calls/s ({loaded.rate / plain:.1f}x)",
        f"{loaded.seconds:.1f} s: {phases}",
    )
    raw = base.get("raw_copy")
    report.add(
        name,
        "bulk load, rows in (generation overlapped)",
        f"{loaded.insert_rate:,.0f} calls/s",
        f"raw COPY {raw:,.0f} calls/s ({loaded.insert_rate / raw:.2f}x)" if raw else "-",
    )
    engine = make_engine(url)
    now = time.time()
    biggest, small = loaded.account_ids[0], loaded.account_ids[-1]
    repeat, base_repeat = (60, 5) if args.quick else (300, 10)
    for label, account_id in (("biggest", biggest), ("small", small)):
        with db.read(engine) as conn:
            account = get_account(conn, account_id)
        assert account is not None
        view = AccountView(account.timezone, account.country, account.max_window_days)
        figures = bench_lists(engine, view, account_id, now, repeat=repeat, base_repeat=base_repeat)
        if label == "biggest":
            figures.append(bench_serialization(engine, account_id, parse_list_query({}, view, now), repeat))
        for f in figures:
            report.add(
                name,
                f"{label}: {f.label} (total {f.total:,})",
                ms(f.p50_ms, f.p99_ms),
                "naive " + ms(f.base_p50_ms, f.base_p99_ms),
            )
    engine.dispose()
    if not args.skip_http:
        run_http(name, url, db_pid, args, report, work, biggest, small)


@dataclass(frozen=True)
class Served:
    """A server, and the PostgreSQL server's postmaster behind it, if any."""

    server: PbxServer
    db_pid: int | None


def _cpu_seconds(served: Served) -> tuple[float, float]:
    """CPU time so far of the server's processes and of PostgreSQL's (0 on SQLite)."""
    db_pid = served.db_pid
    database = ingest.server_cpu_seconds(db_pid, reaped=True) if db_pid else 0.0
    return ingest.server_cpu_seconds(served.server.proc.pid), database


def _cpu_since(served: Served, before: tuple[float, float], count: float, *, per_call: bool = False) -> str:
    """The CPU time spent since ``before``, per request in ms (or per call in µs), of the server and
    of PostgreSQL: steadier than a rate on a shared machine."""
    after = _cpu_seconds(served)
    scale, unit, digits = (1e6, "µs/call", 1) if per_call else (1e3, "ms/req", 3)
    count = max(1.0, count)
    text = f"server CPU {scale * (after[0] - before[0]) / count:.{digits}f} {unit}"
    if served.db_pid:
        text += f", PostgreSQL CPU {scale * (after[1] - before[1]) / count:.{digits}f} {unit}"
    return text


def _cpu_ms(served: Served, run: Callable[[], http.WrkResult], seconds: int) -> tuple[http.WrkResult, str]:
    """The run, and the CPU time per request during it of the server and of PostgreSQL."""
    before = _cpu_seconds(served)
    res = run()
    return res, _cpu_since(served, before, res.requests_per_s * seconds)


def http_lists(
    name: str, served: Served, tokens: tuple[tuple[str, str], ...], seconds: int, report: Report, note: str
) -> None:
    """``/healthz``, then the list of each account, on one server: each list next to that baseline."""
    server = served.server
    health, health_cpu = _cpu_ms(served, lambda: http.wrk(server.base_url + "/healthz", seconds), seconds)
    report.add(
        name,
        f"HTTP /healthz{note}",
        f"{health.requests_per_s:,.0f} req/s",
        "(the baseline)",
        f"p99 {health.p99_ms:.1f} ms, {health_cpu}",
    )
    for label, token in tokens:
        headers = {"Authorization": f"Bearer {token}"}

        def listing(h: dict[str, str] = headers) -> http.WrkResult:
            return http.wrk(server.base_url + "/api/pbx/cdr", seconds, h)

        res, res_cpu = _cpu_ms(served, listing, seconds)
        share = 100 * res.requests_per_s / health.requests_per_s
        report.add(
            name,
            f"HTTP list, {label} account{note}",
            f"{res.requests_per_s:,.0f} req/s",
            f"{share:.0f}% of /healthz",
            f"p99 {res.p99_ms:.1f} ms, non-2xx {res.non_2xx}, {res_cpu}",
        )


def run_http(
    name: str,
    url: str,
    db_pid: int | None,
    args: argparse.Namespace,
    report: Report,
    work: Path,
    biggest: int,
    small: int,
) -> None:
    seconds = 3 if args.quick else 15
    read_big = http.issue_token(url, biggest, ["cdr:read"])
    read_small = http.issue_token(url, small, ["cdr:read"])
    writer = http.issue_token(url, small, ["cdr:write"])
    ingest.make_durable(url)
    bodies = ingest.batch_bodies(json_calls(20_000 if args.quick else 100_000, int(time.time()), seed=11))
    tokens = (("small", read_small), ("biggest", read_big))
    # The lists first on a server with the list cache on (the default: a repeated question is
    # answered from memory), then on one with it off, where every list is read from the database;
    # both before any ingest adds calls.
    with (
        http.serve(url, work / f"data-{name}-cached") as cached,
        http.RssSampler(cached.proc.pid) as rss_cached,
    ):
        http_lists(name, Served(cached, db_pid), tokens, seconds, report, ", list cache on")
    with (
        http.serve(url, work / f"data-{name}", list_cache_mb=0) as server,
        http.RssSampler(server.proc.pid) as rss,
    ):
        served = Served(server, db_pid)
        http_lists(name, served, tokens, seconds, report, ", list cache off")
        single, single_cpu = _cpu_ms(served, lambda: ingest.single_posts(server, writer, seconds), seconds)
        report.add(
            name,
            "ingest, single-call POSTs",
            f"{single.requests_per_s:,.0f} calls/s",
            "target 3,000",
            f"p99 {single.p99_ms:.1f} ms, non-2xx {single.non_2xx}, {single_cpu}",
        )
        before = _cpu_seconds(served)
        rate, created = ingest.batch_posts(server, writer, bodies)
        report.add(
            name,
            "ingest, 1000-call batches",
            f"{rate:,.0f} calls/s",
            "target 10,000" if name == "sqlite" else "target 30,000",
            f"{created:,} created, {_cpu_since(served, before, created, per_call=True)}",
        )
        if not args.skip_download:
            try:
                route, cat = bench_download(server, writer, read_small, work, seconds)
                report.add(name, "download 50 MB, signed route", f"{route:.2f} GB/s", f"cat {cat:.2f} GB/s")
            except Exception as exc:  # the recordings feature is young: report it, keep the run
                report.add(name, "download 50 MB, signed route", "failed", "-", repr(exc)[:120])
    peak = max(rss, rss_cached, key=lambda sampler: sampler.peak_kib)
    report.add(
        name,
        "server RSS, largest process",
        f"{peak.peak_kib / 1024:.0f} MB",
        "limit 200 MB",
        f"{peak.largest()}; sampled every 0.2 s through the HTTP runs",
    )


@contextmanager
def databases(args: argparse.Namespace, work: Path) -> Iterator[list[tuple[str, str, str, int | None]]]:
    """(name, url, an empty scratch database's url for the baselines, PostgreSQL's postmaster pid)
    per chosen database."""
    chosen = args.db.split(",")
    out: list[tuple[str, str, str, int | None]] = []
    if "sqlite" in chosen:
        for stale in ("bench.sqlite3", "scratch.sqlite3"):
            (work / stale).unlink(missing_ok=True)
        out.append(
            ("sqlite", f"sqlite:///{work / 'bench.sqlite3'}", f"sqlite:///{work / 'scratch.sqlite3'}", None)
        )
    if "postgresql" in chosen:
        with bench_postgres() as server:
            pg = (
                "postgresql",
                new_database(server, "bench"),
                new_database(server, "bench_scratch"),
                server.proc.pid,
            )
            yield [*out, pg]
            return
    yield out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run")
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, 3 s wrk runs")
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--skip-download", action="store_true")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--workdir", type=Path, help="keep the databases here (default: a temp dir)")
    args = parser.parse_args(argv)
    info = machine()
    print(f"machine: {info}  at {datetime.now(UTC).isoformat(timespec='seconds')}", flush=True)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="pbx-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    report = Report()
    started = time.perf_counter()
    try:
        with databases(args, work) as dbs:
            for name, url, scratch, db_pid in dbs:
                run_database(name, url, scratch, db_pid, args, report, work)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - started
    print(f"\ndone in {elapsed:.0f} s", flush=True)
    if args.json:
        args.json.write_bytes(
            orjson.dumps(
                {
                    "machine": info,
                    "calls": args.calls,
                    "quick": args.quick,
                    "seconds": elapsed,
                    "rows": report.rows,
                },
                option=orjson.OPT_INDENT_2,
            )
        )


if __name__ == "__main__":
    main()
