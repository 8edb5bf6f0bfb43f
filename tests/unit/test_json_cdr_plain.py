"""The plain-item fast path of JSON CDR parsing gives exactly the full validator's answer, or none.

``_plain_call`` skips the full validator's error bookkeeping for well-formed items; anything it is
not sure of goes to ``parse_call``. On random items, valid and not, it must never accept what
``parse_call`` refuses nor build a different call.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pbx_cdr.api.schemas import CallIn
from pbx_cdr.ingest.json_cdr import _plain_call, parse_call, parse_payload
from tests.conftest import cdr

U1 = "65569ce0-0183-4f61-a3b2-0e433cfa4031"

# Values worth trying in any field: valid ones for some field, and every kind of wrong one.
ODD_VALUES = [
    None,
    "",
    " ",
    "x" * 33,
    "x" * 65,
    "x" * 129,
    "a\x00b",
    "tab\there",
    "1001",
    "0987654321",
    "outbound",
    "inbound",
    "internal",
    "answered",
    "busy",
    "NORMAL_CLEARING",
    "normal_clearing",
    "486",
    "99",
    "700",
    486,
    0,
    -1,
    28,
    28.0,
    28.5,
    2**31 - 1,
    2**31,
    True,
    False,
    [],
    {},
    "2026-06-27T08:15:42+00:00",
    "2026-06-27T08:15:42Z",
    "2026-06-27 08:15:42+07:00",
    "2026-06-27T08:15:42",
    "2026-06-27T08:15:42.123+0000",
    "2026-02-30T08:15:42+00:00",
    "1960-01-01T00:00:00+00:00",
    "2026-06-27T09:00:00+00:00",
    U1,
    U1.upper(),
    "{" + U1 + "}",
    U1.replace("-", ""),
]
FIELDS = list(CallIn.model_fields)

items = st.builds(
    lambda changes, dropped: {
        k: v for k, v in {**cdr(U1, queue_name="sales", duration=74), **changes}.items() if k not in dropped
    },
    st.dictionaries(st.sampled_from(FIELDS), st.sampled_from(ODD_VALUES), max_size=4),
    st.sets(st.sampled_from(FIELDS), max_size=3),
)


def full(item: dict[str, Any]) -> Any:
    errors: dict[str, list[str]] = {}
    found = parse_call(item, "", errors)
    return None if errors else found


@settings(max_examples=3000, deadline=None)
@given(items)
def test_the_plain_path_agrees_with_the_full_validator(item: dict[str, Any]) -> None:
    plain = _plain_call(item)
    if plain is not None:
        assert plain == full(item)


def test_the_plain_path_takes_the_common_items() -> None:
    common = [
        cdr(U1),
        cdr(U1, answer_time=None, sip_response_code=486),
        cdr(U1, extension_number=None, queue_name="sales", queue_wait_time=3, transfer_count=1),
        cdr(U1, start_time="2026-06-27T08:15:42Z", result="voicemail", hangup_cause="NORMAL_CLEARING"),
    ]
    for item in common:
        plain = _plain_call(item)
        assert plain is not None
        assert plain == full(item)


def test_items_it_leaves_to_the_full_validator_still_parse() -> None:
    # An upper-case uuid and an integral float are valid, only not plain.
    item = cdr(U1.upper(), duration=74.0)
    assert _plain_call(item) is None
    [parsed], _ = parse_payload(item)
    assert (parsed.uuid, parsed.duration) == (U1, 74)
