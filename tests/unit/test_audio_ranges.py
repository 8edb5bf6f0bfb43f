"""Byte ranges of the audio download (pbx_cdr.api.ranges.plan_range), per RFC 9110."""

from __future__ import annotations

import pytest

from pbx_cdr.api.ranges import ByteRange, Unsatisfiable, plan_range

ETAG = '"abc"'
SIZE = 1000


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", ByteRange(0, 100)),
        ("bytes=100-", ByteRange(100, 1000)),
        ("bytes=-100", ByteRange(900, 1000)),
        ("bytes=-5000", ByteRange(0, 1000)),
        ("bytes=990-5000", ByteRange(990, 1000)),
        ("bytes=999-999", ByteRange(999, 1000)),
        ("BYTES = 1-2", ByteRange(1, 3)),
        ("bytes=0-" + "9" * 40, ByteRange(0, 1000)),
        ("bytes=-" + "9" * 40, ByteRange(0, 1000)),
    ],
)
def test_satisfiable_ranges(header: str, expected: ByteRange) -> None:
    assert plan_range(header, None, SIZE, ETAG) == expected


@pytest.mark.parametrize(
    "header",
    [
        None,
        "bytes=5-1",
        "bytes=-",
        "bytes=",
        "items=0-1",
        "bytes=a-b",
        "0-99",
        "bytes=0-1,5-6",
        "bytes=1-2-3",
    ],
)
def test_ignored_ranges_send_the_whole_file(header: str | None) -> None:
    assert plan_range(header, None, SIZE, ETAG) is None


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0", "bytes=" + "9" * 40 + "-"])
def test_unsatisfiable(header: str) -> None:
    with pytest.raises(Unsatisfiable):
        plan_range(header, None, SIZE, ETAG)


def test_if_range_must_name_the_current_etag() -> None:
    assert plan_range("bytes=0-9", ETAG, SIZE, ETAG) == ByteRange(0, 10)
    assert plan_range("bytes=0-9", '"old"', SIZE, ETAG) is None
    assert plan_range("bytes=0-9", "W/" + ETAG, SIZE, ETAG) is None
    assert plan_range("bytes=0-9", "Sat, 27 Jun 2026 08:00:00 GMT", SIZE, ETAG) is None


def test_content_range() -> None:
    assert ByteRange(0, 100).content_range(SIZE) == "bytes 0-99/1000"
    assert ByteRange(0, 100).length == 100
