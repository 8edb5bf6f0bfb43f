"""Prometheus metrics, and the ``/metrics`` exposition.

With several worker processes ``pbx-cdr serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a folder in
the data dir before the workers start; prometheus_client then keeps each process's values in files
there and :func:`exposition` sums them, so a scrape that lands on any worker sees the whole server.

Labels never hold request data: the route label is the route's template (``/api/pbx/cdr/{uuid}``),
or ``unmatched``; no ids, numbers, tokens or signatures.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus_client itself, at import
UNMATCHED = "unmatched"

REQUESTS = Counter(
    "pbx_cdr_http_requests",
    "HTTP requests answered, by method, route template and status",
    ("method", "route", "status"),
)
LATENCY = Histogram(
    "pbx_cdr_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template",
    ("method", "route"),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
INGESTED = Counter(
    "pbx_cdr_calls_ingested",
    "Calls received through ingest, by source (api, freeswitch) and outcome",
    ("source", "outcome"),
)
SIGNATURE_FAILURES = Counter(
    "pbx_cdr_signature_failures",
    "Signed recording links refused (bad, tampered or expired signatures)",
)
RATE_LIMITED = Counter(
    "pbx_cdr_rate_limited",
    "Requests refused with 429 because their token's rate limit was exceeded",
)
TOKEN_LOOKUPS = Counter(
    "pbx_cdr_token_lookups",
    "PostgreSQL token lookups with the token cache on, by where the answer came from (cache, database)",
    ("source",),
)
TOKEN_CACHE_LISTENING = Gauge(
    "pbx_cdr_token_cache_listening",
    "Server processes whose token cache hears PostgreSQL's notifications (and so may keep lookups)",
    multiprocess_mode="livesum",
)

PUBLIC_PREFIX = "/api/public/"
_TOKEN_FROM = {True: TOKEN_LOOKUPS.labels("cache"), False: TOKEN_LOOKUPS.labels("database")}


# Each label set's children, looked up once: ``labels()`` validates and locks on every call.
@lru_cache(maxsize=1024)
def _request_children(method: str, route: str, status: int) -> tuple[Any, Any]:
    return REQUESTS.labels(method, route, str(status)), LATENCY.labels(method, route)


@lru_cache(maxsize=64)
def _ingested(source: str, outcome: str) -> Any:
    return INGESTED.labels(source, outcome)


def count_request(method: str, route: str, status: int, seconds: float) -> None:
    requests, latency = _request_children(method, route, status)
    requests.inc()
    latency.observe(seconds)
    if status == 403 and route.startswith(PUBLIC_PREFIX):
        # The public routes answer 403 for one reason only: the link's signature.
        SIGNATURE_FAILURES.inc()


def count_ingested(source: str, outcomes: Iterable[str]) -> None:
    """One increment per call, by its outcome (created, updated, unchanged)."""
    tally: dict[str, int] = {}
    for outcome in outcomes:
        tally[outcome] = tally.get(outcome, 0) + 1
    for outcome, n in tally.items():
        _ingested(source, outcome).inc(n)


def count_rate_limited() -> None:
    RATE_LIMITED.inc()


def count_token_lookup(*, from_cache: bool) -> None:
    _TOKEN_FROM[from_cache].inc()


def token_cache_listening(listening: bool) -> None:
    TOKEN_CACHE_LISTENING.set(1 if listening else 0)


def exposition() -> tuple[bytes, str]:
    """The text a scrape gets, summed over every worker process when there are several."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def prepare_multiprocess_dir(path: Path) -> None:
    """Before workers start: an empty folder for their metric files, named in their environment."""
    if path.exists():
        shutil.rmtree(path)  # files of a previous run's processes would be summed with this run's
    path.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(path)
