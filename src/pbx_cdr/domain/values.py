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
# Times are epoch seconds below this bound (year 2242) everywhere: ingest refuses later ones.
MAX_EPOCH = 2**33
RESULTS = ("answered", "busy", "no_answer", "failed", "cancelled", "rejected", "voicemail")
