"""The legs of one call folded into the call: pure, and blind to the order the legs arrived in."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from pbx_cdr.domain import derive
from pbx_cdr.domain.call import Call
from pbx_cdr.ingest.freeswitch import mapping
from pbx_cdr.ingest.freeswitch.leg import A_LEG, AGENT, B_LEG, TRANSFER, Leg, is_uuid
from pbx_cdr.ingest.freeswitch.mapping import CallLegs, clip

MAX_SECONDS = 2**31 - 1  # the columns are 32-bit integers


def seconds(value: int) -> int:
    return min(max(0, value), MAX_SECONDS)


def roles(legs: Iterable[Leg], call_uuid: str) -> dict[str, str]:
    """Each leg's part in the call: the A-leg, agent legs, B-legs of the A-leg, and transfer legs
    (originated from a B-leg, as an attended transfer does)."""
    found: dict[str, str] = {}
    for leg in legs:
        if leg.uuid == call_uuid:
            found[leg.uuid] = A_LEG
        elif leg.kind == AGENT:
            found[leg.uuid] = AGENT
        elif leg.parent_uuid == call_uuid:
            found[leg.uuid] = B_LEG
        else:
            found[leg.uuid] = TRANSFER
    return found


def call_legs(legs: Sequence[Leg], call_uuid: str) -> CallLegs | None:
    """The call's legs in a fixed order, or None while its A-leg has not arrived."""
    by_uuid = {leg.uuid: leg for leg in legs}
    a = by_uuid.get(call_uuid)
    if a is None or not is_uuid(a.uuid):  # a B-leg at the top of a loop of links is no call
        return None
    others = tuple(
        sorted((g for g in by_uuid.values() if g.uuid != call_uuid), key=lambda g: (g.start_ts, g.uuid))
    )
    return CallLegs(a=a, others=others, roles=roles(by_uuid.values(), call_uuid))


def agent_names(legs: Iterable[Leg]) -> set[str]:
    """The mod_callcenter agent names on these legs (to look their extensions up)."""
    names: set[str] = set()
    for leg in legs:
        name = leg.var("cc_agent")
        if name:
            names.update({name, name.split("@", 1)[0]})
    return names


def fold_call(legs: Sequence[Leg], call_uuid: str, aliases: Mapping[str, str] | None = None) -> Call | None:
    """The call whose A-leg is ``call_uuid``, from all of its legs; None without the A-leg."""
    c = call_legs(legs, call_uuid)
    if c is None:
        return None
    aliases = aliases or {}
    a = c.a
    direction = mapping.direction(c)
    caller, destination = mapping.numbers(c)
    was_answered = mapping.answered(c)
    sip = mapping.sip_response_code(c)
    decided_by = mapping.outcome_cause(c, was_answered)
    result = derive.derive_call_result(
        answered=was_answered,
        hangup_cause=decided_by,
        sip_response_code=sip,
        voicemail=any(mapping.reached_voicemail(leg) for leg in c.all),
        hangup_disposition=a.var("sip_hangup_disposition"),
        queue_cause=a.var("cc_cause"),
        queue_cancel_reason=a.var("cc_cancel_reason"),
    )
    hangup_cause = clip(a.var("hangup_cause").upper() or decided_by, 64) or derive.derive_hangup_cause(
        result, sip, was_answered
    )
    start, end = a.start_ts, max(a.end_ts, a.start_ts)
    answer = min(max(a.answer_ts, start), end) if a.answer_ts is not None else None
    duration = a.int_var("duration")
    billsec = a.int_var("billsec")
    queue_name, queue_wait = mapping.queue(c)
    agent = mapping.agent_extension(c, aliases, direction)
    extension = mapping.extension(c, direction)
    if extension is None and direction == "inbound":
        extension = agent  # the destination of an inbound call is the agent who took it
    return Call(
        uuid=a.uuid,
        direction=direction,
        source_type=mapping.source_type(c, direction),
        caller_number=clip(caller, 64),
        destination_number=clip(destination, 64),
        extension_number=extension,
        agent_extension=agent,
        start_ts=start,
        answer_ts=answer,
        end_ts=end,
        duration=seconds(duration if duration is not None else end - start),
        billsec=seconds(billsec if billsec is not None else (end - answer if answer is not None else 0)),
        queue_name=queue_name,
        queue_wait_time=seconds(queue_wait) if queue_wait is not None else None,
        trunk_name=mapping.trunk(c),
        transfer_count=mapping.transfer_count(c),
        result=result,
        hangup_cause=hangup_cause,
        sip_response_code=sip,
    )
