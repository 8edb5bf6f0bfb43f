"""Derivations of the fields a CDR may leave out: pure, table-tested.

The rules follow the FreeSWITCH mapping in the operator docs (``docs/freeswitch.md``): the first
matching rule wins.
"""

from __future__ import annotations

from pbx_cdr.domain.values import SOURCE_TYPES

BUSY_CAUSES = frozenset({"USER_BUSY"})
BUSY_SIP = frozenset({"486", "600"})
NO_ANSWER_CAUSES = frozenset({"NO_ANSWER", "NO_USER_RESPONSE", "PROGRESS_TIMEOUT", "ALLOTTED_TIMEOUT"})
NO_ANSWER_SIP = frozenset({"480", "408"})
REJECTED_CAUSES = frozenset({"CALL_REJECTED"})
REJECTED_SIP = frozenset({"403", "603", "608"})
CANCELLED_CAUSES = frozenset({"ORIGINATOR_CANCEL", "LOSE_RACE"})
CANCELLED_SIP = frozenset({"487"})
ANSWERED_CAUSES = frozenset({"NORMAL_CLEARING", "BLIND_TRANSFER", "ATTENDED_TRANSFER", "PICKED_OFF"})

# Q.850 cause for a SIP status received, where the caller gave a SIP code but no cause.
SIP_TO_CAUSE = {
    "200": "NORMAL_CLEARING",
    "486": "USER_BUSY",
    "600": "USER_BUSY",
    "480": "NO_USER_RESPONSE",
    "487": "ORIGINATOR_CANCEL",
    "401": "CALL_REJECTED",
    "402": "CALL_REJECTED",
    "403": "CALL_REJECTED",
    "407": "CALL_REJECTED",
    "603": "CALL_REJECTED",
    "608": "CALL_REJECTED",
    "404": "UNALLOCATED_NUMBER",
    "485": "NO_ROUTE_DESTINATION",
    "604": "NO_ROUTE_DESTINATION",
    "484": "INVALID_NUMBER_FORMAT",
    "400": "NORMAL_TEMPORARY_FAILURE",
    "481": "NORMAL_TEMPORARY_FAILURE",
    "500": "NORMAL_TEMPORARY_FAILURE",
    "503": "NORMAL_TEMPORARY_FAILURE",
    "502": "NETWORK_OUT_OF_ORDER",
    "488": "INCOMPATIBLE_DESTINATION",
    "606": "INCOMPATIBLE_DESTINATION",
    "408": "RECOVERY_ON_TIMER_EXPIRE",
    "504": "RECOVERY_ON_TIMER_EXPIRE",
}


def derive_result(
    *,
    hangup_cause: str,
    answered: bool,
    sip_response_code: str | None = None,
    voicemail: bool = False,
) -> str:
    """The call's outcome from what ended it.

    voicemail → answered (it was answered) → cancelled → busy → no_answer → rejected → failed.
    """
    cause = hangup_cause.upper()
    sip = sip_response_code or ""
    if voicemail:
        return "voicemail"
    if answered:
        return "answered"
    if cause in CANCELLED_CAUSES or sip in CANCELLED_SIP:
        return "cancelled"
    if cause in BUSY_CAUSES or sip in BUSY_SIP:
        return "busy"
    if cause in NO_ANSWER_CAUSES or sip in NO_ANSWER_SIP:
        return "no_answer"
    if cause in REJECTED_CAUSES or sip in REJECTED_SIP:
        return "rejected"
    return "failed"


def derive_hangup_cause(result: str | None, sip_response_code: str | None, answered: bool) -> str:
    """A cause for a CDR that gave none: from its SIP code, else from its result."""
    if sip_response_code and sip_response_code in SIP_TO_CAUSE:
        return SIP_TO_CAUSE[sip_response_code]
    by_result = {
        "answered": "NORMAL_CLEARING",
        "voicemail": "NORMAL_CLEARING",
        "busy": "USER_BUSY",
        "no_answer": "NO_ANSWER",
        "cancelled": "ORIGINATOR_CANCEL",
        "rejected": "CALL_REJECTED",
        "failed": "NORMAL_TEMPORARY_FAILURE",
    }
    if result:
        return by_result[result]
    return "NORMAL_CLEARING" if answered else "NO_ANSWER"


def derive_source_type(direction: str, *, webrtc: bool = False) -> str:
    """inbound for inbound, internal for internal and local, outbound_webphone or _manual otherwise."""
    if direction == "inbound":
        return "inbound"
    if direction in ("internal", "local"):
        return "internal"
    return "outbound_webphone" if webrtc else "outbound_manual"


def derive_extension(
    direction: str, caller_number: str, destination_number: str, max_length: int = 6
) -> str | None:
    """The extension on our side when a CDR names none: a short number at the right end of the call."""

    def short(number: str) -> str | None:
        return number if number.isdigit() and 2 <= len(number) <= max_length else None

    if direction == "inbound":
        return short(destination_number)
    return short(caller_number) or (short(destination_number) if direction == "internal" else None)


# --- FreeSWITCH calls (ingest/freeswitch): the rules of docs/freeswitch.md, first match wins ---

DIALPLAN_DIRECTIONS = frozenset({"inbound", "outbound", "internal", "local"})
QUEUE_TIMEOUT_REASONS = frozenset({"TIMEOUT", "NO_AGENT_TIMEOUT"})
QUEUE_CANCEL_REASONS = frozenset({"BREAK_OUT", "EXIT_WITH_KEY", "NONE", ""})
CALL_CANCELLED_CAUSES = frozenset({"ORIGINATOR_CANCEL"})
CALL_NO_ANSWER_CAUSES = frozenset({"NO_ANSWER", "NO_USER_RESPONSE", "PROGRESS_TIMEOUT"})
CALL_NO_ANSWER_SIP = frozenset({"480"})


def derive_direction(
    *,
    dialplan: str | None = None,
    from_gateway: bool = False,
    public_context: bool = False,
    via_gateway: bool = False,
    bridged: bool = False,
) -> str:
    """The business direction of a call.

    A dialplan variable (``call_direction``) wins when it names one of the four; then inbound (the
    A-leg came from a gateway or the public context) → outbound (a leg left through a gateway) →
    internal (another endpoint was reached or tried) → local (IVR, voicemail, feature codes).
    """
    if dialplan and dialplan.strip().lower() in DIALPLAN_DIRECTIONS:
        return dialplan.strip().lower()
    if from_gateway or public_context:
        return "inbound"
    if via_gateway:
        return "outbound"
    if bridged:
        return "internal"
    return "local"


def derive_call_result(
    *,
    answered: bool,
    hangup_cause: str,
    sip_response_code: str | None = None,
    voicemail: bool = False,
    hangup_disposition: str | None = None,
    queue_cause: str | None = None,
    queue_cancel_reason: str | None = None,
) -> str:
    """The outcome of a FreeSWITCH call.

    voicemail → answered → no_answer for a queue timeout → cancelled (the caller gave up:
    ``ORIGINATOR_CANCEL``, ``recv_cancel``, or mod_callcenter's ``cancel`` for a caller who left)
    → busy → no_answer → rejected → failed. ``hangup_cause`` is the cause that decided the
    outcome: for a bridge that was tried and not answered, the bridge's cause.
    """
    cause = hangup_cause.upper()
    sip = sip_response_code or ""
    reason = (queue_cancel_reason or "").upper()
    if voicemail:
        return "voicemail"
    if answered:
        return "answered"
    if reason in QUEUE_TIMEOUT_REASONS:
        return "no_answer"
    if (
        cause in CALL_CANCELLED_CAUSES
        or (hangup_disposition or "").lower() == "recv_cancel"
        or ((queue_cause or "").lower() == "cancel" and reason in QUEUE_CANCEL_REASONS)
    ):
        return "cancelled"
    if cause in BUSY_CAUSES or sip in BUSY_SIP:
        return "busy"
    if cause in CALL_NO_ANSWER_CAUSES or sip in CALL_NO_ANSWER_SIP:
        return "no_answer"
    if cause in REJECTED_CAUSES or sip in REJECTED_SIP:
        return "rejected"
    return "failed"


def derive_call_source_type(direction: str, *, dialplan: str | None = None, webrtc: bool = False) -> str:
    """A dialplan or originate variable (``source_type``) when it names a known one, else by direction."""
    if dialplan and dialplan.strip().lower() in SOURCE_TYPES:
        return dialplan.strip().lower()
    return derive_source_type(direction, webrtc=webrtc)
