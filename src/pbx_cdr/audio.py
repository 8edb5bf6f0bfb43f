"""WAV files: what a recording must be, read from its header. Pure: bytes in, facts or an error out.

A recording arrives as a stream, so the header is parsed from the first bytes (:class:`WavSniffer`)
and the duration is settled once the whole body has been counted (:meth:`WavInfo.duration_for`).

Accepted: RIFF/WAVE with linear PCM (8, 16, 24, 32 bit), IEEE float (32, 64 bit), G.711 µ-law and
A-law, also wrapped in ``WAVE_FORMAT_EXTENSIBLE``; 1 to 8 channels; 1 Hz to 384 kHz.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RIFF_HEADER = 12
CHUNK_HEADER = 8
# A header (fmt plus LIST, bext, fact... chunks) bigger than this is not a recording we accept.
MAX_HEADER_BYTES = 256 * 1024
# A streaming writer that could not seek back leaves the data size as 0 or as this placeholder.
UNKNOWN_SIZES = (0, 0xFFFFFFFF)

_PCM, _FLOAT, _ALAW, _MULAW, _EXTENSIBLE = 0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE
# The sub-format GUIDs of WAVE_FORMAT_EXTENSIBLE end in this fixed tail after the 2-byte format tag.
_GUID_TAIL = bytes.fromhex("000000001000800000aa00389b71")


class NotAWav(ValueError):
    """The bytes are not a WAV recording this service accepts; the message says why."""


@dataclass(frozen=True)
class WavInfo:
    audio_format: str  # pcm_s16le, pcm_u8, pcm_s24le, pcm_s32le, float32, float64, mulaw, alaw
    channels: int
    sample_rate: int
    bits_per_sample: int
    block_align: int
    data_offset: int  # where the samples start
    declared_data_size: int | None  # None when the writer never filled it in

    @property
    def byte_rate(self) -> int:
        return self.sample_rate * self.block_align

    def audio_bytes(self, total_size: int) -> int:
        """Bytes of samples in a file of ``total_size`` bytes: the header's size, cut to what arrived."""
        present = max(0, total_size - self.data_offset)
        if self.declared_data_size is None:
            return present
        return min(present, self.declared_data_size)

    def duration_for(self, total_size: int) -> int:
        """Whole seconds, rounded half up (a 14.5 s recording is 15 s)."""
        frames = self.audio_bytes(total_size) // self.block_align
        return (2 * frames + self.sample_rate) // (2 * self.sample_rate)


def _format_name(tag: int, bits: int) -> str:
    if tag == _PCM:
        if bits == 8:
            return "pcm_u8"
        if bits in (16, 24, 32):
            return f"pcm_s{bits}le"
        raise NotAWav(f"PCM with {bits} bits per sample is not supported (8, 16, 24 or 32).")
    if tag == _FLOAT:
        if bits in (32, 64):
            return f"float{bits}"
        raise NotAWav(f"IEEE float with {bits} bits per sample is not supported (32 or 64).")
    if tag in (_ALAW, _MULAW):
        if bits != 8:
            raise NotAWav("G.711 A-law and µ-law recordings must have 8 bits per sample.")
        return "alaw" if tag == _ALAW else "mulaw"
    raise NotAWav(f"WAV format 0x{tag:04x} is not supported (PCM, IEEE float, µ-law or A-law).")


def _parse_fmt(body: bytes) -> tuple[str, int, int, int, int]:
    if len(body) < 16:
        raise NotAWav("The WAV fmt chunk is too short.")
    tag, channels, rate, byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", body)
    if tag == _EXTENSIBLE:
        if len(body) < 40:
            raise NotAWav("The WAV extensible fmt chunk is too short.")
        guid = body[24:40]
        if guid[2:] != _GUID_TAIL:
            raise NotAWav("The WAV extensible sub-format is not supported.")
        tag = struct.unpack_from("<H", guid)[0]
    name = _format_name(tag, bits)
    if not 1 <= channels <= 8:
        raise NotAWav(f"A recording must have 1 to 8 channels, not {channels}.")
    if not 1 <= rate <= 384_000:
        raise NotAWav(f"The sample rate {rate} Hz is out of range.")
    if block_align != channels * bits // 8 or byte_rate != rate * block_align:
        raise NotAWav("The WAV header is inconsistent (block align or byte rate).")
    return name, channels, rate, bits, block_align


def parse_header(head: bytes) -> WavInfo | None:
    """The header from the first bytes of a file; None while more bytes are needed to decide.

    Raises :class:`NotAWav` as soon as the bytes seen rule the file out.
    """
    if len(head) >= 4 and head[:4] != b"RIFF":
        if head[:4] == b"RF64":
            raise NotAWav("RF64 (WAV over 4 GB) recordings are not supported.")
        raise NotAWav("The recording is not a WAV file (no RIFF header).")
    if len(head) >= RIFF_HEADER and head[8:12] != b"WAVE":
        raise NotAWav("The recording is a RIFF file but not a WAVE file.")
    if len(head) < RIFF_HEADER:
        return None
    pos = RIFF_HEADER
    fmt: tuple[str, int, int, int, int] | None = None
    while True:
        if pos + CHUNK_HEADER > len(head):
            _check_room(head)
            return None
        chunk_id = head[pos : pos + 4]
        size = struct.unpack_from("<I", head, pos + 4)[0]
        body_at = pos + CHUNK_HEADER
        if chunk_id == b"data":
            if fmt is None:
                raise NotAWav("The WAV data chunk comes before its fmt chunk.")
            name, channels, rate, bits, block_align = fmt
            return WavInfo(
                audio_format=name,
                channels=channels,
                sample_rate=rate,
                bits_per_sample=bits,
                block_align=block_align,
                data_offset=body_at,
                declared_data_size=None if size in UNKNOWN_SIZES else size,
            )
        if not all(32 <= b < 127 for b in chunk_id):
            raise NotAWav("The WAV file has a malformed chunk.")
        end = body_at + size + (size & 1)  # chunks are padded to an even length
        if chunk_id == b"fmt ":
            if body_at + size > len(head):
                _check_room(head)
                return None
            fmt = _parse_fmt(head[body_at : body_at + size])
        if end > MAX_HEADER_BYTES:
            raise NotAWav("The WAV header is too large or has no data chunk.")
        pos = end


def _check_room(head: bytes) -> None:
    """More bytes are needed: refuse once the header has taken all the room it may."""
    if len(head) >= MAX_HEADER_BYTES:
        raise NotAWav("The WAV header is too large or has no data chunk.")


class WavSniffer:
    """Fed a stream chunk by chunk; keeps only the header's bytes and decides as early as it can."""

    def __init__(self) -> None:
        self._head = bytearray()
        self.info: WavInfo | None = None

    def feed(self, chunk: bytes) -> None:
        if self.info is not None or not chunk:
            return
        room = MAX_HEADER_BYTES - len(self._head)
        self._head += chunk[:room]
        self.info = parse_header(bytes(self._head))
        if self.info is not None:
            self._head = bytearray()

    def finish(self, total_size: int) -> WavInfo:
        """The header of the complete file; NotAWav if it never appeared or holds no audio."""
        if self.info is None:
            if total_size == 0:
                raise NotAWav("The recording is empty: send the WAV file's bytes.")
            raise NotAWav("The recording is not a complete WAV file (its header is cut short).")
        if self.info.audio_bytes(total_size) < self.info.block_align:
            raise NotAWav("The WAV file holds no audio.")
        return self.info


def inspect_wav(data: bytes) -> tuple[WavInfo, int]:
    """A whole file in memory (tests, demo): its header and its duration in seconds."""
    sniffer = WavSniffer()
    sniffer.feed(data)
    info = sniffer.finish(len(data))
    return info, info.duration_for(len(data))
