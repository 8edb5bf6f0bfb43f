"""The sliding-window arithmetic, on its own: Retry-After is the exact wait, never a guess."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pbx_cdr.api.ratelimit import WINDOW, RateDecision, carried, retry_after, room


def fits_after(limit: int, previous: int, current: int, elapsed: float, wait: float) -> bool:
    """Would one more request fit ``wait`` seconds from now (nothing else arriving meanwhile)?"""
    at = elapsed + wait
    if at < WINDOW:
        return room(limit, previous, at) > current
    if at < 2 * WINDOW:
        return room(limit, current, at - WINDOW) > 0
    return limit > 0


@given(
    limit=st.integers(1, 1000),
    previous=st.integers(0, 1000),
    current=st.integers(0, 1000),
    elapsed=st.floats(0, WINDOW, exclude_max=True),
)
def test_retry_after_is_the_first_whole_second_that_fits(
    limit: int, previous: int, current: int, elapsed: float
) -> None:
    current = min(current, limit)  # refused hits are never counted, so a window never holds more
    if current < room(limit, previous, elapsed):
        return  # this request would be let through
    wait = retry_after(limit, previous, current, elapsed)
    assert wait >= 1
    assert fits_after(limit, previous, current, elapsed, wait)
    if wait > 1:
        assert not fits_after(limit, previous, current, elapsed, wait - 1)


def test_carried_weights_the_previous_window() -> None:
    assert carried(60, 0) == 60
    assert carried(60, 30) == 30
    assert carried(60, 59.5) == 1
    assert carried(7, 30) == 4  # rounded up: never lets more through than the limit allows
    assert carried(0, 10) == 0


def test_headers() -> None:
    assert RateDecision(True, 600, 599).headers() == {
        "X-RateLimit-Limit": "600",
        "X-RateLimit-Remaining": "599",
    }
    assert RateDecision(False, 5, 0, 12).headers()["Retry-After"] == "12"
    assert RateDecision(True, 0, 0).headers() == {}
