"""Parsing one leg: variables decoded once, times, the parent it folds into, refusals."""

from __future__ import annotations

from typing import Any

import pytest

from pbx_cdr.ingest.freeswitch.leg import (
    A_LEG,
    AGENT,
    B_LEG,
    InvalidLeg,
    decode_variables,
    parse_leg,
    values_encoded,
)

A = "65569ce0-0183-4f61-a3b2-0e433cfa4031"
B = "0b3c1a9e-6a44-4f0e-9d7e-1f2a3b4c5d6e"


def doc(variables: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    v = {"uuid": A, "start_epoch": "1782548142", "answer_epoch": "0", "end_epoch": "1782548200"}
    v.update(variables or {})
    return {"variables": {k: val for k, val in v.items() if val is not None}, **extra}


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        # encode-values=true (the default): percent-decoded once, '+' stays '+'
        ({"start_stamp": "2026-06-27%2015%3A15%3A42", "n": "%2B84987654321"}, "+84987654321"),
        ({"start_stamp": "2026-06-27%2015%3A15%3A42", "n": "%252B84"}, "%2B84"),  # exactly once
        ({"start_stamp": "2026-06-27%2015%3A15%3A42", "n": "vip%20100%25"}, "vip 100%"),
        ({"start_stamp": "2026-06-27%2015%3A15%3A42", "n": "Nguy%E1%BB%85n"}, "Nguyễn"),
        ({"start_stamp": "2026-06-27%2015%3A15%3A42", "n": "a+b"}, "a+b"),  # never a space
        ({"start_stamp": "2026-06-27%2015%3A15%3A42", "n": "%FF"}, "\ufffd"),
        # encode-values=false: nothing is decoded
        ({"start_stamp": "2026-06-27 15:15:42", "n": "%2B84987654321"}, "%2B84987654321"),
        ({"start_stamp": "2026-06-27 15:15:42", "n": "+84 100%"}, "+84 100%"),
        # no start_stamp: any unsafe character means raw values
        ({"other": "a b", "n": "%2B84"}, "%2B84"),
        ({"other": "a%20b", "n": "%2B84"}, "+84"),
    ],
)
def test_variables_are_decoded_exactly_once(raw: dict[str, str], decoded: str) -> None:
    assert decode_variables(raw)["n"] == decoded


def test_values_encoded_reads_start_stamp_first() -> None:
    assert values_encoded({"start_stamp": "2026-06-27%2015%3A15%3A42", "x": "a b"})
    assert not values_encoded({"start_stamp": "2026-06-27 15:15:42"})


def test_odd_variable_values_become_strings_or_are_left_out() -> None:
    got = decode_variables({"n": 5, "f": 1.5, "t": True, "o": {"x": 1}, "z": None, "l": ["a", "b"]})
    assert got == {"n": "5", "f": "1.5", "l": "b"}


def test_times_come_from_the_epochs() -> None:
    leg = parse_leg(doc({"answer_epoch": "1782548150"}))
    assert (leg.start_ts, leg.answer_ts, leg.end_ts) == (1782548142, 1782548150, 1782548200)


def test_times_fall_back_to_microseconds_then_to_the_callflow() -> None:
    micro = parse_leg(
        doc(
            {
                "start_epoch": None,
                "start_uepoch": "1782548142999999",
                "end_epoch": "0",
                "end_uepoch": "1782548200000001",
            }
        )
    )
    assert (micro.start_ts, micro.end_ts) == (1782548142, 1782548200)
    times = {
        "created_time": "1782548142500000",
        "answered_time": "1782548143000000",
        "hangup_time": "1782548199000000",
    }
    flow = parse_leg(
        doc(
            {"start_epoch": None, "end_epoch": None, "answer_epoch": None},
            callflow=[{"caller_profile": {"uuid": A}, "times": times}],
        )
    )
    assert (flow.start_ts, flow.answer_ts, flow.end_ts) == (1782548142, 1782548143, 1782548199)


def test_end_from_duration_when_nothing_else_says() -> None:
    leg = parse_leg(doc({"end_epoch": None, "duration": "33"}))
    assert leg.end_ts == 1782548142 + 33


def test_stamps_are_never_used() -> None:
    """*_stamp are the server's local time without an offset."""
    leg = parse_leg(doc({"start_stamp": "2026-06-27 15:15:42", "end_stamp": "2026-06-27 15:16:40"}))
    assert leg.start_ts == 1782548142


C = "9f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"


@pytest.mark.parametrize(
    ("variables", "profile", "parent", "kind"),
    [
        ({}, None, None, A_LEG),
        ({"originating_leg_uuid": B}, None, B, B_LEG),
        ({"originating_leg_uuid": B.upper()}, None, B, B_LEG),
        ({"cc_side": "agent", "cc_member_session_uuid": B}, None, B, AGENT),
        ({"cc_side": "agent"}, None, None, A_LEG),
        ({"cc_side": "member", "cc_member_session_uuid": B}, None, None, A_LEG),
        ({"loopback_leg": "B", "other_loopback_leg_uuid": B}, None, B, B_LEG),
        ({"loopback_leg": "A", "other_loopback_leg_uuid": B}, None, None, A_LEG),
        ({}, {"originator": {"originator_caller_profiles": [{"uuid": B}]}}, B, B_LEG),
        ({}, {"originator": {"originator_caller_profile": {"uuid": B}}}, B, B_LEG),
        ({"originating_leg_uuid": C}, None, None, A_LEG),  # itself: no parent
    ],
)
def test_the_parent_a_leg_folds_into(
    variables: dict[str, str], profile: dict[str, Any] | None, parent: str | None, kind: str
) -> None:
    payload = doc({**variables, "uuid": C})
    if profile is not None:
        payload["callflow"] = [{"caller_profile": {"uuid": C, **profile}}]
    leg = parse_leg(payload)
    assert (leg.uuid, leg.parent_uuid, leg.kind) == (C, parent, kind)


def test_the_original_caller_profile_is_the_last() -> None:
    leg = parse_leg(
        doc(
            callflow=[
                {
                    "caller_profile": {
                        "caller_id_number": "0911",
                        "destination_number": "1002",
                        "context": "default",
                    }
                },
                {
                    "caller_profile": {
                        "caller_id_number": "0911",
                        "destination_number": "02873001234",
                        "context": "public",
                        "username": "",
                    }
                },
            ]
        )
    )
    assert (leg.caller_number, leg.destination_number, leg.context) == ("0911", "02873001234", "public")


def test_the_callflow_is_never_decoded() -> None:
    leg = parse_leg(
        doc(
            {"start_stamp": "2026-06-27%2015%3A15%3A42"},
            callflow=[{"caller_profile": {"caller_id_number": "%2B84", "destination_number": "1%2B1"}}],
        )
    )
    assert (leg.caller_number, leg.destination_number) == ("%2B84", "1%2B1")


def test_applications_of_both_forms() -> None:
    new = parse_leg(doc(app_log={"applications": [{"app_name": "bridge", "app_data": "user/1002"}]}))
    old = parse_leg(
        doc(app_log={"application": [{"app_name": "answer"}, {"app_name": "bridge", "app_data": "x"}]})
    )
    assert new.applications == (("bridge", "user/1002"),)
    assert old.applications == (("answer", ""), ("bridge", "x"))


def test_the_url_uuid_stands_in() -> None:
    payload = doc()
    del payload["variables"]["uuid"]
    assert parse_leg(payload, url_uuid=A.upper()).uuid == A


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ([], "body"),
        ("leg", "body"),
        ({"callflow": []}, "variables"),
        ({"variables": []}, "variables"),
        (doc({"uuid": ""}), "variables.uuid"),
        (doc({"uuid": "not-a-uuid"}), "variables.uuid"),
        (doc({"uuid": "x" * 65, "originating_leg_uuid": A}), "variables.uuid"),
        (doc({"start_epoch": None}), "variables.start_epoch"),
        (doc({"end_epoch": None}), "variables.end_epoch"),
        (doc({"start_epoch": "9" * 12}), "variables.start_epoch"),
        (doc({"answer_epoch": "9" * 12}), "variables.answer_epoch"),
    ],
)
def test_refusals_name_the_field(payload: Any, field: str) -> None:
    with pytest.raises(InvalidLeg) as caught:
        parse_leg(payload)
    assert caught.value.field == field


def test_a_b_leg_may_have_any_channel_id() -> None:
    leg = parse_leg(doc({"uuid": "my-custom-id", "originating_leg_uuid": A}))
    assert (leg.uuid, leg.parent_uuid) == ("my-custom-id", A)
