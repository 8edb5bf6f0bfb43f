"""Whatever a client sends, parsing and folding either refuse it cleanly or make a storable call."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbx_cdr.domain.values import DIRECTIONS, RESULTS, SOURCE_TYPES
from pbx_cdr.ingest.freeswitch import InvalidLeg, UndecodableBody, fold_call, read_leg

A = "65569ce0-0183-4f61-a3b2-0e433cfa4031"
MAX_INT = 2**31 - 1

scalars = st.one_of(
    st.text(max_size=30),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
    st.sampled_from(["0", "1782548142", "9" * 40, "1e400", "%2B84", "ARRAY::1:a:bl_xfer:x|:2", "sip:486"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
names = st.sampled_from(
    [
        "uuid",
        "start_epoch",
        "answer_epoch",
        "end_epoch",
        "start_uepoch",
        "duration",
        "billsec",
        "cc_queue",
        "cc_queue_joined_epoch",
        "cc_queue_answered_epoch",
        "cc_agent",
        "cc_side",
        "cc_member_session_uuid",
        "originating_leg_uuid",
        "transfer_history",
        "sip_term_status",
        "hangup_cause",
        "call_direction",
        "source_type",
        "sip_gateway_name",
        "voicemail_message_len",
        "start_stamp",
    ]
)


@st.composite
def legs(draw: Any) -> dict[str, Any]:
    variables = draw(st.dictionaries(names, values, max_size=12))
    if draw(st.booleans()):
        variables.update(uuid=A, start_epoch="1782548142", end_epoch="1782548200")
    doc: dict[str, Any] = {"variables": variables}
    if draw(st.booleans()):
        doc["callflow"] = draw(
            st.one_of(values, st.lists(st.fixed_dictionaries({"caller_profile": values, "times": values})))
        )
    if draw(st.booleans()):
        doc["app_log"] = draw(st.one_of(values, st.fixed_dictionaries({"applications": values})))
    if draw(st.booleans()):
        doc["channel_data"] = draw(values)
    return doc


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(legs())
def test_any_leg_is_refused_cleanly_or_folds_into_a_storable_call(doc: dict[str, Any]) -> None:
    try:
        leg, _ = read_leg(json.dumps(doc).encode())
    except (InvalidLeg, UndecodableBody):
        return
    call = fold_call([leg], leg.uuid)
    if leg.parent_uuid is not None and leg.uuid != A:  # only an A-leg's uuid must be a UUID
        return
    assert call is not None
    assert call.direction in DIRECTIONS and call.source_type in SOURCE_TYPES and call.result in RESULTS
    assert 0 <= call.duration <= MAX_INT and 0 <= call.billsec <= MAX_INT
    assert call.queue_wait_time is None or 0 <= call.queue_wait_time <= MAX_INT
    assert call.start_ts <= call.end_ts
    assert call.answer_ts is None or call.start_ts <= call.answer_ts <= call.end_ts
    assert len(call.caller_number) <= 64 and len(call.hangup_cause) <= 64
    assert call.sip_response_code is None or len(call.sip_response_code) == 3


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_are_refused_cleanly_or_read(body: bytes) -> None:
    with contextlib.suppress(InvalidLeg, UndecodableBody):
        read_leg(body)
