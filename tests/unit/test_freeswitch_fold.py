"""Folding legs into a call, field by field, on hand-made legs."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from pbx_cdr.ingest.freeswitch.fold import agent_names, fold_call, roles
from pbx_cdr.ingest.freeswitch.leg import A_LEG, AGENT, B_LEG, Leg
from pbx_cdr.ingest.freeswitch.mapping import agent_of, transfer_entries

A = "65569ce0-0183-4f61-a3b2-0e433cfa4031"
B = "0b3c1a9e-6a44-4f0e-9d7e-1f2a3b4c5d6e"
B2 = "1c4d2b0f-7b55-4a1f-8e8f-203b4c5d6e7f"
C = "2d5e3c1a-8c66-4b2a-9f90-314c5d6e7f80"
T = 1782548142


def make(
    uuid: str = A,
    *,
    parent: str | None = None,
    kind: str | None = None,
    channel: str = "inbound",
    caller: str = "1001",
    dest: str = "0912345678",
    username: str = "",
    context: str = "default",
    start: int = T,
    answer: int | None = None,
    end: int = T + 60,
    apps: tuple[tuple[str, str], ...] = (),
    **variables: str,
) -> Leg:
    return Leg(
        uuid=uuid,
        parent_uuid=parent,
        kind=kind or (B_LEG if parent else A_LEG),
        variables=variables,
        channel_direction=channel,
        caller_number=caller,
        destination_number=dest,
        profile_username=username,
        context=context,
        start_ts=start,
        answer_ts=answer,
        end_ts=end,
        applications=apps,
    )


def fold(*legs: Leg, aliases: dict[str, str] | None = None) -> Any:
    call = fold_call(list(legs), A, aliases)
    assert call is not None
    return call


def test_no_call_without_the_a_leg() -> None:
    assert fold_call([make(B, parent=A)], A) is None
    assert fold_call([], A) is None


def test_roles() -> None:
    legs = [make(), make(B, parent=A), make(C, parent=B), make(B2, parent=A, kind=AGENT)]
    assert roles(legs, A) == {A: "a_leg", B: "b_leg", C: "transfer", B2: "agent"}


def test_the_order_of_the_legs_never_matters() -> None:
    legs = [
        make(sip_auth_username="1001", originate_disposition="USER_BUSY", hangup_cause="USER_BUSY"),
        make(B, parent=A, channel="outbound", sip_gateway_name="vnpt", sip_term_status="486", end=T + 9),
        make(B2, parent=A, channel="outbound", sip_gateway_name="viettel", sip_term_status="503", end=T + 5),
    ]
    results = [fold_call(list(order), A) for order in itertools.permutations(legs)]
    call = results[0]
    assert call is not None
    assert all(other == call for other in results)
    assert (call.trunk_name, call.sip_response_code, call.result) == ("vnpt", "486", "busy")


@pytest.mark.parametrize(
    ("variables", "username", "extension"),
    [
        ({"sip_auth_username": "1001", "user_name": "1002", "sip_from_user": "1004"}, "1003", "1001"),
        ({"user_name": "1002", "sip_from_user": "1004"}, "1003", "1002"),
        ({"sip_from_user": "1004"}, "1003", "1003"),
        ({"sip_from_user": "1004"}, "", "1004"),  # a phone authenticated by its IP address
        ({}, "", None),
        ({"sip_from_user": "not an extension!"}, "", None),
    ],
)
def test_extension_of_an_outbound_call_is_the_caller(
    variables: dict[str, str], username: str, extension: str | None
) -> None:
    call = fold(make(username=username, **variables), make(B, parent=A, sip_gateway_name="vnpt"))
    assert call.direction == "outbound"
    assert call.extension_number == extension


def test_extension_of_an_inbound_call_is_the_callee() -> None:
    inbound = {"sip_gateway": "viettel", "context": "public"}
    answered = make(B, parent=A, dialed_user="1002", answer=T + 5)
    rang = make(B2, parent=A, dialed_user="1003", start=T - 1)
    assert fold(make(dialed_user="1009", **inbound), answered).extension_number == "1009"
    assert fold(make(**inbound), rang, answered).extension_number == "1002"  # who answered
    assert fold(make(**inbound), rang).extension_number == "1003"  # else who rang
    assert fold(make(last_sent_callee_id_number="1005", **inbound)).extension_number == "1005"
    assert fold(make(**inbound)).extension_number is None


@pytest.mark.parametrize(
    ("name", "aliases", "extension"),
    [
        ("1001@default", {}, "1001"),
        ("1001", {}, "1001"),
        ("alice@default", {}, None),
        ("alice@default", {"alice@default": "1007"}, "1007"),
        ("alice@default", {"alice": "1008"}, "1008"),
        ("1001@default", {"1001@default": "2001"}, "2001"),  # the operator's mapping wins
        ("", {}, None),
    ],
)
def test_agent_names_to_extensions(name: str, aliases: dict[str, str], extension: str | None) -> None:
    assert agent_of(name, aliases) == extension


def test_the_agent_of_a_queue_call() -> None:
    a = make(sip_gateway="viettel", cc_queue="support@default", cc_agent="alice@default")
    agent = make(B, parent=A, kind=AGENT, cc_agent="alice@default", dialed_user="1001", answer=T + 20)
    assert fold(a, agent).agent_extension == "1001"  # the agent leg's user
    assert fold(a, agent, aliases={"alice@default": "1009"}).agent_extension == "1009"
    assert fold(a).agent_extension is None  # no leg, no mapping: a name is no extension
    assert fold(a, aliases={"alice": "1009"}).agent_extension == "1009"
    assert agent_names([a, agent]) == {"alice@default", "alice"}


def test_an_agent_who_only_rang_is_not_the_agent() -> None:
    a = make(sip_gateway="viettel", cc_queue="support@default", cc_cause="cancel", cc_cancel_reason="NONE")
    rang = make(B, parent=A, kind=AGENT, cc_agent="1001@default", dialed_user="1001")
    call = fold(a, rang)
    assert (call.agent_extension, call.extension_number, call.result) == (None, None, "cancelled")


@pytest.mark.parametrize(
    ("variables", "wait"),
    [
        ({"cc_queue_joined_epoch": str(T + 5), "cc_queue_answered_epoch": str(T + 35)}, 30),
        ({"cc_queue_joined_epoch": str(T + 5), "cc_queue_canceled_epoch": str(T + 15)}, 10),
        ({"cc_queue_joined_epoch": str(T + 5)}, 55),  # until the end of the call
        ({}, None),
        ({"cc_queue_joined_epoch": str(T + 90)}, 0),
    ],
)
def test_queue_wait(variables: dict[str, str], wait: int | None) -> None:
    call = fold(make(cc_queue="sales team@default", **variables))
    assert (call.queue_name, call.queue_wait_time) == ("sales team", wait)


def test_trunk() -> None:
    out = make(sip_auth_username="1001")
    first = make(B, parent=A, sip_gateway_name="backup", start=T + 1, hangup_cause="GATEWAY_DOWN")
    second = make(B2, parent=A, sip_gateway_name="vnpt", start=T + 2, answer=T + 9)
    assert fold(out, first, second).trunk_name == "vnpt"  # the one that answered
    assert fold(out, first).trunk_name == "backup"
    only_a = make(apps=(("bridge", "{x=y}sofia/gateway/vnpt/0912|sofia/gateway/backup/0912"),))
    assert fold(only_a).trunk_name == "vnpt"  # from the dial string when no B-leg was logged
    assert fold(only_a).direction == "outbound"
    assert fold(make(sip_gateway="viettel")).trunk_name == "viettel"
    named = make(B, parent=A, channel="outbound", channel_name="sofia/gateway/mobi/0912")
    assert fold(out, named).trunk_name == "mobi"


def test_transfers() -> None:
    entry = f"{T + 30}:{B}:att_xfer:1003@pbx/{A}"
    history = f"ARRAY::{T + 10}:{A}:bl_xfer:1002/default/XML|:{T + 20}:{A}:uuid_br:{B}|:{entry}"
    assert [k for k, _, _ in transfer_entries(make(transfer_history=history))] == ["bl_xfer", "att_xfer"]
    # one attended transfer recorded on two legs counts once
    call = fold(make(transfer_history=history), make(B, parent=A, transfer_history=entry))
    assert call.transfer_count == 2
    assert fold(make(transfer_history=f"{T}:{A}:uuid_br:{B}")).transfer_count == 0


def test_sip_response_code() -> None:
    a = make(sip_term_status="603", last_bridge_proto_specific_hangup_cause="sip:403")
    assert fold(a, make(B, parent=A, sip_invite_failure_status="403")).sip_response_code == "403"
    assert fold(a).sip_response_code == "603"
    assert fold(make(last_bridge_proto_specific_hangup_cause="sip:486")).sip_response_code == "486"
    assert fold(make(sip_term_status="abc")).sip_response_code is None


def test_a_bridge_that_failed_after_the_dialplan_answered_is_not_answered() -> None:
    a = make(
        answer=T + 1,
        sip_auth_username="1001",
        originate_disposition="USER_BUSY",
        hangup_cause="NORMAL_CLEARING",
        apps=(("answer", ""), ("bridge", "sofia/gateway/vnpt/0912")),
    )
    call = fold(a)
    assert (call.result, call.hangup_cause) == ("busy", "NORMAL_CLEARING")


def test_answered_by_the_switch_with_no_bridge_is_answered() -> None:
    call = fold(make(dest="*97", answer=T + 1, apps=(("voicemail", "check default pbx 1001"),)))
    assert (call.direction, call.result) == ("local", "answered")  # listening to voicemail


def test_originated_calls_put_our_user_first() -> None:
    """``originate user/1005 &bridge(sofia/gateway/vnpt/0987654321)``: click-to-call."""
    a = make(
        channel="outbound",
        caller="0000000000",
        dest="1005",
        dialed_user="1005",
        source_type="outbound_callback",
        answer=T + 3,
        last_bridge_to=B,
    )
    b = make(B, parent=A, channel="outbound", dest="0987654321", sip_gateway_name="vnpt", answer=T + 9)
    call = fold(a, b)
    assert (call.caller_number, call.destination_number) == ("1005", "0987654321")
    assert (call.direction, call.source_type, call.extension_number) == (
        "outbound",
        "outbound_callback",
        "1005",
    )


def test_times_are_kept_in_order() -> None:
    call = fold(make(start=T, answer=T - 5, end=T + 10, duration="-3", billsec="x"))
    assert (call.answer_ts, call.duration, call.billsec) == (T, 0, 10)
    backwards = fold(make(start=T, end=T - 10))
    assert backwards.end_ts == T


def test_long_values_are_clipped_to_their_columns() -> None:
    call = fold(make(caller="9" * 80, cc_queue="q" * 200 + "@default", hangup_cause="X" * 100))
    assert len(call.caller_number) == 64 and len(call.queue_name) == 128 and len(call.hangup_cause) == 64


def test_a_leg_without_a_uuid_is_never_a_call() -> None:
    """Two B-legs naming each other as parent: the one left at the top is no call."""
    assert fold_call([make("my-custom-id", parent="other-id")], "my-custom-id") is None
