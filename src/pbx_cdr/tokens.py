"""API token strings: made with a CSPRNG, shown once, kept only as a SHA-256 hash.

A token has 256 bits of entropy, so a fast hash is safe to store and to look up by.
"""

from __future__ import annotations

import hashlib
import re
import secrets

PREFIX = "pbx_"
SCOPES = ("cdr:read", "cdr:write")
_SHAPE = re.compile(r"^pbx_[A-Za-z0-9_-]{43}\Z")


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def looks_like_token(value: str) -> bool:
    """A cheap shape check before any database work."""
    return bool(_SHAPE.match(value))
