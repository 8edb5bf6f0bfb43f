"""The list route's parameters: validation with the contract's 422s, the time window, paginator math.

Pure functions of the raw query string, the account's settings and 'now'.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from pbx_cdr.domain import phone
from pbx_cdr.domain.values import DIRECTIONS
from pbx_cdr.errors import ValidationFailed

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}\Z", re.ASCII)
_INTEGER = re.compile(r"^[+-]?\d+\Z", re.ASCII)
MAX_PER_PAGE = 200
DEFAULT_PER_PAGE = 50
MAX_PAGE = 10_000_000


@dataclass(frozen=True)
class AccountView:
    """What the list needs to know of the account that asks."""

    timezone: str
    country: str
    max_window_days: int


@dataclass(frozen=True)
class ListQuery:
    start_ts: int  # inclusive, epoch seconds UTC
    end_ts: int  # exclusive
    direction: str | None
    extension: str | None
    phone_suffix: str | None
    page: int
    per_page: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page


def _label(field: str) -> str:
    return field.replace("_", " ")


def _parse_date(field: str, value: str, errors: dict[str, list[str]]) -> date | None:
    if not _DATE.match(value):
        errors[field] = [f"The {_label(field)} field must match the format Y-m-d."]
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        errors[field] = [f"The {_label(field)} field must be a valid date."]
        return None


def _parse_int(
    field: str, value: str, low: int, high: int, errors: dict[str, list[str]], *, between: bool
) -> int | None:
    """An integer parameter, its bounds worded as Laravel's `between` rule or as `min`/`max`."""
    if not _INTEGER.match(value) or len(value) > 20:
        errors[field] = [f"The {_label(field)} field must be an integer."]
        return None
    number = int(value)
    if low <= number <= high:
        return number
    if between:
        errors[field] = [f"The {_label(field)} field must be between {low} and {high}."]
    elif number < low:
        errors[field] = [f"The {_label(field)} field must be at least {low}."]
    else:
        errors[field] = [f"The {_label(field)} field must not be greater than {high}."]
    return None


def local_day_start(day: date, tz: ZoneInfo) -> int:
    """Epoch seconds of the first instant of ``day`` in ``tz`` (DST-safe)."""
    return int(datetime.combine(day, time(0), tzinfo=tz).timestamp())


def local_day_end(day: date, tz: ZoneInfo) -> int:
    """Epoch seconds of the first instant after ``day`` in ``tz`` (DST-safe), 9999-12-31 included."""
    if day == date.max:  # no next day to start
        return int(datetime.combine(day, time(23, 59, 59), tzinfo=tz).timestamp()) + 1
    return local_day_start(day + timedelta(days=1), tz)


def parse_list_query(params: Mapping[str, str], account: AccountView, now: float) -> ListQuery:
    """Validate the raw parameters (empty ones already dropped) and derive the query, or raise 422."""
    errors: dict[str, list[str]] = {}
    tz = ZoneInfo(account.timezone)
    today = datetime.fromtimestamp(now, tz).date()

    from_day = _parse_date("from", params["from"], errors) if "from" in params else None
    to_day = _parse_date("to", params["to"], errors) if "to" in params else None

    direction = params.get("direction")
    if direction is not None and direction not in DIRECTIONS:
        errors["direction"] = ["The selected direction is invalid."]

    extension = params.get("extension")
    if extension is not None:
        if len(extension) < 3:
            errors["extension"] = ["The extension field must be at least 3 characters."]
        elif len(extension) > 20:
            errors["extension"] = ["The extension field must not be greater than 20 characters."]

    raw_phone = params.get("phone")
    suffix: str | None = None
    if raw_phone is not None:
        if len(raw_phone) > 50:
            errors["phone"] = ["The phone field must not be greater than 50 characters."]
        elif not phone.is_valid_phone_query(raw_phone):
            errors["phone"] = ["The phone field format is invalid."]
        else:
            suffix = phone.query_suffix(raw_phone, account.country)

    page = _parse_int("page", params["page"], 1, MAX_PAGE, errors, between=False) if "page" in params else 1
    per_page = (
        _parse_int("per_page", params["per_page"], 1, MAX_PER_PAGE, errors, between=True)
        if "per_page" in params
        else DEFAULT_PER_PAGE
    )

    if "from" not in errors and "to" not in errors:
        # The seed's defaults: from = today - 30 days, to = today (the account's today). An account
        # whose cap is under 30 days gets its cap as the default, so a bare request never fails.
        start = from_day or today - timedelta(days=min(30, account.max_window_days))
        end = to_day or today
        if end < start:
            errors["to"] = ["The to field must be a date after or equal to from."]
        elif (end - start).days > account.max_window_days:
            errors["to"] = [
                f"The date range must not exceed {account.max_window_days} days "
                f"(from {start.isoformat()} to {end.isoformat()} is {(end - start).days} days)."
            ]
    if errors:
        raise ValidationFailed(errors)

    assert page is not None
    assert per_page is not None
    return ListQuery(
        start_ts=local_day_start(start, tz),
        end_ts=local_day_end(end, tz),
        direction=direction,
        extension=extension,
        phone_suffix=suffix,
        page=page,
        per_page=per_page,
    )


def last_page(total: int, per_page: int) -> int:
    """Laravel's ``last_page``: at least 1."""
    return max(1, math.ceil(total / per_page))
