"""The corpus through the pure parser and fold (no database): each case's expected call.

The same corpus goes through the HTTP route, in every arrival order, in
``tests/api/test_freeswitch_corpus.py``; this test pins the mapping alone, with a readable diff.
"""

from __future__ import annotations

import pytest

from pbx_cdr.domain.call import iso
from pbx_cdr.ingest.freeswitch import fold_call, read_leg
from tests.fixtures.freeswitch.corpus import CALL_FIELDS, CASES, Case


def as_api(call: object) -> dict[str, object]:
    fields = {f: getattr(call, f, None) for f in CALL_FIELDS}
    fields["start_time"] = iso(call.start_ts)  # type: ignore[attr-defined]
    fields["answer_time"] = iso(call.answer_ts)  # type: ignore[attr-defined]
    fields["end_time"] = iso(call.end_ts)  # type: ignore[attr-defined]
    fields["recording_available"] = False
    return fields


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_folds_into_its_expected_call(case: Case) -> None:
    legs = [read_leg(case.body(path))[0] for path in case.legs]
    call = fold_call(legs, case.expected["uuid"], case.agents)
    assert call is not None
    assert as_api(call) == {f: case.expected[f] for f in CALL_FIELDS}


def test_the_corpus_covers_what_the_issue_asks_for() -> None:
    names = {c.name for c in CASES}
    assert {
        "inbound_queue_answered",
        "inbound_queue_abandoned",
        "inbound_queue_timeout",
        "outbound_busy",
        "outbound_no_answer",
        "outbound_rejected",
        "outbound_failed",
        "outbound_answered",
        "internal_answered",
        "internal_missed",
        "ivr_only_local",
        "voicemail",
        "blind_transfer",
        "attended_transfer",
        "webrtc_caller",
    } <= names
    forms = {(c.post["body"], c.post.get("content_type")) for c in CASES}
    assert {"json", "form", "base64"} <= {body for body, _ in forms}
    assert any(ct is None for _, ct in forms)  # a lost Content-Type
    assert ("form", "application/json") in forms  # a wrong one
    results = {c.expected["result"] for c in CASES}
    assert results == {"answered", "busy", "no_answer", "failed", "cancelled", "rejected", "voicemail"}
    assert {c.expected["direction"] for c in CASES} == {"inbound", "outbound", "internal", "local"}
    texts = [p.read_bytes() for c in CASES for p in c.legs]
    assert any(b"%2B84" in t for t in texts) and any(b'"+84' in t for t in texts)  # + encoded and raw
    assert any(b"%25" in t for t in texts) and any(b"%20" in t for t in texts)  # % and spaces
    assert any(t.count(b'"callflow":') > 1 or b'"application":' in t for t in texts)  # before 1.6
