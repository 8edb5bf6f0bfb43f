"""Body forms of mod_json_cdr and the JSON of old and new FreeSWITCH versions."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest

from pbx_cdr.ingest.freeswitch.body import UndecodableBody, decode_body, load_leg_json

# '>' and '~' at these offsets make base64 carry '+' and '/': the characters form parsers break.
JSON = '{"variables":{"uuid":"x","note":"a>>>b???c"},"name":"Trần Thị Bình 100% +84"}'.encode()


def test_the_sample_base64_carries_plus_and_slash() -> None:
    encoded = base64.b64encode(JSON)
    assert b"+" in encoded and b"/" in encoded


@pytest.mark.parametrize(
    "body",
    [
        JSON,
        b"  \r\n" + JSON + b"\n",
        b"\xef\xbb\xbf" + JSON,
        b"cdr=" + quote(JSON, safe="").encode(),
        b"CDR=" + quote(JSON, safe="").encode(),
        b"cdr=" + quote(JSON, safe="").replace("%20", "+").encode(),  # a form encoder's spaces
        b"cdr=" + quote(JSON, safe="").encode() + b"&other=1",
        b"cdr=" + JSON,  # unencoded after cdr= (a hand-made post)
        b"cdr=" + base64.b64encode(JSON),
        b"cdr=" + base64.b64encode(JSON).replace(b"+", b" "),  # '+' read as space upstream
        b"cdr=" + quote(base64.b64encode(JSON).decode(), safe="").encode(),  # escaped after all
        b"cdr=" + base64.urlsafe_b64encode(JSON).rstrip(b"="),
        b"cdr=" + base64.encodebytes(JSON),  # wrapped lines
        base64.b64encode(JSON) + b"\n",  # err-log-dir, encode=base64
        quote(JSON, safe="").encode() + b"\n",  # err-log-dir, encode=true
    ],
)
def test_every_form_gives_the_json(body: bytes) -> None:
    assert json.loads(decode_body(body)) == json.loads(JSON)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "empty"),
        (b" \n\t", "empty"),
        (b"cdr=", "not a mod_json_cdr leg"),
        (b"hello world", "not a mod_json_cdr leg"),
        (b"cdr=%%%", "not a mod_json_cdr leg"),
        (b"cdr=" + base64.b64encode(b"[1,2,3] is no leg"), "not a mod_json_cdr leg"),
        (b"cdr=abc", "not a mod_json_cdr leg"),
        (b"<xml/>", "not a mod_json_cdr leg"),
    ],
)
def test_what_is_no_leg_says_so(body: bytes, says: str) -> None:
    with pytest.raises(UndecodableBody, match=says):
        decode_body(body)


def test_current_json_is_read_as_is() -> None:
    text = (
        b'{"callflow":[{"profile_index":"2"},{"profile_index":"1"}],'
        b'"app_log":{"applications":[{"app_name":"a"}]}}'
    )
    assert load_leg_json(text) == json.loads(text)


def test_repeated_keys_before_1_6_become_lists_in_order() -> None:
    text = (
        b'{"variables":{"uuid":"u"},'
        b'"app_log":{"application":{"app_name":"answer","app_data":""},'
        b'"application":{"app_name":"bridge","app_data":"user/1002"}},'
        b'"callflow":{"profile_index":"2","caller_profile":{"destination_number":"1002"}},'
        b'"callflow":{"profile_index":"1","caller_profile":{"destination_number":"5000"}}}'
    )
    doc = load_leg_json(text)
    assert [c["profile_index"] for c in doc["callflow"]] == ["2", "1"]
    assert [a["app_name"] for a in doc["app_log"]["application"]] == ["answer", "bridge"]
    assert doc["variables"] == {"uuid": "u"}


def test_a_single_old_callflow_stays_an_object() -> None:
    doc = load_leg_json(b'{"callflow":{"profile_index":"1"},"app_log":{"application":{"app_name":"a"}}}')
    assert doc["callflow"] == {"profile_index": "1"}


def test_bytes_that_are_not_utf8_do_not_refuse_the_leg() -> None:
    doc = load_leg_json(b'{"variables":{"caller_id_name":"Jos\xe9"}}')
    assert doc["variables"]["caller_id_name"] == "Jos\ufffd"


@pytest.mark.parametrize("text", [b'{"a": ', b'{"a": 1,}', b"{" * 100_000 + b"}" * 100_000])
def test_broken_json_is_refused(text: bytes) -> None:
    with pytest.raises(UndecodableBody, match="not valid JSON"):
        load_leg_json(text)
