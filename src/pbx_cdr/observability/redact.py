"""What must never reach a log line or a metric: tokens, signatures, full phone numbers.

Access log lines are built from :func:`safe_target` (masked query string); every formatted log
record also goes through :func:`scrub`, a last line of defence for text we do not build ourselves
(exception messages, SQL errors with their bound parameters).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote

# Query parameters whose value is a secret or personal data, and how each is shown.
SECRET_PARAMS = frozenset({"signature", "token", "access_token", "api_key", "key"})
PHONE_PARAMS = frozenset({"phone", "caller_number", "destination_number", "number"})
KEEP_PHONE_DIGITS = 3

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 [redacted]"),
    (re.compile(r"pbx_[A-Za-z0-9_-]{20,}"), "pbx_[redacted]"),
    (re.compile(r"(?i)(signature=)[^&\s\"']+"), r"\1[redacted]"),
    (re.compile(r"(?i)(phone=)(?!\*)[^&\s\"']+"), r"\1[redacted]"),
    # SQLAlchemy appends the statement's bound values to its errors: numbers, names, tokens' hashes.
    (re.compile(r"\[parameters: .*?\](?=\s*(\n|\(Background|$))", re.DOTALL), "[parameters: redacted]"),
    # Anything else that looks like a full phone number: 8 to 15 digits standing alone (epoch
    # seconds after ``expires=`` are left alone; dates and ids have separators or letters).
    (re.compile(r"(?<![\w.:/-])(?<!expires=)\+?\d{8,15}(?![\w.:/-])"), "[number]"),
)


def mask_phone(value: str) -> str:
    """Keep only the last few digits: enough to tell two log lines apart, not to call anyone."""
    digits = re.sub(r"\D", "", value)
    if len(digits) <= KEEP_PHONE_DIGITS:
        return "*" * len(digits)
    return "*" * (len(digits) - KEEP_PHONE_DIGITS) + digits[-KEEP_PHONE_DIGITS:]


def safe_query(query: str) -> str:
    """The query string with secrets replaced and phone numbers masked."""
    if not query:
        return ""
    parts = []
    for name, value in parse_qsl(query, keep_blank_values=True):
        key = name.lower()
        if key in SECRET_PARAMS:
            value = "[redacted]"
        elif key in PHONE_PARAMS:
            value = mask_phone(value)
        parts.append(f"{quote(name, safe='')}={quote(value, safe='[]*')}")
    return "&".join(parts)


def safe_target(path: str, query: str) -> str:
    """``path?query`` as an access log may show it."""
    masked = safe_query(query)
    return f"{path}?{masked}" if masked else path


def scrub(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
