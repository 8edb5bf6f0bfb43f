"""The body of a mod_json_cdr POST, or a file it wrote, to the leg's JSON.

mod_json_cdr's ``encode`` setting picks the body: ``false`` sends the JSON itself; ``true`` sends
``cdr=`` and the URL-encoded JSON; ``base64`` sends ``cdr=`` and the base64 of the JSON, *not*
escaped, so its ``+`` would become a space in any form parser: the route reads the raw bytes. With
``disable-100-continue`` the Content-Type header is lost, so the form is read from the body alone.
Files in ``err-log-dir`` hold the encoded text without ``cdr=``; files in ``log-dir`` hold JSON.

Versions before 1.6 repeated the ``callflow`` key (and ``application`` inside ``app_log``) instead
of writing arrays; a plain JSON parser keeps only the last one, so such bodies are read with every
repeated key collected into a list.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any
from urllib.parse import unquote_to_bytes

import orjson

_BOM = b"\xef\xbb\xbf"
_REPEATABLE = re.compile(rb'"(callflow|application)"\s*:')
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/=_\-]")
NOT_A_LEG = (
    "The body is not a mod_json_cdr leg: expected JSON, or cdr= followed by URL-encoded or base64 JSON."
)


class UndecodableBody(ValueError):
    """The body is no form of a leg mod_json_cdr sends (answered 400)."""


def decode_body(raw: bytes) -> bytes:
    """The JSON text of a leg, whichever form it came in."""
    data = raw.removeprefix(_BOM).strip()
    if not data:
        raise UndecodableBody("The request body is empty.")
    if data[:1] in (b"{", b"["):
        return data
    if data[:4].lower() == b"cdr=":
        data = data[4:]
        if data[:1] != b"{":  # neither URL-encoded JSON nor base64 can hold a raw '&'
            data = data.split(b"&", 1)[0]
    return _unwrap(data.strip())


def _unwrap(value: bytes) -> bytes:
    if value[:1] == b"{":
        return value
    if value[:1] == b"%":
        # Form URL encoding: '+' is a space (FreeSWITCH itself writes %20 and %2B).
        text = unquote_to_bytes(value.replace(b"+", b" ")).strip()
        if text[:1] == b"{":
            return text
    return _from_base64(value)


def _from_base64(value: bytes) -> bytes:
    text = value
    if b"%" in text:  # a client that escaped it after all
        text = unquote_to_bytes(text)
    # A form parser upstream may have turned '+' into ' '; base64 has no spaces of its own.
    text = re.sub(rb"[\r\n\t]", b"", text.strip()).replace(b" ", b"+")
    if not text or _NOT_BASE64.search(text):
        raise UndecodableBody(NOT_A_LEG)
    text = text.replace(b"-", b"+").replace(b"_", b"/").rstrip(b"=")
    text += b"=" * (-len(text) % 4)
    try:
        decoded = base64.b64decode(text, validate=True).removeprefix(_BOM).strip()
    except (binascii.Error, ValueError) as exc:
        raise UndecodableBody(NOT_A_LEG) from exc
    if decoded[:1] != b"{":
        raise UndecodableBody(NOT_A_LEG)
    return decoded


def load_leg_json(text: bytes) -> Any:
    """Parse the leg's JSON; repeated keys (before 1.6) become a list of their values, in order."""
    try:
        if _has_repeated_keys(text):
            return json.loads(text.decode("utf-8", "replace"), object_pairs_hook=_collect_repeated)
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            # FreeSWITCH copies bytes from the wire; a caller name in Latin-1 is not UTF-8.
            return orjson.loads(text.decode("utf-8", "replace"))
    except (orjson.JSONDecodeError, json.JSONDecodeError, RecursionError) as exc:
        message = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc).split(":")[0]
        raise UndecodableBody(f"The leg is not valid JSON: {message}.") from exc


def _has_repeated_keys(text: bytes) -> bool:
    names = [m.group(1) for m in _REPEATABLE.finditer(text)]
    return names.count(b"callflow") > 1 or b"application" in names


def _collect_repeated(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    repeated: set[str] = set()
    for key, value in pairs:
        if key not in result:
            result[key] = value
        elif key in repeated:
            result[key].append(value)
        else:
            result[key] = [result[key], value]
            repeated.add(key)
    return result
