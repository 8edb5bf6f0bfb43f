"""The pure derivations of a FreeSWITCH call's direction, source type and result, as tables."""

from __future__ import annotations

import pytest

from pbx_cdr.domain.derive import derive_call_result, derive_call_source_type, derive_direction


@pytest.mark.parametrize(
    ("kwargs", "direction"),
    [
        ({}, "local"),
        ({"bridged": True}, "internal"),
        ({"via_gateway": True, "bridged": True}, "outbound"),
        ({"from_gateway": True}, "inbound"),
        ({"public_context": True}, "inbound"),
        ({"from_gateway": True, "via_gateway": True, "bridged": True}, "inbound"),  # forwarded out
        # the dialplan wins over every heuristic, when it names one of the four
        ({"dialplan": "outbound", "from_gateway": True}, "outbound"),
        ({"dialplan": "local", "bridged": True}, "local"),
        ({"dialplan": " Inbound ", "bridged": True}, "inbound"),
        ({"dialplan": "internal"}, "internal"),
        ({"dialplan": "sideways", "bridged": True}, "internal"),
        ({"dialplan": "", "via_gateway": True}, "outbound"),
    ],
)
def test_derive_direction(kwargs: dict[str, object], direction: str) -> None:
    assert derive_direction(**kwargs) == direction  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("direction", "dialplan", "webrtc", "source_type"),
    [
        ("inbound", None, False, "inbound"),
        ("internal", None, False, "internal"),
        ("local", None, False, "internal"),
        ("outbound", None, False, "outbound_manual"),
        ("outbound", None, True, "outbound_webphone"),
        ("internal", None, True, "internal"),
        ("inbound", None, True, "inbound"),
        ("outbound", "outbound_telesales", False, "outbound_telesales"),
        ("outbound", "OUTBOUND_CALLBACK", True, "outbound_callback"),
        ("inbound", "outbound_manual", False, "outbound_manual"),  # the dialplan wins
        ("outbound", "robocall", False, "outbound_manual"),  # unknown values are ignored
    ],
)
def test_derive_call_source_type(
    direction: str, dialplan: str | None, webrtc: bool, source_type: str
) -> None:
    assert derive_call_source_type(direction, dialplan=dialplan, webrtc=webrtc) == source_type


A = True
N = False


@pytest.mark.parametrize(
    ("answered", "cause", "sip", "voicemail", "disposition", "cc_cause", "cc_reason", "result"),
    [
        # voicemail first, even over answered
        (A, "NORMAL_CLEARING", "200", True, None, None, None, "voicemail"),
        (N, "NO_ANSWER", None, True, None, None, None, "voicemail"),
        (A, "NORMAL_CLEARING", "200", N, None, None, None, "answered"),
        (A, "ORIGINATOR_CANCEL", "487", N, "recv_cancel", None, None, "answered"),
        # queue timeouts are no_answer though mod_callcenter says "cancel"
        (N, "NORMAL_CLEARING", "200", N, "send_bye", "cancel", "TIMEOUT", "no_answer"),
        (N, "NORMAL_CLEARING", None, N, None, "cancel", "NO_AGENT_TIMEOUT", "no_answer"),
        # the caller gave up
        (N, "ORIGINATOR_CANCEL", None, N, None, None, None, "cancelled"),
        (N, "NORMAL_CLEARING", None, N, "recv_cancel", None, None, "cancelled"),
        (N, "NORMAL_CLEARING", "200", N, "recv_bye", "cancel", "NONE", "cancelled"),
        (N, "NORMAL_CLEARING", "200", N, "recv_bye", "cancel", "BREAK_OUT", "cancelled"),
        (N, "NORMAL_CLEARING", "200", N, "recv_bye", "cancel", "EXIT_WITH_KEY", "cancelled"),
        (N, "NORMAL_CLEARING", "200", N, "recv_bye", "cancel", None, "cancelled"),
        # busy, no answer, rejected, by cause or SIP status
        (N, "USER_BUSY", None, N, None, None, None, "busy"),
        (N, "NORMAL_CLEARING", "486", N, None, None, None, "busy"),
        (N, "NORMAL_CLEARING", "600", N, None, None, None, "busy"),
        (N, "NO_ANSWER", "487", N, "send_cancel", None, None, "no_answer"),  # 487 alone is no cancel
        (N, "NO_USER_RESPONSE", "480", N, None, None, None, "no_answer"),
        (N, "PROGRESS_TIMEOUT", None, N, None, None, None, "no_answer"),
        (N, "NORMAL_CLEARING", "480", N, None, None, None, "no_answer"),
        (N, "CALL_REJECTED", None, N, None, None, None, "rejected"),
        (N, "NORMAL_CLEARING", "403", N, None, None, None, "rejected"),
        (N, "NORMAL_CLEARING", "603", N, None, None, None, "rejected"),
        (N, "NORMAL_CLEARING", "608", N, None, None, None, "rejected"),
        # everything else failed
        (N, "NORMAL_TEMPORARY_FAILURE", "503", N, None, None, None, "failed"),
        (N, "GATEWAY_DOWN", None, N, None, None, None, "failed"),
        (N, "UNALLOCATED_NUMBER", "404", N, None, None, None, "failed"),
        (N, "RECOVERY_ON_TIMER_EXPIRE", "408", N, None, None, None, "failed"),
        (N, "USER_NOT_REGISTERED", None, N, None, None, None, "failed"),
        (N, "", None, N, None, None, None, "failed"),
        # first match wins: cancelled before busy, busy before rejected
        (N, "ORIGINATOR_CANCEL", "486", N, None, None, None, "cancelled"),
        (N, "USER_BUSY", "603", N, None, None, None, "busy"),
        (N, "user_busy", None, N, None, None, None, "busy"),
    ],
)
def test_derive_call_result(
    answered: bool,
    cause: str,
    sip: str | None,
    voicemail: bool,
    disposition: str | None,
    cc_cause: str | None,
    cc_reason: str | None,
    result: str,
) -> None:
    assert (
        derive_call_result(
            answered=answered,
            hangup_cause=cause,
            sip_response_code=sip,
            voicemail=voicemail,
            hangup_disposition=disposition,
            queue_cause=cc_cause,
            queue_cancel_reason=cc_reason,
        )
        == result
    )
