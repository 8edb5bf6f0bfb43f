"""One leg of mod_json_cdr as plain values: variables decoded once, times read, its parent found.

A leg's *parent* is the leg it folds into: ``originating_leg_uuid`` on a B-leg,
``cc_member_session_uuid`` on a mod_callcenter agent leg (``cc_side=agent``), the other half of a
loopback pair, or the originator named in the caller profile. A leg with no parent is an A-leg:
the call. A B-leg originated from another B-leg (an attended transfer) has that B-leg as parent,
so the call is found by walking up to the leg that has none.
"""

from __future__ import annotations

import re
import uuid as uuidlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from pbx_cdr.domain.values import MAX_EPOCH
from pbx_cdr.ingest.freeswitch.body import decode_body, load_leg_json

A_LEG, B_LEG, AGENT, TRANSFER = "a_leg", "b_leg", "agent", "transfer"
MAX_LEG_UUID = 64
# What switch_url_encode escapes (SWITCH_URL_UNSAFE), and everything outside printable ASCII. A value
# holding one of these was not encoded; start_stamp ("2026-06-27 08:15:42") always holds two.
_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\U0010ffff #&+:;<=>?@\[\\\]^`{|}"]')


class InvalidLeg(ValueError):
    """JSON, but not a leg this service can keep (answered 422, naming the field)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True)
class Leg:
    """A leg's facts. ``variables`` are decoded; the caller profile is the original one."""

    uuid: str
    parent_uuid: str | None
    kind: str  # a_leg, b_leg or agent: what the leg says of itself (transfer is found when folding)
    variables: Mapping[str, str]
    channel_direction: str  # inbound/outbound relative to the switch, not the call's direction
    caller_number: str
    destination_number: str
    profile_username: str
    context: str
    start_ts: int
    answer_ts: int | None
    end_ts: int
    applications: tuple[tuple[str, str], ...]

    def var(self, name: str) -> str:
        """A variable, or "" (mod_json_cdr leaves empty variables out)."""
        return self.variables.get(name, "")

    def int_var(self, name: str) -> int | None:
        value = self.variables.get(name, "").strip()
        try:
            return int(value) if value else None
        except ValueError:
            try:
                return int(float(value))
            except (ValueError, OverflowError):
                return None


def canonical_uuid(value: str) -> str:
    """A UUID in its lowercase hyphenated form; any other id as it is."""
    if len(value) in (32, 36):
        try:
            return str(uuidlib.UUID(value))
        except ValueError:
            pass
    return value


def is_uuid(value: str) -> bool:
    try:
        return len(value) == 36 and str(uuidlib.UUID(value)) == value
    except ValueError:
        return False


def values_encoded(raw: Mapping[str, str]) -> bool:
    """Whether mod_json_cdr percent-encoded the values (``encode-values``, on by default)."""
    stamp = raw.get("start_stamp")
    if stamp:
        return _UNSAFE.search(stamp) is None
    return not any(_UNSAFE.search(v) for v in raw.values())


def decode_variables(raw: Mapping[str, Any]) -> dict[str, str]:
    """The variables as strings, percent-decoded exactly once when they were encoded."""
    strings: dict[str, str] = {}
    for name, value in raw.items():
        if isinstance(value, list):  # a key repeated in an old body: the last one stands
            value = next((v for v in reversed(value) if isinstance(v, str | int | float)), None)
        if isinstance(value, bool) or value is None or isinstance(value, dict):
            continue
        strings[str(name)] = value if isinstance(value, str) else str(value)
    if values_encoded(strings):
        return {k: unquote(v, errors="replace") if "%" in v else v for k, v in strings.items()}
    return strings


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    return [value] if isinstance(value, dict) else []


def _profiles(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The callflow entries, newest first: an array now, repeated keys before 1.6."""
    return [entry for entry in _as_list(payload.get("callflow")) if isinstance(entry, dict)]


def _applications(payload: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    app_log = payload.get("app_log")
    if not isinstance(app_log, dict):
        return ()
    entries = _as_list(app_log.get("applications")) + _as_list(app_log.get("application"))
    return tuple(
        (str(e.get("app_name") or ""), str(e.get("app_data") or "")) for e in entries if isinstance(e, dict)
    )


def _originator_uuid(profiles: list[dict[str, Any]]) -> str | None:
    for entry in profiles:
        profile = entry.get("caller_profile")
        originator = profile.get("originator") if isinstance(profile, dict) else None
        if not isinstance(originator, dict):
            continue
        for key, value in originator.items():
            if key.startswith("originator_caller_profile"):
                for candidate in _as_list(value):
                    if isinstance(candidate, dict) and candidate.get("uuid"):
                        return str(candidate["uuid"])
    return None


def _epoch(variables: Mapping[str, str], name: str) -> int | None:
    for key, scale in ((f"{name}_epoch", 1), (f"{name}_uepoch", 1_000_000)):
        value = variables.get(key, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value) // scale
    return None


def _profile_time(profiles: list[dict[str, Any]], key: str, *, oldest: bool) -> int | None:
    ordered = reversed(profiles) if oldest else iter(profiles)
    for entry in ordered:
        times = entry.get("times")
        value = str(times.get(key) or "") if isinstance(times, dict) else ""
        if value.isdigit() and int(value) > 0:
            return int(value) // 1_000_000
    return None


def _parent(variables: Mapping[str, str], profiles: list[dict[str, Any]]) -> tuple[str | None, str]:
    member = variables.get("cc_member_session_uuid")
    if variables.get("cc_side") == "agent" and member:
        return member, AGENT
    if variables.get("originating_leg_uuid"):
        return variables["originating_leg_uuid"], B_LEG
    if variables.get("loopback_leg") == "B" and variables.get("other_loopback_leg_uuid"):
        return variables["other_loopback_leg_uuid"], B_LEG
    originator = _originator_uuid(profiles)
    if originator:
        return originator, B_LEG
    return None, A_LEG


def parse_leg(payload: Any, *, url_uuid: str | None = None) -> Leg:
    """A decoded JSON value to a :class:`Leg`, or :class:`InvalidLeg` naming what is wrong."""
    if not isinstance(payload, dict):
        raise InvalidLeg("body", "A leg must be a JSON object.")
    raw_variables = payload.get("variables")
    if not isinstance(raw_variables, dict):
        raise InvalidLeg("variables", "The leg has no variables object.")
    variables = decode_variables(raw_variables)
    profiles = _profiles(payload)
    original = profiles[-1].get("caller_profile") if profiles else None
    profile: Mapping[str, Any] = original if isinstance(original, dict) else {}

    newest = profiles[0].get("caller_profile") if profiles else None
    raw_uuid = (
        variables.get("uuid")
        or (str(newest.get("uuid") or "") if isinstance(newest, dict) else "")
        or (url_uuid or "")
    ).strip()
    if not raw_uuid:
        raise InvalidLeg("variables.uuid", "The leg has no uuid.")
    leg_uuid = canonical_uuid(raw_uuid)
    if len(leg_uuid) > MAX_LEG_UUID or _UNSAFE.search(leg_uuid):
        raise InvalidLeg("variables.uuid", "The leg's uuid is not a channel uuid.")

    parent, kind = _parent(variables, profiles)
    parent = canonical_uuid(parent.strip()) if parent else None
    if parent == leg_uuid or (parent and (len(parent) > MAX_LEG_UUID or _UNSAFE.search(parent))):
        parent, kind = None, A_LEG
    if parent is None and not is_uuid(leg_uuid):
        raise InvalidLeg("variables.uuid", "The uuid of an A-leg must be a UUID: it becomes the call's uuid.")

    start = _epoch(variables, "start") or _profile_time(profiles, "created_time", oldest=True)
    if start is None:
        raise InvalidLeg("variables.start_epoch", "The leg has no start time (start_epoch or start_uepoch).")
    end = _epoch(variables, "end") or _profile_time(profiles, "hangup_time", oldest=False)
    if end is None:
        duration = _digits(variables.get("duration"))
        if duration is None:
            raise InvalidLeg("variables.end_epoch", "The leg has no end time (end_epoch or end_uepoch).")
        end = start + duration
    answer = _epoch(variables, "answer") or _profile_time(profiles, "answered_time", oldest=True)
    for field, value in (("start_epoch", start), ("end_epoch", end), ("answer_epoch", answer)):
        if value is not None and not 0 < value < MAX_EPOCH:
            raise InvalidLeg(f"variables.{field}", f"The leg's {field} is out of range.")

    data = payload.get("channel_data")
    channel_direction = str(data.get("direction") or "") if isinstance(data, dict) else ""
    return Leg(
        uuid=leg_uuid,
        parent_uuid=parent,
        kind=kind,
        variables=variables,
        channel_direction=channel_direction or variables.get("direction", ""),
        caller_number=_text(profile.get("caller_id_number"))
        or variables.get("caller_id_number", "")
        or variables.get("sip_from_user", ""),
        destination_number=_text(profile.get("destination_number"))
        or variables.get("destination_number", "")
        or variables.get("sip_req_user", ""),
        profile_username=_text(profile.get("username")),
        context=_text(profile.get("context")),
        start_ts=start,
        answer_ts=answer,
        end_ts=end,
        applications=_applications(payload),
    )


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _digits(value: str | None) -> int | None:
    value = (value or "").strip()
    return int(value) if value.isdigit() else None


def read_leg(raw: bytes, *, url_uuid: str | None = None) -> tuple[Leg, bytes]:
    """A POST body or a file to its leg, and the JSON text that is kept."""
    text = decode_body(raw)
    return parse_leg(load_leg_json(text), url_uuid=url_uuid), text
