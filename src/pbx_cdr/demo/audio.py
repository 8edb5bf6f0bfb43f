"""Generated call audio for the demo: 8 kHz mono WAV, a few seconds of two voices taking turns.

Not speech, but it sounds like a conversation down a phone line: voiced "syllables" with a pitch
glide and a soft envelope, pauses between words, a lower and a higher voice. Deterministic for a
seed. Also writes the G.711 µ-law and A-law encodings FreeSWITCH uses, so the demo and the tests can
make every format the service accepts.
"""

from __future__ import annotations

import math
import random
import struct
from array import array
from collections.abc import Sequence
from functools import cache

RATE = 8000
ENCODINGS = ("pcm16", "mulaw", "alaw")
_WAVE_TAGS = {"pcm16": (1, 16), "mulaw": (7, 8), "alaw": (6, 8)}


@cache
def _syllable(pitch: int, length: int, brightness: int) -> array[int]:
    """One voiced sound: a few harmonics of a gliding pitch under a raised-sine envelope."""
    out = array("h")
    phase = 0.0
    for n in range(length):
        t = n / length
        f0 = pitch * (1.0 + 0.12 * math.sin(math.pi * t) - 0.05 * t)
        phase += 2 * math.pi * f0 / RATE
        value = sum(math.sin(k * phase) / (k ** (1.6 - brightness * 0.2)) for k in range(1, 6))
        envelope = math.sin(math.pi * t) ** 1.5
        out.append(int(5200 * envelope * value))
    return out


def conversation(seed: int, seconds: float) -> array[int]:
    """16-bit samples of two voices taking turns for about ``seconds``."""
    rng = random.Random(seed)
    voices = ((rng.choice((105, 115, 125)), 0), (rng.choice((190, 205, 220)), 2))
    total = int(seconds * RATE)
    out = array("h")
    speaker = rng.randrange(2)
    while len(out) < total:
        pitch, brightness = voices[speaker]
        for _ in range(rng.randint(3, 9)):  # one turn: a few words
            for _ in range(rng.randint(1, 3)):  # one word: a few syllables
                sound = _syllable(pitch + rng.choice((-10, 0, 10)), rng.choice((720, 960, 1200)), brightness)
                out.extend(sound)
            out.extend(array("h", bytes(2 * rng.choice((400, 640, 880)))))  # the gap after a word
        out.extend(array("h", bytes(2 * rng.choice((2400, 3200, 4000)))))  # the other side listens
        speaker = 1 - speaker
    del out[total:]
    return out


_MULAW_SEGMENTS = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_ALAW_SEGMENTS = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _segment(value: int, ends: tuple[int, ...]) -> int:
    return next((i for i, end in enumerate(ends) if value <= end), len(ends))


def mulaw_byte(sample: int) -> int:
    """G.711 µ-law for a 16-bit sample (the ITU reference: 14-bit magnitude, bias 33)."""
    value = sample >> 2
    mask = 0xFF
    if value < 0:
        value, mask = -value, 0x7F
    value = min(value, 8159) + 0x21
    segment = _segment(value, _MULAW_SEGMENTS)
    if segment >= 8:
        return 0x7F ^ mask
    return ((segment << 4) | ((value >> (segment + 1)) & 0x0F)) ^ mask


def alaw_byte(sample: int) -> int:
    """G.711 A-law for a 16-bit sample (the ITU reference: 13-bit magnitude, even bits inverted)."""
    value = sample >> 3
    mask = 0xD5
    if value < 0:
        value, mask = -value - 1, 0x55
    segment = _segment(value, _ALAW_SEGMENTS)
    if segment >= 8:
        return 0x7F ^ mask
    shift = 1 if segment < 2 else segment
    return ((segment << 4) | ((value >> shift) & 0x0F)) ^ mask


@cache
def _table(encoding: str) -> bytes:
    """The 8-bit code of every 16-bit sample, indexed by the sample as unsigned."""
    encode = mulaw_byte if encoding == "mulaw" else alaw_byte
    return bytes(encode(n - 65536 if n >= 32768 else n) for n in range(65536))


def encode(samples: Sequence[int], encoding: str) -> bytes:
    if encoding == "pcm16":
        return array("h", samples).tobytes()  # WAV is little-endian, as are the machines we run on
    if encoding not in ("mulaw", "alaw"):
        raise ValueError(f"unknown encoding {encoding!r} (use {', '.join(ENCODINGS)})")
    table = _table(encoding)
    return bytes(table[s & 0xFFFF] for s in samples)


def wav_bytes(
    samples: Sequence[int], *, encoding: str = "pcm16", rate: int = RATE, channels: int = 1
) -> bytes:
    """A complete WAV file of mono (or interleaved) 16-bit ``samples`` in ``encoding``."""
    tag, bits = _WAVE_TAGS[encoding]
    data = encode(samples, encoding)
    block_align = channels * bits // 8
    fmt_size = 16 if tag == 1 else 18  # non-PCM formats carry cbSize
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block_align, block_align, bits)
    if fmt_size == 18:
        fmt += struct.pack("<H", 0)
    chunks = b"fmt " + struct.pack("<I", fmt_size) + fmt
    if tag != 1:  # non-PCM WAVs carry a fact chunk with the frame count
        chunks += b"fact" + struct.pack("<II", 4, len(data) // block_align)
    chunks += b"data" + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def demo_recording(seed: int, seconds: float, encoding: str = "pcm16") -> bytes:
    """A call recording for the demo: ``seconds`` of conversation, 8 kHz mono."""
    return wav_bytes(conversation(seed, seconds), encoding=encoding)
