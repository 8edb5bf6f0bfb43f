"""Phone numbers as the list filter sees them: national significant numbers matched by suffix.

A stored number gets a *search key*: the digits of its national significant number (NSN) in the
account's country, reversed. A suffix search then becomes a prefix range on the key, which an
ordinary B-tree index serves (``key >= '1234' AND key < '1235'``) instead of ``LIKE '%4321'``.
"""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers

_FORMATTING = re.compile(r"[\s\-.()]")
_QUERY = re.compile(r"^\+?[0-9]+\Z")
MAX_KEY_LENGTH = 32


def _digits(value: str) -> str:
    return "".join(ch for ch in value if "0" <= ch <= "9")


@lru_cache(maxsize=65536)
def national_number(raw: str, country: str) -> str:
    """The NSN digits of ``raw`` read in ``country``; plain digits when it is no phone number.

    ``0987654321``, ``+84987654321`` and ``84987654321`` (in VN) all give ``987654321``; an extension
    such as ``1001`` stays ``1001``; ``anonymous`` gives ``""``.
    """
    digits = _digits(raw)
    if not digits:
        return ""
    candidate = "+" + digits if raw.lstrip().startswith("+") else digits
    try:
        parsed = phonenumbers.parse(candidate, country)
    except phonenumbers.NumberParseException:
        return digits
    if candidate.startswith("+") or phonenumbers.is_possible_number(parsed):
        nsn: str = phonenumbers.national_significant_number(parsed)
        if nsn:
            return nsn
    return digits


def search_key(raw: str | None, country: str) -> str:
    """The reversed NSN stored beside a number, so a suffix search is an index prefix range."""
    if not raw:
        return ""
    return national_number(raw, country)[::-1][:MAX_KEY_LENGTH]


def is_valid_phone_query(value: str) -> bool:
    """The contract's ``phone`` filter: digits with an optional leading ``+``, formatting ignored."""
    return bool(_QUERY.match(_FORMATTING.sub("", value)))


def query_suffix(value: str, country: str) -> str:
    """The NSN suffix a ``phone`` filter asks for (``+84987654321`` → ``987654321``; ``4321`` stays)."""
    cleaned = _FORMATTING.sub("", value)
    digits = _digits(cleaned)
    if cleaned.startswith("+"):
        return national_number(cleaned, country) or digits
    try:
        parsed = phonenumbers.parse(digits, country)
    except phonenumbers.NumberParseException:
        return digits
    if phonenumbers.is_valid_number(parsed):
        return phonenumbers.national_significant_number(parsed) or digits
    # Not a whole number: strip the national trunk prefix ("0...") only when something remains.
    stripped = digits.lstrip("0")
    if digits.startswith("0") and len(stripped) >= 4:
        return stripped
    return digits


def key_prefix_range(suffix: str) -> tuple[str, str]:
    """``[low, high)`` of the search keys whose numbers end in ``suffix``."""
    low = suffix[::-1][:MAX_KEY_LENGTH]
    # Keys hold only ASCII digits, so ':' (the next code point after '9') closes the range.
    return low, low + ":"
