"""Realistic call-centre traffic: Vietnamese numbers, queues, agents, trunks, every direction and result.

Deterministic for a given seed, so demos and tests can be reproduced.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from pbx_cdr.domain.call import Call

MOBILE_PREFIXES = (
    "86",
    "96",
    "97",
    "98",
    "32",
    "33",
    "34",
    "35",
    "36",
    "37",
    "38",
    "39",  # Viettel
    "88",
    "91",
    "94",
    "83",
    "84",
    "85",
    "81",
    "82",  # Vinaphone
    "89",
    "90",
    "93",
    "70",
    "79",
    "77",
    "76",
    "78",  # Mobifone
    "56",
    "58",
    "59",  # Vietnamobile, Gmobile
)
LANDLINE_PREFIXES = ("28", "24", "236", "225")  # Ho Chi Minh City, Hanoi, Da Nang, Hai Phong
QUEUES = ("sales", "support", "billing", "vip")
TRUNKS = ("viettel-sip", "vnpt-sip", "fpt-sip")
HOTLINES = ("19006868", "02873001234", "18001091")
AGENT_EXTENSIONS = tuple(str(n) for n in range(1001, 1031))
OFFICE_EXTENSIONS = tuple(str(n) for n in range(2001, 2011))
IVR_NUMBERS = ("*97", "9999", "*43", "8000")

# Share of traffic per hour of the local day, a call centre's double hump.
HOUR_WEIGHTS = (1, 1, 1, 1, 1, 2, 4, 10, 22, 28, 27, 22, 14, 18, 26, 27, 24, 18, 10, 6, 4, 3, 2, 1)


@dataclass(frozen=True)
class Outcome:
    result: str
    cause: str
    sip: str | None


def mobile(rng: random.Random) -> str:
    """A Vietnamese mobile number in national form, ``0`` + 9 digits."""
    return "0" + rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10**7):07d}"


def landline(rng: random.Random) -> str:
    prefix = rng.choice(LANDLINE_PREFIXES)
    return "0" + prefix + f"{rng.randrange(10 ** (10 - len(prefix) - 1)):0{10 - len(prefix) - 1}d}"


def external_number(rng: random.Random) -> str:
    """Mostly national mobiles, some landlines, some in E.164 as carriers often send them."""
    number = mobile(rng) if rng.random() < 0.8 else landline(rng)
    return "+84" + number[1:] if rng.random() < 0.25 else number


def _outcome(rng: random.Random, answered_share: float) -> Outcome:
    roll = rng.random()
    if roll < answered_share:
        return Outcome("answered", "NORMAL_CLEARING", "200")
    return rng.choices(
        [
            Outcome("busy", "USER_BUSY", "486"),
            Outcome("no_answer", "NO_ANSWER", "480"),
            Outcome("cancelled", "ORIGINATOR_CANCEL", "487"),
            Outcome("rejected", "CALL_REJECTED", "603"),
            Outcome("failed", "NORMAL_TEMPORARY_FAILURE", "503"),
            Outcome("voicemail", "NORMAL_CLEARING", None),
        ],
        weights=[18, 22, 25, 8, 7, 20],
    )[0]


def _start(rng: random.Random, now: datetime, days: int, tz: ZoneInfo) -> datetime:
    day = (now.astimezone(tz) - timedelta(days=rng.randrange(days + 1))).date()
    hour = rng.choices(range(24), weights=HOUR_WEIGHTS)[0]
    local = datetime(day.year, day.month, day.day, hour, rng.randrange(60), rng.randrange(60), tzinfo=tz)
    latest = now - timedelta(minutes=5)
    return local if local <= latest else local - timedelta(days=1)


def generate_call(rng: random.Random, now: datetime, days: int, tz: ZoneInfo) -> Call:
    """One call of a mixed inbound/outbound/internal/local centre."""
    direction = rng.choices(["inbound", "outbound", "internal", "local"], weights=[52, 36, 8, 4])[0]
    start = _start(rng, now, days, tz)
    queue = agent = trunk = None
    queue_wait: int | None = None
    transfers = 0
    if direction == "inbound":
        caller, destination = external_number(rng), rng.choice(HOTLINES)
        queue = rng.choice(QUEUES)
        outcome = _outcome(rng, 0.72)
        queue_wait = rng.randint(2, 90) if outcome.result != "voicemail" else rng.randint(30, 120)
        if outcome.result == "answered":
            agent = rng.choice(AGENT_EXTENSIONS)
            transfers = 1 if rng.random() < 0.06 else 0
        extension = agent
        trunk = rng.choice(TRUNKS)
        source_type = "inbound"
    elif direction == "outbound":
        extension = rng.choice(AGENT_EXTENSIONS)
        caller, destination = extension, external_number(rng)
        outcome = _outcome(rng, 0.55)
        if outcome.result == "voicemail":
            outcome = Outcome("no_answer", "NO_ANSWER", "480")
        trunk = rng.choice(TRUNKS)
        source_type = rng.choices(
            ["outbound_manual", "outbound_telesales", "outbound_callback", "outbound_webphone"],
            weights=[40, 35, 15, 10],
        )[0]
    elif direction == "internal":
        extension = rng.choice(AGENT_EXTENSIONS + OFFICE_EXTENSIONS)
        caller, destination = extension, rng.choice(AGENT_EXTENSIONS + OFFICE_EXTENSIONS)
        outcome = _outcome(rng, 0.8)
        source_type = "internal"
    else:
        extension = rng.choice(AGENT_EXTENSIONS)
        caller, destination = extension, rng.choice(IVR_NUMBERS)
        outcome = Outcome("answered", "NORMAL_CLEARING", None)
        source_type = "internal"

    ring = rng.randint(3, 25)
    answered = outcome.result in ("answered", "voicemail")
    talk = int(rng.lognormvariate(4.6, 0.9)) + 5 if answered else 0
    wait = queue_wait or 0
    answer_ts = int(start.timestamp()) + wait + ring if answered else None
    end_ts = (answer_ts + talk) if answer_ts else int(start.timestamp()) + wait + ring
    start_ts = int(start.timestamp())
    return Call(
        uuid=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        direction=direction,
        source_type=source_type,
        caller_number=caller,
        destination_number=destination,
        extension_number=extension,
        agent_extension=agent,
        start_ts=start_ts,
        answer_ts=answer_ts,
        end_ts=end_ts,
        duration=end_ts - start_ts,
        billsec=(end_ts - answer_ts) if answer_ts else 0,
        queue_name=queue,
        queue_wait_time=queue_wait,
        trunk_name=trunk,
        transfer_count=transfers,
        result=outcome.result,
        hangup_cause=outcome.cause,
        sip_response_code=outcome.sip if direction == "outbound" else None,
    )


def generate_calls(
    count: int, *, days: int = 30, tz: str = "UTC", seed: int = 7, now: datetime | None = None
) -> Iterator[Call]:
    rng = random.Random(seed)
    moment = now or datetime.now(ZoneInfo("UTC"))
    zone = ZoneInfo(tz)
    for _ in range(count):
        yield generate_call(rng, moment, days, zone)
