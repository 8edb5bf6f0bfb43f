"""WAV parsing (pbx_cdr.audio) and the demo's G.711 encoders, against independent references."""

from __future__ import annotations

import io
import struct
import sys
import wave

import pytest

from pbx_cdr.audio import MAX_HEADER_BYTES, NotAWav, WavSniffer, inspect_wav, parse_header
from pbx_cdr.demo.audio import alaw_byte, conversation, demo_recording, mulaw_byte, wav_bytes


def stdlib_wav(seconds: float, *, rate: int = 8000, width: int = 2, channels: int = 1) -> bytes:
    """A PCM WAV written by Python's own ``wave`` module."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(b"\x01" * int(seconds * rate) * width * channels)
    return buffer.getvalue()


def riff(*chunks: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def chunk(name: bytes, body: bytes) -> bytes:
    return name + struct.pack("<I", len(body)) + body + (b"\0" if len(body) % 2 else b"")


def fmt(tag: int, channels: int, rate: int, bits: int, extra: bytes = b"") -> bytes:
    align = channels * bits // 8
    return chunk(b"fmt ", struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits) + extra)


@pytest.mark.parametrize(
    ("seconds", "rate", "width", "channels", "name", "duration"),
    [
        (14.0, 8000, 2, 1, "pcm_s16le", 14),
        (2.5, 8000, 2, 1, "pcm_s16le", 3),  # rounded half up
        (2.49, 16000, 2, 2, "pcm_s16le", 2),
        (3.0, 8000, 1, 1, "pcm_u8", 3),
        (1.0, 48000, 3, 2, "pcm_s24le", 1),
        (1.0, 8000, 4, 1, "pcm_s32le", 1),
    ],
)
def test_pcm_from_the_stdlib_writer(
    seconds: float, rate: int, width: int, channels: int, name: str, duration: int
) -> None:
    info, seconds_read = inspect_wav(stdlib_wav(seconds, rate=rate, width=width, channels=channels))
    assert (info.audio_format, info.sample_rate, info.channels, info.data_offset) == (
        name,
        rate,
        channels,
        44,
    )
    assert seconds_read == duration


@pytest.mark.parametrize(("encoding", "name"), [("mulaw", "mulaw"), ("alaw", "alaw"), ("pcm16", "pcm_s16le")])
def test_g711_and_pcm_files_of_the_demo(encoding: str, name: str) -> None:
    data = demo_recording(7, 6, encoding)
    info, duration = inspect_wav(data)
    assert info.audio_format == name
    assert info.sample_rate == 8000 and info.channels == 1
    assert duration == 6


def test_extensible_format_with_a_list_chunk_before_the_data() -> None:
    guid = struct.pack("<H", 7) + bytes.fromhex("000000001000800000aa00389b71")
    extensible = struct.pack("<HHI", 22, 8, 0x4) + guid
    data = b"\xff" * 8000 * 5
    body = riff(
        chunk(b"LIST", b"INFOISFT" + struct.pack("<I", 9) + b"FreeSWITC\0"),
        fmt(0xFFFE, 1, 8000, 8, struct.pack("<H", 22) + extensible[2:]),
        chunk(b"data", data),
    )
    info, duration = inspect_wav(body)
    assert info.audio_format == "mulaw" and duration == 5


def test_ieee_float() -> None:
    body = riff(fmt(3, 1, 8000, 32), chunk(b"data", b"\0" * 4 * 8000 * 2))
    assert inspect_wav(body)[0].audio_format == "float32"


def test_a_writer_that_never_filled_in_the_sizes_gets_the_duration_of_what_arrived() -> None:
    whole = stdlib_wav(4.0)
    streamed = whole[:40] + struct.pack("<I", 0xFFFFFFFF) + whole[44:]
    info, duration = inspect_wav(streamed)
    assert info.declared_data_size is None and duration == 4


def test_a_file_cut_short_counts_only_the_bytes_present() -> None:
    whole = stdlib_wav(10.0)
    info, duration = inspect_wav(whole[: 44 + 16000 * 3])
    assert info.declared_data_size == 160000 and duration == 3


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"ID3\x04\x00" + b"\0" * 100, "no RIFF"),
        (b"RIFF\0\0\0\0AVI LIST", "not a WAVE"),
        (b"RF64\xff\xff\xff\xffWAVE", "RF64"),
        (b"RIFF\x24\0\0\0WAVEfmt ", "cut short"),
        (riff(chunk(b"data", b"\0" * 100)), "before its fmt"),
        (riff(fmt(0x55, 1, 8000, 16), chunk(b"data", b"\0" * 100)), "0x0055"),  # MP3 in WAV
        (riff(fmt(1, 1, 8000, 12), chunk(b"data", b"\0" * 100)), "12 bits"),
        (riff(fmt(7, 1, 8000, 16), chunk(b"data", b"\0" * 100)), "8 bits"),
        (riff(fmt(1, 0, 8000, 16), chunk(b"data", b"")), "channels"),
        (riff(fmt(1, 1, 0, 16), chunk(b"data", b"")), "sample rate"),
        (riff(fmt(1, 1, 8000, 16), chunk(b"data", b"")), "no audio"),
        (riff(chunk(b"fmt ", b"\x01\0\x01\0"), chunk(b"data", b"\0" * 100)), "too short"),
        (riff(chunk(b"\0\x01\x02\x03", b""), chunk(b"data", b"")), "malformed chunk"),
    ],
)
def test_refusals_say_why(data: bytes, reason: str) -> None:
    with pytest.raises(NotAWav, match=reason):
        inspect_wav(data)


def test_inconsistent_byte_rate_is_refused() -> None:
    bad = struct.pack("<HHIIHH", 1, 1, 8000, 12345, 2, 16)
    with pytest.raises(NotAWav, match="inconsistent"):
        inspect_wav(riff(chunk(b"fmt ", bad), chunk(b"data", b"\0" * 100)))


def test_the_sniffer_decides_from_the_first_bytes_and_keeps_only_the_header() -> None:
    sniffer = WavSniffer()
    with pytest.raises(NotAWav):
        sniffer.feed(b"<html>")  # refused on the first chunk, before the rest arrives
    sniffer = WavSniffer()
    data = demo_recording(1, 3)
    for start in range(0, len(data), 7):  # byte-dribbled: still found
        sniffer.feed(data[start : start + 7])
    assert sniffer.info is not None and sniffer.finish(len(data)).audio_format == "pcm_s16le"


def test_a_header_that_never_reaches_its_data_chunk_is_refused_at_the_cap() -> None:
    sniffer = WavSniffer()
    sniffer.feed(riff(fmt(1, 1, 8000, 16)))
    padding = chunk(b"pad ", b"\0" * 1000)
    fed = 0
    refused = None
    while fed < 2 * MAX_HEADER_BYTES and refused is None:
        try:
            sniffer.feed(padding)
        except NotAWav as exc:
            refused = exc
        fed += len(padding)
    assert refused is not None and "too large" in str(refused)
    assert MAX_HEADER_BYTES - 2000 < fed <= MAX_HEADER_BYTES + 1000
    with pytest.raises(NotAWav, match="too large"):
        parse_header(riff(fmt(1, 1, 8000, 16)) + b"junk" + struct.pack("<I", 10**9))


def test_conversation_is_deterministic_and_loud_enough() -> None:
    a, b = conversation(5, 3), conversation(5, 3)
    assert a == b and len(a) == 24000
    assert max(abs(s) for s in a) > 3000
    assert conversation(6, 3) != a


def test_multichannel_wav_bytes() -> None:
    info, duration = inspect_wav(wav_bytes([0, 0] * 8000 * 2, channels=2))
    assert info.channels == 2 and duration == 2


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="audioop left the standard library in 3.13")
def test_g711_encoders_match_the_reference_for_every_sample() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop

    samples = struct.pack("<65536h", *range(-32768, 32768))
    assert bytes(mulaw_byte(s) for s in range(-32768, 32768)) == audioop.lin2ulaw(samples, 2)
    assert bytes(alaw_byte(s) for s in range(-32768, 32768)) == audioop.lin2alaw(samples, 2)
