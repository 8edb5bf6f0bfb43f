"""What each field of a call is, read from its legs (the table in docs/freeswitch.md).

Every function takes a :class:`CallLegs`: the A-leg and the legs folded into it, in a fixed order
(start time, then uuid), so the answer never depends on the order the legs arrived in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from pbx_cdr.domain import derive
from pbx_cdr.ingest.freeswitch.leg import AGENT, Leg

BRIDGE_APPS = frozenset({"bridge", "att_xfer", "intercept", "callcenter", "fifo"})
ANSWERED_DISPOSITIONS = frozenset({"SUCCESS", "ANSWER"})
_GATEWAY_IN_DIAL = re.compile(r"sofia/gateway/([^/\s,|\]]+)/")
_SIP_CODE = re.compile(r"^[1-6][0-9]{2}\Z")
_EXTENSION = re.compile(r"^[0-9A-Za-z+*#._-]{1,32}\Z")
_TRANSFER_KINDS = ("bl_xfer", "att_xfer")


@dataclass(frozen=True)
class CallLegs:
    """One call's legs: ``a`` is the call; ``others`` are ordered; ``roles`` maps uuid to role."""

    a: Leg
    others: tuple[Leg, ...]
    roles: Mapping[str, str]

    @property
    def all(self) -> tuple[Leg, ...]:
        return (self.a, *self.others)

    def answered_others(self) -> list[Leg]:
        """Legs that answered, first answer first."""
        return sorted((leg for leg in self.others if leg.answer_ts), key=lambda g: (g.answer_ts, g.uuid))

    def agent_legs(self) -> list[Leg]:
        return [leg for leg in self.others if self.roles.get(leg.uuid) == AGENT]


def leg_gateway(leg: Leg) -> str:
    """The gateway a leg went out through: ``sip_gateway_name``, or its ``sofia/gateway/`` channel name."""
    if leg.var("sip_gateway_name"):
        return leg.var("sip_gateway_name")
    match = _GATEWAY_IN_DIAL.match(leg.var("channel_name") + "/")
    return match.group(1) if match and leg.channel_direction == "outbound" else ""


def dialed_gateways(leg: Leg) -> list[str]:
    """Gateways named in the bridge dial strings of a leg's app_log (all there is without B-legs)."""
    found: list[str] = []
    for name, data in leg.applications:
        if name in BRIDGE_APPS:
            found.extend(m.group(1) for m in _GATEWAY_IN_DIAL.finditer(data))
    return found


def originated(c: CallLegs) -> bool:
    """The A-leg was originated by the switch (``originate`` API, click-to-call), not called in."""
    return c.a.channel_direction == "outbound"


def queued(c: CallLegs) -> bool:
    return bool(c.a.var("cc_queue") or c.agent_legs())


def bridge_attempted(c: CallLegs) -> bool:
    """Another endpoint was reached or tried: B-legs, or the A-leg's own record of a bridge."""
    a = c.a
    return bool(
        c.others
        or any(name in BRIDGE_APPS for name, _ in a.applications)
        or a.var("originate_disposition")
        or a.var("last_bridge_to")
        or queued(c)
    )


def bridge_answered(c: CallLegs) -> bool:
    a = c.a
    return bool(
        c.answered_others()
        or a.var("last_bridge_to")
        or a.var("originate_disposition").upper() in ANSWERED_DISPOSITIONS
        or a.var("DIALSTATUS").upper() == "SUCCESS"
        or (a.int_var("cc_queue_answered_epoch") or 0) > 0
    )


def answered(c: CallLegs) -> bool:
    """Bridged to someone who answered; or, with no bridge and no queue, answered by the switch."""
    if bridge_answered(c):
        return True
    return c.a.answer_ts is not None and not bridge_attempted(c)


def reached_voicemail(leg: Leg) -> bool:
    if (leg.int_var("voicemail_message_len") or 0) > 0 or leg.var("voicemail_file_path"):
        return True
    # ``voicemail check ...`` is a user listening to messages, not a caller leaving one.
    return any(
        name == "voicemail" and not data.strip().lower().startswith("check")
        for name, data in leg.applications
    )


def direction(c: CallLegs) -> str:
    a = c.a
    inbound_leg = a.channel_direction != "outbound"
    return derive.derive_direction(
        dialplan=first_var(c, "call_direction"),
        from_gateway=inbound_leg and bool(a.var("sip_gateway") or a.var("sip_gateway_name")),
        public_context=inbound_leg and a.context == "public",
        via_gateway=any(leg_gateway(leg) for leg in c.others)
        or bool(dialed_gateways(a))
        or (originated(c) and bool(leg_gateway(a))),
        bridged=bridge_attempted(c),
    )


def first_var(c: CallLegs, name: str) -> str:
    """A variable from the A-leg, else from the first other leg that has it."""
    return next((leg.var(name) for leg in c.all if leg.var(name)), "")


def source_type(c: CallLegs, call_direction: str) -> str:
    return derive.derive_call_source_type(
        call_direction,
        dialplan=first_var(c, "source_type"),
        webrtc=c.a.var("sip_via_protocol").lower() in ("ws", "wss"),
    )


def numbers(c: CallLegs) -> tuple[str, str]:
    """Caller and destination: the A-leg's original caller profile.

    A call the switch originated (click-to-call) rang our user first: the user is the caller and
    the number the bridge dialled is the destination.
    """
    a = c.a
    if originated(c) and c.others:
        bridged = (c.answered_others() or list(c.others))[0]
        user = a.var("dialed_user") or a.destination_number
        return user, bridged.destination_number or a.destination_number
    return a.caller_number, a.destination_number


def extension(c: CallLegs, call_direction: str) -> str | None:
    """Our registered user on this call: the callee of an inbound call, else the caller."""
    a = c.a
    if call_direction == "inbound":
        # The user who answered; else the first one rung (a missed call is still theirs). Queue
        # agents who only rang are not: several may ring for one call.
        rung = c.answered_others() + [
            leg for leg in c.others if not leg.answer_ts and c.roles.get(leg.uuid) != AGENT
        ]
        candidates = [a.var("dialed_user")]
        candidates += [leg.var("dialed_user") for leg in rung if not leg_gateway(leg)]
        candidates += [a.var("last_sent_callee_id_number")]
    elif originated(c):
        candidates = [a.var("dialed_user"), a.var("sip_auth_username"), a.var("user_name")]
    else:
        candidates = [
            a.var("sip_auth_username"),
            a.var("user_name"),
            a.profile_username,
            a.var("sip_from_user"),
        ]
    return next((clip(v, 32) for v in candidates if v and _EXTENSION.match(v)), None)


def agent_of(name: str, aliases: Mapping[str, str]) -> str | None:
    """A mod_callcenter agent name as an extension: the account's mapping, else the name if it is one."""
    if not name:
        return None
    local = name.split("@", 1)[0]
    if name in aliases:
        return aliases[name]
    if local in aliases:
        return aliases[local]
    return local if local.isdigit() and len(local) <= 32 else None


def agent_extension(c: CallLegs, aliases: Mapping[str, str], call_direction: str) -> str | None:
    """For queue calls the agent who took it; for other inbound calls the user who answered."""
    if queued(c):
        agents = sorted((leg for leg in c.agent_legs() if leg.answer_ts), key=lambda g: (g.answer_ts, g.uuid))
        for leg in agents:
            found = agent_of(leg.var("cc_agent"), aliases) or _user_of(leg)
            if found:
                return clip(found, 32)
        return agent_of(c.a.var("cc_agent"), aliases)
    if call_direction != "inbound":
        return None
    for leg in c.answered_others():
        found = _user_of(leg)
        if found:
            return clip(found, 32)
    return None


def _user_of(leg: Leg) -> str | None:
    """The user a leg rang: ``dialed_user``; else, for a leg not sent to a gateway, the number it called."""
    if leg.var("dialed_user"):
        return leg.var("dialed_user")
    if leg_gateway(leg):
        return None
    for value in (leg.var("sip_to_user"), leg.destination_number):
        if value and _EXTENSION.match(value):
            return value
    return None


def queue(c: CallLegs) -> tuple[str | None, int | None]:
    """``cc_queue`` without its ``@domain``, and the seconds waited until answered, left or ended."""
    a = c.a
    name = a.var("cc_queue") or next(
        (leg.var("cc_queue") for leg in c.agent_legs() if leg.var("cc_queue")), ""
    )
    if not name:
        return None, None
    joined = a.int_var("cc_queue_joined_epoch")
    wait = None
    if joined:
        stop = (
            a.int_var("cc_queue_answered_epoch")
            or a.int_var("cc_queue_canceled_epoch")
            or a.int_var("cc_queue_terminated_epoch")
            or a.end_ts
        )
        wait = max(0, stop - joined)
    return clip(name.split("@", 1)[0], 128), wait


def trunk(c: CallLegs) -> str | None:
    """The gateway of the outbound leg (the one that answered first), else the inbound gateway."""
    ordered = c.answered_others() + [leg for leg in c.others if not leg.answer_ts]
    for leg in ordered:
        if leg_gateway(leg):
            return clip(leg_gateway(leg), 128)
    candidates = [leg_gateway(c.a) if originated(c) else "", *dialed_gateways(c.a), c.a.var("sip_gateway")]
    if c.a.channel_direction != "outbound":
        candidates.append(c.a.var("sip_gateway_name"))
    return next((clip(v, 128) for v in candidates if v), None)


def transfer_entries(leg: Leg) -> list[tuple[str, str, str]]:
    """(kind, epoch, target) of each blind or attended transfer in ``transfer_history``."""
    value = leg.var("transfer_history")
    if not value:
        return []
    items = value[len("ARRAY::") :].split("|:") if value.startswith("ARRAY::") else [value]
    found = []
    for item in items:
        parts = item.split(":", 3)
        if len(parts) >= 3 and parts[2] in _TRANSFER_KINDS:
            found.append((parts[2], parts[0], parts[3] if len(parts) > 3 else ""))
    return found


def transfer_count(c: CallLegs) -> int:
    """Distinct transfers across the legs: one transfer recorded on two legs counts once."""
    return len({entry for leg in c.all for entry in transfer_entries(leg)})


def _sip(value: str) -> str | None:
    value = value.strip()
    if value.lower().startswith("sip:"):
        value = value[4:]
    return value if _SIP_CODE.match(value) else None


def decisive_leg(c: CallLegs) -> Leg | None:
    """The leg whose end decided the call: the first to answer, else the last to end."""
    answered_legs = c.answered_others()
    if answered_legs:
        return answered_legs[0]
    if not c.others:
        return None
    return max(c.others, key=lambda g: (bool(leg_gateway(g)), g.end_ts, g.uuid))


def sip_response_code(c: CallLegs) -> str | None:
    """The final SIP status: of the decisive B-leg, else as the A-leg recorded it."""
    candidates: list[str] = []
    leg = decisive_leg(c)
    if leg is not None:
        candidates += [leg.var("sip_term_status"), leg.var("sip_invite_failure_status")]
    a = c.a
    candidates += [
        a.var("sip_term_status"),
        a.var("sip_invite_failure_status"),
        a.var("last_bridge_proto_specific_hangup_cause"),
    ]
    return next((code for v in candidates if v and (code := _sip(v))), None)


def outcome_cause(c: CallLegs, was_answered: bool) -> str:
    """The cause that decided the result: the bridge's when one was tried and not answered."""
    a = c.a
    if not was_answered and bridge_attempted(c):
        leg = decisive_leg(c)
        for value in (
            a.var("originate_disposition"),
            a.var("last_bridge_hangup_cause"),
            leg.var("hangup_cause") if leg else "",
        ):
            if value and value.upper() not in ANSWERED_DISPOSITIONS:
                return value.upper()
    return (a.var("hangup_cause") or "").upper()


def clip(value: str, length: int) -> str:
    return value[:length]
