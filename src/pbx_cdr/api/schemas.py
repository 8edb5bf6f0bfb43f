"""Pydantic models that describe the API's bodies in ``/openapi.json``.

Responses are serialized with orjson straight from rows (see ``api/responses.py``); these models are
the contract's documentation and the schema tests check real responses against them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Direction = Literal["inbound", "outbound", "internal", "local"]
SourceType = Literal[
    "inbound", "outbound_manual", "outbound_telesales", "outbound_callback", "outbound_webphone", "internal"
]
Result = Literal["answered", "busy", "no_answer", "failed", "cancelled", "rejected", "voicemail"]


class CallItem(BaseModel):
    """One call: exactly the fields of the seed's table and example (its text says 22; both list 21)."""

    model_config = ConfigDict(extra="forbid")

    uuid: str = Field(
        description="Call UUID (the A-leg's uuid)", examples=["65569ce0-0183-4f61-a3b2-0e433cfa4031"]
    )
    direction: Direction
    source_type: SourceType
    caller_number: str
    destination_number: str
    extension_number: str | None
    agent_extension: str | None
    start_time: str = Field(description="ISO 8601, UTC", examples=["2026-06-27T08:15:42+00:00"])
    answer_time: str | None
    end_time: str
    duration: int = Field(ge=0)
    billsec: int = Field(ge=0)
    queue_name: str | None
    queue_wait_time: int | None
    trunk_name: str | None
    transfer_count: int = Field(ge=0)
    result: Result
    hangup_cause: str
    sip_response_code: str | None
    recording_available: bool
    created_at: str = Field(description="YYYY-MM-DD HH:MM:SS, UTC", examples=["2026-06-27 08:15:56"])


class CallPage(BaseModel):
    """Laravel's length-aware paginator, as the seed shows it."""

    current_page: int
    data: list[CallItem]
    last_page: int
    per_page: int
    total: int
    from_: int | None = Field(default=None, alias="from")
    to: int | None = None


class RecordingInfo(BaseModel):
    duration: int
    file_size: int
    recorded_at: str
    url: str = Field(description="HMAC-signed link to the .wav, valid for expires_in_seconds")
    expires_in_seconds: int


class CallDetailItem(CallItem):
    recording: RecordingInfo | None


class CallDetail(BaseModel):
    data: CallDetailItem


class CallIn(BaseModel):
    """A CDR to ingest: a call's fields less ``created_at`` and ``recording_available``."""

    uuid: str
    direction: Direction
    source_type: SourceType | None = None
    caller_number: str = Field(max_length=64)
    destination_number: str = Field(max_length=64)
    extension_number: str | None = Field(default=None, max_length=32)
    agent_extension: str | None = Field(default=None, max_length=32)
    start_time: str = Field(description="ISO 8601 with an offset")
    answer_time: str | None = None
    end_time: str
    duration: int | None = Field(default=None, ge=0)
    billsec: int | None = Field(default=None, ge=0)
    queue_name: str | None = None
    queue_wait_time: int | None = Field(default=None, ge=0)
    trunk_name: str | None = None
    transfer_count: int | None = Field(default=None, ge=0)
    result: Result | None = None
    hangup_cause: str | None = None
    sip_response_code: str | None = None


class CallBatchIn(BaseModel):
    data: list[CallIn] = Field(min_length=1, max_length=1000)


class IngestItemStatus(BaseModel):
    uuid: str
    status: Literal["created", "updated", "unchanged"]


class IngestResult(BaseModel):
    data: list[IngestItemStatus]
    created: int
    updated: int
    unchanged: int


class ErrorBody(BaseModel):
    message: str


class ValidationErrorBody(BaseModel):
    message: str
    errors: dict[str, list[str]]


class Health(BaseModel):
    status: str
