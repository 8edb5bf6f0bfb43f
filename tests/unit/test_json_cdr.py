"""JSON CDR parsing: required fields, types, derivations, batch rules."""

from __future__ import annotations

from typing import Any

import pytest

from pbx_cdr.errors import ValidationFailed
from pbx_cdr.ingest.json_cdr import parse_payload
from tests.conftest import cdr

U1 = "65569ce0-0183-4f61-a3b2-0e433cfa4031"
U2 = "75569ce0-0183-4f61-a3b2-0e433cfa4032"


def errors(body: Any) -> dict[str, list[str]]:
    with pytest.raises(ValidationFailed) as info:
        parse_payload(body)
    return info.value.errors


def test_a_minimal_cdr_gets_every_derivation() -> None:
    [call], batch = parse_payload(cdr(U1))
    assert not batch
    assert call.duration == 74 and call.billsec == 66
    assert call.result == "answered" and call.hangup_cause == "NORMAL_CLEARING"
    assert call.source_type == "outbound_manual"
    assert call.extension_number == "1001"
    assert call.transfer_count == 0
    assert call.start_ts == 1782548142


def test_unanswered_derivations() -> None:
    [call], _ = parse_payload(cdr(U1, answer_time=None, sip_response_code="486"))
    assert (call.billsec, call.result, call.hangup_cause) == (0, "busy", "USER_BUSY")


def test_given_fields_win_over_derivations() -> None:
    body = cdr(
        U1,
        duration=99,
        billsec=1,
        result="voicemail",
        hangup_cause="NORMAL_CLEARING",
        source_type="outbound_telesales",
    )
    [call], _ = parse_payload(body)
    assert (call.duration, call.billsec, call.result, call.source_type) == (
        99,
        1,
        "voicemail",
        "outbound_telesales",
    )


def test_explicit_null_extension_stays_null() -> None:
    [call], _ = parse_payload(cdr(U1, extension_number=None))
    assert call.extension_number is None


def test_times_with_offsets_are_normalized_to_utc() -> None:
    [call], _ = parse_payload(
        cdr(U1, start_time="2026-06-27T15:15:42+07:00", answer_time=None, end_time="2026-06-27T08:16:00Z")
    )
    assert call.start_ts == 1782548142 and call.end_ts == 1782548160


def test_uuid_is_canonical_lowercase() -> None:
    [call], _ = parse_payload(cdr(U1.upper()))
    assert call.uuid == U1


@pytest.mark.parametrize(
    "missing", ["uuid", "direction", "caller_number", "destination_number", "start_time", "end_time"]
)
def test_required_fields(missing: str) -> None:
    body = cdr(U1)
    del body[missing]
    assert errors(body) == {missing: [f"The {missing.replace('_', ' ')} field is required."]}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("uuid", "not-a-uuid"),
        ("uuid", "65569ce00183-4f61-a3b2-0e433cfa4031"),
        ("direction", "sideways"),
        ("source_type", "robot"),
        ("result", "won"),
        ("start_time", "2026-06-27 08:15:42"),
        ("start_time", "yesterday"),
        ("start_time", 1782548142),
        ("end_time", "2026-02-30T00:00:00+00:00"),
        ("duration", -1),
        ("duration", "14"),
        ("duration", True),
        ("duration", 2**40),
        ("billsec", 1.5),
        ("transfer_count", -2),
        ("sip_response_code", "20"),
        ("sip_response_code", "abc"),
        ("sip_response_code", "200\n"),  # a final newline passed a `$` pattern (500 on PostgreSQL)
        ("hangup_cause", "normal clearing"),
        ("hangup_cause", "NORMAL_CLEARING\n"),
        ("start_time", "2026-06-27T08:15:42+00:00\n"),
        ("start_time", "\u0662026-06-27T08:15:42+00:00"),  # an Arabic-Indic digit
        ("caller_number", 12345),
        ("caller_number", "x" * 65),
        ("caller_number", "10\x0001"),
        ("queue_name", ["sales"]),
    ],
)
def test_bad_fields(field: str, value: Any) -> None:
    body = cdr(U1)
    body[field] = value
    assert field in errors(body)


def test_end_before_start_and_answer_outside() -> None:
    e = errors(cdr(U1, end_time="2026-06-27T08:00:00+00:00", answer_time=None))
    assert "end_time" in e
    e = errors(cdr(U1, answer_time="2026-06-27T09:00:00+00:00"))
    assert "answer_time" in e


def test_integral_floats_are_integers() -> None:
    [call], _ = parse_payload(cdr(U1, duration=28.0, billsec=20.0))
    assert (call.duration, call.billsec) == (28, 20)
    assert isinstance(call.duration, int)


def test_sip_code_may_be_an_integer() -> None:
    [call], _ = parse_payload(cdr(U1, sip_response_code=200))
    assert call.sip_response_code == "200"


def test_batch_errors_are_keyed_by_index_and_nothing_passes() -> None:
    body = {"data": [cdr(U1), cdr(U2, direction="x", caller_number=None)]}
    assert errors(body) == {
        "data.1.direction": ["The selected direction is invalid."],
        "data.1.caller_number": ["The caller number field is required."],
    }


def test_batch_shapes() -> None:
    assert errors({"data": []}) == {"data": ["The data field must have at least 1 item."]}
    assert errors({"data": {"uuid": U1}}) == {"data": ["The data field must be an array."]}
    assert "data" in errors({"data": [cdr(U1)] * 1001})
    assert errors({"data": ["x"]}) == {"data.0": ["Each call must be a JSON object."]}
    assert errors([cdr(U1)]) == {"body": ["Each call must be a JSON object."]}


def test_duplicate_uuids_in_one_batch() -> None:
    assert "data.1.uuid" in errors({"data": [cdr(U1), cdr(U1)]})


def test_a_valid_batch() -> None:
    calls, batch = parse_payload({"data": [cdr(U1), cdr(U2, direction="inbound")]})
    assert batch and [c.uuid for c in calls] == [U1, U2]


def test_not_an_object() -> None:
    for body in ([], "x", 3, None):
        errors(body)
