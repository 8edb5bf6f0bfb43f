"""The JSON CDR of ``POST /api/pbx/cdr``: validated field by field, missing fields derived.

Pure: a decoded JSON value in, :class:`~pbx_cdr.domain.call.Call` objects or field errors out.
Errors are keyed as Laravel keys them (``direction``, or ``data.3.direction`` in a batch).
"""

from __future__ import annotations

import re
import uuid as uuidlib
from datetime import datetime
from functools import lru_cache
from typing import Any

from pbx_cdr.domain import derive
from pbx_cdr.domain.call import Call
from pbx_cdr.domain.values import DIRECTIONS, MAX_EPOCH, RESULTS, SOURCE_TYPES
from pbx_cdr.errors import ValidationFailed

MAX_BATCH = 1000
_CAUSE = re.compile(r"^[A-Z][A-Z0-9_]{0,63}\Z")
_SIP = re.compile(r"^[1-6][0-9]{2}\Z")
# An ISO 8601 time with an explicit offset; ASCII digits only, and nothing after it (not even "\n").
ISO_WITH_OFFSET = re.compile(
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})\Z", re.ASCII
)
MAX_INT = 2**31 - 1
_CONTROL = re.compile(r"[\x00-\x1f]")  # a regex: a per-character loop was a third of the parse


class _Fields:
    """Collects one item's errors under its key prefix."""

    def __init__(self, item: dict[str, Any], prefix: str, errors: dict[str, list[str]]) -> None:
        self.item = item
        self.prefix = prefix
        self.errors = errors

    def fail(self, field: str, message: str) -> None:
        self.errors.setdefault(self.prefix + field, []).append(message)

    def label(self, field: str) -> str:
        return field.replace("_", " ")

    def string(self, field: str, *, required: bool = False, max_length: int = 64) -> str | None:
        value = self.item.get(field)
        if value is None or value == "":
            if required:
                self.fail(field, f"The {self.label(field)} field is required.")
            return None
        if not isinstance(value, str):
            self.fail(field, f"The {self.label(field)} field must be a string.")
            return None
        if len(value) > max_length:
            self.fail(
                field, f"The {self.label(field)} field must not be greater than {max_length} characters."
            )
            return None
        if _CONTROL.search(value):
            self.fail(field, f"The {self.label(field)} field must not contain control characters.")
            return None
        return value

    def choice(self, field: str, allowed: tuple[str, ...], *, required: bool = False) -> str | None:
        value = self.string(field, required=required)
        if value is not None and value not in allowed:
            self.fail(field, f"The selected {self.label(field)} is invalid.")
            return None
        return value

    def integer(self, field: str) -> int | None:
        value = self.item.get(field)
        if value is None:
            return None
        # As Laravel's integer rule: 28 and 28.0 are integers, 28.5, "28" and true are not.
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(field, f"The {self.label(field)} field must be an integer.")
            return None
        if not 0 <= value <= MAX_INT:
            self.fail(field, f"The {self.label(field)} field must be between 0 and {MAX_INT}.")
            return None
        return value

    def timestamp(self, field: str, *, required: bool = False) -> int | None:
        value = self.item.get(field)
        if value is None or value == "":
            if required:
                self.fail(field, f"The {self.label(field)} field is required.")
            return None
        if not isinstance(value, str) or not ISO_WITH_OFFSET.match(value):
            self.fail(field, f"The {self.label(field)} field must be an ISO 8601 date-time with an offset.")
            return None
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            self.fail(field, f"The {self.label(field)} field must be a valid date.")
            return None
        if not 0 <= moment.timestamp() < MAX_EPOCH:
            self.fail(field, f"The {self.label(field)} field is out of range.")
            return None
        return int(moment.timestamp())


def parse_call(item: Any, prefix: str, errors: dict[str, list[str]]) -> Call | None:
    """One CDR item, or None with its errors added under ``prefix``."""
    if not isinstance(item, dict):
        errors.setdefault(prefix.rstrip(".") or "body", []).append("Each call must be a JSON object.")
        return None
    before = sum(len(v) for v in errors.values())
    f = _Fields(item, prefix, errors)

    raw_uuid = f.string("uuid", required=True)
    call_uuid = None
    if raw_uuid is not None:
        try:
            call_uuid = str(uuidlib.UUID(raw_uuid))
        except ValueError:
            call_uuid = None
        if call_uuid is None or len(raw_uuid) != 36:
            f.fail("uuid", "The uuid field must be a valid UUID.")
    direction = f.choice("direction", DIRECTIONS, required=True)
    source_type = f.choice("source_type", SOURCE_TYPES)
    caller = f.string("caller_number", required=True)
    destination = f.string("destination_number", required=True)
    extension = f.string("extension_number", max_length=32)
    agent = f.string("agent_extension", max_length=32)
    start = f.timestamp("start_time", required=True)
    answer = f.timestamp("answer_time")
    end = f.timestamp("end_time", required=True)
    duration = f.integer("duration")
    billsec = f.integer("billsec")
    queue_name = f.string("queue_name", max_length=128)
    queue_wait = f.integer("queue_wait_time")
    trunk = f.string("trunk_name", max_length=128)
    transfers = f.integer("transfer_count")
    result = f.choice("result", RESULTS)
    cause = f.string("hangup_cause")
    if cause is not None and not _CAUSE.match(cause):
        f.fail("hangup_cause", "The hangup cause field format is invalid.")
    sip_raw = item.get("sip_response_code")
    sip: str | None = None
    if isinstance(sip_raw, int) and not isinstance(sip_raw, bool):
        sip_raw = str(sip_raw)
    if sip_raw is not None and sip_raw != "":
        if isinstance(sip_raw, str) and _SIP.match(sip_raw):
            sip = sip_raw
        else:
            f.fail("sip_response_code", "The sip response code field must be a 3-digit SIP status.")

    if start is not None and end is not None and end < start:
        f.fail("end_time", "The end time field must be a date after or equal to start time.")
    if answer is not None and start is not None and end is not None and not start <= answer <= end:
        f.fail("answer_time", "The answer time field must be between start time and end time.")

    if sum(len(v) for v in errors.values()) > before:
        return None
    assert call_uuid
    assert direction
    assert caller
    assert destination
    assert start is not None
    assert end is not None
    return _build(
        item,
        (call_uuid, direction, source_type, caller, destination, extension, agent, start, answer, end),
        (duration, billsec, queue_name, queue_wait, trunk, transfers, result, cause, sip),
    )


def _build(item: dict[str, Any], head: tuple[Any, ...], tail: tuple[Any, ...]) -> Call:
    """The call from its validated fields, with every missing field derived."""
    call_uuid, direction, source_type, caller, destination, extension, agent, start, answer, end = head
    duration, billsec, queue_name, queue_wait, trunk, transfers, result, cause, sip = tail
    answered = answer is not None
    if cause is None:
        cause = derive.derive_hangup_cause(result, sip, answered)
    if result is None:
        result = derive.derive_result(hangup_cause=cause, answered=answered, sip_response_code=sip)
    if "extension_number" not in item:
        extension = derive.derive_extension(direction, caller, destination)
    return Call(
        uuid=call_uuid,
        direction=direction,
        source_type=source_type or derive.derive_source_type(direction),
        caller_number=caller,
        destination_number=destination,
        extension_number=extension,
        agent_extension=agent,
        start_ts=start,
        answer_ts=answer,
        end_ts=end,
        duration=duration if duration is not None else end - start,
        billsec=billsec if billsec is not None else (end - answer if answer is not None else 0),
        queue_name=queue_name,
        queue_wait_time=queue_wait,
        trunk_name=trunk,
        transfer_count=transfers or 0,
        result=result,
        hangup_cause=cause,
        sip_response_code=sip,
    )


class _Unusual(Exception):
    """A field :func:`_plain_call` leaves to the full validator (absent, odd or wrong)."""


_CANONICAL_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def _text(item: dict[str, Any], name: str, max_length: int = 64, required: bool = False) -> str | None:
    value = item.get(name)
    if value is None or value == "":
        if required:
            raise _Unusual
        return None
    if type(value) is not str or len(value) > max_length or _CONTROL.search(value):
        raise _Unusual
    return value


def _one_of(item: dict[str, Any], name: str, allowed: tuple[str, ...], required: bool = False) -> str | None:
    value = _text(item, name, required=required)
    if value is not None and value not in allowed:
        raise _Unusual
    return value


def _count(item: dict[str, Any], name: str) -> int | None:
    value = item.get(name)
    if value is None:
        return None
    if type(value) is not int or not 0 <= value <= MAX_INT:
        raise _Unusual
    return value


# The usual shape of a time: whole seconds, "T", an offset with a colon or "Z".
_PLAIN_MOMENT = re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{2}):(\d{2}):(\d{2})(Z|[+-]\d{2}:\d{2})\Z", re.ASCII)


@lru_cache(maxsize=4096)
def _day_start(date: str, offset: str) -> int:
    """Epoch seconds of ``date``'s midnight at ``offset``; ValueError when either is no valid one."""
    return int(datetime.fromisoformat(f"{date}T00:00:00{offset}".replace("Z", "+00:00")).timestamp())


def _seconds(value: str) -> float:
    """Epoch seconds of a time the contract accepts; ValueError when it is none.

    The usual shape is the day's start at its offset (validated by fromisoformat, and remembered: a
    batch's times share a few days) plus the time of day: what fromisoformat gives for the whole
    string, at a third of the cost. Any other shape, and times of day out of range, take the long way.
    """
    plain = _PLAIN_MOMENT.match(value)
    if plain is not None:
        date, hours, minutes, seconds, offset = plain.groups()
        hour, minute, second = int(hours), int(minutes), int(seconds)
        if hour < 24 and minute < 60 and second < 60:
            return _day_start(date, offset) + hour * 3600 + minute * 60 + second
    elif not ISO_WITH_OFFSET.match(value):
        raise ValueError(value)
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _moment(item: dict[str, Any], name: str, required: bool = False) -> int | None:
    value = item.get(name)
    if value is None or value == "":
        if required:
            raise _Unusual
        return None
    if type(value) is not str:
        raise _Unusual
    try:
        seconds = _seconds(value)
    except ValueError:
        raise _Unusual from None
    if not 0 <= seconds < MAX_EPOCH:
        raise _Unusual
    return int(seconds)


def _plain_call(item: dict[str, Any]) -> Call | None:
    """The call of an item every field of which is well-formed, or None to take the full path.

    The same rules as :func:`parse_call`, without collecting error messages: most items are valid,
    and the full validator's bookkeeping cost twice the check itself. Anything unusual (a missing
    required field, an integral float, a UUID in upper case, any invalid value) goes to
    :func:`parse_call`, which then gives the same answer, or the errors.
    """
    try:
        call_uuid = _text(item, "uuid", required=True)
        if call_uuid is None or not _CANONICAL_UUID.match(call_uuid):
            return None
        direction = _one_of(item, "direction", DIRECTIONS, required=True)
        source_type = _one_of(item, "source_type", SOURCE_TYPES)
        caller = _text(item, "caller_number", required=True)
        destination = _text(item, "destination_number", required=True)
        extension = _text(item, "extension_number", 32)
        agent = _text(item, "agent_extension", 32)
        start = _moment(item, "start_time", required=True)
        answer = _moment(item, "answer_time")
        end = _moment(item, "end_time", required=True)
        duration = _count(item, "duration")
        billsec = _count(item, "billsec")
        queue_name = _text(item, "queue_name", 128)
        queue_wait = _count(item, "queue_wait_time")
        trunk = _text(item, "trunk_name", 128)
        transfers = _count(item, "transfer_count")
        result = _one_of(item, "result", RESULTS)
        cause = _text(item, "hangup_cause")
        sip = item.get("sip_response_code")
    except _Unusual:
        return None
    if cause is not None and not _CAUSE.match(cause):
        return None
    if type(sip) is int:
        sip = str(sip)
    if sip == "":
        sip = None
    elif sip is not None and (type(sip) is not str or not _SIP.match(sip)):
        return None
    assert start is not None
    assert end is not None
    if end < start or (answer is not None and not start <= answer <= end):
        return None
    return _build(
        item,
        (call_uuid, direction, source_type, caller, destination, extension, agent, start, answer, end),
        (duration, billsec, queue_name, queue_wait, trunk, transfers, result, cause, sip),
    )


def parse_payload(body: Any) -> tuple[list[Call], bool]:
    """One CDR or ``{"data": [...]}``: the calls and whether it was a batch, or raise 422 for all."""
    errors: dict[str, list[str]] = {}
    if isinstance(body, dict) and "data" in body:
        items = body["data"]
        if not isinstance(items, list):
            raise ValidationFailed({"data": ["The data field must be an array."]})
        if not items:
            raise ValidationFailed({"data": ["The data field must have at least 1 item."]})
        if len(items) > MAX_BATCH:
            raise ValidationFailed({"data": [f"The data field must not have more than {MAX_BATCH} items."]})
        calls = [
            (type(item) is dict and _plain_call(item)) or parse_call(item, f"data.{i}.", errors)
            for i, item in enumerate(items)
        ]
        seen: dict[str, int] = {}
        for i, call in enumerate(calls):
            if call is None:
                continue
            if call.uuid in seen:
                errors.setdefault(f"data.{i}.uuid", []).append(
                    f"The uuid field has a duplicate value (data.{seen[call.uuid]}.uuid)."
                )
            seen[call.uuid] = i
        if errors:
            raise ValidationFailed(errors)
        return [c for c in calls if c is not None], True
    call = (type(body) is dict and _plain_call(body)) or parse_call(body, "", errors)
    if errors or call is None:
        raise ValidationFailed(errors or {"body": ["The body must be a JSON object."]})
    return [call], False
