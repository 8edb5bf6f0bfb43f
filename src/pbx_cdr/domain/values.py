"""The closed vocabularies of the published API."""

from __future__ import annotations

DIRECTIONS = ("inbound", "outbound", "internal", "local")
SOURCE_TYPES = (
    "inbound",
    "outbound_manual",
    "outbound_telesales",
    "outbound_callback",
    "outbound_webphone",
    "internal",
)
RESULTS = ("answered", "busy", "no_answer", "failed", "cancelled", "rejected", "voicemail")
