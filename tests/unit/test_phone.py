from __future__ import annotations

import pytest

from pbx_cdr.domain.phone import (
    is_valid_phone_query,
    key_prefix_range,
    national_number,
    query_suffix,
    search_key,
)


@pytest.mark.parametrize(
    ("raw", "country", "nsn"),
    [
        ("0987654321", "VN", "987654321"),
        ("+84987654321", "VN", "987654321"),
        ("84987654321", "VN", "987654321"),
        ("0084987654321", "VN", "987654321"),
        ("+84 98 765 4321", "VN", "987654321"),
        ("02873001234", "VN", "2873001234"),
        ("19006868", "VN", "19006868"),
        ("1001", "VN", "1001"),
        ("*97", "VN", "97"),
        ("anonymous", "VN", ""),
        ("", "VN", ""),
        ("+1 (415) 555-2671", "VN", "4155552671"),
        ("(415) 555-2671", "US", "4155552671"),
        ("+44 20 7946 0958", "GB", "2079460958"),
        ("020 7946 0958", "GB", "2079460958"),
    ],
)
def test_national_number(raw: str, country: str, nsn: str) -> None:
    assert national_number(raw, country) == nsn


def test_search_key_is_the_reversed_national_number() -> None:
    assert search_key("0987654321", "VN") == "123456789"
    assert search_key(None, "VN") == ""
    assert len(search_key("+84" + "9" * 40, "VN")) <= 32


@pytest.mark.parametrize(
    ("query", "suffix"),
    [
        ("0987654321", "987654321"),
        ("+84987654321", "987654321"),
        ("84987654321", "987654321"),
        ("098-765-4321", "987654321"),
        ("(098) 765.4321", "987654321"),
        ("4321", "4321"),
        ("1001", "1001"),
        ("0987", "0987"),
    ],
)
def test_query_suffix(query: str, suffix: str) -> None:
    assert query_suffix(query, "VN") == suffix


def test_the_three_spellings_of_one_number_share_a_suffix_of_every_stored_form() -> None:
    stored = [search_key(n, "VN") for n in ("0987654321", "+84987654321", "84987654321")]
    for query in ("0987654321", "+84987654321", "84987654321", "4321", "54321"):
        low, high = key_prefix_range(query_suffix(query, "VN"))
        assert all(low <= key < high for key in stored), query


def test_prefix_range_excludes_other_numbers() -> None:
    low, high = key_prefix_range("4321")
    assert not low <= search_key("0987654320", "VN") < high
    assert not low <= search_key("0987654331", "VN") < high
    assert low <= search_key("0900004321", "VN") < high


@pytest.mark.parametrize("value", ["0987654321", "+84987654321", "098 765 4321", "(098)765-4321", "1"])
def test_valid_phone_queries(value: str) -> None:
    assert is_valid_phone_query(value)


@pytest.mark.parametrize(
    "value", ["abc", "+", "09+87", "0987654321x", "\uff11\uff12\uff13", "++84", "%", "*97"]
)
def test_invalid_phone_queries(value: str) -> None:
    assert not is_valid_phone_query(value)
