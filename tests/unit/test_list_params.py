"""The list route's parameters: defaults, every 422 of the contract, window edges in the account's days."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pbx_cdr.domain.listing import AccountView, last_page, local_day_start, parse_list_query
from pbx_cdr.errors import ValidationFailed

NOW = datetime(2026, 6, 27, 12, 0, tzinfo=UTC).timestamp()
UTC_ACCOUNT = AccountView("UTC", "VN", 30)


def ts(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


def errors_of(params: dict[str, str], account: AccountView = UTC_ACCOUNT) -> dict[str, list[str]]:
    with pytest.raises(ValidationFailed) as info:
        parse_list_query(params, account, NOW)
    return info.value.errors


def test_defaults_are_the_last_30_days_through_today() -> None:
    q = parse_list_query({}, UTC_ACCOUNT, NOW)
    assert q.start_ts == ts("2026-05-28T00:00:00+00:00")
    assert q.end_ts == ts("2026-06-28T00:00:00+00:00")
    assert (q.page, q.per_page, q.offset) == (1, 50, 0)
    assert q.direction is q.extension is q.phone_suffix is None


def test_window_is_whole_days_in_the_account_timezone() -> None:
    account = AccountView("Asia/Ho_Chi_Minh", "VN", 30)
    q = parse_list_query({"from": "2026-06-01", "to": "2026-06-02"}, account, NOW)
    assert q.start_ts == ts("2026-06-01T00:00:00+07:00")
    assert q.end_ts == ts("2026-06-03T00:00:00+07:00")


def test_today_is_the_account_today() -> None:
    # 2026-06-27 23:30 UTC is already the 28th in Ho Chi Minh City.
    late = datetime(2026, 6, 27, 23, 30, tzinfo=UTC).timestamp()
    q = parse_list_query({}, AccountView("Asia/Ho_Chi_Minh", "VN", 30), late)
    assert q.end_ts == ts("2026-06-29T00:00:00+07:00")


def test_dst_days_are_23_and_25_hours_long() -> None:
    account = AccountView("Europe/Berlin", "DE", 30)
    spring = parse_list_query({"from": "2026-03-29", "to": "2026-03-29"}, account, NOW)
    autumn = parse_list_query({"from": "2026-10-25", "to": "2026-10-25"}, account, NOW)
    assert spring.end_ts - spring.start_ts == 23 * 3600
    assert autumn.end_ts - autumn.start_ts == 25 * 3600


def test_half_hour_offsets() -> None:
    q = parse_list_query(
        {"from": "2026-06-01", "to": "2026-06-01"}, AccountView("Asia/Kolkata", "IN", 30), NOW
    )
    assert q.start_ts == ts("2026-05-31T18:30:00+00:00")


def test_local_day_start_on_a_midnight_dst_jump() -> None:
    from datetime import date
    from zoneinfo import ZoneInfo

    # In America/Havana the clocks jump from 00:00 to 01:00; the day still has one start.
    start = local_day_start(date(2026, 3, 8), ZoneInfo("America/Havana"))
    assert start == ts("2026-03-08T05:00:00+00:00")


def test_the_window_cap_is_inclusive_of_30_days() -> None:
    parse_list_query({"from": "2026-05-01", "to": "2026-05-31"}, UTC_ACCOUNT, NOW)
    errors = errors_of({"from": "2026-05-01", "to": "2026-06-01"})
    assert "30 days" in errors["to"][0]


def test_the_cap_is_per_account() -> None:
    wide = AccountView("UTC", "VN", 90)
    parse_list_query({"from": "2026-03-01", "to": "2026-05-29"}, wide, NOW)
    narrow = AccountView("UTC", "VN", 7)
    assert "7 days" in errors_of({"from": "2026-06-01", "to": "2026-06-09"}, narrow)["to"][0]
    # A bare request still works on an account whose cap is under 30 days.
    q = parse_list_query({}, narrow, NOW)
    assert q.end_ts - q.start_ts == 8 * 86400


def test_to_before_from() -> None:
    assert errors_of({"from": "2026-06-10", "to": "2026-06-09"})["to"] == [
        "The to field must be a date after or equal to from."
    ]


def test_from_after_today_without_to_is_to_before_from() -> None:
    assert "to" in errors_of({"from": "2026-07-01"})


@pytest.mark.parametrize(
    "value",
    [
        "2026-6-1",
        "20260601",
        "2026-06-01T00:00",
        "yesterday",
        "2026/06/01",
        " 2026-06-01",
        "2026-06-01\n",  # `$` would let a final newline through
        "\uff12\uff10\uff12\uff16-06-01",  # fullwidth digits are digits to Python's \d, not to Y-m-d
    ],
)
def test_dates_must_be_y_m_d(value: str) -> None:
    assert errors_of({"from": value})["from"] == ["The from field must match the format Y-m-d."]


@pytest.mark.parametrize("value", ["2026-02-30", "2026-13-01", "2026-00-10"])
def test_dates_must_be_real(value: str) -> None:
    assert errors_of({"to": value})["to"] == ["The to field must be a valid date."]


@pytest.mark.parametrize("tz", ["UTC", "Asia/Ho_Chi_Minh", "America/St_Johns"])
def test_the_last_and_first_days_of_the_calendar(tz: str) -> None:
    account = AccountView(tz, "VN", 30)
    last = parse_list_query({"from": "9999-12-30", "to": "9999-12-31"}, account, NOW)
    assert last.end_ts - last.start_ts == 2 * 86400
    first = parse_list_query({"from": "0001-01-01", "to": "0001-01-02"}, account, NOW)
    assert first.end_ts - first.start_ts == 2 * 86400


@pytest.mark.parametrize("field", ["page", "per_page"])
def test_paging_numbers_are_plain_ascii(field: str) -> None:
    for value in ("2\n", "\uff12"):  # a final newline; a fullwidth 2
        assert field in errors_of({field: value})


def test_direction_must_be_known() -> None:
    assert errors_of({"direction": "sideways"})["direction"] == ["The selected direction is invalid."]
    for direction in ("inbound", "outbound", "internal", "local"):
        assert parse_list_query({"direction": direction}, UTC_ACCOUNT, NOW).direction == direction


def test_extension_length() -> None:
    assert "at least 3" in errors_of({"extension": "10"})["extension"][0]
    assert "greater than 20" in errors_of({"extension": "1" * 21})["extension"][0]
    assert parse_list_query({"extension": "1" * 20}, UTC_ACCOUNT, NOW).extension == "1" * 20


def test_phone_rules() -> None:
    assert "50" in errors_of({"phone": "1" * 51})["phone"][0]
    assert errors_of({"phone": "09x7"})["phone"] == ["The phone field format is invalid."]
    assert parse_list_query({"phone": "+84 987-654-321"}, UTC_ACCOUNT, NOW).phone_suffix == "987654321"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("page", "0", "The page field must be at least 1."),
        ("page", "-1", "The page field must be at least 1."),
        ("page", "10000001", "The page field must not be greater than 10000000."),
        ("page", "abc", "The page field must be an integer."),
        ("page", "1.5", "The page field must be an integer."),
        ("page", "9" * 30, "The page field must be an integer."),
        ("per_page", "0", "The per page field must be between 1 and 200."),
        ("per_page", "201", "The per page field must be between 1 and 200."),
        ("per_page", "-5", "The per page field must be between 1 and 200."),
    ],
)
def test_paging_422s(field: str, value: str, message: str) -> None:
    assert errors_of({field: value})[field] == [message]


def test_paging_offsets() -> None:
    q = parse_list_query({"page": "3", "per_page": "200"}, UTC_ACCOUNT, NOW)
    assert (q.page, q.per_page, q.offset) == (3, 200, 400)


def test_all_errors_at_once_and_laravel_message() -> None:
    with pytest.raises(ValidationFailed) as info:
        parse_list_query({"direction": "x", "page": "0", "per_page": "0"}, UTC_ACCOUNT, NOW)
    assert set(info.value.errors) == {"direction", "page", "per_page"}
    assert info.value.message == "The selected direction is invalid. (and 2 more errors)"


@pytest.mark.parametrize(
    ("total", "per_page", "expected"), [(0, 50, 1), (1, 50, 1), (50, 50, 1), (51, 50, 2), (87, 20, 5)]
)
def test_last_page(total: int, per_page: int, expected: int) -> None:
    assert last_page(total, per_page) == expected
