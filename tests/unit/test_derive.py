from __future__ import annotations

import pytest

from pbx_cdr.domain.derive import (
    derive_extension,
    derive_hangup_cause,
    derive_result,
    derive_source_type,
)


@pytest.mark.parametrize(
    ("cause", "answered", "sip", "voicemail", "result"),
    [
        ("NORMAL_CLEARING", True, None, False, "answered"),
        ("NORMAL_CLEARING", True, None, True, "voicemail"),
        ("USER_BUSY", False, None, False, "busy"),
        ("NORMAL_CLEARING", False, "486", False, "busy"),
        ("NORMAL_CLEARING", False, "600", False, "busy"),
        ("NO_ANSWER", False, None, False, "no_answer"),
        ("NO_USER_RESPONSE", False, None, False, "no_answer"),
        ("PROGRESS_TIMEOUT", False, None, False, "no_answer"),
        ("ORIGINATOR_CANCEL", False, None, False, "cancelled"),
        ("NORMAL_CLEARING", False, "487", False, "cancelled"),
        ("CALL_REJECTED", False, None, False, "rejected"),
        ("NORMAL_CLEARING", False, "603", False, "rejected"),
        ("NORMAL_CLEARING", False, "403", False, "rejected"),
        ("UNALLOCATED_NUMBER", False, "404", False, "failed"),
        ("NORMAL_TEMPORARY_FAILURE", False, "503", False, "failed"),
        ("GATEWAY_DOWN", False, None, False, "failed"),
        ("normal_clearing", True, None, False, "answered"),
    ],
)
def test_derive_result(cause: str, answered: bool, sip: str | None, voicemail: bool, result: str) -> None:
    assert (
        derive_result(hangup_cause=cause, answered=answered, sip_response_code=sip, voicemail=voicemail)
        == result
    )


def test_an_answered_call_is_answered_whatever_ended_it() -> None:
    assert derive_result(hangup_cause="USER_BUSY", answered=True) == "answered"


@pytest.mark.parametrize(
    ("result", "sip", "answered", "cause"),
    [
        (None, "486", False, "USER_BUSY"),
        (None, "487", False, "ORIGINATOR_CANCEL"),
        ("busy", None, False, "USER_BUSY"),
        ("failed", None, False, "NORMAL_TEMPORARY_FAILURE"),
        (None, None, True, "NORMAL_CLEARING"),
        (None, None, False, "NO_ANSWER"),
        (None, "299", False, "NO_ANSWER"),
    ],
)
def test_derive_hangup_cause(result: str | None, sip: str | None, answered: bool, cause: str) -> None:
    assert derive_hangup_cause(result, sip, answered) == cause


@pytest.mark.parametrize(
    ("direction", "webrtc", "source"),
    [
        ("inbound", False, "inbound"),
        ("internal", False, "internal"),
        ("local", False, "internal"),
        ("outbound", False, "outbound_manual"),
        ("outbound", True, "outbound_webphone"),
    ],
)
def test_derive_source_type(direction: str, webrtc: bool, source: str) -> None:
    assert derive_source_type(direction, webrtc=webrtc) == source


@pytest.mark.parametrize(
    ("direction", "caller", "destination", "extension"),
    [
        ("outbound", "1001", "0987654321", "1001"),
        ("inbound", "0987654321", "1002", "1002"),
        ("inbound", "0987654321", "19006868", None),
        ("internal", "1001", "1002", "1001"),
        ("internal", "+84987654321", "1002", "1002"),
        ("outbound", "0900000021", "0987654321", None),
    ],
)
def test_derive_extension(direction: str, caller: str, destination: str, extension: str | None) -> None:
    assert derive_extension(direction, caller, destination) == extension
