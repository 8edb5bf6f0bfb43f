"""Signed recording links (pbx_cdr.signing): the exact signed text, and every way a link is refused."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbx_cdr.errors import InvalidSignature
from pbx_cdr.signing import (
    MAX_TTL,
    link_ttl,
    parse_signed_query,
    sign_recording_url,
    sign_url,
    verify_recording_request,
)

BASE = "https://app.zorio.vn"
KEY = b"current-key"
OLD = b"retired-key"
NOW = 1_782_704_211


def query_of(url: str) -> bytes:
    return url.split("?", 1)[1].encode()


def test_the_signature_is_hex_hmac_sha256_of_the_absolute_url_without_it() -> None:
    url = sign_url(BASE, "/api/public/recordings/401/audio", 1782706011, KEY)
    unsigned = "https://app.zorio.vn/api/public/recordings/401/audio?expires=1782706011"
    expected = hmac.new(KEY, unsigned.encode(), hashlib.sha256).hexdigest()
    assert url == f"{unsigned}&signature={expected}"


def test_a_base_url_with_a_path_and_a_trailing_slash() -> None:
    url, ttl = sign_recording_url("https://pbx.example.com/cdr/", 7, NOW, 1800, KEY)
    assert url.startswith("https://pbx.example.com/cdr/api/public/recordings/7/audio?expires=")
    assert ttl == 1800
    verify_recording_request("https://pbx.example.com/cdr", "7", query_of(url), [KEY], NOW)


def test_ttl_comes_from_the_account_capped_at_seven_days() -> None:
    assert link_ttl(1800) == 1800
    assert link_ttl(30 * 86400) == MAX_TTL == 7 * 86400
    url, ttl = sign_recording_url(BASE, 1, NOW, 10**9, KEY)
    assert ttl == MAX_TTL and f"expires={NOW + MAX_TTL}&" in url


def test_a_good_link_verifies_until_its_last_second() -> None:
    url, _ = sign_recording_url(BASE, 401, NOW, 1800, KEY)
    assert verify_recording_request(BASE, "401", query_of(url), [KEY], NOW) == 401
    assert verify_recording_request(BASE, "401", query_of(url), [KEY], NOW + 1800) == 401
    with pytest.raises(InvalidSignature):
        verify_recording_request(BASE, "401", query_of(url), [KEY], NOW + 1801)


def test_retired_keys_verify_during_a_rotation_and_not_after() -> None:
    url, _ = sign_recording_url(BASE, 401, NOW, 1800, OLD)
    assert verify_recording_request(BASE, "401", query_of(url), [KEY, OLD], NOW) == 401
    with pytest.raises(InvalidSignature):
        verify_recording_request(BASE, "401", query_of(url), [KEY], NOW)
    with pytest.raises(InvalidSignature):
        verify_recording_request(BASE, "401", query_of(url), [], NOW)


def _tampered(url: str) -> dict[str, bytes]:
    query = url.split("?", 1)[1]
    expires = query.split("&")[0].split("=")[1]
    signature = query.split("signature=")[1]
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    return {
        "flipped": f"expires={expires}&signature={flipped}".encode(),
        "expires+1": f"expires={int(expires) + 1}&signature={signature}".encode(),
        "expires-1": f"expires={int(expires) - 1}&signature={signature}".encode(),
        "leading zero": f"expires=0{expires}&signature={signature}".encode(),
        "missing signature": f"expires={expires}".encode(),
        "missing expires": f"signature={signature}".encode(),
        "empty": b"",
        "extra": f"expires={expires}&signature={signature}&x=1".encode(),
        "repeated": f"expires={expires}&expires={expires}&signature={signature}".encode(),
        "array": f"expires={expires}&signature[]={signature}".encode(),
        "uppercase": f"expires={expires}&signature={signature.upper()}".encode(),
        "short": f"expires={expires}&signature={signature[:63]}".encode(),
        "long": f"expires={expires}&signature={signature}0".encode(),
        "non-ascii": f"expires={expires}&signature={signature[:62]}é".encode(),
        "percent-encoded": f"expires={expires}&signature=%{signature[1:]}".encode(),
        "huge expires": f"expires={'9' * 40}&signature={signature}".encode(),
        "negative": f"expires=-{expires}&signature={signature}".encode(),
        "no value": f"expires&signature={signature}".encode(),
        "trailing &": f"expires={expires}&signature={signature}&".encode(),
    }


@pytest.mark.parametrize("case", list(_tampered(sign_url(BASE, "/x", NOW, KEY))))
def test_every_tampering_is_refused(case: str) -> None:
    url, _ = sign_recording_url(BASE, 401, NOW, 1800, KEY)
    with pytest.raises(InvalidSignature):
        verify_recording_request(BASE, "401", _tampered(url)[case], [KEY], NOW)


def test_another_recordings_signature_is_refused() -> None:
    url, _ = sign_recording_url(BASE, 402, NOW, 1800, KEY)
    with pytest.raises(InvalidSignature):
        verify_recording_request(BASE, "401", query_of(url), [KEY], NOW)


def test_another_hosts_signature_is_refused() -> None:
    url, _ = sign_recording_url("https://evil.example", 401, NOW, 1800, KEY)
    with pytest.raises(InvalidSignature):
        verify_recording_request(BASE, "401", query_of(url), [KEY], NOW)


@pytest.mark.parametrize("raw_id", ["0401", "0", "-1", "401.0", "4e2", "١٢", "9" * 30, ""])
def test_odd_ids_are_refused(raw_id: str) -> None:
    url, _ = sign_recording_url(BASE, 401, NOW, 1800, KEY)
    with pytest.raises(InvalidSignature):
        verify_recording_request(BASE, raw_id, query_of(url), [KEY], NOW)


def test_a_forged_far_future_expiry_is_refused_even_if_signed() -> None:
    url = sign_url(BASE, "/api/public/recordings/401/audio", NOW + MAX_TTL + 3600, KEY)
    with pytest.raises(InvalidSignature):
        verify_recording_request(BASE, "401", query_of(url), [KEY], NOW)


def test_parameters_in_either_order_parse() -> None:
    sig = "a" * 64
    assert parse_signed_query(f"signature={sig}&expires=5".encode()) == ("5", sig)


@given(st.binary(max_size=200))
def test_any_bytes_give_a_clean_refusal(raw: bytes) -> None:
    with pytest.raises(InvalidSignature):
        verify_recording_request(BASE, "401", raw, [KEY], NOW)
