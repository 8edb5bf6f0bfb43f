"""Request ids, access logs, metrics, and what never appears in either (tokens, signatures, numbers)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from urllib.parse import urlsplit

import orjson
import pytest
from fastapi.testclient import TestClient

from pbx_cdr.clock import FrozenClock
from pbx_cdr.demo.audio import wav_bytes
from pbx_cdr.observability.logs import JsonFormatter, RequestIdFilter, TextFormatter
from tests.conftest import Tenant, cdr

U = "65569ce0-0183-4f61-a3b2-0e433cfa4031"
CALLER = "0912345678"
DESTINATION = "+84987654321"


def test_a_request_id_is_made_when_none_is_sent(client: TestClient) -> None:
    first = client.get("/healthz").headers["X-Request-ID"]
    second = client.get("/healthz").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert first != second


@pytest.mark.parametrize("sent", ["abc-123", "lb:7f3a.9", "A" * 128])
def test_a_sane_request_id_is_kept(client: TestClient, sent: str) -> None:
    assert client.get("/healthz", headers={"X-Request-ID": sent}).headers["X-Request-ID"] == sent


@pytest.mark.parametrize("sent", ["", "has space", "A" * 129, "<script>", "a\tb", "-leading", "é"])
def test_an_odd_request_id_is_replaced(client: TestClient, sent: str) -> None:
    r = client.get("/healthz", headers={"X-Request-ID": sent.encode()})
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["X-Request-ID"])


def _secret_traffic(client: TestClient, tenant: Tenant) -> tuple[list[str], list[str]]:
    """A full cycle that puts every kind of secret on the wire; returns (secrets, request ids)."""
    ids: list[str] = []

    def track(r: object) -> None:
        ids.append(r.headers["X-Request-ID"])  # type: ignore[attr-defined]

    track(
        client.post(
            "/api/pbx/cdr",
            json=cdr(U, caller_number=CALLER, destination_number=DESTINATION),
            headers=tenant.write,
        )
    )
    track(
        client.put(
            f"/api/pbx/cdr/{U}/recording",
            content=wav_bytes([0] * 8000),
            headers={**tenant.write, "content-type": "audio/wav"},
        )
    )
    detail = client.get(f"/api/pbx/cdr/{U}", headers=tenant.read)
    track(detail)
    url = urlsplit(detail.json()["data"]["recording"]["url"])
    signature = url.query.split("signature=")[1]
    track(client.get(f"{url.path}?{url.query}"))
    track(client.get(f"{url.path}?{url.query[:-1]}0"))  # a tampered signature: 403
    track(client.get(f"/api/pbx/cdr?phone={DESTINATION}", headers=tenant.read))
    track(client.get(f"/api/pbx/cdr?phone={CALLER}&signature={signature}", headers=tenant.read))
    track(client.get("/api/pbx/cdr", headers={"Authorization": f"Bearer {tenant.read_token[:-2]}xx"}))
    track(client.get(f"/api/pbx/cdr/{U}/recording", headers=tenant.read))
    secrets = [
        tenant.read_token,
        tenant.write_token,
        tenant.read_token[:-2] + "xx",
        signature,
        CALLER,
        DESTINATION,
        DESTINATION.lstrip("+"),
        "987654321",
    ]
    return secrets, ids


def test_logs_and_metrics_never_hold_tokens_signatures_or_numbers(
    client: TestClient, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        secrets, ids = _secret_traffic(client, tenant)
    # The service's records; httpx's are the test client's own (it logs the URLs it requests).
    records = [r for r in caplog.records if r.name.startswith(("pbx_cdr", "uvicorn", "sqlalchemy"))]
    assert records, "the requests were logged"
    id_filter = RequestIdFilter()
    rendered = []
    for record in records:
        id_filter.filter(record)
        rendered += [JsonFormatter().format(record), TextFormatter().format(record), record.getMessage()]
        rendered += [str(v) for v in vars(record).values()]
    text = "\n".join(rendered)
    scrape = client.get("/metrics").text
    for secret in secrets:
        assert secret not in text, f"{secret!r} leaked into a log"
        assert secret not in scrape, f"{secret!r} leaked into /metrics"
    access = [r for r in records if r.name == "pbx_cdr.access"]
    assert {r.request_id for r in access} >= set(ids)  # type: ignore[attr-defined]


def test_the_access_line_is_structured(
    client: TestClient, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="pbx_cdr.access"):
        r = client.get(
            f"/api/pbx/cdr/{U}?phone=0987654321&from=2026-06-01",
            headers={**tenant.read, "X-Request-ID": "req-1"},
        )
    assert r.status_code == 404
    (record,) = [x for x in caplog.records if x.name == "pbx_cdr.access"]
    RequestIdFilter().filter(record)
    line = orjson.loads(JsonFormatter().format(record))
    assert line["request_id"] == "req-1"
    assert line["route"] == "/api/pbx/cdr/{uuid}"
    assert line["status"] == 404
    assert line["method"] == "GET"
    assert line["account_id"] == tenant.id
    assert line["path"] == f"/api/pbx/cdr/{U}?phone=*******321&from=2026-06-01"
    assert line["level"] == "INFO" and line["logger"] == "pbx_cdr.access"
    assert isinstance(line["duration_ms"], float) and line["bytes"] > 0
    text = TextFormatter().format(record)
    assert "[req-1]" in text and "phone=*******321" in text


def _sample(scrape: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in scrape.splitlines():
        if line.startswith("#"):
            continue
        metric, _, value = line.rpartition(" ")
        base, _, rest = metric.partition("{")
        got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if base == name and got == want:
            return float(value)
    return 0.0


def test_metrics_count_requests_by_route_template(
    client: TestClient, tenant: Tenant, make_tenant: Callable[..., Tenant], clock: FrozenClock
) -> None:
    before = client.get("/metrics").text
    for i in range(3):
        client.get(f"/api/pbx/cdr/00000000-0000-4000-8000-00000000000{i}", headers=tenant.read)
    client.post(
        "/api/pbx/cdr",
        json={"data": [cdr(U), cdr("65569ce0-0183-4f61-a3b2-0e433cfa4032")]},
        headers=tenant.write,
    )
    client.post("/api/pbx/cdr", json=cdr(U), headers=tenant.write)
    client.get("/api/public/recordings/1/audio?expires=1&signature=00")
    clock.at = (int(clock.at) // 60 + 1) * 60
    limited = make_tenant(rate_limit_per_minute=1)
    client.get("/api/pbx/cdr", headers=limited.read)
    assert client.get("/api/pbx/cdr", headers=limited.read).status_code == 429
    client.get("/no/such/path/0987654321")
    after = client.get("/metrics")
    assert after.status_code == 200
    assert after.headers["content-type"].startswith("text/plain")
    scrape = after.text

    def delta(name: str, **labels: str) -> float:
        return _sample(scrape, name, **labels) - _sample(before, name, **labels)

    route = "/api/pbx/cdr/{uuid}"
    assert delta("pbx_cdr_http_requests_total", method="GET", route=route, status="404") == 3
    assert delta("pbx_cdr_http_request_duration_seconds_count", method="GET", route=route) == 3
    assert delta("pbx_cdr_calls_ingested_total", source="api", outcome="created") == 2
    assert delta("pbx_cdr_calls_ingested_total", source="api", outcome="unchanged") == 1
    assert delta("pbx_cdr_signature_failures_total") == 1
    assert delta("pbx_cdr_rate_limited_total") == 1
    assert delta("pbx_cdr_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert "00000000-0000-4000-8000" not in scrape and "/no/such/path" not in scrape


def test_metrics_can_be_turned_off(settings: object) -> None:
    from pbx_cdr.app import create_app
    from pbx_cdr.config import Settings

    assert isinstance(settings, Settings)
    with TestClient(create_app(settings.model_copy(update={"metrics_enabled": False}))) as c:
        assert c.get("/metrics").status_code == 404
