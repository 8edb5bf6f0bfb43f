"""Signed, expiring recording links: lowercase hex HMAC-SHA256 of the absolute URL.

The signed text is the link itself without ``&signature=...``, built from the configured public base
URL (``PBX_CDR_PUBLIC_URL``), never from a request's ``Host`` or ``X-Forwarded-*`` headers::

    https://app.example.com/api/public/recordings/401/audio?expires=1782706011

Verification is strict: the query must be exactly ``expires`` (digits) and ``signature`` (64
lowercase hex digits), each once; anything else fails. Every failure is the same
:class:`~pbx_cdr.errors.InvalidSignature` (403), so a caller learns nothing about why.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence

from pbx_cdr.errors import InvalidSignature

MAX_TTL = 7 * 24 * 3600
_EXPIRES = re.compile(r"^[0-9]{1,12}\Z")
_SIGNATURE = re.compile(r"^[0-9a-f]{64}\Z")
_RECORDING_ID = re.compile(r"^[1-9][0-9]{0,17}\Z")


def recording_path(recording_id: int) -> str:
    return f"/api/public/recordings/{int(recording_id)}/audio"


def link_ttl(account_ttl: int) -> int:
    """The account's link lifetime, never more than seven days nor less than one second."""
    return max(1, min(int(account_ttl), MAX_TTL))


def _digest(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode("ascii"), hashlib.sha256).hexdigest()


def unsigned_url(base_url: str, path: str, expires: int | str) -> str:
    return f"{base_url.rstrip('/')}{path}?expires={expires}"


def sign_url(base_url: str, path: str, expires: int, key: bytes) -> str:
    """The link for ``path`` (absolute, under ``base_url``), valid until ``expires`` (epoch seconds)."""
    message = unsigned_url(base_url, path, int(expires))
    return f"{message}&signature={_digest(key, message)}"


def sign_recording_url(base_url: str, recording_id: int, now: float, ttl: int, key: bytes) -> tuple[str, int]:
    """A link to a recording's audio and its lifetime in seconds (capped at :data:`MAX_TTL`)."""
    lifetime = link_ttl(ttl)
    return sign_url(base_url, recording_path(recording_id), int(now) + lifetime, key), lifetime


def parse_signed_query(raw_query: bytes) -> tuple[str, str]:
    """``(expires, signature)`` from the raw query string, or InvalidSignature for any other shape."""
    try:
        text = raw_query.decode("ascii")
    except UnicodeDecodeError:
        raise InvalidSignature() from None
    values: dict[str, str] = {}
    for part in text.split("&"):
        name, sep, value = part.partition("=")
        if not sep or name not in ("expires", "signature") or name in values:
            raise InvalidSignature()
        values[name] = value
    expires, signature = values.get("expires", ""), values.get("signature", "")
    if not _EXPIRES.match(expires) or not _SIGNATURE.match(signature):
        raise InvalidSignature()
    return expires, signature


def verify_recording_request(
    base_url: str, raw_id: str, raw_query: bytes, keys: Sequence[bytes], now: float
) -> int:
    """The recording id a request for ``/api/public/recordings/{raw_id}/audio`` may read.

    Checks the shape of the id and the query, the signature under each key (current and retired)
    in constant time, and the expiry; raises InvalidSignature on any failure.
    """
    if not _RECORDING_ID.match(raw_id):
        raise InvalidSignature()
    expires, signature = parse_signed_query(raw_query)
    message = unsigned_url(base_url, recording_path(int(raw_id)), expires)
    matched = False
    for key in keys:  # every key is tried, so timing does not tell which one matched
        matched |= hmac.compare_digest(_digest(key, message), signature)
    deadline = int(expires)
    if not matched or deadline < now or deadline > now + MAX_TTL + 60:
        raise InvalidSignature()
    return int(raw_id)
