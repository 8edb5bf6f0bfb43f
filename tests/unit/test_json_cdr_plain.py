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
from pbx_cdr.ingest.json_cdr import _Fields, _moment, _plain_call, _Unusual, parse_call, parse_payload
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


# Times in the plain shape, in range and not: every day, hour, offset and edge the shortcut handles.
plain_times = st.builds(
    lambda y, mo, d, h, mi, s, sign, oh, om, zulu: (
        f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}" + ("Z" if zulu else f"{sign}{oh:02d}:{om:02d}")
    ),
    st.sampled_from([1969, 1970, 2000, 2024, 2026, 2242, 2243, 9999]),
    st.integers(0, 13),
    st.integers(0, 32),
    st.integers(0, 25),
    st.integers(0, 61),
    st.integers(0, 61),
    st.sampled_from("+-"),
    st.integers(0, 25),
    st.sampled_from([0, 30, 45, 59, 60, 99]),
    st.booleans(),
)


@settings(max_examples=3000, deadline=None)
@given(plain_times)
def test_a_plain_time_is_the_full_validators_time(value: str) -> None:
    errors: dict[str, list[str]] = {}
    expected = _Fields({"t": value}, "", errors).timestamp("t")
    try:
        got = _moment({"t": value}, "t")
    except _Unusual:
        got = None
    assert got == (None if errors else expected)


def test_plain_times_across_offsets_and_day_boundaries() -> None:
    assert _moment({"t": "2026-03-29T00:59:59Z"}, "t") == 1774745999
    assert _moment({"t": "2026-03-29T01:59:59+01:00"}, "t") == 1774745999
    assert _moment({"t": "2026-03-28T14:29:59-10:30"}, "t") == 1774745999
    assert _moment({"t": "1970-01-01T00:00:00Z"}, "t") == 0
    for refused in ("1970-01-01T06:59:59+07:00", "2026-02-29T00:00:00Z", "2026-06-27T08:15:42+24:00"):
        try:
            _moment({"t": refused}, "t")
        except _Unusual:
            continue
        raise AssertionError(refused)
