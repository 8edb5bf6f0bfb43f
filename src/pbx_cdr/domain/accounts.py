"""Account settings: defaults and the checks shared by the CLI and any future admin API."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

DEFAULT_MAX_WINDOW_DAYS = 30
DEFAULT_RECORDING_URL_TTL = 1800
MAX_RECORDING_URL_TTL = 7 * 24 * 3600
DEFAULT_RATE_LIMIT = 600
MAX_WINDOW_DAYS = 3660


class InvalidAccountSetting(ValueError):
    pass


def check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidAccountSetting(
            f"unknown timezone {value!r} (use an IANA name such as Asia/Ho_Chi_Minh)"
        ) from exc
    return value


def check_country(value: str) -> str:
    code = value.upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise InvalidAccountSetting(f"unknown country {value!r} (use an ISO 3166 code such as VN)")
    return code


def check_range(name: str, value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise InvalidAccountSetting(f"{name} must be between {low} and {high}, not {value}")
    return value


def check_settings(
    *,
    timezone: str | None = None,
    country: str | None = None,
    max_window_days: int | None = None,
    recording_url_ttl: int | None = None,
    rate_limit_per_minute: int | None = None,
) -> dict[str, object]:
    """The given settings, checked and normalized; absent ones left out."""
    out: dict[str, object] = {}
    if timezone is not None:
        out["timezone"] = check_timezone(timezone)
    if country is not None:
        out["country"] = check_country(country)
    if max_window_days is not None:
        out["max_window_days"] = check_range("--max-window-days", max_window_days, 1, MAX_WINDOW_DAYS)
    if recording_url_ttl is not None:
        out["recording_url_ttl"] = check_range(
            "--recording-url-ttl", recording_url_ttl, 1, MAX_RECORDING_URL_TTL
        )
    if rate_limit_per_minute is not None:
        out["rate_limit_per_minute"] = check_range("--rate-limit", rate_limit_per_minute, 0, 1_000_000)
    return out
